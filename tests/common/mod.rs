//! Shared helpers for the integration tests: seeded random models and data.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

use charrnn::linalg::Float;
use charrnn::model::CharRnn;
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator for test data.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Parameters uniform in ±`scale`: large enough that every gradient is well away from zero.
pub fn random_params<F: Float>(model: &CharRnn, scale: f64, rng: &mut ChaCha8Rng) -> Vec<F> {
    (0..model.num_params())
        .map(|_| F::c(rng.random_range(-scale..scale)))
        .collect()
}

/// (T·B) random ids below `v`.
pub fn random_ids(n: usize, v: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(0..v as u32)).collect()
}

/// A (B, H) random hidden state in ±0.5 (a state carried from an earlier chunk).
pub fn random_state<F: Float>(b: usize, h: usize, rng: &mut ChaCha8Rng) -> Array2<F> {
    Array2::from_shape_simple_fn((b, h), || F::c(rng.random_range(-0.5..0.5)))
}

/// |a − b| / max(|a|, |b|, floor): relative error, with a floor so that gradients that are
/// zero up to rounding compare absolutely.
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

/// The tinyshakespeare corpus from ../shared/data, or None with a printed notice.
pub fn tinyshakespeare() -> Option<Vec<u8>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/data/tinyshakespeare.txt"
    );
    match std::fs::read(path) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("SKIPPED: {path} is not readable ({e}); this test needs the shared corpus");
            None
        }
    }
}
