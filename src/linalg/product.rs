//! A workspace's matrix products at its [`Precision`]: f32 through BLAS, or bf16 operands with
//! f32 sums through [`super::bf16`] (the right operand packed into a reused buffer).

use ndarray::{ArrayView2, ArrayViewMut2};

use super::bf16::{BfPacked, Precision};
use super::{fill_rows, gemm, Float};

/// Runs c = a·b (+ c) at one precision, keeping the bf16 packing buffer between calls.
#[derive(Clone, Debug, Default)]
pub struct Products {
    /// The precision of every product.
    pub precision: Precision,
    /// The right operand of the last bf16 product, packed.
    packed: BfPacked,
    /// Rows of the next right operand packed so far by [`Products::stage_rows`] since
    /// [`Products::stage`]; `None` when none is being staged (or a part could not be).
    staged: Option<usize>,
}

impl Products {
    /// Products at `precision`.
    pub fn new(precision: Precision) -> Self {
        Products {
            precision,
            packed: BfPacked::default(),
            staged: None,
        }
    }

    /// Starts staging the right operand b (K, N) of the next [`Products::mul_staged`] in
    /// parts of rows, each packed while it is still in cache (backward stages ∂L/∂W_hh's
    /// right operand a step at a time). f32 products stage nothing.
    pub fn stage(&mut self, k: usize, n: usize) {
        self.staged = None;
        if self.precision == Precision::Bf16 {
            self.packed.start(k, n);
            self.staged = Some(0);
        }
    }

    /// Stages rows `first..` of b from `part` (R, N), row-major. A part that does not hold
    /// whole pairs of rows (an odd `first`) ends the staging: [`Products::mul_staged`] then
    /// packs b whole.
    pub fn stage_rows<F: Float>(&mut self, first: usize, part: &[F]) {
        let Some(done) = self.staged else { return };
        let rows = part.len().checked_div(self.packed.dim().1).unwrap_or(0);
        if self.packed.takes_part(first, rows) {
            F::pack_bf16_part(first, part, &mut self.packed);
            self.staged = Some(done + rows);
        } else {
            self.staged = None;
        }
    }

    /// As [`Products::mul`], where `b` is the operand staged since [`Products::stage`]: in
    /// bf16 its packing is used when every row of it was staged (the same bits as packing it
    /// whole), else `b` is packed here.
    pub fn mul_staged<F: Float>(
        &mut self,
        a: &ArrayView2<F>,
        b: &ArrayView2<F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<F>,
    ) {
        let complete = self.staged == Some(b.nrows()) && self.packed.dim() == b.dim();
        self.staged = None;
        if complete {
            self.mul_same_b(a, b, accumulate, c);
        } else {
            self.mul(a, b, accumulate, c);
        }
    }

    /// c (M, N) = a (M, K) · b (K, N), plus c's values when `accumulate`. Views may have any
    /// strides (pass `x.t()` for Xᵀ).
    pub fn mul<F: Float>(
        &mut self,
        a: &ArrayView2<F>,
        b: &ArrayView2<F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<F>,
    ) {
        if self.precision == Precision::Bf16 {
            F::pack_bf16(b, &mut self.packed);
        }
        self.mul_same_b(a, b, accumulate, c);
    }

    /// As [`Products::mul`], with `b` already packed in `packed` when the caller has it (a
    /// weight of [`crate::model::WeightPacks`]): bf16 products then read that packing and do
    /// not pack `b` again; f32 products ignore it.
    pub fn mul_packed<F: Float>(
        &mut self,
        a: &ArrayView2<F>,
        b: &ArrayView2<F>,
        packed: Option<&BfPacked>,
        accumulate: bool,
        c: &mut ArrayViewMut2<F>,
    ) {
        match (self.precision, packed) {
            (Precision::Bf16, Some(p)) => {
                debug_assert_eq!(p.dim(), b.dim(), "the packing of b");
                F::gemm_bf16(a, p, accumulate, c);
            }
            _ => self.mul(a, b, accumulate, c),
        }
    }

    /// c (M, N) = `row` (in every row of c) + a (M, K) · b (K, N), on `packed` when the caller
    /// has b packed (as [`Products::mul_packed`]): the bits of filling c's rows with `row` and
    /// accumulating, in bf16 without writing and reading c twice.
    pub fn mul_packed_onto_row<F: Float>(
        &mut self,
        a: &ArrayView2<F>,
        b: &ArrayView2<F>,
        packed: Option<&BfPacked>,
        row: &[F],
        c: &mut ArrayViewMut2<F>,
    ) {
        match (self.precision, packed) {
            (Precision::Bf16, Some(p)) => {
                debug_assert_eq!(p.dim(), b.dim(), "the packing of b");
                F::gemm_bf16_onto_row(a, p, row, c);
            }
            (Precision::Bf16, None) => {
                F::pack_bf16(b, &mut self.packed);
                F::gemm_bf16_onto_row(a, &self.packed, row, c);
            }
            (Precision::F32, _) => {
                fill_rows(c, row);
                self.mul_same_b(a, b, true, c);
            }
        }
    }

    /// As [`Products::mul`] for a `b` that is the previous call's `b`, unchanged since: in bf16
    /// its packing is used again (the layers' dW_hh and dW_ih share their right operand).
    pub fn mul_same_b<F: Float>(
        &self,
        a: &ArrayView2<F>,
        b: &ArrayView2<F>,
        accumulate: bool,
        c: &mut ArrayViewMut2<F>,
    ) {
        match self.precision {
            Precision::F32 => {
                let beta = if accumulate { F::one() } else { F::zero() };
                gemm(F::one(), a, b, beta, c);
            }
            Precision::Bf16 => {
                debug_assert_eq!(self.packed.dim(), b.dim(), "the previous product's b");
                F::gemm_bf16(a, &self.packed, accumulate, c);
            }
        }
    }
}
