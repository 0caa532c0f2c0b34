//! One step of the vanilla cell in plain loops: h' = tanh(x·W_ih + h·W_hh + b).

#![allow(clippy::needless_range_loop)]

use super::{affine, affine_backward};
use crate::linalg::Float;
use crate::model::layout::{LayerWeights, LayerWeightsMut};

/// h' from x (I) and h (H); the cache is h' itself.
pub fn forward<F: Float>(w: &LayerWeights<F>, x: &[F], h: &[F], next: &mut [F]) -> Vec<F> {
    let (from_x, from_h) = affine(w, x, h);
    for j in 0..h.len() {
        next[j] = (from_x[j] + from_h[j]).tanh();
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
    let da: Vec<F> = (0..h.len())
        .map(|j| dnext[j] * (F::one() - cache[j] * cache[j]))
        .collect();
    dh.fill(F::zero());
    affine_backward(w, g, (x, h), (&da, &da), dx, dh);
}
