//! The reference implementation: the tutorial's algorithm, one character at a time, batch 1,
//! one-hot inputs multiplied out in full, plain loops, no BLAS.
//!
//! It is the correctness oracle for the fast path (`tests/agreement.rs` holds them equal) and
//! the baseline of every benchmark, so it stays a straightforward transcription: it is never
//! optimised, and never slowed down on purpose.

// Index loops on purpose: they read like the tutorial's equations.
#![allow(clippy::needless_range_loop)]

use crate::linalg::Float;
use crate::model::CharRnn;

/// Forward and backward over one chunk of ONE stream; returns the summed loss (nats) and ADDS
/// ∂(scale·loss)/∂p into `g`.
///
/// `xs`, `ys`: (T) input and target ids; `h`: (H) the carried state, h_0 on entry, h_T on return.
/// Buffers are the tutorial's dictionaries of per-step vectors: xs (T, V) one-hot, hs (T+1, H),
/// ps (T, V).
pub fn forward_backward<F: Float>(
    model: &CharRnn,
    p: &[F],
    g: &mut [F],
    h: &mut [F],
    xs: &[u32],
    ys: &[u32],
    scale: F,
) -> F {
    let (nv, nh, nt) = (model.vocab, model.hidden, xs.len());
    let w = model.weights(p);
    let mut x1h = vec![vec![F::zero(); nv]; nt];
    let mut hs = vec![vec![F::zero(); nh]; nt + 1];
    let mut ps = vec![vec![F::zero(); nv]; nt];
    hs[0].copy_from_slice(h);
    let mut loss = F::zero();

    for t in 0..nt {
        x1h[t][xs[t] as usize] = F::one();
        for j in 0..nh {
            let mut a = w.b_h[j];
            for i in 0..nv {
                a += x1h[t][i] * w.w_xh[[i, j]];
            }
            for i in 0..nh {
                a += hs[t][i] * w.w_hh[[i, j]];
            }
            hs[t + 1][j] = a.tanh();
        }
        let mut ys_t = vec![F::zero(); nv];
        for (k, y) in ys_t.iter_mut().enumerate() {
            *y = w.b_y[k];
            for j in 0..nh {
                *y += hs[t + 1][j] * w.w_hy[[j, k]];
            }
        }
        // Subtracting the max changes nothing mathematically and keeps exp finite.
        let max = ys_t.iter().copied().fold(F::neg_infinity(), F::max);
        let sum: F = ys_t.iter().map(|&y| (y - max).exp()).sum();
        for k in 0..nv {
            ps[t][k] = (ys_t[k] - max).exp() / sum;
        }
        loss -= ps[t][ys[t] as usize].ln();
    }

    let mut gw = model.weights_mut(g);
    let mut dh_next = vec![F::zero(); nh];
    for t in (0..nt).rev() {
        let mut dy = ps[t].clone();
        dy[ys[t] as usize] -= F::one();
        for d in dy.iter_mut() {
            *d *= scale;
        }
        for j in 0..nh {
            for k in 0..nv {
                gw.w_hy[[j, k]] += hs[t + 1][j] * dy[k];
            }
        }
        for k in 0..nv {
            gw.b_y[k] += dy[k];
        }
        let mut dh_raw = vec![F::zero(); nh];
        for j in 0..nh {
            let mut dh = dh_next[j];
            for k in 0..nv {
                dh += dy[k] * w.w_hy[[j, k]];
            }
            dh_raw[j] = (F::one() - hs[t + 1][j] * hs[t + 1][j]) * dh;
        }
        for j in 0..nh {
            gw.b_h[j] += dh_raw[j];
            for i in 0..nv {
                gw.w_xh[[i, j]] += x1h[t][i] * dh_raw[j];
            }
            for i in 0..nh {
                gw.w_hh[[i, j]] += hs[t][i] * dh_raw[j];
            }
        }
        for i in 0..nh {
            let mut d = F::zero();
            for j in 0..nh {
                d += dh_raw[j] * w.w_hh[[i, j]];
            }
            dh_next[i] = d;
        }
    }
    h.copy_from_slice(&hs[nt]);
    loss
}
