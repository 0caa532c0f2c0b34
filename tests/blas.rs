//! Proves the fast path reaches BLAS: this test binary interposes `cblas_sgemm` (the symbol
//! ndarray calls), counts the calls and their shapes, and forwards them to OpenBLAS. If a
//! layout or size silently sent a gemm to ndarray's fallback kernel, the counts would drop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use charrnn::data::{Corpus, SymbolKind};
use charrnn::train::{Stop, TrainConfig, Trainer};

static CALLS: AtomicUsize = AtomicUsize::new(0);
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

fn gemms_per_step(hidden: usize, seq_len: usize, batch: usize) -> (usize, Vec<(i32, i32, i32)>) {
    let text = "abcdefghij klmnopqrstuvwxyz.\n".repeat(200);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "test").unwrap();
    let config = TrainConfig {
        hidden,
        seq_len,
        batch,
        stop: Stop::Steps(1),
        ..Default::default()
    };
    let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
    let before = CALLS.load(Ordering::SeqCst);
    SHAPES.lock().unwrap().clear();
    trainer.step(&corpus.ids).unwrap();
    (
        CALLS.load(Ordering::SeqCst) - before,
        SHAPES.lock().unwrap().clone(),
    )
}

#[test]
fn every_gemm_of_a_training_step_reaches_sgemm() {
    for (h, t, b) in [(75, 20, 1), (32, 10, 4), (64, 16, 8)] {
        let (calls, shapes) = gemms_per_step(h, t, b);
        // Forward: T recurrent + 1 logits. Backward: dW_hy, dHs, T−1 recurrent, dW_hh.
        let expected = t + 1 + 2 + (t - 1) + 1;
        assert_eq!(
            calls, expected,
            "H={h} T={t} B={b}: shapes reaching sgemm {shapes:?}"
        );
    }
}
