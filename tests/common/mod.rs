//! Shared helpers for the integration tests: seeded random models and data.

#![allow(dead_code)] // each test binary uses its own subset of these helpers

pub mod bin;

use charrnn::linalg::Float;
use charrnn::model::{CellKind, CharLm};
use ndarray::Array3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator for test data.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// Parameters uniform in ±`scale`: large enough that every gradient is well away from zero.
pub fn random_params<F: Float>(model: &CharLm, scale: f64, rng: &mut ChaCha8Rng) -> Vec<F> {
    (0..model.num_params())
        .map(|_| F::c(rng.random_range(-scale..scale)))
        .collect()
}

/// (T·B) random ids below `v`.
pub fn random_ids(n: usize, v: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(0..v as u32)).collect()
}

/// An (L, B, S) random carried state in ±0.5 (a state carried from an earlier chunk).
pub fn random_state<F: Float>(model: &CharLm, b: usize, rng: &mut ChaCha8Rng) -> Array3<F> {
    Array3::from_shape_simple_fn((model.layers, b, model.state_width()), || {
        F::c(rng.random_range(-0.5..0.5))
    })
}

/// Every (cell, layers) combination the model supports at L = 1 and 2.
pub fn cells_and_depths() -> Vec<(CellKind, usize)> {
    CellKind::ALL
        .iter()
        .flat_map(|&c| [(c, 1), (c, 2)])
        .collect()
}

/// A model of `cell` with `layers` layers.
pub fn model(cell: CellKind, layers: usize, vocab: usize, hidden: usize) -> CharLm {
    CharLm {
        vocab,
        hidden,
        cell,
        layers,
        embed: None,
    }
}

/// |a − b| / max(|a|, |b|, floor): relative error, with a floor so that gradients that are
/// zero up to rounding compare absolutely.
pub fn rel_err(a: f64, b: f64, floor: f64) -> f64 {
    (a - b).abs() / a.abs().max(b.abs()).max(floor)
}

/// The tinyshakespeare corpus: `data/tinyshakespeare.txt` (what `scripts/get-tinyshakespeare.sh`
/// writes) or `../shared/data/tinyshakespeare.txt`. Tests that call it are ignored by default
/// (not every machine has the corpus); a run that asks for them without it fails, saying how
/// to get it.
pub fn tinyshakespeare() -> Vec<u8> {
    let root = env!("CARGO_MANIFEST_DIR");
    let paths = [
        format!("{root}/data/tinyshakespeare.txt"),
        format!("{root}/../shared/data/tinyshakespeare.txt"),
    ];
    paths
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .unwrap_or_else(|| {
            panic!(
                "this test needs tinyshakespeare at {} or {}: run scripts/get-tinyshakespeare.sh",
                paths[0], paths[1]
            )
        })
}

/// A run of a one-layer vanilla RNN (the default model) of width `hidden` over `batch` streams of
/// `seq_len` symbols, stopping at `stop`; every other setting is the default.
pub fn train_config(
    hidden: usize,
    seq_len: usize,
    batch: usize,
    stop: charrnn::train::Stop,
) -> charrnn::train::TrainConfig {
    use charrnn::config::{DataConfig, ModelConfig, RunConfig};
    charrnn::train::TrainConfig {
        model: ModelConfig {
            hidden,
            ..ModelConfig::default()
        },
        data: DataConfig {
            seq_len,
            batch,
            ..DataConfig::default()
        },
        run: RunConfig {
            stop,
            ..RunConfig::default()
        },
        ..charrnn::train::TrainConfig::default()
    }
}

/// A small session: a 2-layer GRU of width 16 with dropout, B = 8, T = 16, evaluated every 10
/// steps, stopping after `steps`.
pub fn session_config(steps: u64) -> charrnn::train::TrainConfig {
    let mut c = train_config(16, 16, 8, charrnn::train::Stop::Steps(steps));
    c.model.cell = CellKind::Gru;
    c.model.layers = 2;
    c.optim.dropout = 0.1;
    c.run.eval_every = 10;
    c
}

/// The bits of f32 values, for exact comparisons with readable failures.
pub fn f32_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Two saved runs hold the same bits: parameters, optimizer state, carried state, progress.
pub fn assert_same_run(
    a: &charrnn::checkpoint::Checkpoint,
    b: &charrnn::checkpoint::Checkpoint,
    what: &str,
) {
    assert_eq!(
        f32_bits(&a.params),
        f32_bits(&b.params),
        "{what}: parameters"
    );
    assert_eq!(
        f32_bits(&a.moments.0),
        f32_bits(&b.moments.0),
        "{what}: first moments"
    );
    assert_eq!(
        a.moments.1.as_deref().map(f32_bits),
        b.moments.1.as_deref().map(f32_bits),
        "{what}: second moments"
    );
    assert_eq!(a.state, b.state, "{what}: carried state");
    assert_eq!(a.progress, b.progress, "{what}: progress");
}
