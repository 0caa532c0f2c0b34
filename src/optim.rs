//! The optimizer and gradient clipping, over flat parameter buffers.

use crate::linalg::Float;

/// Element-wise clipping of every gradient to [−c, c] (the tutorial's `np.clip`).
pub fn clip_elementwise<F: Float>(g: &mut [F], c: F) {
    for v in g.iter_mut() {
        *v = v.max(-c).min(c);
    }
}

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
        AdaGrad { lr, m: vec![F::zero(); n] }
    }

    /// One update of `p` with gradient `g`.
    pub fn step(&mut self, p: &mut [F], g: &[F]) {
        let eps = F::c(1e-8);
        for ((p, &g), m) in p.iter_mut().zip(g).zip(self.m.iter_mut()) {
            *m += g * g;
            *p -= self.lr * g / (m.sqrt() + eps);
        }
    }
}
