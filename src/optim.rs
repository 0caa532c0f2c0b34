//! The optimizer and gradient clipping, over flat parameter buffers.
//!
//! Clipping is element-wise to ±clip (the tutorial's `np.clip`), fused into the update.

use crate::linalg::Float;

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

    /// Clips `g` element-wise to [−clip, clip], applies the AdaGrad update with it, and zeroes `g`
    /// for the next accumulation: three passes over the parameters fused into one (at batch 1
    /// the update runs every T characters and is a fifth of the step).
    pub fn clip_step_zero(&mut self, p: &mut [F], g: &mut [F], clip: F) {
        let eps = F::c(1e-8);
        for ((p, g), m) in p.iter_mut().zip(g.iter_mut()).zip(self.m.iter_mut()) {
            let gc = g.max(-clip).min(clip);
            *m += gc * gc;
            *p -= self.lr * gc / (m.sqrt() + eps);
            *g = F::zero();
        }
    }
}
