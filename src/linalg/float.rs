//! The element types the model runs in ([`Float`]): f32 for training, f64 for gradient
//! checks, with the math and products each routes to its own kernels.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar, ScalarOperand};
use num_traits::{Float as NumFloat, FromPrimitive, ToPrimitive};

use super::{bf16, fastmath, fill_rows, packed};

/// A floating-point element type the model can run in: `f32` (training) or `f64` (checks).
pub trait Float:
    NumFloat
    + LinalgScalar
    + ScalarOperand
    + FromPrimitive
    + ToPrimitive
    + AddAssign
    + SubAssign
    + MulAssign
    + Sum
    + Default
    + Debug
    + Display
    + Send
    + Sync
    + 'static
{
    /// Converts an `f64` constant (exactly for f64, rounded for f32).
    fn c(x: f64) -> Self;

    /// eˣ as the model computes it: libm's for f64 (gradient checks stay exact), a
    /// branch-free polynomial for f32 that loops vectorise (relative error < 3e−7).
    fn exp_m(self) -> Self;

    /// tanh as the model computes it: libm's for f64, a branch-free polynomial for f32
    /// (absolute error < 3e−7). glibc's `tanhf` took a third of a batch-1 training step.
    fn tanh_m(self) -> Self;

    /// y ← x·W (or y += x·W) for a packed W: the per-step recurrent product, on the widest
    /// kernel this CPU runs for the type. Use [`packed::Packed::mul`].
    fn packed_product(w: &packed::Packed<Self>, x: &[Self], y: &mut [Self], accumulate: bool);

    /// c = bf16(a)·b (+ c when `accumulate`) with f32 sums ([`bf16::gemm`]); f64 goes through
    /// f32 copies.
    fn gemm_bf16(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        accumulate: bool,
        c: &mut ArrayViewMut2<Self>,
    );

    /// c = `row` (in every row of c) + bf16(a)·b with f32 sums ([`bf16::gemm_from`]), the bits
    /// of filling c's rows with `row` and [`Float::gemm_bf16`] accumulating.
    fn gemm_bf16_onto_row(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        row: &[Self],
        c: &mut ArrayViewMut2<Self>,
    );

    /// Packs `b` (K, N) for [`Float::gemm_bf16`] into `into` (f64 is rounded to f32 first).
    fn pack_bf16(b: &ArrayView2<Self>, into: &mut bf16::BfPacked);

    /// Packs rows `first..` of the matrix `into` was started on ([`bf16::BfPacked::start`])
    /// from `part`, row-major (f64 is rounded to f32 first).
    fn pack_bf16_part(first: usize, part: &[Self], into: &mut bf16::BfPacked);

    /// The bytes of a slice of values, in memory order (for sending them to another process).
    fn as_bytes(v: &[Self]) -> &[u8];

    /// The bytes of a slice of values, to receive into.
    fn as_bytes_mut(v: &mut [Self]) -> &mut [u8];
}

/// Implements [`Float::as_bytes`] and [`Float::as_bytes_mut`] for a primitive float type.
macro_rules! float_bytes {
    () => {
        fn as_bytes(v: &[Self]) -> &[u8] {
            // SAFETY: a primitive float has no padding and every byte pattern is a valid u8;
            // the length and lifetime are those of `v`.
            unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
        }

        fn as_bytes_mut(v: &mut [Self]) -> &mut [u8] {
            // SAFETY: as above, and every byte pattern is a valid float, so writing any bytes
            // leaves valid values.
            unsafe {
                std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v))
            }
        }
    };
}

impl Float for f32 {
    fn c(x: f64) -> Self {
        x as f32
    }

    #[inline(always)]
    fn exp_m(self) -> Self {
        fastmath::exp_f32(self)
    }

    #[inline(always)]
    fn tanh_m(self) -> Self {
        fastmath::tanh_f32(self)
    }

    fn packed_product(w: &packed::Packed<Self>, x: &[Self], y: &mut [Self], accumulate: bool) {
        packed::product_f32(w, x, y, accumulate)
    }

    fn gemm_bf16(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        accumulate: bool,
        c: &mut ArrayViewMut2<Self>,
    ) {
        bf16::gemm(a, b, accumulate, c)
    }

    fn gemm_bf16_onto_row(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        row: &[Self],
        c: &mut ArrayViewMut2<Self>,
    ) {
        bf16::gemm_from(a, b, bf16::Start::Row(row), c)
    }

    fn pack_bf16(b: &ArrayView2<Self>, into: &mut bf16::BfPacked) {
        into.pack(b)
    }

    fn pack_bf16_part(first: usize, part: &[Self], into: &mut bf16::BfPacked) {
        into.pack_part(first, part)
    }

    float_bytes!();
}

impl Float for f64 {
    fn c(x: f64) -> Self {
        x
    }

    #[inline(always)]
    fn exp_m(self) -> Self {
        self.exp()
    }

    #[inline(always)]
    fn tanh_m(self) -> Self {
        self.tanh()
    }

    fn packed_product(w: &packed::Packed<Self>, x: &[Self], y: &mut [Self], accumulate: bool) {
        packed::product_portable(w, x, y, accumulate)
    }

    fn gemm_bf16(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        accumulate: bool,
        c: &mut ArrayViewMut2<Self>,
    ) {
        let mut c32 = c.mapv(|x| x as f32);
        bf16::gemm(
            &a.mapv(|x| x as f32).view(),
            b,
            accumulate,
            &mut c32.view_mut(),
        );
        c.zip_mut_with(&c32, |d, &x| *d = f64::from(x));
    }

    fn gemm_bf16_onto_row(
        a: &ArrayView2<Self>,
        b: &bf16::BfPacked,
        row: &[Self],
        c: &mut ArrayViewMut2<Self>,
    ) {
        fill_rows(c, row);
        Self::gemm_bf16(a, b, true, c)
    }

    fn pack_bf16(b: &ArrayView2<Self>, into: &mut bf16::BfPacked) {
        into.pack(&b.mapv(|x| x as f32).view())
    }

    fn pack_bf16_part(first: usize, part: &[Self], into: &mut bf16::BfPacked) {
        let part: Vec<f32> = part.iter().map(|&x| x as f32).collect();
        into.pack_part(first, &part)
    }

    float_bytes!();
}
