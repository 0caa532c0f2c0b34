//! The vanilla tanh cell (the tutorial's): h_t = tanh(x_t·W_ih + b + h_{t−1}·W_hh).
//!
//! g = 1. Backward needs only the outputs: tanh'(a) = 1 − h².

use super::cell::{
    accumulate_w_hh, Cell, CellBuffers, CellKind, CellSpec, Recurrent, RecurrentGrads,
};
use crate::linalg::{gemm, rows, rows_mut, tanh_backward, tanh_into, Float};

/// The vanilla tanh cell.
pub struct Rnn;

impl CellSpec for Rnn {
    fn kind(&self) -> CellKind {
        CellKind::Rnn
    }

    fn gates(&self) -> usize {
        1
    }
}

impl<F: Float> Cell<F> for Rnn {
    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        for t in 0..buf.steps() {
            // a_t = (x_t·W_ih + b) + h_{t−1}·W_hh, accumulated in place (β = 1).
            let mut a = rows_mut(&mut buf.gates, h, t * b, (t + 1) * b);
            gemm(
                F::one(),
                &rows(&buf.hs, h, t * b, (t + 1) * b),
                &w.w_hh,
                F::one(),
                &mut a,
            );
            let a = &buf.gates[t * b * h..(t + 1) * b * h];
            tanh_into(&mut buf.hs[(t + 1) * b * h..(t + 2) * b * h], a);
        }
    }

    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let steps = buf.steps();
        for t in (0..steps).rev() {
            let hs_t = &buf.hs[(t + 1) * b * h..(t + 2) * b * h];
            let da = &mut buf.gates[t * b * h..(t + 1) * b * h];
            tanh_backward(da, &buf.dhs[t * b * h..(t + 1) * b * h], hs_t);
            if t > 0 {
                let mut dprev = rows_mut(&mut buf.dhs, h, (t - 1) * b, t * b);
                let da = rows(&buf.gates, h, t * b, (t + 1) * b);
                gemm(F::one(), &da, &w.w_hh.t(), F::one(), &mut dprev);
            }
        }
        accumulate_w_hh(&buf.hs, &buf.gates, h, steps * b, &mut g.w_hh);
    }
}
