//! Training reaches known targets: the tutorial's run on tinyshakespeare, and the entropy rate
//! of the built-in synthetic source.

mod common;

use charrnn::config::{DataConfig, ModelConfig, OptimConfig, RunConfig};
use charrnn::data::{Corpus, SymbolKind};
use charrnn::synth::MarkovSource;
use charrnn::train::{evaluate, Stop, TrainConfig, Trainer};

/// `--preset seed` on the first 20,000 characters of tinyshakespeare: the smoothed loss falls
/// from ln(V)·20 ≈ 81 to below 46 after 50 epochs (the tutorial's NumPy run ends at 42.1).
#[test]
fn seed_preset_on_tinyshakespeare_matches_the_tutorial() {
    let Some(bytes) = common::tinyshakespeare() else {
        return;
    };
    let config = TrainConfig::seed_preset();
    let corpus = Corpus::from_bytes(
        &bytes,
        SymbolKind::Chars,
        config.data.max_chars,
        "tinyshakespeare",
    )
    .unwrap();
    let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
    let start = trainer.progress.smooth_loss;
    assert!((start - (corpus.vocab.len() as f64).ln() * 20.0).abs() < 1e-9);
    assert!(start > 80.0, "smoothed loss starts at ln(V)·T = {start}");
    while !trainer.done() {
        trainer.step(&corpus.ids).unwrap();
    }
    let p = &trainer.progress;
    println!(
        "seed preset: smoothed loss {start:.2} -> {:.3} after {} steps ({} epochs)",
        p.smooth_loss,
        p.step,
        p.epoch + 1
    );
    assert_eq!(
        p.chars_seen,
        50 * 999 * 20,
        "50 epochs of 999 chunks of 20 characters"
    );
    assert!(
        p.smooth_loss < 46.0,
        "smoothed loss {} after 50 epochs",
        p.smooth_loss
    );
}

/// On text from the built-in Markov source, held-out loss gets within 5% of the source's
/// exact entropy rate (the best any model can do).
#[test]
fn builtin_source_loss_approaches_its_entropy_rate() {
    let source = MarkovSource::builtin();
    let optimum = source.entropy_rate_nats();
    let train_text = source.generate(1_000_000, 1);
    let corpus =
        Corpus::from_bytes(train_text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap();
    let config = TrainConfig {
        model: ModelConfig {
            hidden: 64,
            ..ModelConfig::default()
        },
        data: DataConfig {
            seq_len: 16,
            batch: 32,
            ..DataConfig::default()
        },
        optim: OptimConfig {
            lr: 0.05,
            ..OptimConfig::default()
        },
        run: RunConfig {
            stop: Stop::Epochs(8),
            ..RunConfig::default()
        },
    };
    let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
    while !trainer.done() {
        trainer.step(&corpus.ids).unwrap();
    }
    let held_out = source.generate(100_000, 2);
    let held_out = Corpus::with_vocab(
        &corpus.vocab,
        held_out.as_bytes(),
        "held-out text",
        "synthetic",
    )
    .unwrap();
    let stats = evaluate(&trainer.model, &trainer.params, &held_out.ids, 64, 16).unwrap();
    println!(
        "held-out loss {:.4} nats/char vs entropy rate {optimum:.4} ({:+.2}%)",
        stats.loss,
        100.0 * (stats.loss / optimum - 1.0)
    );
    assert!(
        stats.loss >= optimum * 0.99,
        "below the entropy rate: the evaluation is wrong"
    );
    assert!(
        stats.loss < optimum * 1.05,
        "held-out loss {} vs optimum {optimum}",
        stats.loss
    );
}
