//! The gated recurrent unit, in PyTorch's formulation and gate order (r, z, n):
//!
//! ```text
//! r = σ(x·W_ir + b_r + h·W_hr)          z = σ(x·W_iz + b_z + h·W_hz)
//! n = tanh(x·W_in + b_in + r ⊙ (h·W_hn + b_hn))
//! h' = (1 − z) ⊙ n + z ⊙ h
//! ```
//!
//! g = 3. b_r and b_z stand for PyTorch's b_ir + b_hr and b_iz + b_hz (only their sums
//! matter); b_hn stays separate because the reset gate multiplies it. Forward keeps r, z, n
//! (in `gates`) and h·W_hn + b_hn (in `aux`) for the backward.

use super::cell::{
    accumulate_w_hh, sigmoid, step_grad, Cell, CellBuffers, CellSpec, Recurrent, RecurrentGrads,
};
use crate::linalg::{multiversion, Float};

/// The GRU cell.
pub struct Gru;

impl CellSpec for Gru {
    fn name(&self) -> &'static str {
        "gru"
    }

    fn long_name(&self) -> &'static str {
        "GRU"
    }

    fn gate_names(&self) -> &'static [&'static str] {
        &["r", "z", "n"]
    }

    /// h·W_hn + b_hn, which the reset gate multiplies.
    fn cache_width(&self, hidden: usize) -> usize {
        hidden
    }

    /// ∂L/∂(h·W_hn + b_hn) = ∂L/∂a_n ⊙ r, not ∂L/∂a_n.
    fn hidden_side_grads(&self) -> bool {
        true
    }

    /// b_hn.
    fn hidden_bias(&self, hidden: usize) -> usize {
        hidden
    }
}

impl<F: Float> Cell<F> for Gru {
    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let b_hn = w.b_hn.as_slice().expect("contiguous b_hn");
        buf.pack_forward(w);
        for t in 0..buf.steps() {
            // (B, 3H) h_{t−1}·W_hh: ONE product per step.
            buf.recurrent_product(t, w, false);
            let (done, todo) = buf.hs.split_at_mut((t + 1) * b * h);
            let prev = &done[t * b * h..];
            for j in 0..b {
                let gi = &mut buf.gates[(t * b + j) * 3 * h..(t * b + j + 1) * 3 * h];
                let gh = &buf.step[j * 3 * h..(j + 1) * 3 * h];
                let hn = &mut buf.aux[(t * b + j) * h..(t * b + j + 1) * h];
                let (gr, rest) = gi.split_at_mut(h);
                let (gz, gn) = rest.split_at_mut(h);
                let (hr, rest) = gh.split_at(h);
                let (hz, hh) = rest.split_at(h);
                let hp = &prev[j * h..(j + 1) * h];
                let out = &mut todo[j * h..(j + 1) * h];
                gates_forward([gr, gz, gn, hn, out], [hr, hz, hh, b_hn, hp]);
            }
        }
    }

    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let steps = buf.steps();
        buf.pack_backward(w);
        for t in (0..steps).rev() {
            let (earlier, later) = buf.dhs.split_at_mut(t * b * h);
            for j in 0..b {
                let row = t * b + j;
                let gates = &mut buf.gates[row * 3 * h..(row + 1) * 3 * h];
                let dgh = &mut buf.dgh[row * 3 * h..(row + 1) * 3 * h];
                let hn = &buf.aux[row * h..(row + 1) * h];
                let hp = &buf.hs[row * h..(row + 1) * h];
                let dh = &later[j * h..(j + 1) * h];
                let (gr, rest) = gates.split_at_mut(h);
                let (gz, gn) = rest.split_at_mut(h);
                let (dr_h, rest) = dgh.split_at_mut(h);
                let (dz_h, dn_h) = rest.split_at_mut(h);
                if t > 0 {
                    // The direct path h' = … + z ⊙ h, read while z is still in place (none
                    // into h_0: truncated BPTT).
                    let prev = ((t - 1) * b + j) * h;
                    let dprev = &mut earlier[prev..prev + h];
                    for ((d, &g), &z) in dprev.iter_mut().zip(dh).zip(gz.iter()) {
                        *d += g * z;
                    }
                }
                gates_backward([gr, gz, gn, dr_h, dz_h, dn_h], [hn, hp, dh]);
            }
            let dgh = &buf.dgh[t * b * 3 * h..(t + 1) * b * 3 * h];
            let dprev = (t > 0).then(|| &mut earlier[(t - 1) * b * h..t * b * h]);
            step_grad(&buf.weight, &mut buf.products, w, t, dgh, dprev);
        }
        let n = steps * b;
        accumulate_w_hh(&mut buf.products, &buf.hs, &buf.dgh, h, n, &mut g.w_hh);
        for row in buf.dgh[..n * 3 * h].chunks_exact(3 * h) {
            g.b_hn
                .zip_mut_with(&ndarray::ArrayView1::from(&row[2 * h..]), |g, &d| *g += d);
        }
    }
}

