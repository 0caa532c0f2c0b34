//! Long short-term memory, in PyTorch's formulation and gate order (i, f, g, o):
//!
//! ```text
//! i = σ(x·W_ii + h·W_hi + b_i)    f = σ(x·W_if + h·W_hf + b_f)
//! g = tanh(x·W_ig + h·W_hg + b_g) o = σ(x·W_io + h·W_ho + b_o)
//! c' = f ⊙ c + i ⊙ g              h' = o ⊙ tanh(c')
//! ```
//!
//! g = 4; each b stands for PyTorch's b_i* + b_h*. The carried state is (h, c). Forward keeps
//! the four activations (in `gates`), c_t (in `cs`) and tanh(c_t) (in `aux`) for the backward.

use super::cell::{
    accumulate_w_hh, sigmoid, step_grad, Cell, CellBuffers, CellSpec, Recurrent, RecurrentGrads,
};
use crate::linalg::{multiversion, Float};

/// The LSTM cell.
pub struct Lstm;

impl CellSpec for Lstm {
    fn name(&self) -> &'static str {
        "lstm"
    }

    fn long_name(&self) -> &'static str {
        "LSTM"
    }

    fn gate_names(&self) -> &'static [&'static str] {
        &["i", "f", "g", "o"]
    }

    /// f.
    fn forget_gate(&self) -> Option<usize> {
        Some(1)
    }

    /// (h, c).
    fn state_width(&self, hidden: usize) -> usize {
        2 * hidden
    }

    /// tanh(c_t).
    fn cache_width(&self, hidden: usize) -> usize {
        hidden
    }
}

impl<F: Float> Cell<F> for Lstm {
    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        buf.pack_forward(w);
        for t in 0..buf.steps() {
            // (B, 4H) h_{t−1}·W_hh: ONE product per step.
            buf.recurrent_product(t, w, false);
            let (c_done, c_todo) = buf.cs.split_at_mut((t + 1) * b * h);
            let c_prev = &c_done[t * b * h..];
            for j in 0..b {
                let row = t * b + j;
                let gates = &mut buf.gates[row * 4 * h..(row + 1) * 4 * h];
                let rec = &buf.step[j * 4 * h..(j + 1) * 4 * h];
                let tc = &mut buf.aux[row * h..(row + 1) * h];
                let cp = &c_prev[j * h..(j + 1) * h];
                let c = &mut c_todo[j * h..(j + 1) * h];
                let out = &mut buf.hs[(row + b) * h..(row + b + 1) * h];
                let (gi, rest) = gates.split_at_mut(h);
                let (gf, rest) = rest.split_at_mut(h);
                let (gg, go) = rest.split_at_mut(h);
                let (ri, rest) = rec.split_at(h);
                let (rf, rest) = rest.split_at(h);
                let (rg, ro) = rest.split_at(h);
                gates_forward([gi, gf, gg, go, c, tc, out], [ri, rf, rg, ro, cp]);
            }
        }
    }

    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let steps = buf.steps();
        buf.pack_backward(w);
        // ∂L/∂c_t carried backwards, (B, H), in the step scratch.
        let dc = &mut buf.step[..b * h];
        dc.fill(F::zero());
        for t in (0..steps).rev() {
            for j in 0..b {
                let row = t * b + j;
                let gates = &mut buf.gates[row * 4 * h..(row + 1) * 4 * h];
                let tc = &buf.aux[row * h..(row + 1) * h];
                let cp = &buf.cs[row * h..(row + 1) * h];
                let dh = &buf.dhs[row * h..(row + 1) * h];
                let dc = &mut dc[j * h..(j + 1) * h];
                let (gi, rest) = gates.split_at_mut(h);
                let (gf, rest) = rest.split_at_mut(h);
                let (gg, go) = rest.split_at_mut(h);
                gates_backward([gi, gf, gg, go, dc], [tc, cp, dh]);
            }
            let da = &buf.gates[t * b * 4 * h..(t + 1) * b * 4 * h];
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

multiversion! {
    /// The fused gate math of one stream at one step, every slice H long. In: `gi`, `gf`, `gg`,
    /// `go` hold the input-side pre-activations, `ri`, `rf`, `rg`, `ro` the recurrent product
    /// h_{t−1}·W_hh, `cp` c_{t−1}. Out: i, f, g, o in place, c_t in `c`, tanh(c_t) in `tc` and
    /// h_t in `out`.
    ///
    /// A function of its own: its slice arguments cannot alias, so the loop vectorises without
    /// run-time overlap checks.
    #[inline(never)]
    fn gates_forward<F: Float>(outs: [&mut [F]; 7], ins: [&[F]; 5]) {
        let [gi, gf, gg, go, c, tc, out] = outs;
        let [ri, rf, rg, ro, cp] = ins;
        let h = out.len();
        let (gi, gf, gg, go) = (&mut gi[..h], &mut gf[..h], &mut gg[..h], &mut go[..h]);
        let (c, tc) = (&mut c[..h], &mut tc[..h]);
        let (ri, rf, rg, ro, cp) = (&ri[..h], &rf[..h], &rg[..h], &ro[..h], &cp[..h]);
        for k in 0..h {
            let i = sigmoid(gi[k] + ri[k]);
            let f = sigmoid(gf[k] + rf[k]);
            let g = (gg[k] + rg[k]).tanh_m();
            let o = sigmoid(go[k] + ro[k]);
            let cn = f * cp[k] + i * g;
            let t = cn.tanh_m();
            gi[k] = i;
            gf[k] = f;
            gg[k] = g;
            go[k] = o;
            c[k] = cn;
            tc[k] = t;
            out[k] = o * t;
        }
    }
}

multiversion! {
    /// Backward of [`gates_forward`] for one stream at one step, every slice H long. In: i, f, g,
    /// o in `gi`, `gf`, `gg`, `go`, tanh(c_t) in `tc`, c_{t−1} in `cp`, ∂L/∂h_t in `dh`, and in
    /// `dc` ∂L/∂c_t from step t+1. Out: the pre-activation gradients in place of the gates, and
    /// ∂L/∂c_{t−1} in `dc`.
    #[inline(never)]
    fn gates_backward<F: Float>(outs: [&mut [F]; 5], ins: [&[F]; 3]) {
        let [gi, gf, gg, go, dc] = outs;
        let [tc, cp, dh] = ins;
        let h = dh.len();
        let (gi, gf, gg, go) = (&mut gi[..h], &mut gf[..h], &mut gg[..h], &mut go[..h]);
        let (dc, tc, cp) = (&mut dc[..h], &tc[..h], &cp[..h]);
        for k in 0..h {
            let (i, f, g, o) = (gi[k], gf[k], gg[k], go[k]);
            let d_o = dh[k] * tc[k];
            let d_c = dc[k] + dh[k] * o * (F::one() - tc[k] * tc[k]);
            gi[k] = d_c * g * i * (F::one() - i);
            gf[k] = d_c * cp[k] * f * (F::one() - f);
            gg[k] = d_c * i * (F::one() - g * g);
            go[k] = d_o * o * (F::one() - o);
            dc[k] = d_c * f;
        }
    }
}
