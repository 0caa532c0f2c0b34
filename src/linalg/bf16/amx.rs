//! The bf16 product on Intel AMX tiles: [`super::BfKernel::Amx`].
//!
//! AMX multiplies tiles held in eight tile registers of up to 16 rows × 64 bytes.
//! `tdpbf16ps` adds to a 16×16 f32 tile C the product of a 16×32 bf16 tile A (row-major) and
//! a 32×16 bf16 tile B stored as 16 rows of 16 column pairs: one tile of k in one column
//! block of [`BfPacked`]. Every product is exact (a bf16 product fits in f32's significand).
//! Intel's pseudocode adds them one at a time with round-to-nearest-even
//! ([`super::PairOrder::Sequential`]). The hardware does not: on a Sapphire-Rapids-class Xeon
//! (CPU model 207) an eighth to a quarter of the elements of a (16, 32)·(32, 16) product differ
//! from that chain in the last bits, and from every other order tried (pairs first, odd
//! element first, one rounding per pair or per tile), so `tests/bf16.rs` holds the kernel to
//! the reference within f32 rounding of its K additions, not bit for bit. The kernel is
//! deterministic: the same inputs give the same bits.
//!
//! Linux hands out AMX state only on request: [`available`] checks CPUID and asks the kernel
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`) once per process; without it the
//! first tile instruction would raise SIGILL.

use std::sync::OnceLock;

use ndarray::ArrayViewMut2;

use super::{BfPacked, Rows, COLS};

/// Rows of every tile (and of A and C blocks).
const TILE_ROWS: usize = 16;
/// bf16 values of k in one A tile row (64 bytes).
const TILE_K: usize = 32;
/// bf16 values in one packed B tile.
const TILE_LEN: usize = TILE_K * COLS;
/// Rows and columns of C computed together: 2 × 2 tiles.
const BLOCK: usize = 2 * TILE_ROWS;

thread_local! {
    /// The direction of this thread's next pass over B's column blocks. Passes alternate (a
    /// snake), so that each starts on the blocks the one before ended on, which are still in
    /// the cache: a B of 2 MiB (the 2 × 512 LSTM's packed W_hh, read once per step) does not
    /// fit in L2 beside the rest of a step, and read in one direction every time it would
    /// all come from L3. The order of the blocks does not change a bit of C.
    static REVERSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
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

/// c (M, N) = A · `b` (+ c when `accumulate`) on AMX tiles; `a` is A in bf16 as
/// [`super::BfRows`] holds it, with Kp `b`'s padded K. Blocks of 32 × 32 inside c are
/// computed in place when c's rows are contiguous; the blocks at its edges (and every block of
/// a c with other strides) go through a zero-padded copy.
///
/// # Safety
/// [`available`] holds; `a` is as described.
pub(super) unsafe fn gemm(a: &Rows, b: &BfPacked, accumulate: bool, c: &mut ArrayViewMut2<f32>) {
    let (m, n) = (a.m, b.n);
    let kt = a.kp / TILE_K;
    let (rs, cs) = (c.strides()[0], c.strides()[1]);
    let direct = cs == 1 && rs >= 0;
    let mut edge = [0f32; BLOCK * BLOCK];
    configure();
    let blocks = n.div_ceil(BLOCK);
    let mut reverse = REVERSE.get();
    for i in (0..m).step_by(BLOCK) {
        let pa = a.data.as_ptr().add(i * a.ld);
        for jb in 0..blocks {
            let j = BLOCK * if reverse { blocks - 1 - jb } else { jb };
            let jt = j / COLS;
            let (b0, b1) = (
                b.data.as_ptr().cast::<u16>().add(jt * kt * TILE_LEN),
                b.data.as_ptr().cast::<u16>().add((jt + 1) * kt * TILE_LEN),
            );
            if direct && i + BLOCK <= m && j + BLOCK <= n {
                let pc = c.as_mut_ptr().offset(i as isize * rs + j as isize);
                block_2x2(pa, a.ld * 2, b0, b1, pc, rs as usize * 4, kt, accumulate);
            } else {
                let (rows, cols) = ((m - i).min(BLOCK), (n - j).min(BLOCK));
                edge.fill(0.0);
                if accumulate {
                    for r in 0..rows {
                        for q in 0..cols {
                            edge[r * BLOCK + q] = c[[i + r, j + q]];
                        }
                    }
                }
                block_2x2(pa, a.ld * 2, b0, b1, edge.as_mut_ptr(), BLOCK * 4, kt, true);
                for r in 0..rows {
                    for q in 0..cols {
                        c[[i + r, j + q]] = edge[r * BLOCK + q];
                    }
                }
            }
        }
        reverse = !reverse;
    }
    REVERSE.set(reverse);
    std::arch::asm!("tilerelease", options(nostack));
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

/// C (32 × 32 block at `c`, row stride `ldc` bytes) = A (32 rows at `a`, row stride `lda`
/// bytes) · B (two column blocks of `kt` packed tiles each, at `b0` and `b1`), plus C's
/// values when `load`; k in order.
///
/// # Safety
/// The tile configuration of [`configure`] is loaded; every pointer covers its tiles.
#[allow(clippy::too_many_arguments)]
unsafe fn block_2x2(
    a: *const u16,
    lda: usize,
    b0: *const u16,
    b1: *const u16,
    c: *mut f32,
    ldc: usize,
    kt: usize,
    load: bool,
) {
    let c_lo = c.byte_add(TILE_ROWS * ldc);
    if !load {
        std::arch::asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            options(nostack, nomem)
        );
    } else {
        std::arch::asm!(
            "tileloadd tmm0, [{c0} + {ldc}*1]",
            "tileloadd tmm1, [{c1} + {ldc}*1]",
            "tileloadd tmm2, [{c2} + {ldc}*1]",
            "tileloadd tmm3, [{c3} + {ldc}*1]",
            c0 = in(reg) c,
            c1 = in(reg) c.add(COLS),
            c2 = in(reg) c_lo,
            c3 = in(reg) c_lo.add(COLS),
            ldc = in(reg) ldc,
            options(nostack, readonly),
        );
    }
    for t in 0..kt {
        let a0 = a.add(t * TILE_K);
        std::arch::asm!(
            "tileloadd tmm4, [{a0} + {lda}*1]",
            "tileloadd tmm6, [{b0} + {ldb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b1} + {ldb}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a1} + {lda}*1]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0,
            a1 = in(reg) a0.byte_add(TILE_ROWS * lda),
            lda = in(reg) lda,
            b0 = in(reg) b0.add(t * TILE_LEN),
            b1 = in(reg) b1.add(t * TILE_LEN),
            ldb = in(reg) 4 * COLS,
            options(nostack, readonly),
        );
    }
    std::arch::asm!(
        "tilestored [{c0} + {ldc}*1], tmm0",
        "tilestored [{c1} + {ldc}*1], tmm1",
        "tilestored [{c2} + {ldc}*1], tmm2",
        "tilestored [{c3} + {ldc}*1], tmm3",
        c0 = in(reg) c,
        c1 = in(reg) c.add(COLS),
        c2 = in(reg) c_lo,
        c3 = in(reg) c_lo.add(COLS),
        ldc = in(reg) ldc,
        options(nostack),
    );
}
