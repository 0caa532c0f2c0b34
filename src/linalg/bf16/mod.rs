//! bfloat16 products with f32 accumulation: what `--precision bf16` runs every matrix product
//! on (issue 21). C (M, N) = bf16(A) (M, K) · bf16(B) (K, N) [+ C], each product of two bf16
//! values exact in f32, the sums in f32.
//!
//! B is packed once ([`BfPacked`]) into the layout both kernels read: for every block of 16
//! columns, K/2 rows of 16 column pairs (row r holds B[2r, n] and B[2r+1, n] side by side:
//! the "VNNI" layout). A is rounded to bf16 row by row on each call, into a per-thread
//! scratch. Two kernels, chosen at run time ([`kernel`]):
//!
//! - [`BfKernel::Amx`]: Intel AMX tiles ([`amx`]), `tdpbf16ps` on 16×32 by 32×16 tiles;
//!   Sapphire Rapids and later.
//! - [`BfKernel::Avx512Bf16`]: `vdpbf16ps` on 512-bit vectors ([`dpbf16`]), two products a
//!   lane per instruction; AMD Zen 4/5, Intel Cooper Lake and later.
//!
//! Rounding: operands round to nearest even ([`to_bf16`]); denormal inputs and results are
//! flushed to zero, as both instructions do. `vdpbf16ps` is held to its documented order bit
//! for bit; AMX's internal order is not documented and is held to a bound (`tests/bf16.rs`).
//! Each kernel is deterministic, and for a given kernel the bits of C depend only on A, B and
//! C: results differ across kernels in the last bits only.

#[cfg(target_arch = "x86_64")]
pub mod amx;
mod convert;
#[cfg(target_arch = "x86_64")]
pub mod dpbf16;

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};

use ndarray::{ArrayView2, ArrayViewMut2};
use serde::{Deserialize, Serialize};

/// The precision of a run's matrix products. Weights, optimizer state, gate math, softmax and
/// loss stay f32 in both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Every product in f32 (BLAS sgemm and the packed f32 kernel).
    #[default]
    F32,
    /// Every product with bf16 operands and f32 accumulation, on the CPU's bf16 units.
    Bf16,
}

impl Precision {
    /// The name on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }

    /// True for f32 (the default, left out of model files).
    pub fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    /// Refuses bf16 where this CPU has no bf16 kernel, saying what to do instead.
    pub fn check(self) -> Result<(), String> {
        match (self, kernel()) {
            (Precision::Bf16, None) => Err(
                "this CPU has no bf16 units charrnn can use (it needs AVX512-BF16 or AMX-BF16); \
                 use --precision f32"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(format!("unknown precision {s:?}: use f32 or bf16")),
        }
    }
}

/// The bf16 kernels, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BfKernel {
    /// `vdpbf16ps` on 512-bit vectors (AVX512-BF16).
    Avx512Bf16,
    /// `tdpbf16ps` on AMX tiles (AMX-BF16).
    Amx,
}

impl BfKernel {
    fn code(self) -> u8 {
        match self {
            BfKernel::Avx512Bf16 => 1,
            BfKernel::Amx => 2,
        }
    }

    /// The name in reports (`avx512-bf16`, `amx`).
    pub fn name(self) -> &'static str {
        match self {
            BfKernel::Avx512Bf16 => "avx512-bf16",
            BfKernel::Amx => "amx",
        }
    }

    /// Every bf16 kernel this CPU (and, for AMX, the operating system) runs, narrowest first.
    pub fn available() -> Vec<BfKernel> {
        let mut out = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if dpbf16::available() {
                out.push(BfKernel::Avx512Bf16);
            }
            if amx::available() {
                out.push(BfKernel::Amx);
            }
        }
        out
    }
}

impl std::str::FromStr for BfKernel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "avx512-bf16" => Ok(BfKernel::Avx512Bf16),
            "amx" => Ok(BfKernel::Amx),
            _ => Err(format!("unknown bf16 kernel {s:?}: use amx or avx512-bf16")),
        }
    }
}

