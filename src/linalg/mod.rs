//! The numeric kernels everything else is built from: the [`Float`] trait (f32 for training,
//! f64 for gradient checks), the gemm wrapper that reaches BLAS, the fused and numerically
//! stable softmax + cross-entropy, and OpenBLAS thread control.

use std::ffi::CStr;

use ndarray::linalg::{general_mat_mul, general_mat_vec_mul};
use ndarray::{ArrayView1, ArrayView2, ArrayViewMut2};

pub mod bf16;
mod dispatch;
mod fastmath;
mod float;
mod kernels;
pub mod packed;
mod product;

pub use bf16::Precision;
pub(crate) use dispatch::multiversion;
pub use dispatch::{isa, kernels_from_env, set_isa, Isa};
pub use float::Float;
pub use kernels::{
    add_rows, gather_rows_plus, scatter_add_rows, softmax_xent_grad, softmax_xent_rows,
    tanh_backward, tanh_into, xent, xent_rows,
};
pub use product::Products;

/// Every row of `c` set to `row`.
pub fn fill_rows<F: Float>(c: &mut ArrayViewMut2<F>, row: &[F]) {
    let row = ArrayView1::from(row);
    c.outer_iter_mut().for_each(|mut r| r.assign(&row));
}

/// C ← α·A·B + β·C through BLAS (`cblas_sgemm` / `cblas_dgemm`; `*gemv` when A has one row).
///
/// Shapes: A (m, k), B (k, n), C (m, n). Pass `a.t()` for Aᵀ: transposed views stay on the BLAS
/// path. ndarray falls back to its own kernel only when all of m, n, k are ≤ 7 or a view is not
/// unit-stride in one dimension; `tests/blas.rs` proves the model's shapes reach BLAS.
///
/// A one-row product (batch 1, the tutorial's setting) is a vector-matrix product: sgemm would
/// pack both operands for a single row, so it goes to gemv as c = Bᵀ·a, 2–3× faster there.
#[inline]
pub fn gemm<F: Float>(
    alpha: F,
    a: &ArrayView2<F>,
    b: &ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    if a.nrows() == 1 && c.nrows() == 1 {
        general_mat_vec_mul(alpha, &b.t(), &a.row(0), beta, &mut c.row_mut(0));
    } else {
        general_mat_mul(alpha, a, b, beta, c);
    }
}

/// Rows `r0..r1` of a row-major matrix with `cols` columns stored in `a`, as a (r1−r0, cols)
/// view with standard strides.
///
/// ndarray's own `slice` gives a length-1 axis stride 0, which BLAS rejects: a one-row slice
/// (B = 1) would silently fall back to ndarray's generic kernel. Views built here never do.
#[inline]
pub fn rows<F>(a: &[F], cols: usize, r0: usize, r1: usize) -> ArrayView2<'_, F> {
    ArrayView2::from_shape((r1 - r0, cols), &a[r0 * cols..r1 * cols])
        .expect("rows within the matrix")
}

/// Mutable version of [`rows`].
#[inline]
pub fn rows_mut<F>(a: &mut [F], cols: usize, r0: usize, r1: usize) -> ArrayViewMut2<'_, F> {
    ArrayViewMut2::from_shape((r1 - r0, cols), &mut a[r0 * cols..r1 * cols])
        .expect("rows within the matrix")
}

