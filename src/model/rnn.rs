//! The vanilla tanh RNN cell over a whole chunk: forward and backward side by side.
//!
//! Shapes (row-vector convention): W_xh (V, H), W_hh (H, H), b_h (H); a chunk is T steps of B
//! streams, stored time-major so that the rows of step t are `t·B .. (t+1)·B`.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use crate::linalg::{gemm, rows, rows_mut, Float};

/// h_t = tanh(W_xh[x_t] + h_{t−1}·W_hh + b_h) for t = 1..T.
///
/// `xs`: (T·B) input ids, time-major. `hs`: ((T+1)·B, H) row-major; rows `0..B` hold h_0 on
/// entry and rows `(t+1)·B ..` receive h_{t+1}. Per step: a row gather (the one-hot product),
/// ONE gemm (B, H)·(H, H) accumulated onto it (β = 1), and tanh in place.
pub fn forward<F: Float>(
    w_xh: &ArrayView2<F>,
    w_hh: &ArrayView2<F>,
    b_h: &ArrayView1<F>,
    xs: &[u32],
    hs: &mut [F],
    batch: usize,
) {
    let hidden = w_hh.nrows();
    for (t, xs_t) in xs.chunks_exact(batch).enumerate() {
        let (done, todo) = hs.split_at_mut((t + 1) * batch * hidden);
        let prev = rows(done, hidden, t * batch, (t + 1) * batch);
        let mut cur = rows_mut(todo, hidden, 0, batch);
        let b_h = b_h.as_slice().expect("contiguous bias");
        for (row, &x) in cur
            .as_slice_mut()
            .expect("standard layout")
            .chunks_exact_mut(hidden)
            .zip(xs_t)
        {
            let w = w_xh.row(x as usize);
            for ((r, &w), &b) in row
                .iter_mut()
                .zip(w.as_slice().expect("contiguous row"))
                .zip(b_h)
            {
                *r = w + b;
            }
        }
        gemm(F::one(), &prev, w_hh, F::one(), &mut cur);
        for v in cur.as_slice_mut().expect("standard layout") {
            *v = v.tanh_m();
        }
    }
}

/// Gradients of the cell, accumulated (+=) into `dw_xh` (V, H), `dw_hh` (H, H), `db_h` (H).
///
/// `hs`: ((T+1)·B, H) from [`forward`]. `dhs`: (T·B, H) on entry holds ∂L/∂h_t coming from
/// the outputs (h_1..h_T); it is turned into da_t = ∂L/∂(pre-activation at t) in place. Only
/// dh_{t−1} += da_t·W_hhᵀ stays per step (a true dependency); dW_hh is ONE (H, T·B)·(T·B, H)
/// gemm over all rows afterwards, and dW_xh is a scatter-add of da rows (the transpose of the
/// gather). The gradient with respect to h_0 is dropped: the truncation of truncated BPTT.
pub fn backward<F: Float>(
    w_hh: &ArrayView2<F>,
    xs: &[u32],
    hs: &[F],
    dhs: &mut [F],
    grads: &mut CellGrads<'_, F>,
    batch: usize,
) {
    let hidden = w_hh.nrows();
    let steps = xs.len() / batch;
    for t in (0..steps).rev() {
        let (earlier, later) = dhs.split_at_mut(t * batch * hidden);
        let mut da = rows_mut(later, hidden, 0, batch);
        let h = rows(hs, hidden, (t + 1) * batch, (t + 2) * batch);
        // tanh'(a) = 1 − h².
        da.zip_mut_with(&h, |d, &h| *d *= F::one() - h * h);
        if t > 0 {
            let mut dprev = rows_mut(earlier, hidden, (t - 1) * batch, t * batch);
            gemm(F::one(), &da.view(), &w_hh.t(), F::one(), &mut dprev);
        }
    }
    let n = xs.len();
    let da = rows(dhs, hidden, 0, n);
    gemm(
        F::one(),
        &rows(hs, hidden, 0, n).t(),
        &da,
        F::one(),
        &mut grads.w_hh,
    );
    for (da, &x) in da.outer_iter().zip(xs) {
        grads
            .w_xh
            .row_mut(x as usize)
            .zip_mut_with(&da, |g, &d| *g += d);
        grads.b_h.zip_mut_with(&da, |g, &d| *g += d);
    }
}

/// Where [`backward`] accumulates the cell's gradients.
pub struct CellGrads<'a, F> {
    /// (V, H) ∂L/∂W_xh.
    pub w_xh: ArrayViewMut2<'a, F>,
    /// (H, H) ∂L/∂W_hh.
    pub w_hh: ArrayViewMut2<'a, F>,
    /// (H) ∂L/∂b_h.
    pub b_h: ArrayViewMut1<'a, F>,
}
