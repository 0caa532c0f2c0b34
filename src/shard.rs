//! Data parallelism over independent streams: the B streams of a step are cut into S shards
//! (contiguous groups of streams, fixed by the config, never by the thread count). Each shard
//! runs forward and backward with its own workspace, hidden state and gradient buffer; the
//! shard gradients are then summed in shard order. Every element's sum has the same order
//! whatever the number of threads, so 1, 2 or 16 threads give the same bits.

use std::ops::Range;

use ndarray::{s, Array3, ArrayView3, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{Ids, Streams};
use crate::linalg::Float;
use crate::model::{draw_mask, layer_key, CharLm, Tensor, Workspace};
use crate::naive;
use crate::train::PathKind;

/// Elements per task of the parallel gradient reduction and optimizer update: large enough to
/// amortise rayon's scheduling, small enough to spread H = 512 (≈ 330k parameters) over 16 threads.
pub const CHUNK: usize = 16 * 1024;

/// Streams `[b0, b0 + nb)`, contiguous, with sizes differing by at most one.
pub fn partition(batch: usize, shards: usize) -> Vec<(usize, usize)> {
    let shards = shards.clamp(1, batch.max(1));
    let (base, extra) = (batch / shards, batch % shards);
    let mut b0 = 0;
    (0..shards)
        .map(|i| {
            let nb = base + usize::from(i < extra);
            let range = (b0, nb);
            b0 += nb;
            range
        })
        .collect()
}

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

    /// Draws the step's masks for the shard starting at `b0` and returns `p` with every
    /// W_hh ⊙ M.
    fn masked(&mut self, p: &[F], noise: &Noise, b0: usize) -> &[F] {
        self.params.copy_from_slice(p);
        for (l, (range, mask)) in self.layers.iter_mut().enumerate() {
            draw_mask(
                mask,
                noise.weight_drop,
                &mut noise.rng(b0, weight_drop_key(l)),
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

    /// Streams in the shard, B_s.
    pub fn len(&self) -> usize {
        self.state.len_of(Axis(1))
    }

    /// True for a shard without streams.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forward and backward of the chunk at `pos` of the shard's streams, into `self.grads`
    /// (zeroed first) and `self.loss`; fresh masks are drawn first when the shard has them.
    /// With DropConnect the chunk runs on W_hh ⊙ M, and ∂L/∂W_hh = ∂L/∂(W_hh ⊙ M) ⊙ M.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        model: &CharLm,
        p: &[F],
        path: PathKind,
        streams: &Streams,
        ids: &Ids,
        pos: usize,
        scale: F,
        noise: &Noise,
    ) {
        let nb = self.len();
        streams.fill(ids, pos, self.b0, nb, &mut self.ws.xs, &mut self.ws.ys);
        if noise.dropout > 0.0 {
            let b0 = self.b0;
            self.ws
                .draw_dropout(noise.dropout, |key| noise.rng(b0, key));
        }
        let p = match self.weight_drop.as_mut() {
            Some(wd) => wd.masked(p, noise, self.b0),
            None => p,
        };
        self.grads.fill(F::zero());
        self.loss = match path {
            PathKind::Blas => model.forward_backward(
                p,
                &mut self.grads,
                &mut self.state.view_mut(),
                &mut self.ws,
                scale,
            ),
            PathKind::Naive => {
                let t = self.ws.xs.len() / nb;
                let (mut xs, mut ys) = (vec![0; t], vec![0; t]);
                let mut loss = F::zero();
                for j in 0..nb {
                    for k in 0..t {
                        xs[k] = self.ws.xs[k * nb + j];
                        ys[k] = self.ws.ys[k * nb + j];
                    }
                    let mut state: Vec<F> =
                        self.state.slice(s![.., j, ..]).iter().copied().collect();
                    loss += naive::forward_backward(
                        model,
                        p,
                        &mut self.grads,
                        &mut state,
                        &xs,
                        &ys,
                        scale,
                    );
                    let mut dst = self.state.slice_mut(s![.., j, ..]);
                    for (d, &v) in dst.iter_mut().zip(&state) {
                        *d = v;
                    }
                }
                loss
            }
        };
        if let Some(wd) = &self.weight_drop {
            wd.mask_grad(&mut self.grads);
        }
    }
}

/// Sums every shard's gradient into the first shard's, element by element in shard order.
/// Inside a rayon pool the chunks of parameters are summed in parallel; the order of each
/// element's sum is the same either way.
pub fn reduce_grads<F: Float>(shards: &mut [Shard<F>]) {
    let Some((first, rest)) = shards.split_first_mut() else {
        return;
    };
    if rest.is_empty() {
        return;
    }
    let sum_chunk = |(c, out): (usize, &mut [F])| {
        let range = c * CHUNK..c * CHUNK + out.len();
        for s in rest.iter() {
            for (o, &g) in out.iter_mut().zip(&s.grads[range.clone()]) {
                *o += g;
            }
        }
    };
    if rayon::current_thread_index().is_some() {
        first
            .grads
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(sum_chunk);
    } else {
        first
            .grads
            .chunks_mut(CHUNK)
            .enumerate()
            .for_each(sum_chunk);
    }
}

/// Runs `f` on every item (shard): in parallel inside a rayon pool, in order otherwise.
pub fn for_each_shard<T: Send>(items: &mut [T], f: impl Fn(&mut T) + Sync + Send) {
    if rayon::current_thread_index().is_some() {
        items.par_iter_mut().for_each(f);
    } else {
        items.iter_mut().for_each(f);
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