/// Numerically stable softmax of `z / temperature` into `p` (f64, for sampling).
///
/// `z`: (V) logits; `p`: (V) probabilities, summing to 1. `temperature` must be > 0.
pub fn softmax_into<F: Float>(z: &[F], temperature: f64, p: &mut [f64]) {
    let max = z
        .iter()
        .copied()
        .fold(F::neg_infinity(), F::max)
        .to_f64()
        .unwrap_or(0.0);
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

/// max |λ| over the eigenvalues of a square matrix (LAPACK's geev through ndarray-linalg, in
/// f64). Above 1 the linear part of the recurrence can amplify the hidden state.
pub fn spectral_radius<F: Float>(w: &ArrayView2<F>) -> Result<f64, String> {
    use ndarray_linalg::EigVals;
    if w.nrows() != w.ncols() {
        return Err(format!(
            "a {}×{} matrix has no eigenvalues",
            w.nrows(),
            w.ncols()
        ));
    }
    let a = w.mapv(|x| x.to_f64().unwrap_or(f64::NAN));
    if a.iter().any(|x| !x.is_finite()) {
        return Err("the matrix holds non-finite values".into());
    }
    let eig = a.eigvals().map_err(|e| e.to_string())?;
    Ok(eig.iter().map(|z| z.norm()).fold(0.0, f64::max))
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
    unsafe { CStr::from_ptr(p) }
        .to_string_lossy()
        .trim()
        .to_string()
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

/// The vector extensions of this CPU that decide which OpenBLAS kernels it can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuFeatures {
    /// AVX2 and FMA (OpenBLAS's `Haswell` kernels).
    pub avx2: bool,
    /// AVX-512 F, BW, DQ and VL (OpenBLAS's `SkylakeX` kernels).
    pub avx512: bool,
}

/// What this CPU supports, detected at run time.
pub fn cpu_features() -> CpuFeatures {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        CpuFeatures {
            avx2: has!("avx2") && has!("fma"),
            avx512: has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    CpuFeatures {
        avx2: false,
        avx512: false,
    }
}

/// True for OpenBLAS core names that use none of AVX2 or AVX-512: what a DYNAMIC_ARCH OpenBLAS
/// falls back to when it does not recognise a CPU (Debian's 0.3.21 picks `Prescott` on CPU
/// model 207, 15 GFLOP/s instead of 85 with the SkylakeX kernels).
pub fn is_generic_core(name: &str) -> bool {
    const GENERIC: [&str; 13] = [
        "prescott",
        "core2",
        "penryn",
        "dunnington",
        "nehalem",
        "atom",
        "katmai",
        "coppermine",
        "northwood",
        "banias",
        "opteron",
        "barcelona",
        "unknown",
    ];
    let name = name.trim().to_ascii_lowercase();
    GENERIC.contains(&name.as_str()) || name.is_empty()
}

/// Environment variables OpenBLAS must see when it loads (before `main`), given the current
/// environment `get`, the core OpenBLAS picked, this CPU, and the BLAS threads wanted.
/// charrnn re-executes itself once with them set; a variable the user set is never touched.
///
/// - `OPENBLAS_NUM_THREADS=<blas_threads>`: setting the count later through
///   [`set_blas_threads`] keeps OpenBLAS's worker threads alive, and they spin in
///   `sched_yield` (9% of a batch-1 run's samples, and a core taken from a neighbour).
/// - `OPENBLAS_CORETYPE=SkylakeX` (AVX-512) or `Haswell` (AVX2) when OpenBLAS fell back to
///   generic kernels on a CPU that has those extensions.
pub fn blas_env_fixes(
    get: impl Fn(&str) -> Option<String>,
    corename: &str,
    cpu: CpuFeatures,
    blas_threads: usize,
) -> Vec<(&'static str, String)> {
    let mut fixes = Vec::new();
    if get("OPENBLAS_NUM_THREADS").is_none() && get("OMP_NUM_THREADS").is_none() {
        fixes.push(("OPENBLAS_NUM_THREADS", blas_threads.max(1).to_string()));
    }
    if get("OPENBLAS_CORETYPE").is_none() && is_generic_core(corename) {
        if cpu.avx512 {
            fixes.push(("OPENBLAS_CORETYPE", "SkylakeX".to_string()));
        } else if cpu.avx2 {
            fixes.push(("OPENBLAS_CORETYPE", "Haswell".to_string()));
        }
    }
    fixes
}

/// The widest vector extension an OpenBLAS core family's kernels use: 3 for AVX-512, 2 for
/// AVX2, 1 for AVX, 0 for anything older (or unknown).
pub fn kernel_width(corename: &str) -> u8 {
    match corename.to_ascii_lowercase().as_str() {
        "skylakex" | "cooperlake" | "sapphirerapids" => 3,
        "haswell" | "zen" | "excavator" | "steamroller" => 2,
        "sandybridge" | "bulldozer" | "piledriver" => 1,
        _ => 0,
    }
}

/// A note for the user when `OPENBLAS_CORETYPE` (read through `get`) holds OpenBLAS on a
/// narrower kernel family (`corename`, the active one) than this CPU can run: which family it
/// is, what the CPU supports, and how to get the wider kernels. None otherwise (including
/// when OpenBLAS chose the family itself).
pub fn kernel_note(
    get: impl Fn(&str) -> Option<String>,
    corename: &str,
    cpu: CpuFeatures,
) -> Option<String> {
    let set = get("OPENBLAS_CORETYPE")?;
    let best = if cpu.avx512 {
        3
    } else if cpu.avx2 {
        2
    } else {
        0
    };
    let active = kernel_width(corename);
    (active < best).then(|| {
        let name = |w: u8| match w {
            3 => "AVX-512",
            2 => "AVX2",
            1 => "AVX",
            _ => "pre-AVX",
        };
        format!(
            "note: OPENBLAS_CORETYPE={set} holds OpenBLAS on its {corename} ({}) kernels, but this CPU \
             runs {} ones: unset OPENBLAS_CORETYPE to let OpenBLAS choose (its gemm is the bulk of \
             f32 training time; bf16 products run on charrnn's own kernels)",
            name(active),
            name(best)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_narrower_kernel_family_set_by_the_environment_is_noted() {
        let avx512 = CpuFeatures {
            avx2: true,
            avx512: true,
        };
        let env = |v: Option<&'static str>| {
            move |k: &str| {
                (k == "OPENBLAS_CORETYPE")
                    .then_some(v)
                    .flatten()
                    .map(String::from)
            }
        };
        let note = kernel_note(env(Some("Haswell")), "Haswell", avx512).unwrap();
        assert!(
            note.contains("Haswell (AVX2)") && note.contains("AVX-512"),
            "{note}"
        );
        assert_eq!(
            kernel_note(env(None), "Haswell", avx512),
            None,
            "OpenBLAS's own choice"
        );
        assert_eq!(kernel_note(env(Some("SkylakeX")), "SkylakeX", avx512), None);
        let avx2 = CpuFeatures {
            avx2: true,
            avx512: false,
        };
        assert_eq!(kernel_note(env(Some("Haswell")), "Haswell", avx2), None);
        assert!(kernel_note(env(Some("Prescott")), "Prescott", avx2).is_some());
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    const AVX2: CpuFeatures = CpuFeatures {
        avx2: true,
        avx512: false,
    };
    const AVX512: CpuFeatures = CpuFeatures {
        avx2: true,
        avx512: true,
    };
    const OLD: CpuFeatures = CpuFeatures {
        avx2: false,
        avx512: false,
    };

    #[test]
    fn blas_threads_are_pinned_only_when_the_user_did_not_choose() {
        let threads = |f: Vec<(&'static str, String)>| {
            f.into_iter().find(|(k, _)| *k == "OPENBLAS_NUM_THREADS")
        };
        assert_eq!(
            threads(blas_env_fixes(env(&[]), "Zen", AVX2, 1)),
            Some(("OPENBLAS_NUM_THREADS", "1".into()))
        );
        assert_eq!(
            threads(blas_env_fixes(env(&[]), "Zen", AVX2, 8)),
            Some(("OPENBLAS_NUM_THREADS", "8".into()))
        );
        assert!(blas_env_fixes(env(&[("OPENBLAS_NUM_THREADS", "4")]), "Zen", AVX2, 1).is_empty());
        assert!(blas_env_fixes(env(&[("OMP_NUM_THREADS", "2")]), "Haswell", AVX2, 1).is_empty());
    }

    #[test]
    fn generic_blas_kernels_on_a_modern_cpu_are_replaced() {
        let core = |name, cpu, vars| {
            blas_env_fixes(env(vars), name, cpu, 1)
                .into_iter()
                .find(|(k, _)| *k == "OPENBLAS_CORETYPE")
                .map(|(_, v)| v)
        };
        // The 16-core machine: AVX-512, and OpenBLAS 0.3.21 says Prescott.
        assert_eq!(core("Prescott", AVX512, &[]), Some("SkylakeX".into()));
        assert_eq!(core("Nehalem", AVX2, &[]), Some("Haswell".into()));
        // Recognised cores, CPUs without the extensions, and the user's own choice stay.
        for name in ["SkylakeX", "Haswell", "Zen", "SapphireRapids", "Cooperlake"] {
            assert_eq!(core(name, AVX512, &[]), None, "{name}");
        }
        assert_eq!(core("Prescott", OLD, &[]), None);
        assert_eq!(
            core("Prescott", AVX512, &[("OPENBLAS_CORETYPE", "Prescott")]),
            None
        );
        assert!(is_generic_core("PRESCOTT ") && !is_generic_core("Zen"));
    }

    #[test]
    fn spectral_radius_of_known_matrices() {
        // diag(0.5, -2) and a rotation by 90° scaled by 0.7 (eigenvalues ±0.7i).
        let d = ndarray::arr2(&[[0.5f64, 0.0], [0.0, -2.0]]);
        assert!((spectral_radius(&d.view()).unwrap() - 2.0).abs() < 1e-12);
        let r = ndarray::arr2(&[[0.0f32, -0.7], [0.7, 0.0]]);
        assert!((spectral_radius(&r.view()).unwrap() - 0.7).abs() < 1e-6);
        assert!(spectral_radius(&ndarray::Array2::<f64>::zeros((2, 3)).view()).is_err());
    }

    /// Logits like [1000, 0] must not overflow: the max is subtracted before exp.
    #[test]
    fn softmax_is_stable_on_extreme_logits() {
        let mut z = [1000.0f32, 0.0];
        let loss = softmax_xent_grad(&mut z, 1, 1.0);
        assert!((loss - 1000.0).abs() < 1e-3, "loss {loss}");
        assert!(
            (z[0] - 1.0).abs() < 1e-6 && (z[1] + 1.0).abs() < 1e-6,
            "grad {z:?}"
        );
        assert!((xent(&[1000.0f64, 0.0], 0)).abs() < 1e-12);
        let mut p = [0.0; 2];
        softmax_into(&[1000.0f32, 0.0], 1.0, &mut p);
        assert_eq!(p, [1.0, 0.0]);
        softmax_into(&[-1000.0f64, -1000.0], 1.0, &mut p);
        assert_eq!(p, [0.5, 0.5]);
    }
}
