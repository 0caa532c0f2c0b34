//! The per-step recurrent product with its weight packed once per chunk: [`Packed`].
//!
//! Each time step multiplies the B streams' state (a few rows) by the same W_hh (forward) or
//! W_hhᵀ (backward). Through BLAS every such call re-packs the whole weight into its blocked
//! layout, and with B = 64 rows that packing was 13% of a 2-layer LSTM step (`perf` on Zen 5,
//! OpenBLAS's `sgemm_itcopy`), more with smaller shards. Here the weight is packed once per
//! chunk into column panels and every step runs a register-blocked kernel over them, the way
//! oneDNN's RNN primitive and MKL's packed gemm work.
//!
//! Layout: panels of [`PANEL`] columns; panel p holds, for k = 0..K, the PANEL values
//! W[k, 32p..32p+32], zero-padded past N. A kernel tile keeps MR rows × NP panels of y in
//! registers and adds x(i, k)·W(k, ·) for k = 0..K in order.
//!
//! Every output element is one chain of fused multiply-adds over k in increasing order,
//! starting from 0 (or from y's value when accumulating), on every instruction set:
//! AVX-512, AVX2 and the portable loop give the same bits (`tests/dispatch.rs`).

use ndarray::ArrayView2;

use super::{isa, Float, Isa};

/// Columns of one packed panel: two AVX-512 vectors of f32.
pub const PANEL: usize = 32;

/// A (K, N) matrix packed for products x·W with few rows (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct Packed<F> {
    k: usize,
    n: usize,
    data: Vec<F>,
}

impl<F: Float> Packed<F> {
    /// An empty packing (pack before use).
    pub fn new() -> Self {
        Packed {
            k: 0,
            n: 0,
            data: Vec::new(),
        }
    }

    /// (K, N) of the packed matrix.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Packs `w` (K, N), whatever its strides (pass `w.t()` for Wᵀ). Reuses the buffer.
    pub fn pack(&mut self, w: &ArrayView2<F>) {
        let (k, n) = w.dim();
        let panels = n.div_ceil(PANEL);
        // Every value is written below, the padding past N included, so the buffer is resized
        // but never cleared (the forward's W_hh and the backward's W_hhᵀ take turns in it).
        self.data.resize(panels * k * PANEL, F::zero());
        self.k = k;
        self.n = n;
        for p in 0..panels {
            let (c0, width) = (p * PANEL, (n - p * PANEL).min(PANEL));
            let panel = &mut self.data[p * k * PANEL..(p + 1) * k * PANEL];
            if width < PANEL {
                for dst in panel.chunks_exact_mut(PANEL) {
                    dst[width..].fill(F::zero());
                }
            }
            if let Some(src) = w.as_slice() {
                // Row-major W: each panel row is a run of one of W's rows.
                for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                    dst[..width].copy_from_slice(&src[kk * n + c0..kk * n + c0 + width]);
                }
            } else if let Some(src) = w.t().as_slice() {
                // Wᵀ packed from a row-major W: the panel's columns are W's rows, each
                // contiguous; read them side by side so that the writes run in order.
                let cols = &src[c0 * k..(c0 + width) * k];
                for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                    for (c, d) in dst[..width].iter_mut().enumerate() {
                        *d = cols[c * k + kk];
                    }
                }
            } else {
                for (kk, dst) in panel.chunks_exact_mut(PANEL).enumerate() {
                    for (c, d) in dst[..width].iter_mut().enumerate() {
                        *d = w[[kk, c0 + c]];
                    }
                }
            }
        }
    }

    /// y (M, N) ← x (M, K)·W, or y += x·W with `accumulate`; x and y row-major and
    /// contiguous, M = x.len() / K.
    pub fn mul(&self, x: &[F], y: &mut [F], accumulate: bool) {
        let (k, n) = (self.k, self.n);
        assert!(
            k > 0 && x.len().is_multiple_of(k),
            "x must hold whole rows of K = {k}"
        );
        assert_eq!(y.len(), x.len() / k * n, "y must be (M, N = {n})");
        F::packed_product(self, x, y, accumulate);
    }
}

