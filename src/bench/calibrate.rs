//! The machine's calibration: single-thread rates of a 1024³ product in f32 (BLAS sgemm) and
//! in bf16 (charrnn's bf16 kernel), against which a report's efficiencies are read, and the
//! median its figures are taken with.

use std::time::Instant;

use ndarray::Array2;

use crate::linalg::bf16::{self, BfPacked};
use crate::linalg::gemm;

/// The median of `xs` (the mean of the middle two for an even count).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The single-thread sgemm rate of the kernel family OpenBLAS picks for this CPU by itself,
/// measured in a child process (OpenBLAS reads `OPENBLAS_CORETYPE` once, when it loads):
/// `child` is a command that prints one [`super::KernelRate`] as JSON (the binary's hidden
/// `bench --calibrate-only`); it runs without `OPENBLAS_CORETYPE` and without the binary's
/// re-execution guard. None when it fails or prints something else.
pub fn kernel_rate_in(mut child: std::process::Command) -> Option<super::KernelRate> {
    let out = child
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("CHARRNN_REEXEC")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Single-thread sgemm rates at n×n×n in GFLOP/s, `reps` of them after one warm-up.
/// The caller pins BLAS to one thread.
pub fn sgemm_gflops(n: usize, reps: usize) -> Vec<f64> {
    let a = Array2::<f32>::from_elem((n, n), 0.5);
    let b = Array2::<f32>::from_elem((n, n), 0.25);
    let mut c = Array2::<f32>::zeros((n, n));
    let mut product = || gemm(1.0, &a.view(), &b.view(), 0.0, &mut c.view_mut());
    product_gflops(n, reps, &mut product)
}

/// Single-thread rates of the bf16 product ([`bf16::gemm`], on the kernel in use) at n×n×n in
/// GFLOP/s, the right operand packed once (as training packs its weights), `reps` of them
/// after one warm-up; the bf16 cases' calibration.
pub fn bf16_gflops(n: usize, reps: usize) -> Vec<f64> {
    let a = Array2::<f32>::from_elem((n, n), 0.5);
    let b = BfPacked::new(&Array2::<f32>::from_elem((n, n), 0.25).view());
    let mut c = Array2::<f32>::zeros((n, n));
    let mut product = || bf16::gemm(&a.view(), &b, false, &mut c.view_mut());
    product_gflops(n, reps, &mut product)
}

fn product_gflops(n: usize, reps: usize, product: &mut dyn FnMut()) -> Vec<f64> {
    product();
    (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            product();
            2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect()
}
