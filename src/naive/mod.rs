//! The reference implementation: the tutorial's algorithm, one character at a time, batch 1,
//! one-hot inputs multiplied out in full (or an explicit embedding's row), plain loops, no BLAS, for every cell and depth.
//!
//! It is the correctness oracle for the fast path (`tests/agreement.rs` holds them equal) and
//! the baseline of every benchmark, so it stays a straightforward transcription: it is never
//! optimised, and never slowed down on purpose. Each cell's single step, forward and backward,
//! is in its own file ([`rnn`], [`gru`], [`lstm`]); this file runs the layers, the head and
//! backpropagation through time.

// Index loops on purpose: they read like the equations.
#![allow(clippy::needless_range_loop)]

pub mod gru;
pub mod lstm;
pub mod rnn;

use ndarray::{s, ArrayViewMut3};

use crate::linalg::Float;
use crate::model::layout::{LayerWeights, LayerWeightsMut};
use crate::model::{CellKind, CharLm, WeightPacks, Workspace};

/// σ(x) = 1 / (1 + e^−x), with libm's exp.
fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp())
}

/// The two products of a step, multiplied out: x·W_ih + b (g·H) and h·W_hh (g·H).
fn affine<F: Float>(w: &LayerWeights<F>, x: &[F], h: &[F]) -> (Vec<F>, Vec<F>) {
    let gh = w.b.len();
    let mut from_x = vec![F::zero(); gh];
    let mut from_h = vec![F::zero(); gh];
    for k in 0..gh {
        from_x[k] = w.b[k];
        for i in 0..x.len() {
            from_x[k] += x[i] * w.w_ih[[i, k]];
        }
        for i in 0..h.len() {
            from_h[k] += h[i] * w.w_hh[[i, k]];
        }
    }
    (from_x, from_h)
}

/// Backward of [`affine`]: given ∂L/∂(x·W_ih + b) `dx_side` and ∂L/∂(h·W_hh) `dh_side`
/// (g·H each), ADDS the gradients of W_ih, b and W_hh into `g`, writes ∂L/∂x into `dx` (I) and
/// ADDS ∂L/∂h into `dh` (H).
fn affine_backward<F: Float>(
    w: &LayerWeights<F>,
    g: &mut LayerWeightsMut<F>,
    (x, h): (&[F], &[F]),
    (dx_side, dh_side): (&[F], &[F]),
    dx: &mut [F],
    dh: &mut [F],
) {
    let gh = w.b.len();
    for k in 0..gh {
        g.b[k] += dx_side[k];
        for i in 0..x.len() {
            g.w_ih[[i, k]] += x[i] * dx_side[k];
        }
        for i in 0..h.len() {
            g.w_hh[[i, k]] += h[i] * dh_side[k];
        }
    }
    for i in 0..x.len() {
        dx[i] = (0..gh).map(|k| dx_side[k] * w.w_ih[[i, k]]).sum();
    }
    for i in 0..h.len() {
        dh[i] += (0..gh).map(|k| dh_side[k] * w.w_hh[[i, k]]).sum::<F>();
    }
}

/// One step of one layer: from the input `x` (I) and the previous state `prev` (S) to the
/// next state `next` (S); returns what the step's backward needs.
fn step_forward<F: Float>(
    cell: CellKind,
    w: &LayerWeights<F>,
    x: &[F],
    prev: &[F],
    next: &mut [F],
) -> Vec<F> {
    match cell {
        CellKind::Rnn => rnn::forward(w, x, prev, next),
        CellKind::Gru => gru::forward(w, x, prev, next),
        CellKind::Lstm => lstm::forward(w, x, prev, next),
    }
}

/// Backward of one step of one layer: `dnext` (S) is ∂L/∂(next state); ADDS the layer's
/// gradients into `g` and writes ∂L/∂x into `dx` (I) and ∂L/∂prev into `dprev` (S).
#[allow(clippy::too_many_arguments)]
fn step_backward<F: Float>(
    cell: CellKind,
    w: &LayerWeights<F>,
    g: &mut LayerWeightsMut<F>,
    x: &[F],
    prev: &[F],
    cache: &[F],
    dnext: &[F],
    dx: &mut [F],
    dprev: &mut [F],
) {
    match cell {
        CellKind::Rnn => rnn::backward(w, g, x, prev, cache, dnext, dx, dprev),
        CellKind::Gru => gru::backward(w, g, x, prev, cache, dnext, dx, dprev),
        CellKind::Lstm => lstm::backward(w, g, x, prev, cache, dnext, dx, dprev),
    }
}

