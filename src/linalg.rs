//! The numeric kernels everything else is built from: the [`Float`] trait (f32 for training,
//! f64 for gradient checks), the gemm wrapper that reaches BLAS, the fused and numerically
//! stable softmax + cross-entropy, and OpenBLAS thread control.

use std::ffi::CStr;
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, MulAssign, SubAssign};

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, LinalgScalar, ScalarOperand};
use num_traits::{Float as NumFloat, FromPrimitive, ToPrimitive};

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
}

impl Float for f32 {
    fn c(x: f64) -> Self {
        x as f32
    }
}

impl Float for f64 {
    fn c(x: f64) -> Self {
        x
    }
}

/// C ← α·A·B + β·C through BLAS (`cblas_sgemm` / `cblas_dgemm`).
///
/// Shapes: A (m, k), B (k, n), C (m, n). Pass `a.t()` for Aᵀ: transposed views stay on the BLAS
/// path. ndarray falls back to its own kernel only when all of m, n, k are ≤ 7 or a view is not
/// unit-stride in one dimension; `tests/blas.rs` proves the model's shapes reach sgemm.
#[inline]
pub fn gemm<F: Float>(alpha: F, a: &ArrayView2<F>, b: &ArrayView2<F>, beta: F, c: &mut ArrayViewMut2<F>) {
    general_mat_mul(alpha, a, b, beta, c);
}

/// Fused, numerically stable softmax + cross-entropy + gradient over one row of logits.
///
/// `z`: (V) logits, overwritten with `scale · (softmax(z) − onehot(y))`, the gradient of
/// `scale · (−ln softmax(z)[y])`. Returns `−ln softmax(z)[y]` (unscaled, in nats).
/// Subtracting the row maximum keeps every `exp` in (0, 1], so logits like `[1000, 0]` work.
#[inline]
pub fn softmax_xent_grad<F: Float>(z: &mut [F], y: usize, scale: F) -> F {
    let max = z.iter().copied().fold(F::neg_infinity(), F::max);
    let zy = z[y];
    let mut sum = F::zero();
    for v in z.iter_mut() {
        let e = (*v - max).exp();
        *v = e;
        sum += e;
    }
    let k = scale / sum;
    for v in z.iter_mut() {
        *v *= k;
    }
    z[y] -= scale;
    sum.ln() + max - zy
}

/// Numerically stable `−ln softmax(z)[y]` without touching `z` (forward-only evaluation).
#[inline]
pub fn xent<F: Float>(z: &[F], y: usize) -> F {
    let max = z.iter().copied().fold(F::neg_infinity(), F::max);
    let sum: F = z.iter().map(|&v| (v - max).exp()).sum();
    sum.ln() + max - z[y]
}

/// Numerically stable softmax of `z / temperature` into `p` (f64, for sampling).
///
/// `z`: (V) logits; `p`: (V) probabilities, summing to 1. `temperature` must be > 0.
pub fn softmax_into<F: Float>(z: &[F], temperature: f64, p: &mut [f64]) {
    let max = z.iter().copied().fold(F::neg_infinity(), F::max).to_f64().unwrap_or(0.0);
    let mut sum = 0.0;
    for (pi, &zi) in p.iter_mut().zip(z) {
        let e = ((zi.to_f64().unwrap_or(f64::NAN) - max) / temperature).exp();
        *pi = e;
        sum += e;
    }
    for pi in p.iter_mut() {
        *pi /= sum;
    }
}

extern "C" {
    fn openblas_set_num_threads(n: libc::c_int);
    fn openblas_get_num_threads() -> libc::c_int;
    fn openblas_get_corename() -> *const libc::c_char;
    fn openblas_get_config() -> *const libc::c_char;
}

/// Sets the number of threads OpenBLAS uses inside each gemm.
///
/// charrnn keeps BLAS single-threaded (its parallelism comes from independent streams), and
/// sets this before the first gemm: Debian's OpenBLAS otherwise threads every gemm above
/// 262,144 multiply-adds, which collapses under a busy neighbour.
pub fn set_blas_threads(n: usize) {
    // SAFETY: plain setter of OpenBLAS's global thread count; no pointers involved.
    unsafe { openblas_set_num_threads(n.max(1) as libc::c_int) }
}

/// The number of threads OpenBLAS currently uses inside each gemm.
pub fn blas_threads() -> usize {
    // SAFETY: plain getter of OpenBLAS's global thread count.
    unsafe { openblas_get_num_threads() as usize }
}

fn cstr(p: *const libc::c_char) -> String {
    if p.is_null() {
        return "unknown".into();
    }
    // SAFETY: OpenBLAS returns a pointer to a static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().trim().to_string()
}

/// The CPU kernel family OpenBLAS selected at load time (e.g. `Haswell`, `SkylakeX`, `Zen`).
///
/// `Prescott` on a modern CPU means OpenBLAS did not recognise it and runs generic kernels.
pub fn blas_corename() -> String {
    // SAFETY: see `cstr`.
    cstr(unsafe { openblas_get_corename() })
}

/// OpenBLAS's build configuration string (version, threading model, core).
pub fn blas_config() -> String {
    // SAFETY: see `cstr`.
    cstr(unsafe { openblas_get_config() })
}
