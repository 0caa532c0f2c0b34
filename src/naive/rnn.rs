//! One step of the vanilla cell in plain loops: h' = tanh(x·W_ih + h·W_hh + b).

#![allow(clippy::needless_range_loop)]

use crate::linalg::Float;
use crate::model::layout::{LayerWeights, LayerWeightsMut};

/// h' from x (I) and h (H); the cache is h' itself.
pub fn forward<F: Float>(w: &LayerWeights<F>, x: &[F], h: &[F], next: &mut [F]) -> Vec<F> {
    let nh = h.len();
    for j in 0..nh {
        let mut a = w.b[j];
        for i in 0..x.len() {
            a += x[i] * w.w_ih[[i, j]];
        }
        for i in 0..nh {
            a += h[i] * w.w_hh[[i, j]];
        }
        next[j] = a.tanh();
    }
    next.to_vec()
}

/// Backward of [`forward`]: `dnext` (H) is ∂L/∂h'.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Float>(
    w: &LayerWeights<F>,
    g: &mut LayerWeightsMut<F>,
    x: &[F],
    h: &[F],
    cache: &[F],
    dnext: &[F],
    dx: &mut [F],
    dh: &mut [F],
) {
    let nh = h.len();
    let mut da = vec![F::zero(); nh];
    for j in 0..nh {
        da[j] = dnext[j] * (F::one() - cache[j] * cache[j]);
    }
    for j in 0..nh {
        g.b[j] += da[j];
        for i in 0..x.len() {
            g.w_ih[[i, j]] += x[i] * da[j];
        }
        for i in 0..nh {
            g.w_hh[[i, j]] += h[i] * da[j];
        }
    }
    for i in 0..x.len() {
        dx[i] = (0..nh).map(|j| da[j] * w.w_ih[[i, j]]).sum();
    }
    for i in 0..nh {
        dh[i] = (0..nh).map(|j| da[j] * w.w_hh[[i, j]]).sum();
    }
}
