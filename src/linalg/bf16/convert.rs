//! Rounding f32 operands to bf16 into the kernels' layouts: B into column pairs
//! ([`super::BfPacked`]), A into zero-padded rows. Each writes every value of its output, the
//! padding included, so buffers are reused without clearing. Loops over plain slices, so that
//! they vectorise.

use super::{to_bf16, COLS};
use crate::linalg::multiversion;

/// The pair (x, y) as the kernels read it: x's bf16 in the low half, y's in the high one.
#[inline(always)]
fn pair(x: f32, y: f32) -> u32 {
    u32::from(to_bf16(x)) | (u32::from(to_bf16(y)) << 16)
}

multiversion! {
    /// B (K, N) from `src`, row-major, into `out`: Kp/2 pairs of rows × Np columns, column
    /// blocks of 16 one after the other (`out.len()` = Kp/2 · Np).
    pub(super) fn pack_rows(src: &[f32], k: usize, n: usize, kp: usize, out: &mut [u32]) {
        let pairs = kp / 2;
        let block = pairs * COLS;
        let row = |r: usize| if r < k { &src[r * n..(r + 1) * n] } else { &[][..] };
        for p in 0..pairs {
            let (r0, r1) = (row(2 * p), row(2 * p + 1));
            for (j, dst) in out.chunks_exact_mut(block).enumerate() {
                let dst = &mut dst[p * COLS..(p + 1) * COLS];
                let c0 = j * COLS;
                if c0 + COLS <= r1.len() {
                    let (x, y) = (&r0[c0..c0 + COLS], &r1[c0..c0 + COLS]);
                    for c in 0..COLS {
                        dst[c] = pair(x[c], y[c]);
                    }
                } else {
                    let at = |r: &[f32], c: usize| r.get(c0 + c).copied().unwrap_or(0.0);
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = pair(at(r0, c), at(r1, c));
                    }
                }
            }
        }
    }
}

multiversion! {
    /// B = srcᵀ (K, N) from `src` (N, K), row-major, into `out` as [`pack_rows`] lays it out.
    pub(super) fn pack_cols(src: &[f32], k: usize, n: usize, kp: usize, out: &mut [u32]) {
        let pairs = kp / 2;
        let block = pairs * COLS;
        for (j, dst) in out.chunks_exact_mut(block).enumerate() {
            // The 16 rows of src that are this block's columns (empty past N).
            let cols: [&[f32]; COLS] = std::array::from_fn(|c| {
                let r = j * COLS + c;
                if r < n { &src[r * k..(r + 1) * k] } else { &[][..] }
            });
            let full = cols[COLS - 1].len() == k;
            for p in 0..pairs {
                let dst = &mut dst[p * COLS..(p + 1) * COLS];
                if full && 2 * p + 1 < k {
                    for c in 0..COLS {
                        dst[c] = pair(cols[c][2 * p], cols[c][2 * p + 1]);
                    }
                } else {
                    for c in 0..COLS {
                        let at = |q: usize| cols[c].get(q).copied().unwrap_or(0.0);
                        dst[c] = pair(at(2 * p), at(2 * p + 1));
                    }
                }
            }
        }
    }
}

multiversion! {
    /// A (M, K) from `src`, row-major, into `out`: rows `ld` bf16 values apart, zero past K,
    /// and zero rows past M (`out.len()` = Mp · ld).
    pub(super) fn rows_from_rows(src: &[f32], k: usize, ld: usize, out: &mut [u16]) {
        let m = src.len().checked_div(k).unwrap_or(0);
        for (i, dst) in out.chunks_exact_mut(ld).enumerate() {
            if i < m {
                let row = &src[i * k..(i + 1) * k];
                for (d, &x) in dst[..k].iter_mut().zip(row) {
                    *d = to_bf16(x);
                }
                dst[k..].fill(0);
            } else {
                dst.fill(0);
            }
        }
    }
}

multiversion! {
    /// A = srcᵀ (M, K) from `src` (K, M), row-major, into `out` as [`rows_from_rows`] lays it
    /// out, in 16 × 16 blocks: each output row's 16 values are written together, read from 16
    /// lines of src that stay in L1 while the block is done.
    pub(super) fn rows_from_cols(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
        let k = src.len().checked_div(m).unwrap_or(0);
        const T: usize = 16;
        let mp = out.len() / ld;
        for i0 in (0..mp).step_by(T) {
            let rows = m.saturating_sub(i0).min(T);
            for p0 in (0..k).step_by(T) {
                let depth = (k - p0).min(T);
                for r in 0..rows {
                    let dst = &mut out[(i0 + r) * ld + p0..(i0 + r) * ld + p0 + depth];
                    for (q, d) in dst.iter_mut().enumerate() {
                        *d = to_bf16(src[(p0 + q) * m + i0 + r]);
                    }
                }
            }
            for r in 0..T {
                let row = &mut out[(i0 + r) * ld..(i0 + r + 1) * ld];
                if r < rows {
                    row[k..].fill(0);
                } else {
                    row.fill(0);
                }
            }
        }
    }
}