/// The portable kernel (f64, and f32 without AVX2): the same chains of fused multiply-adds.
pub(super) fn product_portable<F: Float>(w: &Packed<F>, x: &[F], y: &mut [F], accumulate: bool) {
    let (k, n) = (w.k, w.n);
    let m = x.len() / k;
    for p in 0..n.div_ceil(PANEL) {
        let (c0, width) = (p * PANEL, (n - p * PANEL).min(PANEL));
        let panel = &w.data[p * k * PANEL..(p + 1) * k * PANEL];
        for i in 0..m {
            let out = &mut y[i * n + c0..i * n + c0 + width];
            let mut acc = [F::zero(); PANEL];
            if accumulate {
                acc[..width].copy_from_slice(out);
            }
            for (&xv, wrow) in x[i * k..(i + 1) * k].iter().zip(panel.chunks_exact(PANEL)) {
                for (a, &wv) in acc.iter_mut().zip(wrow) {
                    *a = xv.mul_add(wv, *a);
                }
            }
            out.copy_from_slice(&acc[..width]);
        }
    }
}

/// f32: the widest kernel this CPU runs.
pub(super) fn product_f32(w: &Packed<f32>, x: &[f32], y: &mut [f32], accumulate: bool) {
    match isa() {
        // SAFETY: `isa()` reports only instruction sets this CPU runs.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::product(w, x, y, accumulate) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::product(w, x, y, accumulate) },
        _ => product_portable(w, x, y, accumulate),
    }
}

/// Row blocks of a product: `tile(rows, first row)` for blocks of the largest sizes in
/// `sizes` that fit, in order.
#[inline(always)]
fn row_blocks(m: usize, sizes: &[usize], mut tile: impl FnMut(usize, usize)) {
    let mut i = 0;
    for &mr in sizes {
        while m - i >= mr {
            tile(mr, i);
            i += mr;
        }
    }
}

/// The valid-column masks of the two 16-lane halves of a panel `width` columns wide.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn half_masks(width: usize) -> [u16; 2] {
    let mask = |w: usize| -> u16 {
        if w >= 16 {
            u16::MAX
        } else {
            (1u16 << w) - 1
        }
    };
    [mask(width), mask(width.saturating_sub(16))]
}

