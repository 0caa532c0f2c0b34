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
    accumulate_w_hh, sigmoid, Cell, CellBuffers, CellKind, Recurrent, RecurrentGrads,
};
use crate::linalg::{gemm, rows, rows_mut, Float};

/// The GRU cell.
pub struct Gru;

impl<F: Float> Cell<F> for Gru {
    fn kind(&self) -> CellKind {
        CellKind::Gru
    }

    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let b_hn = w.b_hn.as_slice().expect("contiguous b_hn");
        for t in 0..buf.steps() {
            // (B, 3H) h_{t−1}·W_hh: ONE gemm per step.
            let mut step = rows_mut(&mut buf.step, 3 * h, 0, b);
            gemm(
                F::one(),
                &rows(&buf.hs, h, t * b, (t + 1) * b),
                &w.w_hh,
                F::zero(),
                &mut step,
            );
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
    }

    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>) {
        let (b, h) = (buf.batch, buf.hidden);
        let steps = buf.steps();
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
                // The direct path h' = … + z ⊙ h goes straight into ∂L/∂h_{t−1} (none into h_0).
                let mut direct = [F::zero()];
                let prev_row = ((t.max(1) - 1) * b + j) * h;
                let dprev: &mut [F] = if t > 0 {
                    &mut earlier[prev_row..prev_row + h]
                } else {
                    &mut direct
                };
                for k in 0..h {
                    let (r, z, n) = (gr[k], gz[k], gn[k]);
                    let dn = dh[k] * (F::one() - z);
                    let dz = dh[k] * (hp[k] - n);
                    let dan = dn * (F::one() - n * n);
                    let dar = dan * hn[k] * r * (F::one() - r);
                    let daz = dz * z * (F::one() - z);
                    gr[k] = dar;
                    gz[k] = daz;
                    gn[k] = dan;
                    dr_h[k] = dar;
                    dz_h[k] = daz;
                    dn_h[k] = dan * r;
                    if t > 0 {
                        dprev[k] += dh[k] * z;
                    }
                }
            }
            if t > 0 {
                let mut dprev = rows_mut(earlier, h, (t - 1) * b, t * b);
                let dgh = rows(&buf.dgh, 3 * h, t * b, (t + 1) * b);
                gemm(F::one(), &dgh, &w.w_hh.t(), F::one(), &mut dprev);
            }
        }
        let n = steps * b;
        accumulate_w_hh(&buf.hs, &buf.dgh, h, n, &mut g.w_hh);
        for row in buf.dgh[..n * 3 * h].chunks_exact(3 * h) {
            g.b_hn
                .zip_mut_with(&ndarray::ArrayView1::from(&row[2 * h..]), |g, &d| *g += d);
        }
    }
}
