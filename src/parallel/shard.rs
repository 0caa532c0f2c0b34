//! One shard: a contiguous group of streams with its own workspace, carried state, gradient
//! buffer and random masks.

use std::ops::Range;

use ndarray::{s, Array3, ArrayView3, ArrayViewMut3, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Cursor, Ids, Streams};
use crate::error::Result;
use crate::linalg::Float;
use crate::model::{draw_mask, layer_key, CharLm, Tensor, WeightPacks, Workspace};

/// Forward and backward of one chunk of a shard's streams (the fast path,
/// [`CharLm::forward_backward`], or the reference loop, `naive::forward_backward_chunk`):
/// (model, params, the params' weights packed for bf16 products or `None`, gradient to add
/// into, (L, B_s, S) carried state, workspace with the ids filled, scale) → summed loss.
pub type ChunkFn<F> = fn(
    &CharLm,
    &[F],
    Option<&WeightPacks>,
    &mut [F],
    &mut ArrayViewMut3<F>,
    &mut Workspace<F>,
    F,
) -> F;

/// One shard: a contiguous group of streams with everything it writes to.
pub struct Shard<F> {
    /// First stream of the shard.
    pub b0: usize,
    /// (L, B_s, S) state of every layer carried from chunk to chunk of the shard's streams.
    pub state: Array3<F>,
    /// Forward cache and backward scratch for T steps × B_s streams.
    pub ws: Workspace<F>,
    /// ∂(scale·loss)/∂params of this shard's streams (flat, the model's layout).
    pub grads: Vec<F>,
    /// Summed loss (nats) of the shard's last chunk.
    pub loss: F,
    /// Masked parameters when the run drops W_hh elements.
    weight_drop: Option<WeightDrop<F>>,
}

/// The random masks of one training step: output dropout, DropConnect on W_hh, and the
/// step's seed.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    /// Probability of zeroing an element of a layer's output (into the layer above or the head).
    pub dropout: f64,
    /// Probability of zeroing an element of every layer's W_hh for the step (DropConnect).
    pub weight_drop: f64,
    /// Seed of the run.
    pub seed: u64,
    /// The step being taken.
    pub step: u64,
}

impl Noise {
    /// The generator of the mask `what` of streams starting at `b0` at this step: keyed by
    /// (seed, step, first stream, what) alone, so the masks depend neither on the thread count
    /// nor on anything a resumed run would lose.
    pub fn rng(&self, b0: usize, what: [u8; 8]) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        for (k, v) in
            key.chunks_exact_mut(8)
                .zip([self.seed, self.step, b0 as u64, u64::from_le_bytes(what)])
        {
            k.copy_from_slice(&v.to_le_bytes());
        }
        ChaCha8Rng::from_seed(key)
    }
}

/// DropConnect on every layer's W_hh for one shard: the parameters with W_hh masked, and the
/// masks.
struct WeightDrop<F> {
    /// Flat parameters, the model's layout, with W_hh ⊙ M in every layer.
    params: Vec<F>,
    /// Per layer: where W_hh lies in the flat buffers, and its (H, g·H) mask, each element 0
    /// or 1/(1−p).
    layers: Vec<(Range<usize>, Vec<F>)>,
}

/// The key of layer l's W_hh mask: layer 0 keeps the key it had when it was the only layer.
fn weight_drop_key(l: usize) -> [u8; 8] {
    if l == 0 {
        *b"wdrophh\0"
    } else {
        layer_key(*b"wdrop", l)
    }
}

impl<F: Float> WeightDrop<F> {
    fn new(model: &CharLm) -> Self {
        let layers = (0..model.layers)
            .map(|l| {
                let range = model.range_of(Tensor::WHh(l));
                let mask = vec![F::zero(); range.len()];
                (range, mask)
            })
            .collect();
        WeightDrop {
            params: vec![F::zero(); model.num_params()],
            layers,
        }
    }

    /// Draws the step's masks and returns `p` with every W_hh ⊙ M. The masks are keyed by
    /// the step alone, not by the shard: one mask per layer for the whole batch, as
    /// AWD-LSTM's DropConnect, so every shard (and rank) draws the same one and the
    /// regularisation does not depend on how the streams are partitioned. (With one mask per
    /// shard, a 2-shard LSTM run's validation loss jumped between epochs while one shard's
    /// fell smoothly: docs/quality.md and CHANGELOG.md, "One DropConnect mask per batch".)
    fn masked(&mut self, p: &[F], noise: &Noise) -> &[F] {
        self.params.copy_from_slice(p);
        for (l, (range, mask)) in self.layers.iter_mut().enumerate() {
            draw_mask(
                mask,
                noise.weight_drop,
                &mut noise.rng(0, weight_drop_key(l)),
            );
            for (w, &m) in self.params[range.clone()].iter_mut().zip(mask.iter()) {
                *w *= m;
            }
        }
        &self.params
    }

