//! One step of the GRU in plain loops (gate order r, z, n; see `model::gru`).

#![allow(clippy::needless_range_loop)]

use super::{affine, affine_backward, sigmoid};
use crate::linalg::Float;
use crate::model::layout::{LayerWeights, LayerWeightsMut};

/// h' from x (I) and h (H); the cache is (r, z, n, h·W_hn + b_hn), 4H.
pub fn forward<F: Float>(w: &LayerWeights<F>, x: &[F], h: &[F], next: &mut [F]) -> Vec<F> {
    let nh = h.len();
    let (gi, gh) = affine(w, x, h);
    let mut cache = vec![F::zero(); 4 * nh];
    for j in 0..nh {
        let r = sigmoid(gi[j] + gh[j]);
        let z = sigmoid(gi[nh + j] + gh[nh + j]);
        let hn = gh[2 * nh + j] + w.b_hn[j];
        let n = (gi[2 * nh + j] + r * hn).tanh();
        next[j] = (F::one() - z) * n + z * h[j];
        cache[j] = r;
        cache[nh + j] = z;
        cache[2 * nh + j] = n;
        cache[3 * nh + j] = hn;
    }
    cache
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
    // di: ∂L/∂(input-side pre-activations); dg: ∂L/∂(hidden-side pre-activations), 3H each.
    let mut di = vec![F::zero(); 3 * nh];
    let mut dg = vec![F::zero(); 3 * nh];
    for j in 0..nh {
        let (r, z, n, hn) = (
            cache[j],
            cache[nh + j],
            cache[2 * nh + j],
            cache[3 * nh + j],
        );
        let dn = dnext[j] * (F::one() - z);
        let dz = dnext[j] * (h[j] - n);
        let dan = dn * (F::one() - n * n);
        let dar = dan * hn * r * (F::one() - r);
        let daz = dz * z * (F::one() - z);
        di[j] = dar;
        di[nh + j] = daz;
        di[2 * nh + j] = dan;
        dg[j] = dar;
        dg[nh + j] = daz;
        dg[2 * nh + j] = dan * r;
        g.b_hn[j] += dan * r;
    }
    // The direct path h' = … + z ⊙ h, then the products.
    for i in 0..nh {
        dh[i] = dnext[i] * cache[nh + i];
    }
    affine_backward(w, g, (x, h), (&di, &dg), dx, dh);
}
