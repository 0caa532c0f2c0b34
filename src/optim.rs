//! The optimizer and gradient clipping, over flat parameter buffers.
//!
//! Clipping is element-wise to ±clip (the tutorial's `np.clip`), fused into the update.

use rayon::prelude::*;

use crate::linalg::Float;
use crate::shard::CHUNK;

/// AdaGrad: m += g², p −= lr·g / (√m + ε), with ε = 1e−8 as in the tutorial.
#[derive(Clone, Debug)]
pub struct AdaGrad<F> {
    /// Learning rate.
    pub lr: F,
    /// Accumulated squared gradients, one per parameter (the optimizer state saved in model
    /// files).
    pub m: Vec<F>,
}

impl<F: Float> AdaGrad<F> {
    /// A fresh optimizer for `n` parameters.
    pub fn new(lr: F, n: usize) -> Self {
        AdaGrad {
            lr,
            m: vec![F::zero(); n],
        }
    }

    /// Clips `g` element-wise to [−clip, clip] and applies the AdaGrad update with it, in one
    /// pass (at batch 1 the update runs every T characters and is a fifth of the step).
    ///
    /// Inside a rayon pool the parameters are updated in parallel chunks; every element's
    /// update is independent, so the result is the same bits either way.
    pub fn clip_step(&mut self, p: &mut [F], g: &[F], clip: F) {
        let lr = self.lr;
        if rayon::current_thread_index().is_some() && p.len() > 2 * CHUNK {
            p.par_chunks_mut(CHUNK)
                .zip(g.par_chunks(CHUNK))
                .zip(self.m.par_chunks_mut(CHUNK))
                .for_each(|((p, g), m)| update(lr, clip, p, g, m));
        } else {
            update(lr, clip, p, g, &mut self.m);
        }
    }
}

/// m += clip(g)², p −= lr·clip(g) / (√m + 1e−8) over matching slices.
#[inline]
fn update<F: Float>(lr: F, clip: F, p: &mut [F], g: &[F], m: &mut [F]) {
    let eps = F::c(1e-8);
    for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
        let gc = g.max(-clip).min(clip);
        *m += gc * gc;
        *p -= lr * gc / (m.sqrt() + eps);
    }
}
