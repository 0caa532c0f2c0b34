//! The weights of one optimizer step packed for the bf16 products once, for every shard.
//!
//! A bf16 chunk multiplies by each weight matrix in packed form ([`BfPacked`]): W_ih (layers
//! with a gemm input) and W_hh forward, their transposes backward, W_hy and W_hyᵀ in the head.
//! A shard packs them itself when it is given none; a trainer with several shards packs them
//! here once per step (split over its threads) and hands every shard the same packings, and an
//! evaluation packs the forward ones once for all its shards and chunks. The packings are the
//! same bits either way, so the results do not change.

use rayon::prelude::*;

use super::{CharLm, Tensor, Weights};
use crate::linalg::bf16::BfPacked;
use crate::linalg::Float;

/// One weight matrix packed: which tensor, whether transposed, and its packing.
#[derive(Clone, Debug)]
struct Entry {
    tensor: Tensor,
    transposed: bool,
    packed: BfPacked,
}

/// The packed weight matrices of a model for one set of parameters ([`WeightPacks::pack`]).
#[derive(Clone, Debug, Default)]
pub struct WeightPacks {
    entries: Vec<Entry>,
}

impl WeightPacks {
    /// Buffers for the matrices of `model` that its products multiply by, forward and
    /// backward (empty packings).
    pub fn new(model: &CharLm) -> Self {
        Self::of(model, &[false, true])
    }

    /// Buffers for the matrices of `model` that its forward pass multiplies by (none
    /// transposed): what an evaluation reads.
    pub fn forward(model: &CharLm) -> Self {
        Self::of(model, &[false])
    }

    /// Buffers for the matrices of `model`'s products, each in the orientations `transposed`.
    fn of(model: &CharLm, transposed: &[bool]) -> Self {
        let mut tensors = Vec::new();
        for l in 0..model.layers {
            if l > 0 || model.embed.is_some() {
                tensors.push(Tensor::WIh(l));
            }
            tensors.push(Tensor::WHh(l));
        }
        tensors.push(Tensor::WHy);
        let entries = tensors
            .into_iter()
            .flat_map(|tensor| transposed.iter().map(move |&t| (tensor, t)))
            .map(|(tensor, transposed)| Entry {
                tensor,
                transposed,
                packed: BfPacked::default(),
            })
            .collect();
        WeightPacks { entries }
    }

    /// Packs every matrix from the flat parameters `p` of `model` (in parallel over the
    /// matrices inside a rayon pool); reuses the buffers.
    pub fn pack<F: Float>(&mut self, model: &CharLm, p: &[F]) {
        let weights = model.weights(p);
        let pack = |e: &mut Entry| {
            let w = weight(&weights, e.tensor);
            let w = if e.transposed { w.t() } else { w };
            F::pack_bf16(&w, &mut e.packed);
        };
        if rayon::current_thread_index().is_some() {
            self.entries.par_iter_mut().for_each(pack);
        } else {
            self.entries.iter_mut().for_each(pack);
        }
    }

    /// The packing of `tensor` (transposed when `transposed`).
    ///
    /// Panics for a matrix this model's products do not multiply by.
    pub fn get(&self, tensor: Tensor, transposed: bool) -> &BfPacked {
        &self
            .entries
            .iter()
            .find(|e| e.tensor == tensor && e.transposed == transposed)
            .unwrap_or_else(|| panic!("{tensor:?} (transposed: {transposed}) is not packed"))
            .packed
    }
}

/// The (rows, cols) view of the weight matrix `tensor` among `w`.
fn weight<'a, F>(w: &Weights<'a, F>, tensor: Tensor) -> ndarray::ArrayView2<'a, F> {
    match tensor {
        Tensor::WIh(l) => w.layers[l].w_ih,
        Tensor::WHh(l) => w.layers[l].w_hh,
        Tensor::WHy => w.w_hy,
        other => panic!("{other:?} is not multiplied by in a product"),
    }
}