/// 0: not chosen yet; 255: none available; else [`BfKernel::code`].
static KERNEL: AtomicU8 = AtomicU8::new(0);

/// The bf16 kernel products run on: the widest available, unless [`set_kernel`] chose
/// another; `None` on a CPU without bf16 units.
pub fn kernel() -> Option<BfKernel> {
    match KERNEL.load(Ordering::Relaxed) {
        1 => Some(BfKernel::Avx512Bf16),
        2 => Some(BfKernel::Amx),
        255 => None,
        _ => {
            let best = BfKernel::available().last().copied();
            KERNEL.store(best.map_or(255, BfKernel::code), Ordering::Relaxed);
            best
        }
    }
}

/// Runs bf16 products on `k` from now on (for tests and comparisons); refuses one this CPU
/// does not run.
pub fn set_kernel(k: BfKernel) -> Result<(), String> {
    if !BfKernel::available().contains(&k) {
        return Err(format!(
            "this CPU cannot run the {} bf16 kernel (it runs: {:?})",
            k.name(),
            BfKernel::available()
        ));
    }
    KERNEL.store(k.code(), Ordering::Relaxed);
    Ok(())
}

/// `x` rounded to bfloat16 (the upper 16 bits of an f32), to nearest with ties to even; a NaN
/// stays a (quiet) NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of a bfloat16.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` with a denormal flushed to zero (of the same sign), as the bf16 instructions treat
/// their inputs and results.
fn flush(x: f32) -> f32 {
    if x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// Columns of one packed column block (one 512-bit vector of f32 results).
pub const COLS: usize = 16;
/// K is padded to a multiple of this (one AMX tile of k).
pub const K_ALIGN: usize = 32;
/// N is padded to a multiple of this (two column blocks).
pub const N_ALIGN: usize = 32;
/// Rows of A are padded to a multiple of this (two AMX tiles of rows).
pub const M_ALIGN: usize = 32;

/// A (K, N) f32 matrix rounded to bf16 and packed for [`gemm`] (see the module doc): block j
/// of columns 16j..16j+16 holds Kp/2 rows of 16 pairs, one u32 each (the even k's bf16 in
/// the low half), (k, n) at pair `j·(Kp/2)·16 + (k/2)·16 + n mod 16`; K padded to Kp (a
/// multiple of 32) and N to a multiple of 32, with zeros.
#[derive(Clone, Debug, Default)]
pub struct BfPacked {
    k: usize,
    n: usize,
    data: Vec<u32>,
}

impl BfPacked {
    /// `b` (K, N) rounded and packed.
    pub fn new(b: &ArrayView2<f32>) -> Self {
        let mut p = BfPacked::default();
        p.pack(b);
        p
    }

    /// Packs `b` (K, N), whatever its strides (pass `w.t()` for Wᵀ); reuses the buffer.
    pub fn pack(&mut self, b: &ArrayView2<f32>) {
        let (k, n) = b.dim();
        self.resize(k, n);
        let (kp, all) = (self.kp(), 0..self.kp() / 2);
        let rows = |src| convert::RowsOfB {
            src,
            first: 0,
            k,
            n,
        };
        if let Some(src) = b.as_slice() {
            convert::pack_rows(rows(src), kp, all, &mut self.data);
        } else if let Some(src) = b.t().as_slice() {
            convert::pack_cols(src, k, n, kp, &mut self.data);
        } else {
            let b = b.as_standard_layout();
            let src = b.as_slice().expect("standard layout");
            convert::pack_rows(rows(src), kp, all, &mut self.data);
        }
    }

    /// Starts packing a (K, N) matrix part by part ([`BfPacked::pack_part`]): the packing
    /// holds the zero padding past K now, and every row of B once its part is in.
    pub fn start(&mut self, k: usize, n: usize) {
        self.resize(k, n);
        let (kp, block) = (self.kp(), self.kp() / 2 * COLS);
        let padding = convert::RowsOfB {
            src: &[],
            first: 0,
            k,
            n,
        };
        convert::pack_rows(padding, kp, k.div_ceil(2)..kp / 2, &mut self.data);
        debug_assert_eq!(self.data.len() % block, 0);
    }

    /// Packs rows `first..first + R` of the matrix [`BfPacked::start`] began from `part`
    /// (R, N), row-major: the same values [`BfPacked::pack`] puts there. The part must hold
    /// whole pairs of rows (`first` even, and `first + R` even or K).
    pub fn pack_part(&mut self, first: usize, part: &[f32]) {
        let (k, n) = (self.k, self.n);
        let rows = part.len().checked_div(n).unwrap_or(0);
        assert!(
            self.takes_part(first, rows) && rows * n == part.len(),
            "pack_part: rows {first}..{} of a ({k}, {n}) matrix from {} values",
            first + rows,
            part.len()
        );
        let b = convert::RowsOfB {
            src: part,
            first,
            k,
            n,
        };
        let pairs = first / 2..(first + rows).div_ceil(2);
        convert::pack_rows(b, self.kp(), pairs, &mut self.data);
    }

    /// True when rows `first..first + rows` are a part [`BfPacked::pack_part`] takes: whole
    /// pairs of rows inside K.
    pub fn takes_part(&self, first: usize, rows: usize) -> bool {
        let end = first + rows;
        first.is_multiple_of(2) && (end.is_multiple_of(2) || end == self.k) && end <= self.k
    }

    /// Sets the shape to (K, N) and the buffer to its padded size.
    fn resize(&mut self, k: usize, n: usize) {
        self.k = k;
        self.n = n;
        self.data.resize(self.kp() / 2 * self.np(), 0);
    }

    /// (K, N) of the matrix packed.
    pub fn dim(&self) -> (usize, usize) {
        (self.k, self.n)
    }

    /// Kp, K padded to a multiple of [`K_ALIGN`].
    fn kp(&self) -> usize {
        self.k.next_multiple_of(K_ALIGN)
    }

    /// Np, N padded to a multiple of [`N_ALIGN`].
    fn np(&self) -> usize {
        self.n.next_multiple_of(N_ALIGN)
    }
}

/// A rounded to bf16 in row-major order, Mp (a multiple of [`M_ALIGN`]) rows `ld` values
/// apart, zero past K and past M: what the kernels read as A. The rows are Kp values and 64
/// bytes apart, so that the 16 rows of a tile never share one set of the L1 cache (at Kp =
/// 2048, 4 KiB apart, all 16 would).
struct BfRows {
    kp: usize,
    ld: usize,
    data: Vec<u16>,
}

impl BfRows {
    fn fill(&mut self, a: &ArrayView2<f32>, kp: usize) {
        let (m, k) = a.dim();
        self.kp = kp;
        self.ld = kp + 32;
        self.data.resize(m.next_multiple_of(M_ALIGN) * self.ld, 0);
        if let Some(src) = a.as_slice() {
            convert::rows_from_rows(src, k, self.ld, &mut self.data);
        } else if let Some(src) = a.t().as_slice() {
            convert::rows_from_cols(src, m, self.ld, &mut self.data);
        } else {
            let a = a.as_standard_layout();
            let src = a.as_slice().expect("standard layout");
            convert::rows_from_rows(src, k, self.ld, &mut self.data);
        }
    }
}

thread_local! {
    /// Each thread's scratch for A in bf16, reused across calls.
    static ROWS: RefCell<BfRows> = const {
        RefCell::new(BfRows {
            kp: 0,
            ld: 0,
            data: Vec::new(),
        })
    };
}

/// Where the sums of a product start.
#[derive(Clone, Copy, Debug)]
pub enum Start<'a> {
    /// At zero: c is only written (NaNs in it do not matter).
    Zero,
    /// At c's values: c += a·b.
    C,
    /// At the values of this row (N long) in every row of c: c = row + a·b, what filling c's
    /// rows with it and accumulating gives, bit for bit, without writing and reading c twice
    /// (the input projections and logits start at their biases).
    Row(&'a [f32]),
}

/// c (M, N) = bf16(a) (M, K) · `b` (K, N), plus c's values when `accumulate` (else c is
/// only written, so NaNs in it do not matter); f32 sums, on
/// the [`kernel`] this CPU runs. `a` and `c` may have any strides (pass `x.t()` for Xᵀ).
/// Panics when no bf16 kernel is available ([`Precision::check`] refuses such runs first) or
/// the shapes disagree.
pub fn gemm(a: &ArrayView2<f32>, b: &BfPacked, accumulate: bool, c: &mut ArrayViewMut2<f32>) {
    let start = if accumulate { Start::C } else { Start::Zero };
    gemm_from(a, b, start, c)
}

/// [`gemm`] with the sums starting at `start`.
pub fn gemm_from(a: &ArrayView2<f32>, b: &BfPacked, start: Start, c: &mut ArrayViewMut2<f32>) {
    let (m, k) = a.dim();
    assert_eq!(
        (k, c.dim().1),
        b.dim(),
        "bf16 gemm: a is {:?}, c {:?}",
        a.dim(),
        c.dim()
    );
    assert_eq!(c.dim().0, m, "bf16 gemm: a has {m} rows, c {}", c.dim().0);
    if let Start::Row(row) = start {
        assert_eq!(
            row.len(),
            b.n,
            "bf16 gemm: c has {} columns, its start row {}",
            b.n,
            row.len()
        );
    }
    if m == 0 || b.n == 0 {
        return;
    }
    let kernel = kernel().expect("a bf16 kernel (Precision::check refuses runs without one)");
    let start = match start {
        // The tile kernel starts from c: fill it first.
        Start::Row(row) if b.k == 0 || kernel == BfKernel::Amx => {
            crate::linalg::fill_rows(c, row);
            Start::C
        }
        s => s,
    };
    if b.k == 0 {
        if let Start::Zero = start {
            c.fill(0.0);
        }
        return;
    }
    ROWS.with_borrow_mut(|rows| {
        rows.fill(a, b.kp());
        run(kernel, rows, m, b, start, c);
    });
}

#[cfg(target_arch = "x86_64")]
fn run(
    kernel: BfKernel,
    a: &BfRows,
    m: usize,
    b: &BfPacked,
    start: Start,
    c: &mut ArrayViewMut2<f32>,
) {
    let a = Rows {
        data: &a.data,
        kp: a.kp,
        ld: a.ld,
        m,
    };
    // SAFETY: `kernel()` reports only kernels this CPU runs; `a` is padded to whole tiles
    // (Mp × Kp with Kp = b's) and `b` to whole column blocks, as the kernels read them; a
    // start row is N long.
    unsafe {
        match kernel {
            BfKernel::Amx => amx::gemm(&a, b, !matches!(start, Start::Zero), c),
            BfKernel::Avx512Bf16 => dpbf16::gemm(&a, b, start, c),
        }
    }
}

/// A in bf16 as the kernels read it ([`BfRows`]): M rows of Kp values, `ld` apart, padded
/// with zero rows to a multiple of [`M_ALIGN`].
#[cfg(target_arch = "x86_64")]
struct Rows<'a> {
    data: &'a [u16],
    kp: usize,
    ld: usize,
    m: usize,
}

