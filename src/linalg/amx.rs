//! bf16 products on Intel AMX tiles: C += bf16(A)·bf16(B) with f32 accumulation
//! ([`BfPacked`], [`gemm_bf16`]); the first kernel of `--precision bf16` (issue 21), not yet
//! used by training.
//!
//! AMX multiplies tiles held in eight tile registers of up to 16 rows × 64 bytes.
//! `tdpbf16ps` adds to a 16×16 f32 tile C the product of a 16×32 bf16 tile A (row-major) and
//! a 32×16 bf16 tile B stored as 16 rows of 16 column pairs (row r holds B[2r, n] and
//! B[2r+1, n] side by side for n = 0..16: the "VNNI" layout [`BfPacked`] writes). Every
//! product is exact (a bf16 product fits in f32's significand). Intel's pseudocode adds them
//! one at a time with round-to-nearest-even; [`gemm_bf16_reference`] does that in software.
//! The hardware does not: on a Sapphire-Rapids-class Xeon (CPU model 207) an eighth to a quarter of the
//! elements of a (16, 32)·(32, 16) product differ from that chain in the last bits, and from
//! every other order tried (pairs first, odd element first, one rounding per pair or per
//! tile), so `tests/amx.rs` holds the kernel to the reference within f32 rounding of its K
//! additions, not bit for bit. The kernel is deterministic: the same inputs give the same
//! bits.
//!
//! Linux hands out AMX state only on request: [`available`] checks CPUID and asks the kernel
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`) once per process; without it the
//! first tile instruction would raise SIGILL.

use std::sync::OnceLock;

use ndarray::{ArrayView2, ArrayViewMut2};

/// Rows of every tile (and of A and C blocks).
const TILE_ROWS: usize = 16;
/// f32 columns of a C tile, and column pairs of a B tile (64 bytes a row).
const TILE_N: usize = 16;
/// bf16 values of k in one A tile row (64 bytes).
const TILE_K: usize = 32;
/// bf16 values in one packed B tile.
const TILE_LEN: usize = TILE_K * TILE_N;
/// Rows and columns of C computed together: 2 × 2 tiles.
const BLOCK: usize = 2 * TILE_ROWS;

/// `x` rounded to bfloat16 (the upper 16 bits of an f32), to nearest with ties to even; a NaN
/// stays a (quiet) NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bfloat16.
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` with a denormal flushed to zero (of the same sign), as AMX treats its inputs and
/// results.
fn flush(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// True when this process may run AMX bf16 tiles: the CPU has AMX-TILE and AMX-BF16 and the
/// kernel granted the tile state. Asked once per process.
pub fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    *GRANTED.get_or_init(request)
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn request() -> bool {
    // CPUID leaf 7, sub-leaf 0, EDX: bit 22 AMX-BF16, bit 24 AMX-TILE.
    if std::arch::x86_64::__cpuid(0).eax < 7 {
        return false;
    }
    let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
    if leaf7.edx & (1 << 22) == 0 || leaf7.edx & (1 << 24) == 0 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; failure is reported by its result.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
fn request() -> bool {
    false
}

/// A (K, N) f32 matrix rounded to bf16 and packed into AMX B tiles: for each block of 16
/// columns, its K/32 tiles in order of k, each 16 rows of 16 column pairs; K padded to a
/// multiple of 32 and N to a multiple of 32 with zeros.
#[derive(Clone, Debug, Default)]
pub struct BfPacked {
    k: usize,
    n: usize,
    data: Vec<u16>,
}

impl BfPacked {
    /// `b` (K, N) rounded to bf16 and packed.
    pub fn pack(b: ArrayView2<f32>) -> Self {
        let (k, n) = b.dim();
        let (kp, np) = (k.next_multiple_of(TILE_K), n.next_multiple_of(BLOCK));
        let kt = kp / TILE_K;
        let mut data = vec![0u16; kp * np];
        for j in 0..np / TILE_N {
            for t in 0..kt {
                let tile = &mut data[(j * kt + t) * TILE_LEN..][..TILE_LEN];
                for r in 0..TILE_K / 2 {
                    for c in 0..TILE_N {
                        let col = j * TILE_N + c;
                        for h in 0..2 {
                            let row = t * TILE_K + 2 * r + h;
                            if row < k && col < n {
                                tile[r * 2 * TILE_N + 2 * c + h] = to_bf16(b[[row, col]]);
                            }
                        }
                    }
                }
            }
        }
        BfPacked { k, n, data }
    }

    /// (K, N) of the matrix packed.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// c (M, N) += bf16(a) (M, K) · `b` (K, N) on AMX tiles, f32 accumulation from c's values.
/// Panics when [`available`] is false or the shapes disagree.
pub fn gemm_bf16(a: ArrayView2<f32>, b: &BfPacked, c: &mut ArrayViewMut2<f32>) {
    assert!(
        available(),
        "AMX bf16 is not available on this CPU or kernel"
    );
    let (m, k) = a.dim();
    assert_eq!(
        (k, c.dim().1),
        b.dim(),
        "gemm_bf16: a is {:?}, c {:?}",
        a.dim(),
        c.dim()
    );
    assert_eq!(c.dim().0, m, "gemm_bf16: a has {m} rows, c {}", c.dim().0);
    let n = b.n;
    let (mp, kp, np) = (
        m.next_multiple_of(BLOCK),
        k.next_multiple_of(TILE_K),
        n.next_multiple_of(BLOCK),
    );
    // A in bf16, (Mp, Kp) row-major; C in f32, (Mp, Np) row-major: both zero-padded, so that
    // every tile is whole.
    let mut ab = vec![0u16; mp * kp];
    for (i, row) in a.outer_iter().enumerate() {
        for (d, &x) in ab[i * kp..].iter_mut().zip(row.iter()) {
            *d = to_bf16(x);
        }
    }
    let mut cf = vec![0f32; mp * np];
    for (i, row) in c.outer_iter().enumerate() {
        cf[i * np..i * np + n]
            .iter_mut()
            .zip(row.iter())
            .for_each(|(d, &x)| *d = x);
    }
    let kt = kp / TILE_K;
    // SAFETY: available() holds; every tile read or written lies inside ab, b.data or cf
    // (all padded to whole tiles), with the strides given.
    unsafe {
        configure();
        for i in (0..mp).step_by(BLOCK) {
            for j in (0..np).step_by(BLOCK) {
                let jt = j / TILE_N;
                block_2x2(
                    ab.as_ptr().add(i * kp),
                    kp * 2,
                    b.data.as_ptr().add(jt * kt * TILE_LEN),
                    b.data.as_ptr().add((jt + 1) * kt * TILE_LEN),
                    cf.as_mut_ptr().add(i * np + j),
                    np * 4,
                    kt,
                );
            }
        }
        std::arch::asm!("tilerelease", options(nostack));
    }
    for (i, mut row) in c.outer_iter_mut().enumerate() {
        row.iter_mut()
            .zip(&cf[i * np..i * np + n])
            .for_each(|(d, &x)| *d = x);
    }
}

/// Loads the tile configuration: palette 1, tiles 0–7 all 16 rows × 64 bytes (C in 0–3, A in
/// 4–5, B in 6–7).
///
/// # Safety
/// AMX must be [`available`].
unsafe fn configure() {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette
    for t in 0..8 {
        cfg[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes()); // bytes per row
        cfg[48 + t] = TILE_ROWS as u8; // rows
    }
    std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.as_ptr(), options(nostack, readonly));
}

/// C (32 × 32 block at `c`, row stride `ldc` bytes) += A (32 rows at `a`, row stride `lda`
/// bytes) · B (two column blocks of `kt` packed tiles each, at `b0` and `b1`), k in order.
///
/// # Safety
/// The tile configuration of [`configure`] is loaded; every pointer covers its tiles.
unsafe fn block_2x2(
    a: *const u16,
    lda: usize,
    b0: *const u16,
    b1: *const u16,
    c: *mut f32,
    ldc: usize,
    kt: usize,
) {
    let c_lo = c.byte_add(TILE_ROWS * ldc);
    std::arch::asm!(
        "tileloadd tmm0, [{c0} + {ldc}*1]",
        "tileloadd tmm1, [{c1} + {ldc}*1]",
        "tileloadd tmm2, [{c2} + {ldc}*1]",
        "tileloadd tmm3, [{c3} + {ldc}*1]",
        c0 = in(reg) c,
        c1 = in(reg) c.add(TILE_N),
        c2 = in(reg) c_lo,
        c3 = in(reg) c_lo.add(TILE_N),
        ldc = in(reg) ldc,
        options(nostack, readonly),
    );
    for t in 0..kt {
        let a0 = a.add(t * TILE_K);
        std::arch::asm!(
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a0.byte_add(TILE_ROWS * lda),
            lda = in(reg) lda,
            b0 = in(reg) b0.add(t * TILE_LEN),
            b1 = in(reg) b1.add(t * TILE_LEN),
            ldb = in(reg) 4 * TILE_N,
            options(nostack, readonly),
        );
    }
    std::arch::asm!(
        "tilestored [{c0} + {ldc}*1], tmm0",
        "tilestored [{c1} + {ldc}*1], tmm1",
        "tilestored [{c2} + {ldc}*1], tmm2",
        "tilestored [{c3} + {ldc}*1], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(TILE_N),
        c2 = in(reg) c_lo,
        c3 = in(reg) c_lo.add(TILE_N),
        ldc = in(reg) ldc,
        options(nostack),
    );
}

/// What [`gemm_bf16`] computes, in software: c (M, N) += bf16(a) · bf16(b), each element one
/// chain over k in increasing order (padded to a multiple of 32 with zeros) of exact products
/// added with round-to-nearest-even, denormals flushed.
pub fn gemm_bf16_reference(a: ArrayView2<f32>, b: ArrayView2<f32>, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    assert_eq!(
        (b.dim().0, c.dim()),
        (k, (m, n)),
        "gemm_bf16_reference: shapes"
    );
    let kp = k.next_multiple_of(TILE_K);
    let round = |x: f32| flush(from_bf16(to_bf16(flush(x))));
    for i in 0..m {
        for j in 0..n {
            let mut t = flush(c[[i, j]]);
            for p in 0..kp {
                let (x, y) = if p < k {
                    (round(a[[i, p]]), round(b[[p, j]]))
                } else {
                    (0.0, 0.0)
                };
                t = flush(t + x * y);
            }
            c[[i, j]] = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_bf16_is_to_nearest_even() {
        // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even significand (1).
        assert_eq!(from_bf16(to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to the even one, 1 + 2⁻⁶.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        // Just above halfway rounds up.
        assert_eq!(
            from_bf16(to_bf16(1.0 + 2f32.powi(-8) + 2f32.powi(-20))),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        // The largest finite f32 rounds up to infinity, as in hardware.
        assert_eq!(from_bf16(to_bf16(f32::MAX)), f32::INFINITY);
    }
}
