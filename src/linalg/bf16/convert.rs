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
    /// blocks of 16 one after the other (`out.len()` = Kp/2 · Np). Done 16 column blocks at
    /// a time, all pairs of rows for each, so that reads are 1 KiB runs of a row and writes
    /// 16 sequential streams (pair by pair across all blocks wrote 64 bytes a block apart).
    pub(super) fn pack_rows(src: &[f32], k: usize, n: usize, kp: usize, out: &mut [u32]) {
        const GROUP: usize = 16;
        let pairs = kp / 2;
        let block = pairs * COLS;
        let row = |r: usize| if r < k { &src[r * n..(r + 1) * n] } else { &[][..] };
        for (g, group) in out.chunks_mut(GROUP * block).enumerate() {
            for p in 0..pairs {
                let (r0, r1) = (row(2 * p), row(2 * p + 1));
                for (jj, dst) in group.chunks_exact_mut(block).enumerate() {
                    let dst = &mut dst[p * COLS..(p + 1) * COLS];
                    let c0 = (g * GROUP + jj) * COLS;
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

/// A = srcᵀ (M, K) from `src` (K, M), row-major, into `out` as [`rows_from_rows`] lays it
/// out, in 16 × 16 blocks: each output row's 16 values are read together (one gather on
/// AVX-512, else 16 loads from lines of src that stay in L1 while the block is done) and
/// written together.
pub(super) fn rows_from_cols(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && m < (1 << 26) {
        // SAFETY: the CPU has AVX-512F; the tiles read and write inside src and out (see
        // `rows_from_cols_gather`).
        return unsafe { rows_from_cols_gather(src, m, ld, out) };
    }
    rows_from_cols_loops(src, m, ld, out);
}

/// One 16 × 16 block of [`rows_from_cols`] in plain loops (rows `i0..i0 + rows` of A,
/// columns `p0..p0 + depth`).
#[inline(always)]
fn block_loops(
    src: &[f32],
    m: usize,
    ld: usize,
    out: &mut [u16],
    (i0, rows): (usize, usize),
    (p0, depth): (usize, usize),
) {
    for r in 0..rows {
        let dst = &mut out[(i0 + r) * ld + p0..(i0 + r) * ld + p0 + depth];
        for (q, d) in dst.iter_mut().enumerate() {
            *d = to_bf16(src[(p0 + q) * m + i0 + r]);
        }
    }
}

/// Zeroes the padding of the 16 output rows from `i0`: past K in the rows of A, and whole
/// rows past M.
#[inline(always)]
fn pad_rows(out: &mut [u16], ld: usize, k: usize, i0: usize, rows: usize) {
    for r in 0..16 {
        let row = &mut out[(i0 + r) * ld..(i0 + r + 1) * ld];
        if r < rows {
            row[k..].fill(0);
        } else {
            row.fill(0);
        }
    }
}

multiversion! {
    /// [`rows_from_cols`] in plain loops.
    fn rows_from_cols_loops(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
        let k = src.len().checked_div(m).unwrap_or(0);
        let mp = out.len() / ld;
        for i0 in (0..mp).step_by(16) {
            let rows = m.saturating_sub(i0).min(16);
            for p0 in (0..k).step_by(16) {
                block_loops(src, m, ld, out, (i0, rows), (p0, (k - p0).min(16)));
            }
            pad_rows(out, ld, k, i0, rows);
        }
    }
}

/// [`rows_from_cols`] with every whole 16 × 16 block gathered: output row i's 16 values
/// src[p0..p0 + 16][i] are one `vgatherdps` (offsets q·m, below 2³¹ as m < 2²⁶), rounded to
/// bf16 as [`to_bf16`] rounds (ties to even, NaN kept quiet) and stored as 16 halves. Blocks
/// at the edges go through [`block_loops`].
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_from_cols_gather(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
    use std::arch::x86_64::*;
    let k = src.len().checked_div(m).unwrap_or(0);
    let mp = out.len() / ld;
    let offsets = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(m as i32),
    );
    let (one, half, quiet) = (
        _mm512_set1_epi32(1),
        _mm512_set1_epi32(0x7fff),
        _mm512_set1_epi32(0x40),
    );
    for i0 in (0..mp).step_by(16) {
        let rows = m.saturating_sub(i0).min(16);
        for p0 in (0..k).step_by(16) {
            let depth = (k - p0).min(16);
            if rows < 16 || depth < 16 {
                block_loops(src, m, ld, out, (i0, rows), (p0, depth));
                continue;
            }
            for r in 0..16 {
                // SAFETY: the 16 values read are src[(p0 + q)·m + i0 + r] for q < 16, inside
                // src as p0 + 16 ≤ K and i0 + r < M; the 16 written lie in row i0 + r of out
                // at p0..p0 + 16 ≤ K ≤ ld.
                let base = src.as_ptr().add(p0 * m + i0 + r);
                let x = _mm512_i32gather_ps::<4>(offsets, base);
                let bits = _mm512_castps_si512(x);
                let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), one);
                let rounded =
                    _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, _mm512_add_epi32(half, odd)));
                let nan = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), quiet);
                let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                let halves = _mm512_mask_blend_epi32(is_nan, rounded, nan);
                let dst = out.as_mut_ptr().add((i0 + r) * ld + p0);
                _mm256_storeu_si256(dst as *mut __m256i, _mm512_cvtepi32_epi16(halves));
            }
        }
        pad_rows(out, ld, k, i0, rows);
    }
}