#[cfg(not(target_arch = "x86_64"))]
fn run(kernel: BfKernel, _: &BfRows, _: usize, _: &BfPacked, _: Start, _: &mut ArrayViewMut2<f32>) {
    unreachable!("no {kernel:?} kernel off x86-64: BfKernel::available() is empty there")
}

/// The order in which [`gemm_reference`] adds the products of one k pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairOrder {
    /// k = 0, 1, 2, … one at a time (Intel's AMX pseudocode).
    Sequential,
    /// Per pair, the odd k first, then the even one (Intel's `vdpbf16ps` pseudocode).
    OddFirst,
}

/// What the kernels compute, in software: c (M, N) += bf16(a) · bf16(b), each element one
/// chain over k (padded to a multiple of 32 with zeros) of exact products, each added with
/// round-to-nearest-even in `order`, denormals flushed.
pub fn gemm_reference(
    a: &ArrayView2<f32>,
    b: &ArrayView2<f32>,
    order: PairOrder,
    c: &mut ArrayViewMut2<f32>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    assert_eq!((b.dim().0, c.dim()), (k, (m, n)), "gemm_reference: shapes");
    let kp = k.next_multiple_of(K_ALIGN);
    let round = |x: f32| flush(from_bf16(to_bf16(flush(x))));
    let term = |i: usize, j: usize, p: usize| {
        if p < k {
            round(a[[i, p]]) * round(b[[p, j]])
        } else {
            0.0
        }
    };
    for i in 0..m {
        for j in 0..n {
            let mut t = flush(c[[i, j]]);
            for p in (0..kp).step_by(2) {
                let (first, second) = match order {
                    PairOrder::Sequential => (p, p + 1),
                    PairOrder::OddFirst => (p + 1, p),
                };
                t = flush(t + term(i, j, first));
                t = flush(t + term(i, j, second));
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

    #[test]
    fn packing_puts_every_value_where_the_layout_says() {
        let b = ndarray::Array2::from_shape_fn((37, 21), |(r, c)| (r * 100 + c) as f32);
        for view in [b.view(), b.t().t()] {
            let p = BfPacked::new(&view);
            let kp = p.kp();
            assert_eq!((kp, p.np()), (64, 32));
            for r in 0..kp {
                for c in 0..32 {
                    let pair = p.data[(c / 16) * kp / 2 * 16 + (r / 2) * 16 + c % 16];
                    let got = from_bf16((pair >> (16 * (r % 2))) as u16);
                    let want = if r < 37 && c < 21 {
                        from_bf16(to_bf16(b[[r, c]]))
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "({r}, {c})");
                }
            }
        }
        // The transposed source takes the column-order path and packs the same values.
        let bt = b.t().to_owned();
        assert_eq!(BfPacked::new(&bt.t()).data, BfPacked::new(&b.view()).data);
    }

    #[test]
    fn packing_in_parts_equals_packing_whole() {
        for (k, n, part) in [(37, 21, 4), (64, 40, 32), (6, 5, 2), (33, 70, 10)] {
            let b = ndarray::Array2::from_shape_fn((k, n), |(r, c)| (r * 100 + c) as f32 - 7.5);
            let whole = BfPacked::new(&b.view());
            let mut parts = BfPacked::default();
            // Over a buffer of other values, last part first, as backward stages them.
            parts.pack(&ndarray::Array2::from_elem((k, n), 3.0).view());
            parts.start(k, n);
            for first in (0..k).step_by(part).rev() {
                let rows = b.slice(ndarray::s![first..(first + part).min(k), ..]);
                parts.pack_part(first, rows.as_slice().expect("row-major"));
            }
            assert_eq!(
                (parts.dim(), &parts.data),
                (whole.dim(), &whole.data),
                "{k}, {n}"
            );
        }
    }

    #[test]
    fn precision_names_round_trip_and_bf16_is_checked() {
        for p in [Precision::F32, Precision::Bf16] {
            assert_eq!(p.name().parse::<Precision>(), Ok(p));
        }
        assert!("fp16"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32 or bf16"));
        assert!(Precision::F32.check().is_ok());
        assert_eq!(Precision::Bf16.check().is_ok(), kernel().is_some());
    }
}
