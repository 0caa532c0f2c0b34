//! One step of the LSTM in plain loops (gate order i, f, g, o; see `model::lstm`). The state
//! is (h, c), 2H.

#![allow(clippy::needless_range_loop)]

use super::{affine, affine_backward, sigmoid};
use crate::linalg::Float;
use crate::model::layout::{LayerWeights, LayerWeightsMut};

/// (h', c') from x (I) and (h, c) (2H); the cache is (i, f, g, o, tanh c'), 5H.
pub fn forward<F: Float>(w: &LayerWeights<F>, x: &[F], state: &[F], next: &mut [F]) -> Vec<F> {
    let nh = state.len() / 2;
    let (h, c) = state.split_at(nh);
    let (from_x, from_h) = affine(w, x, h);
    let a: Vec<F> = from_x.iter().zip(&from_h).map(|(&p, &q)| p + q).collect();
    let mut cache = vec![F::zero(); 5 * nh];
    for j in 0..nh {
        let i = sigmoid(a[j]);
        let f = sigmoid(a[nh + j]);
        let g = a[2 * nh + j].tanh();
        let o = sigmoid(a[3 * nh + j]);
        let cn = f * c[j] + i * g;
        next[nh + j] = cn;
        next[j] = o * cn.tanh();
        cache[j] = i;
        cache[nh + j] = f;
        cache[2 * nh + j] = g;
        cache[3 * nh + j] = o;
        cache[4 * nh + j] = cn.tanh();
    }
    cache
}

/// Backward of [`forward`]: `dnext` (2H) is ∂L/∂(h', c').
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Float>(
    w: &LayerWeights<F>,
    g: &mut LayerWeightsMut<F>,
    x: &[F],
    state: &[F],
    cache: &[F],
    dnext: &[F],
    dx: &mut [F],
    dstate: &mut [F],
) {
    let nh = state.len() / 2;
    let (h, c) = state.split_at(nh);
    let mut da = vec![F::zero(); 4 * nh];
    for j in 0..nh {
        let (i, f, gg, o, tc) = (
            cache[j],
            cache[nh + j],
            cache[2 * nh + j],
            cache[3 * nh + j],
            cache[4 * nh + j],
        );
        let dh = dnext[j];
        let dc = dnext[nh + j] + dh * o * (F::one() - tc * tc);
        da[j] = dc * gg * i * (F::one() - i);
        da[nh + j] = dc * c[j] * f * (F::one() - f);
        da[2 * nh + j] = dc * i * (F::one() - gg * gg);
        da[3 * nh + j] = dh * tc * o * (F::one() - o);
        dstate[nh + j] = dc * f;
    }
    let (dh, _) = dstate.split_at_mut(nh);
    dh.fill(F::zero());
    affine_backward(w, g, (x, h), (&da, &da), dx, dh);
}
