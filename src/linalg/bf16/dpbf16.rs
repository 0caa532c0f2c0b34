//! The bf16 product on AVX512-BF16 vectors: [`super::BfKernel::Avx512Bf16`].
//!
//! `vdpbf16ps` adds to each of 16 f32 lanes the two products of a bf16 pair: lane n of a
//! [`BfPacked`] row holds (B[2r, n], B[2r+1, n]), and the pair (A[i, 2r], A[i, 2r+1]) is
//! broadcast to every lane. Intel documents the lane as two additions, the odd product first,
//! each rounded to nearest even with denormals flushed ([`super::PairOrder::OddFirst`]); the
//! kernel keeps each output element one chain over k in increasing pairs, so it equals that
//! reference bit for bit (`tests/bf16.rs`).
//!
//! A register tile holds `MR` rows × 2 column blocks (32 columns) of C in 16 accumulators;
//! per pair of k it loads two B vectors and broadcasts MR pairs of A.

use std::arch::x86_64::*;

use ndarray::ArrayViewMut2;

use super::{BfPacked, Rows, Start, COLS};

/// Rows of C per register tile (divides the 32-row padding of A).
const MR: usize = 8;

/// True when this CPU runs AVX512-BF16 (with AVX-512 F).
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// c (M, N) = A · `b`, the sums starting at `start`, with `vdpbf16ps`; `a` is A in bf16 as
/// [`super::BfRows`] holds it, with Kp `b`'s padded K.
///
/// # Safety
/// [`available`] holds; `a` is as described.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn gemm(a: &Rows, b: &BfPacked, start: Start, c: &mut ArrayViewMut2<f32>) {
    let (m, kp, ld) = (a.m, a.kp, a.ld);
    let (n, np) = (b.n, b.np());
    let pairs = kp / 2;
    let block = kp * COLS;
    for j in (0..np).step_by(2 * COLS) {
        let b0 = b.data.as_ptr().cast::<u16>().add(j / COLS * block);
        let b1 = b0.add(block);
        // Lanes of each column block that lie inside c.
        let lanes = |q: usize| (n.saturating_sub(j + q * COLS)).min(COLS);
        let masks = [lanes(0), lanes(1)].map(|l| ((1u32 << l) - 1) as u16);
        for i in (0..m).step_by(MR) {
            let rows = (m - i).min(MR);
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            match start {
                Start::Zero => {}
                Start::C => {
                    for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                        for (q, acc) in acc.iter_mut().enumerate() {
                            *acc = load(c, i + r, j + q * COLS, masks[q]);
                        }
                    }
                }
                Start::Row(row) => {
                    // SAFETY: the lanes inside the masks lie inside row (N long).
                    let v = [0, 1].map(|q| {
                        let at = row.as_ptr().add((j + q * COLS).min(n));
                        _mm512_maskz_loadu_ps(masks[q], at)
                    });
                    for acc in acc.iter_mut().take(rows) {
                        *acc = v;
                    }
                }
            }
            if c.strides()[1] == 1 && !matches!(start, Start::C) {
                // The tile's lines of C, fetched for writing while the sums run: a large C
                // (the input projections') is not in cache.
                for r in 0..rows {
                    let row = c.as_ptr().offset((i + r) as isize * c.strides()[0]);
                    for (q, &mask) in masks.iter().enumerate() {
                        if mask != 0 {
                            _mm_prefetch::<_MM_HINT_ET0>(row.add(j + q * COLS).cast());
                        }
                    }
                }
            }
            let pa = a.data.as_ptr().add(i * ld).cast::<u8>();
            for p in 0..pairs {
                let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b0.add(p * 32).cast()));
                let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b1.add(p * 32).cast()));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let pair = pa.add((r * ld + 2 * p) * 2).cast::<i32>().read_unaligned();
                    let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair));
                    acc[0] = _mm512_dpbf16_ps(acc[0], x, v0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], x, v1);
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows) {
                for (q, &acc) in acc.iter().enumerate() {
                    store(c, i + r, j + q * COLS, masks[q], acc);
                }
            }
        }
    }
}

/// The 16 values of c's row `i` from column `j` on, lanes outside `mask` zero.
#[inline(always)]
unsafe fn load(c: &ArrayViewMut2<f32>, i: usize, j: usize, mask: u16) -> __m512 {
    if mask == 0 {
        return _mm512_setzero_ps();
    }
    if c.strides()[1] == 1 {
        _mm512_maskz_loadu_ps(
            mask,
            c.as_ptr().offset(i as isize * c.strides()[0] + j as isize),
        )
    } else {
        let mut v = [0f32; COLS];
        for (q, v) in v.iter_mut().enumerate() {
            if mask & (1 << q) != 0 {
                *v = c[[i, j + q]];
            }
        }
        _mm512_loadu_ps(v.as_ptr())
    }
}

/// Writes the lanes of `x` inside `mask` to c's row `i` from column `j` on.
#[inline(always)]
unsafe fn store(c: &mut ArrayViewMut2<f32>, i: usize, j: usize, mask: u16, x: __m512) {
    if mask == 0 {
        return;
    }
    if c.strides()[1] == 1 {
        let p = c
            .as_mut_ptr()
            .offset(i as isize * c.strides()[0] + j as isize);
        // A masked store is slower than a plain one on Zen 4, where C is not in cache:
        // measured (docs/precision.md).
        if mask == u16::MAX {
            _mm512_storeu_ps(p, x);
        } else {
            _mm512_mask_storeu_ps(p, mask, x);
        }
    } else {
        let mut v = [0f32; COLS];
        _mm512_storeu_ps(v.as_mut_ptr(), x);
        for (q, &v) in v.iter().enumerate() {
            if mask & (1 << q) != 0 {
                c[[i, j + q]] = v;
            }
        }
    }
}
