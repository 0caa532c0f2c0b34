//! The vanilla tanh RNN cell over a whole chunk: forward and backward side by side.
//!
//! Shapes (row-vector convention): W_xh (V, H), W_hh (H, H), b_h (H); a chunk is T steps of B
//! streams, stored time-major so that the rows of step t are `t·B .. (t+1)·B`.

use ndarray::{s, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};

use crate::linalg::{gemm, Float};

/// h_t = tanh(W_xh[x_t] + h_{t−1}·W_hh + b_h) for t = 1..T.
///
/// `xs`: (T·B) input ids, time-major. `hs`: ((T+1)·B, H); rows `0..B` hold h_0 on entry and
/// rows `(t+1)·B ..` receive h_{t+1}. Per step: a row gather (the one-hot product), ONE gemm
/// (B, H)·(H, H) accumulated onto it (β = 1), and tanh in place.
pub fn forward<F: Float>(
    w_xh: &ArrayView2<F>,
    w_hh: &ArrayView2<F>,
    b_h: &ArrayView1<F>,
    xs: &[u32],
    hs: &mut ArrayViewMut2<F>,
    batch: usize,
) {
    let steps = xs.len() / batch;
    for t in 0..steps {
        let (prev, mut next) = hs.view_mut().split_at(Axis(0), (t + 1) * batch);
        let prev = prev.slice(s![t * batch.., ..]);
        let mut cur = next.slice_mut(s![..batch, ..]);
        for (j, mut row) in cur.outer_iter_mut().enumerate() {
            let x = xs[t * batch + j] as usize;
            for ((r, &w), &b) in row.iter_mut().zip(w_xh.row(x)).zip(b_h) {
                *r = w + b;
            }
        }
        gemm(F::one(), &prev, w_hh, F::one(), &mut cur);
        cur.mapv_inplace(F::tanh);
    }
}

/// Gradients of the cell, accumulated (+=) into `dw_xh` (V, H), `dw_hh` (H, H), `db_h` (H).
///
/// `dhs`: (T·B, H) on entry holds ∂L/∂h_t coming from the outputs (h_1..h_T); it is turned
/// into da_t = ∂L/∂(pre-activation at t) in place. Only dh_{t−1} += da_t·W_hhᵀ stays per step
/// (a true dependency); dW_hh is ONE (H, T·B)·(T·B, H) gemm over all rows afterwards, and
/// dW_xh is a scatter-add of da rows (the transpose of the gather). The gradient with respect
/// to h_0 is dropped: that is the truncation of truncated BPTT.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Float>(
    w_hh: &ArrayView2<F>,
    xs: &[u32],
    hs: &ArrayView2<F>,
    dhs: &mut ArrayViewMut2<F>,
    dw_xh: &mut ArrayViewMut2<F>,
    dw_hh: &mut ArrayViewMut2<F>,
    db_h: &mut ArrayViewMut1<F>,
    batch: usize,
) {
    let steps = xs.len() / batch;
    for t in (0..steps).rev() {
        let (mut earlier, mut later) = dhs.view_mut().split_at(Axis(0), t * batch);
        let mut da = later.slice_mut(s![..batch, ..]);
        let h = hs.slice(s![(t + 1) * batch..(t + 2) * batch, ..]);
        // tanh'(a) = 1 − h².
        da.zip_mut_with(&h, |d, &h| *d *= F::one() - h * h);
        if t > 0 {
            let mut dprev = earlier.slice_mut(s![(t - 1) * batch.., ..]);
            gemm(F::one(), &da.view(), &w_hh.t(), F::one(), &mut dprev);
        }
    }
    let rows = xs.len();
    gemm(F::one(), &hs.slice(s![..rows, ..]).t(), &dhs.view(), F::one(), dw_hh);
    for (r, da) in dhs.outer_iter().enumerate() {
        let x = xs[r] as usize;
        dw_xh.row_mut(x).zip_mut_with(&da, |g, &d| *g += d);
        db_h.zip_mut_with(&da, |g, &d| *g += d);
    }
}