#[cfg(target_arch = "x86_64")]
// Register tiles are indexed by (row, panel, half): index loops say that most plainly.
#[allow(clippy::needless_range_loop)]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{half_masks, row_blocks, Packed, PANEL};

    /// y rows `i0..i0+MR` × panels `p0..p0+NP`: MR·NP·2 accumulators in registers.
    #[inline(always)]
    unsafe fn tile<const MR: usize, const NP: usize>(
        w: &Packed<f32>,
        x: &[f32],
        y: &mut [f32],
        i0: usize,
        p0: usize,
        accumulate: bool,
    ) {
        let (k, n) = (w.k, w.n);
        let mut accs = [[[_mm512_setzero_ps(); 2]; NP]; MR];
        let masks: [[u16; 2]; NP] = std::array::from_fn(|q| half_masks(n - (p0 + q) * PANEL));
        if accumulate {
            for r in 0..MR {
                for q in 0..NP {
                    let at = y.as_ptr().add((i0 + r) * n + (p0 + q) * PANEL);
                    accs[r][q][0] = _mm512_maskz_loadu_ps(masks[q][0], at);
                    accs[r][q][1] = _mm512_maskz_loadu_ps(masks[q][1], at.add(16));
                }
            }
        }
        let xp = x.as_ptr().add(i0 * k);
        let wp = w.data.as_ptr().add(p0 * k * PANEL);
        for kk in 0..k {
            let mut ws = [[_mm512_setzero_ps(); 2]; NP];
            for q in 0..NP {
                let at = wp.add(q * k * PANEL + kk * PANEL);
                ws[q] = [_mm512_loadu_ps(at), _mm512_loadu_ps(at.add(16))];
            }
            for r in 0..MR {
                let xv = _mm512_set1_ps(*xp.add(r * k + kk));
                for q in 0..NP {
                    accs[r][q][0] = _mm512_fmadd_ps(xv, ws[q][0], accs[r][q][0]);
                    accs[r][q][1] = _mm512_fmadd_ps(xv, ws[q][1], accs[r][q][1]);
                }
            }
        }
        for r in 0..MR {
            for q in 0..NP {
                let at = y.as_mut_ptr().add((i0 + r) * n + (p0 + q) * PANEL);
                _mm512_mask_storeu_ps(at, masks[q][0], accs[r][q][0]);
                _mm512_mask_storeu_ps(at.add(16), masks[q][1], accs[r][q][1]);
            }
        }
    }

    /// Panels `p0..p1` for the row block (mr, i0): NP panels at a time where they remain.
    #[inline(always)]
    unsafe fn panels<const MR: usize, const NP: usize>(
        w: &Packed<f32>,
        x: &[f32],
        y: &mut [f32],
        i0: usize,
        (p0, p1): (usize, usize),
        accumulate: bool,
    ) {
        let mut p = p0;
        while p1 - p >= NP {
            tile::<MR, NP>(w, x, y, i0, p, accumulate);
            p += NP;
        }
        // The last panels in one tile, so that few rows still have accumulators to spare.
        match p1 - p {
            0 => {}
            1 => tile::<MR, 1>(w, x, y, i0, p, accumulate),
            2 => tile::<MR, 2>(w, x, y, i0, p, accumulate),
            _ => tile::<MR, 3>(w, x, y, i0, p, accumulate),
        }
    }

    /// y ← (y +) x·W. Panels in groups of 4 (a group stays in L1/L2 while every row block
    /// reads it); rows in blocks of 8, then 4, 2, 1, with fewer rows taking more panels.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn product(w: &Packed<f32>, x: &[f32], y: &mut [f32], accumulate: bool) {
        let m = x.len() / w.k;
        let total = w.n.div_ceil(PANEL);
        for g in (0..total).step_by(4) {
            let group = (g, (g + 4).min(total));
            row_blocks(m, &[8, 4, 2, 1], |mr, i0| match mr {
                8 => panels::<8, 1>(w, x, y, i0, group, accumulate),
                4 => panels::<4, 2>(w, x, y, i0, group, accumulate),
                2 => panels::<2, 4>(w, x, y, i0, group, accumulate),
                _ => panels::<1, 4>(w, x, y, i0, group, accumulate),
            });
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Register tiles are indexed by (row, panel, half): index loops say that most plainly.
#[allow(clippy::needless_range_loop)]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{row_blocks, Packed, PANEL};

    /// The valid-lane mask of 8 columns starting `start` columns into a `width`-wide panel.
    #[inline(always)]
    unsafe fn lane_mask(width: usize, start: usize) -> __m256i {
        let valid = width.saturating_sub(start).min(8) as i32;
        let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lanes)
    }

    /// y rows `i0..i0+MR` × panel p: MR·4 accumulators in registers.
    #[inline(always)]
    unsafe fn tile<const MR: usize>(
        w: &Packed<f32>,
        x: &[f32],
        y: &mut [f32],
        i0: usize,
        p: usize,
        accumulate: bool,
    ) {
        let (k, n) = (w.k, w.n);
        let width = (n - p * PANEL).min(PANEL);
        let masks: [__m256i; 4] = std::array::from_fn(|v| lane_mask(width, 8 * v));
        let mut accs = [[_mm256_setzero_ps(); 4]; MR];
        if accumulate {
            for r in 0..MR {
                let at = y.as_ptr().add((i0 + r) * n + p * PANEL);
                for v in 0..4 {
                    accs[r][v] = _mm256_maskload_ps(at.add(8 * v), masks[v]);
                }
            }
        }
        let xp = x.as_ptr().add(i0 * k);
        let wp = w.data.as_ptr().add(p * k * PANEL);
        for kk in 0..k {
            let at = wp.add(kk * PANEL);
            let ws = [
                _mm256_loadu_ps(at),
                _mm256_loadu_ps(at.add(8)),
                _mm256_loadu_ps(at.add(16)),
                _mm256_loadu_ps(at.add(24)),
            ];
            for r in 0..MR {
                let xv = _mm256_set1_ps(*xp.add(r * k + kk));
                for v in 0..4 {
                    accs[r][v] = _mm256_fmadd_ps(xv, ws[v], accs[r][v]);
                }
            }
        }
        for r in 0..MR {
            let at = y.as_mut_ptr().add((i0 + r) * n + p * PANEL);
            for v in 0..4 {
                _mm256_maskstore_ps(at.add(8 * v), masks[v], accs[r][v]);
            }
        }
    }

    /// y ← (y +) x·W: rows in blocks of 3 (12 accumulators of the 16 registers), then 2, 1.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn product(w: &Packed<f32>, x: &[f32], y: &mut [f32], accumulate: bool) {
        let m = x.len() / w.k;
        for p in 0..w.n.div_ceil(PANEL) {
            row_blocks(m, &[3, 2, 1], |mr, i0| match mr {
                3 => tile::<3>(w, x, y, i0, p, accumulate),
                2 => tile::<2>(w, x, y, i0, p, accumulate),
                _ => tile::<1>(w, x, y, i0, p, accumulate),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// x·W (+ y0) in f64, the reference.
    fn reference(x: &[f32], w: &Array2<f32>, y0: &[f32]) -> Vec<f64> {
        let (k, n) = w.dim();
        let m = x.len() / k;
        let mut y: Vec<f64> = y0.iter().map(|&v| f64::from(v)).collect();
        for i in 0..m {
            for j in 0..n {
                for kk in 0..k {
                    y[i * n + j] += f64::from(x[i * k + kk]) * f64::from(w[[kk, j]]);
                }
            }
        }
        y
    }

    #[test]
    fn products_match_the_reference_for_every_shape_and_both_layouts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut packed = Packed::new();
        for (m, k, n) in [
            (1, 1, 1),
            (1, 75, 75),
            (3, 7, 31),
            (5, 16, 33),
            (8, 20, 32),
            (13, 9, 100),
            (64, 64, 192),
            (15, 33, 130),
        ] {
            let w = Array2::from_shape_fn((k, n), |_| rng.random_range(-1.0f32..1.0));
            let x: Vec<f32> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let y0: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            // Row-major source, and the same matrix as a transposed view of its transpose.
            let wt = w.t().to_owned();
            let mut by_rows = Vec::new();
            for (layout, view) in [("rows", w.view()), ("columns", wt.t())] {
                packed.pack(&view);
                assert_eq!(packed.dim(), (k, n));
                // The gather from columns lays out exactly what the row copy does.
                if by_rows.is_empty() {
                    by_rows = packed.data.clone();
                } else {
                    assert_eq!(packed.data, by_rows, "({k}, {n}) packed from columns");
                }
                for accumulate in [false, true] {
                    let mut y = if accumulate {
                        y0.clone()
                    } else {
                        vec![7.0; m * n]
                    };
                    packed.mul(&x, &mut y, accumulate);
                    let zeros = vec![0.0; m * n];
                    let want = reference(&x, &w, if accumulate { &y0 } else { &zeros });
                    for (i, (&got, &want)) in y.iter().zip(&want).enumerate() {
                        assert!(
                            (f64::from(got) - want).abs() <= 1e-5 * (k as f64).sqrt(),
                            "({m}, {k}, {n}) {layout} accumulate={accumulate} [{i}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn f64_products_match_the_reference() {
        let w = Array2::from_shape_fn((5, 40), |(i, j)| (i * 40 + j) as f64 * 0.01 - 1.0);
        let x: Vec<f64> = (0..15).map(|i| i as f64 * 0.1 - 0.7).collect();
        let mut packed = Packed::new();
        packed.pack(&w.view());
        let mut y = vec![0.5; 3 * 40];
        packed.mul(&x, &mut y, true);
        for i in 0..3 {
            for j in 0..40 {
                let want: f64 = 0.5 + (0..5).map(|k| x[i * 5 + k] * w[[k, j]]).sum::<f64>();
                assert!((y[i * 40 + j] - want).abs() < 1e-12);
            }
        }
    }
}