    /// ∂L/∂W_hh = ∂L/∂(W_hh ⊙ M) ⊙ M, in place on the W_hh parts of a flat gradient.
    fn mask_grad(&self, g: &mut [F]) {
        for (range, mask) in &self.layers {
            for (g, &m) in g[range.clone()].iter_mut().zip(mask) {
                *g *= m;
            }
        }
    }
}

impl<F: Float> Shard<F> {
    /// Buffers for streams `[b0, b0 + nb)` of chunks of `seq_len`, with an output-dropout
    /// mask after every layer when `noise.dropout` > 0 and W_hh masks when
    /// `noise.weight_drop` > 0.
    pub fn new(model: &CharLm, seq_len: usize, b0: usize, nb: usize, noise: &Noise) -> Self {
        let weight_drop = (noise.weight_drop > 0.0).then(|| WeightDrop::new(model));
        Shard {
            b0,
            state: model.zero_state(nb),
            ws: Workspace::with_dropout(model, seq_len, nb, noise.dropout),
            grads: vec![F::zero(); model.num_params()],
            loss: F::zero(),
            weight_drop,
        }
    }

    /// Buffers for chunks of `seq_len` from now on (a sequence-length warm-up's end); the
    /// carried state and the gradients are kept.
    pub fn set_chunk_len(&mut self, model: &CharLm, seq_len: usize, noise: &Noise) {
        let precision = self.ws.products.precision;
        self.ws = Workspace::with_dropout(model, seq_len, self.len(), noise.dropout);
        self.ws.set_precision(precision);
    }

    /// Streams in the shard, B_s.
    pub fn len(&self) -> usize {
        self.state.len_of(Axis(1))
    }

    /// True for a shard without streams.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forward and backward of the chunk at `at` of the shard's streams, into `self.grads`
    /// (zeroed first) and `self.loss`; fresh masks are drawn first when the shard has them.
    /// Fails only when the chunk's ids cannot be read.
    /// With DropConnect the chunk runs on W_hh ⊙ M, and ∂L/∂W_hh = ∂L/∂(W_hh ⊙ M) ⊙ M.
    /// `packs`: `p`'s weights packed for the bf16 products, shared by the shards (not read
    /// with DropConnect, whose products are on the masked weights).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        model: &CharLm,
        p: &[F],
        packs: Option<&WeightPacks>,
        chunk: ChunkFn<F>,
        streams: &Streams,
        ids: &Ids,
        at: Cursor,
        scale: F,
        noise: &Noise,
    ) -> Result<()> {
        let nb = self.len();
        streams.fill(ids, at, self.b0, nb, &mut self.ws.xs, &mut self.ws.ys)?;
        if noise.dropout > 0.0 {
            let b0 = self.b0;
            self.ws
                .draw_dropout(noise.dropout, |key| noise.rng(b0, key));
        }
        let (p, packs) = match self.weight_drop.as_mut() {
            Some(wd) => (wd.masked(p, noise), None),
            None => (p, packs),
        };
        self.grads.fill(F::zero());
        self.loss = chunk(
            model,
            p,
            packs,
            &mut self.grads,
            &mut self.state.view_mut(),
            &mut self.ws,
            scale,
        );
        if let Some(wd) = &self.weight_drop {
            wd.mask_grad(&mut self.grads);
        }
        Ok(())
    }
}

/// The (L, B, S) carried state of all streams, assembled from the shards (for model files).
pub fn gather_state<F: Float>(shards: &[Shard<F>]) -> Array3<F> {
    let views: Vec<ArrayView3<F>> = shards.iter().map(|s| s.state.view()).collect();
    let state = ndarray::concatenate(Axis(1), &views).expect("shards share L and S");
    // Model files and callers read it as one row-major block.
    state.as_standard_layout().into_owned()
}

/// Distributes an (L, B, S) carried state over the shards (from model files).
pub fn scatter_state<F: Float>(shards: &mut [Shard<F>], state: &Array3<F>) {
    for s in shards {
        let nb = s.len();
        s.state.assign(&state.slice(s![.., s.b0..s.b0 + nb, ..]));
    }
}