/// Forward and backward over one chunk of ONE stream; returns the summed loss (nats) and ADDS
/// ∂(scale·loss)/∂p into `g`.
///
/// `xs`, `ys`: (T) input and target ids; `state`: (L·S) the carried state of every layer,
/// layer after layer, the chunk's initial state on entry and its last on return.
#[allow(clippy::too_many_arguments)]
pub fn forward_backward<F: Float>(
    model: &CharLm,
    p: &[F],
    g: &mut [F],
    state: &mut [F],
    xs: &[u32],
    ys: &[u32],
    scale: F,
) -> F {
    let (nv, nh, nt, nl) = (model.vocab, model.hidden, xs.len(), model.layers);
    let ns = model.state_width();
    let w = model.weights(p);
    // states[t][l]: (S) state of layer l after t steps; inputs[t][l]: (I) its input at step t.
    let mut states = vec![vec![vec![F::zero(); ns]; nl]; nt + 1];
    let mut inputs = vec![vec![Vec::new(); nl]; nt];
    let mut caches = vec![vec![Vec::new(); nl]; nt];
    let mut ps = vec![vec![F::zero(); nv]; nt];
    for l in 0..nl {
        states[0][l].copy_from_slice(&state[l * ns..(l + 1) * ns]);
    }
    let mut loss = F::zero();

    for t in 0..nt {
        for l in 0..nl {
            let x = if l == 0 && model.embed.is_some() {
                // The explicit embedding: row x_t of the table.
                w.embed.row(xs[t] as usize).to_vec()
            } else if l == 0 {
                let mut x1h = vec![F::zero(); nv];
                x1h[xs[t] as usize] = F::one();
                x1h
            } else {
                states[t + 1][l - 1][..nh].to_vec()
            };
            let mut next = vec![F::zero(); ns];
            caches[t][l] = step_forward(model.cell, &w.layers[l], &x, &states[t][l], &mut next);
            states[t + 1][l] = next;
            inputs[t][l] = x;
        }
        let h = &states[t + 1][nl - 1];
        let mut zs = vec![F::zero(); nv];
        for (k, z) in zs.iter_mut().enumerate() {
            *z = w.b_y[k];
            for j in 0..nh {
                *z += h[j] * w.w_hy[[j, k]];
            }
        }
        // Subtracting the max changes nothing mathematically and keeps exp finite.
        let max = zs.iter().copied().fold(F::neg_infinity(), F::max);
        let sum: F = zs.iter().map(|&z| (z - max).exp()).sum();
        for k in 0..nv {
            ps[t][k] = (zs[k] - max).exp() / sum;
        }
        loss -= ps[t][ys[t] as usize].ln();
    }

    let mut gw = model.weights_mut(g);
    // dnext[l]: (S) ∂L/∂(state of layer l after step t) through the recurrence.
    let mut dnext = vec![vec![F::zero(); ns]; nl];
    for t in (0..nt).rev() {
        let mut dy = ps[t].clone();
        dy[ys[t] as usize] -= F::one();
        for d in dy.iter_mut() {
            *d *= scale;
        }
        let h = &states[t + 1][nl - 1];
        for j in 0..nh {
            for k in 0..nv {
                gw.w_hy[[j, k]] += h[j] * dy[k];
            }
        }
        for k in 0..nv {
            gw.b_y[k] += dy[k];
        }
        let mut dh_above = vec![F::zero(); nh];
        for j in 0..nh {
            for k in 0..nv {
                dh_above[j] += dy[k] * w.w_hy[[j, k]];
            }
        }
        for l in (0..nl).rev() {
            let mut d = dnext[l].clone();
            for j in 0..nh {
                d[j] += dh_above[j];
            }
            let mut dx = vec![F::zero(); inputs[t][l].len()];
            let mut dprev = vec![F::zero(); ns];
            step_backward(
                model.cell,
                &w.layers[l],
                &mut gw.layers[l],
                &inputs[t][l],
                &states[t][l],
                &caches[t][l],
                &d,
                &mut dx,
                &mut dprev,
            );
            dnext[l] = dprev;
            if l == 0 && model.embed.is_some() {
                for (e, d) in gw.embed.row_mut(xs[t] as usize).iter_mut().zip(&dx) {
                    *e += *d;
                }
            }
            dh_above = dx;
        }
    }
    for l in 0..nl {
        state[l * ns..(l + 1) * ns].copy_from_slice(&states[nt][l]);
    }
    loss
}

/// [`forward_backward`] over every stream of a chunk, one after another, with the fast path's
/// signature: the ids come from `ws.xs` and `ws.ys` ((T·B) time-major), `state` is the
/// (L, B, S) carried state. Only `ws`'s ids are read; its buffers are not used, nor are
/// packed weights (the loop multiplies by the weights as they are).
pub fn forward_backward_chunk<F: Float>(
    model: &CharLm,
    p: &[F],
    _packs: Option<&WeightPacks>,
    g: &mut [F],
    state: &mut ArrayViewMut3<F>,
    ws: &mut Workspace<F>,
    scale: F,
) -> F {
    let nb = ws.batch;
    let t = ws.xs.len() / nb;
    let (mut xs, mut ys) = (vec![0; t], vec![0; t]);
    let mut loss = F::zero();
    for j in 0..nb {
        for k in 0..t {
            xs[k] = ws.xs[k * nb + j];
            ys[k] = ws.ys[k * nb + j];
        }
        let mut stream: Vec<F> = state.slice(s![.., j, ..]).iter().copied().collect();
        loss += forward_backward(model, p, g, &mut stream, &xs, &ys, scale);
        for (d, v) in state.slice_mut(s![.., j, ..]).iter_mut().zip(stream) {
            *d = v;
        }
    }
    loss
}
