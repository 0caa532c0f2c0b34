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

/// Rows of B (K, N) to pack: `src` holds rows `first..` of B, row-major, N values each; rows
/// past K (and past `src`) read as zeros.
#[derive(Clone, Copy)]
pub(super) struct RowsOfB<'a> {
    pub src: &'a [f32],
    pub first: usize,
    pub k: usize,
    pub n: usize,
}

impl<'a> RowsOfB<'a> {
    /// Row `r` of B, empty when it is zero padding.
    #[inline(always)]
    fn row(&self, r: usize) -> &'a [f32] {
        let rows = self.src.len().checked_div(self.n).unwrap_or(0);
        if r < self.k && r >= self.first && r < self.first + rows {
            &self.src[(r - self.first) * self.n..(r - self.first + 1) * self.n]
        } else {
            &[]
        }
    }
}

multiversion! {
    /// The pairs of rows `pairs` (rows 2p and 2p + 1 for p in `pairs`) of B (K, N) from `b`
    /// into `out`: Kp/2 pairs of rows × Np columns, column blocks of 16 one after the other
    /// (`out.len()` = Kp/2 · Np); pairs outside the range are left as they are. Done 16 column
    /// blocks at a time, all pairs of rows for each, so that reads are 1 KiB runs of a row and
    /// writes 16 sequential streams (pair by pair across all blocks wrote 64 bytes a block
    /// apart).
    pub(super) fn pack_rows(b: RowsOfB, kp: usize, pairs: std::ops::Range<usize>, out: &mut [u32]) {
        const GROUP: usize = 16;
        let block = kp / 2 * COLS;
        for (g, group) in out.chunks_mut(GROUP * block).enumerate() {
            for p in pairs.clone() {
                let (r0, r1) = (b.row(2 * p), b.row(2 * p + 1));
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

/// B = srcᵀ (K, N) from `src` (N, K), row-major, into `out` as [`pack_rows`] lays it out; on
/// AVX-512 with 16 × 16 blocks of pairs transposed in registers ([`pack_cols_avx512`]), else in
/// plain loops.
pub(super) fn pack_cols(src: &[f32], k: usize, n: usize, kp: usize, out: &mut [u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the blocks read and write inside src and out (see
        // `pack_cols_avx512`).
        return unsafe { pack_cols_avx512(src, k, n, kp, out) };
    }
    pack_cols_loops(src, k, n, kp, out, (0..usize::MAX, 0));
}

/// The 16 source rows of column block `j` of B = srcᵀ (empty past N).
#[inline(always)]
fn block_cols(src: &[f32], k: usize, n: usize, j: usize) -> [&[f32]; COLS] {
    std::array::from_fn(|c| {
        let r = j * COLS + c;
        if r < n {
            &src[r * k..(r + 1) * k]
        } else {
            &[][..]
        }
    })
}

multiversion! {
    /// [`pack_cols`] in plain loops, for the column blocks in `blocks` and in each the pairs
    /// of rows from `first_pair` on (the rest of `out` is left as it is).
    fn pack_cols_loops(
        src: &[f32],
        k: usize,
        n: usize,
        kp: usize,
        out: &mut [u32],
        part: (std::ops::Range<usize>, usize),
    ) {
        let (blocks, first_pair) = part;
        let pairs = kp / 2;
        let block = pairs * COLS;
        let chosen = out.chunks_exact_mut(block).enumerate().skip(blocks.start).take(blocks.len());
        for (j, dst) in chosen {
            let cols = block_cols(src, k, n, j);
            let full = cols[COLS - 1].len() == k;
            for p in first_pair..pairs {
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

/// The 16 values of `x` rounded to bf16 as [`to_bf16`] rounds (ties to even, NaN kept quiet),
/// each in the low half of its 32-bit lane.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn round16(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let bits = _mm512_castps_si512(x);
    let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
    let half = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd);
    let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(bits, half));
    let nan = _mm512_or_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(0x40));
    let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_blend_epi32(is_nan, rounded, nan)
}

/// [`pack_cols`] in blocks of 16 columns × 16 pairs of rows of B: each of the block's 16
/// source rows gives 32 consecutive values, rounded ([`round16`]) and narrowed so that 32-bit
/// lane q holds the pair (2q, 2q + 1), which is that column's run of 16 output pairs;
/// [`transpose16`] turns the 16 runs into the 16 output rows of 16 columns. Blocks of fewer
/// than 16 columns, and the pairs past the last whole 16, go through [`pack_cols_loops`].
/// (The loops gather each pair from 16 rows K values apart, one value at a time.)
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_cols_avx512(src: &[f32], k: usize, n: usize, kp: usize, out: &mut [u32]) {
    use std::arch::x86_64::*;
    let block = kp / 2 * COLS;
    // Pairs 0..whole of every full column block are done here: 32 values of K each.
    let whole = k / 32 * 16;
    let full = n / COLS;
    for (j, dst) in out.chunks_exact_mut(block).enumerate().take(full) {
        let cols = block_cols(src, k, n, j);
        for p0 in (0..whole).step_by(16) {
            // SAFETY: block j < N/16 has all 16 rows, each of K values, and 2·p0 + 32 ≤ K.
            let runs: [__m512; 16] = std::array::from_fn(|c| {
                let at = cols[c].as_ptr().add(2 * p0);
                let lo = _mm512_cvtepi32_epi16(round16(_mm512_loadu_ps(at)));
                let hi = _mm512_cvtepi32_epi16(round16(_mm512_loadu_ps(at.add(16))));
                _mm512_castsi512_ps(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi))
            });
            for (q, x) in transpose16(runs).into_iter().enumerate() {
                // SAFETY: pair p0 + q < Kp/2 of this block: 16 values inside dst.
                _mm512_storeu_ps(dst.as_mut_ptr().add((p0 + q) * COLS) as *mut f32, x);
            }
        }
    }
    // What the blocks above left: the pairs from `whole` on, and every pair of the blocks
    // of fewer than 16 columns (past N's last multiple of 16).
    pack_cols_loops(src, k, n, kp, out, (0..full, whole));
    pack_cols_loops(src, k, n, kp, out, (full..usize::MAX, 0));
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
/// out, in 16 × 16 blocks: each block's 16 runs of src are read together (16 loads from lines
/// of src that stay in L1 while the block is done), transposed, and written as 16 runs of
/// out; on AVX-512 in registers ([`rows_from_cols_avx512`]), else in plain loops.
pub(super) fn rows_from_cols(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F; the blocks read and write inside src and out (see
        // `rows_from_cols_avx512`).
        return unsafe { rows_from_cols_avx512(src, m, ld, out) };
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

/// [`rows_from_cols`] with every whole 16 × 16 block transposed in registers: the 16 runs
/// src[p0 + q][i0..i0 + 16] are loaded, transposed ([`transpose16`]) so that vector r holds
/// src[p0..p0 + 16][i0 + r], rounded to bf16 as [`to_bf16`] rounds (ties to even, NaN kept
/// quiet) and stored as 16 halves of output row i0 + r. Blocks at the edges go through
/// [`block_loops`]. (Replaced one `vgatherdps` per output run, which took about 4 cycles a
/// value on a Zen 4.)
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_from_cols_avx512(src: &[f32], m: usize, ld: usize, out: &mut [u16]) {
    use std::arch::x86_64::*;
    let k = src.len().checked_div(m).unwrap_or(0);
    let mp = out.len() / ld;
    // Strip by strip of 16 rows of src (read in order), every block of the strip: the
    // stores go to 16 rows of out at once, each 32 bytes after the previous strip's.
    for p0 in (0..k).step_by(16) {
        let depth = (k - p0).min(16);
        for i0 in (0..mp).step_by(16) {
            let rows = m.saturating_sub(i0).min(16);
            if rows < 16 || depth < 16 {
                block_loops(src, m, ld, out, (i0, rows), (p0, depth));
                continue;
            }
            // SAFETY: run q is src[(p0 + q)·m + i0 ..][..16], inside src as p0 + 16 ≤ K and
            // i0 + 16 ≤ M.
            let runs: [__m512; 16] =
                std::array::from_fn(|q| _mm512_loadu_ps(src.as_ptr().add((p0 + q) * m + i0)));
            for (r, x) in transpose16(runs).into_iter().enumerate() {
                let halves = round16(x);
                // SAFETY: the 16 values written lie in row i0 + r < Mp of out, at
                // p0..p0 + 16 ≤ K ≤ ld.
                let dst = out.as_mut_ptr().add((i0 + r) * ld + p0);
                _mm256_storeu_si256(dst as *mut __m256i, _mm512_cvtepi32_epi16(halves));
            }
        }
    }
    for i0 in (0..mp).step_by(16) {
        pad_rows(out, ld, k, i0, m.saturating_sub(i0).min(16));
    }
}

/// The 16 × 16 transpose of `x` (vector q holds row q): vector r of the result holds lane r
/// of every x[q], in order of q. Four rounds of shuffles: pairs of rows interleaved by 32
/// and then 64 bits, which leaves 128-bit lane L of u[4a + j] holding column 4L + j of rows
/// 4a..4a + 4; then two rounds of 128-bit lane selections gather each column's four lanes.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn transpose16(x: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // t[2a], t[2a + 1]: rows 2a and 2a + 1 interleaved (lane L: their columns 4L, 4L + 1 and
    // 4L + 2, 4L + 3).
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (x[i & !1], x[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    // u[4a + j]: lane L holds column 4L + j of rows 4a..4a + 4.
    let u: [__m512; 16] = std::array::from_fn(|i| {
        let (a, j) = (i / 4, i % 4);
        let (lo, hi) = (t[4 * a + j / 2], t[4 * a + 2 + j / 2]);
        if j % 2 == 0 {
            _mm512_shuffle_ps::<0x44>(lo, hi)
        } else {
            _mm512_shuffle_ps::<0xee>(lo, hi)
        }
    });
    // v[4s + j] for s = 0, 1 (rows 0..8) and 2, 3 (rows 8..16): lanes 0 and 2 (s even) or 1
    // and 3 (s odd) of u[8(s/2) + j] and of u[8(s/2) + 4 + j].
    let v: [__m512; 16] = std::array::from_fn(|i| {
        let (s, j) = (i / 4, i % 4);
        let (a, b) = (u[8 * (s / 2) + j], u[8 * (s / 2) + 4 + j]);
        if s % 2 == 0 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    });
    // Column c = 4L + j: lane L of rows 0..4, 4..8, 8..12, 12..16.
    std::array::from_fn(|c| {
        let (l, j) = (c / 4, c % 4);
        let (a, b) = (v[4 * (l % 2) + j], v[8 + 4 * (l % 2) + j]);
        if l < 2 {
            _mm512_shuffle_f32x4::<0x88>(a, b)
        } else {
            _mm512_shuffle_f32x4::<0xdd>(a, b)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` values, a NaN of each sign, a tie, a denormal, −0 and f32::MAX every `period`
    /// among ordinary ones.
    fn values(len: usize, period: usize) -> Vec<f32> {
        let specials = [
            f32::NAN,
            -f32::NAN,
            1.0 + 2f32.powi(-8),
            1e-40,
            -0.0,
            f32::MAX,
        ];
        (0..len)
            .map(|i| match i % period {
                j @ 0..=5 => specials[j],
                _ => ((i * 7919) % 1000) as f32 / 7.0 - 70.0,
            })
            .collect()
    }

    /// The transpose in registers writes what the plain loops write, bit for bit: NaNs, ties
    /// and denormals included, on shapes with whole blocks and with edges in both dimensions.
    #[test]
    fn rows_from_cols_equals_its_loops() {
        for (k, m) in [(16, 16), (32, 48), (35, 50), (64, 17), (7, 40)] {
            let src = values(k * m, 37);
            let ld = k.next_multiple_of(32) + 32;
            let rows = m.next_multiple_of(32);
            let (mut fast, mut slow) = (vec![1u16; rows * ld], vec![2u16; rows * ld]);
            rows_from_cols(&src, m, ld, &mut fast);
            rows_from_cols_loops(&src, m, ld, &mut slow);
            assert_eq!(fast, slow, "K {k}, M {m}");
        }
    }

    /// The packing of srcᵀ in registers writes what the plain loops write, and what packing
    /// the transpose row by row writes, bit for bit: NaNs, ties and denormals included, with
    /// whole blocks, odd K, K past its last 32 and N past its last 16.
    #[test]
    fn pack_cols_equals_its_loops_and_pack_rows() {
        use super::super::{K_ALIGN, N_ALIGN};
        for (k, n) in [
            (32, 16),
            (64, 48),
            (96, 40),
            (65, 33),
            (33, 17),
            (7, 40),
            (160, 8),
        ] {
            // src is (N, K): B = srcᵀ is (K, N).
            let src = values(n * k, 41);
            let b: Vec<f32> = (0..k * n).map(|i| src[(i % n) * k + i / n]).collect();
            let kp = k.next_multiple_of(K_ALIGN);
            let len = kp / 2 * n.next_multiple_of(N_ALIGN);
            let (mut fast, mut slow, mut rows) =
                (vec![1u32; len], vec![2u32; len], vec![3u32; len]);
            pack_cols(&src, k, n, kp, &mut fast);
            pack_cols_loops(&src, k, n, kp, &mut slow, (0..usize::MAX, 0));
            let b = RowsOfB {
                src: &b,
                first: 0,
                k,
                n,
            };
            pack_rows(b, kp, 0..kp / 2, &mut rows);
            assert_eq!(fast, slow, "K {k}, N {n}: against the loops");
            assert_eq!(
                fast, rows,
                "K {k}, N {n}: against pack_rows of the transpose"
            );
        }
    }
}