multiversion! {
    /// The fused gate math of one stream at one step, every slice H long. In: `gr`, `gz`, `gn`
    /// hold the input-side pre-activations, `hr`, `hz`, `hh` the recurrent product h_{t−1}·W_hh,
    /// `hp` h_{t−1}. Out: r, z, n in `gr`, `gz`, `gn`, h·W_hn + b_hn in `hn`, and h_t in `out`.
    ///
    /// A function of its own: its slice arguments cannot alias, so the loop vectorises without
    /// run-time overlap checks (inlined into the step loop, LLVM gave up on it).
    #[inline(never)]
    fn gates_forward<F: Float>(outs: [&mut [F]; 5], ins: [&[F]; 5]) {
        let [gr, gz, gn, hn, out] = outs;
        let [hr, hz, hh, b_hn, hp] = ins;
        let h = out.len();
        let (gr, gz, gn, hn) = (&mut gr[..h], &mut gz[..h], &mut gn[..h], &mut hn[..h]);
        let (hr, hz, hh, b_hn, hp) = (&hr[..h], &hz[..h], &hh[..h], &b_hn[..h], &hp[..h]);
        for k in 0..h {
            let r = sigmoid(gr[k] + hr[k]);
            let z = sigmoid(gz[k] + hz[k]);
            let c = hh[k] + b_hn[k];
            let n = (gn[k] + r * c).tanh_m();
            gr[k] = r;
            gz[k] = z;
            gn[k] = n;
            hn[k] = c;
            out[k] = n + z * (hp[k] - n);
        }
    }
}

multiversion! {
    /// Backward of [`gates_forward`] for one stream at one step, every slice H long. In: r, z, n
    /// in `gr`, `gz`, `gn`, h·W_hn + b_hn in `hn`, h_{t−1} in `hp`, ∂L/∂h_t in `dh`. Out: the
    /// input-side pre-activation gradients in `gr`, `gz`, `gn` and the hidden-side ones in
    /// `dr`, `dz`, `dn` (they differ in the n block: ∂/∂(h·W_hn + b_hn) = ∂/∂a_n ⊙ r).
    #[inline(never)]
    fn gates_backward<F: Float>(outs: [&mut [F]; 6], ins: [&[F]; 3]) {
        let [gr, gz, gn, dr, dz, dn] = outs;
        let [hn, hp, dh] = ins;
        let h = dh.len();
        let (gr, gz, gn) = (&mut gr[..h], &mut gz[..h], &mut gn[..h]);
        let (dr, dz, dn) = (&mut dr[..h], &mut dz[..h], &mut dn[..h]);
        let (hn, hp) = (&hn[..h], &hp[..h]);
        for k in 0..h {
            let (r, z, n) = (gr[k], gz[k], gn[k]);
            let d_n = dh[k] * (F::one() - z);
            let d_z = dh[k] * (hp[k] - n);
            let dan = d_n * (F::one() - n * n);
            let dar = dan * hn[k] * r * (F::one() - r);
            let daz = d_z * z * (F::one() - z);
            gr[k] = dar;
            gz[k] = daz;
            gn[k] = dan;
            dr[k] = dar;
            dz[k] = daz;
            dn[k] = dan * r;
        }
    }
}
