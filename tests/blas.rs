//! Proves the fast path reaches BLAS where it should: this test binary interposes
//! `cblas_sgemm` and `cblas_sgemv` (the symbols ndarray calls), counts the calls and their
//! shapes, and forwards them to OpenBLAS. If a layout or size silently sent a product to
//! ndarray's fallback kernel (as a one-row slice once did: ndarray gives it stride 0, which
//! BLAS rejects), the counts would drop. The per-step recurrent products of a chunk of more
//! than one step run charrnn's packed kernel instead (`linalg::packed`, held equal to the
//! reference loop by tests/agreement.rs), so they must not appear here; a one-step chunk
//! sends them to BLAS.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use charrnn::data::{Corpus, SymbolKind};
use charrnn::train::{Stop, Trainer};

mod common;

static CALLS: AtomicUsize = AtomicUsize::new(0);
static GEMV_CALLS: AtomicUsize = AtomicUsize::new(0);
static SHAPES: Mutex<Vec<(i32, i32, i32)>> = Mutex::new(Vec::new());

type Sgemm = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

/// The interposed symbol: records (m, n, k) and calls the next `cblas_sgemm` (OpenBLAS's).
///
/// # Safety
/// Called by ndarray with valid cblas arguments, which are passed through unchanged.
#[no_mangle]
pub unsafe extern "C" fn cblas_sgemm(
    layout: i32,
    ta: i32,
    tb: i32,
    m: i32,
    n: i32,
    k: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    b: *const f32,
    ldb: i32,
    beta: f32,
    c: *mut f32,
    ldc: i32,
) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    SHAPES.lock().unwrap().push((m, n, k));
    let real = libc::dlsym(libc::RTLD_NEXT, c"cblas_sgemm".as_ptr());
    assert!(
        !real.is_null(),
        "OpenBLAS's cblas_sgemm not found behind the interposer"
    );
    let real: Sgemm = std::mem::transmute(real);
    real(layout, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

type Sgemv = unsafe extern "C" fn(
    i32,
    i32,
    i32,
    i32,
    f32,
    *const f32,
    i32,
    *const f32,
    i32,
    f32,
    *mut f32,
    i32,
);

/// The interposed symbol for matrix-vector products (the batch-1 recurrence).
///
/// # Safety
/// Called by ndarray with valid cblas arguments, which are passed through unchanged.
#[no_mangle]
pub unsafe extern "C" fn cblas_sgemv(
    layout: i32,
    trans: i32,
    m: i32,
    n: i32,
    alpha: f32,
    a: *const f32,
    lda: i32,
    x: *const f32,
    incx: i32,
    beta: f32,
    y: *mut f32,
    incy: i32,
) {
    GEMV_CALLS.fetch_add(1, Ordering::SeqCst);
    let real = libc::dlsym(libc::RTLD_NEXT, c"cblas_sgemv".as_ptr());
    assert!(
        !real.is_null(),
        "OpenBLAS's cblas_sgemv not found behind the interposer"
    );
    let real: Sgemv = std::mem::transmute(real);
    real(layout, trans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}

/// (sgemm calls, sgemv calls, sgemm shapes) of one training step.
fn gemms_per_step(
    hidden: usize,
    seq_len: usize,
    batch: usize,
) -> (usize, usize, Vec<(i32, i32, i32)>) {
    let text = "abcdefghij klmnopqrstuvwxyz.\n".repeat(200);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "test").unwrap();
    let config = common::train_config(hidden, seq_len, batch, Stop::Steps(1));
    let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
    let (before, before_v) = (
        CALLS.load(Ordering::SeqCst),
        GEMV_CALLS.load(Ordering::SeqCst),
    );
    SHAPES.lock().unwrap().clear();
    trainer.step(&corpus.ids).unwrap();
    let gemv = GEMV_CALLS.load(Ordering::SeqCst) - before_v;
    (
        CALLS.load(Ordering::SeqCst) - before,
        gemv,
        SHAPES.lock().unwrap().clone(),
    )
}

#[test]
fn every_product_of_a_training_step_reaches_blas() {
    for (h, t, b) in [(75, 20, 1), (32, 10, 4), (64, 16, 8), (32, 1, 4)] {
        let (gemm, gemv, shapes) = gemms_per_step(h, t, b);
        // Once per chunk: logits, dW_hy, dHs, dW_hh, sgemm (T·B > 1 rows). With T = 1 the
        // one recurrent product forward too (none backward into h_0); with T > 1 they run
        // the packed kernel.
        let want = if t == 1 { (5, 0) } else { (4, 0) };
        assert_eq!(
            (gemm, gemv),
            want,
            "H={h} T={t} B={b}: (sgemm, sgemv) calls; sgemm shapes {shapes:?}"
        );
    }
}
