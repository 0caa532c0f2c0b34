//! The vanilla tanh cell (the tutorial's): h_t = tanh(x_t·W_ih + b + h_{t−1}·W_hh).
//!
//! g = 1. Backward needs only the outputs: tanh'(a) = 1 − h².

use super::cell::{
    accumulate_w_hh, step_grad, Cell, CellBuffers, CellSpec, Recurrent, RecurrentGrads,
};
use crate::linalg::{tanh_backward, tanh_into, Float};

/// The vanilla tanh cell.
pub struct Rnn;

impl CellSpec for Rnn {
    fn name(&self) -> &'static str {
        "rnn"
    }

    fn long_name(&self) -> &'static str {
        "vanilla tanh RNN"
    }

    /// One unnamed block.
    fn gate_names(&self) -> &'static [&'static str] {
        &[""]
    }
}

impl<F: Float> Cell<F> for Rnn {
    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        buf.pack_forward(w);
        for t in 0..buf.steps() {
            // a_t = (x_t·W_ih + b) + h_{t−1}·W_hh, accumulated in place (β = 1).
            buf.recurrent_product(t, w, true);
            let a = &buf.gates[t * b * h..(t + 1) * b * h];
            tanh_into(&mut buf.hs[(t + 1) * b * h..(t + 2) * b * h], a);
        }
    }

    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let steps = buf.steps();
        buf.pack_backward(w);
        for t in (0..steps).rev() {
            let hs_t = &buf.hs[(t + 1) * b * h..(t + 2) * b * h];
            let da = &mut buf.gates[t * b * h..(t + 1) * b * h];
            tanh_backward(da, &buf.dhs[t * b * h..(t + 1) * b * h], hs_t);
            let da = &buf.gates[t * b * h..(t + 1) * b * h];
            let dprev = (t > 0).then(|| &mut buf.dhs[(t - 1) * b * h..t * b * h]);
            step_grad(&buf.weight, &mut buf.products, w, t, da, dprev);
        }
        accumulate_w_hh(
            &mut buf.products,
            &buf.hs,
            &buf.gates,
            h,
            steps * b,
            &mut g.w_hh,
        );
    }
}
