//! Model files round-trip exactly: save, load, and the next steps give bit-identical
//! parameters, optimizer state, hidden state and position to an uninterrupted run.

use charrnn::checkpoint;
use charrnn::data::{Corpus, SymbolKind};
use charrnn::train::{Stop, TrainConfig, Trainer};

fn corpus() -> Corpus {
    // Short enough that 10 steps cross two epoch boundaries (a hidden-state reset each).
    let text = charrnn::synth::MarkovSource::builtin().generate(1_000, 3);
    Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap()
}

fn info(corpus: &Corpus) -> checkpoint::CorpusInfo {
    checkpoint::CorpusInfo {
        source: "synthetic".into(),
        fingerprint: corpus.ids.fingerprint(),
    }
}

fn config() -> TrainConfig {
    TrainConfig {
        hidden: 16,
        seq_len: 20,
        batch: 12,
        lr: 0.05,
        stop: Stop::Steps(10),
        // Three shards: the hidden state is split on load and gathered on save.
        shards: Some(3),
        ..TrainConfig::default()
    }
}

#[test]
fn save_load_continue_is_bit_identical_to_an_uninterrupted_run() {
    let corpus = corpus();
    let mut straight = Trainer::<f32>::new(config(), &corpus).unwrap();
    assert_eq!(straight.streams.steps_per_epoch(), 4);
    while !straight.done() {
        straight.step(&corpus.ids).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut first = Trainer::<f32>::new(config(), &corpus).unwrap();
    for _ in 0..6 {
        first.step(&corpus.ids).unwrap();
    }
    checkpoint::save(&path, &first, &corpus.vocab, &info(&corpus)).unwrap();
    let loaded = checkpoint::load(&path).unwrap();
    assert_eq!(loaded.vocab, corpus.vocab);
    assert_eq!(loaded.corpus, Some(info(&corpus)));
    assert_eq!(loaded.config, config());
    let mut resumed = loaded.into_trainer(&corpus).unwrap();
    assert_eq!(
        resumed.params, first.params,
        "parameters survive the round trip bit for bit"
    );
    assert_eq!(resumed.hidden(), first.hidden());
    assert_eq!(resumed.rng, first.rng);
    while !resumed.done() {
        resumed.step(&corpus.ids).unwrap();
    }

    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.params), bits(&straight.params));
    assert_eq!(bits(&resumed.opt.m), bits(&straight.opt.m));
    assert_eq!(resumed.hidden(), straight.hidden());
    assert_eq!(resumed.progress, straight.progress);
    // The write was atomic: only the model file is in the directory, no temporary left over.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
}

/// Any safetensors reader sees the weights under their layout names and shapes.
#[test]
fn model_files_are_plain_safetensors_with_self_describing_metadata() {
    let corpus = corpus();
    let trainer = Trainer::<f32>::new(config(), &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = corpus.vocab.len();
    for (name, shape) in [
        ("W_xh", vec![v, 16]),
        ("W_hh", vec![16, 16]),
        ("b_h", vec![16]),
        ("W_hy", vec![16, v]),
        ("b_y", vec![v]),
        ("state.h", vec![12, 16]),
    ] {
        assert_eq!(st.tensor(name).unwrap().shape(), shape.as_slice(), "{name}");
    }
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["format"], "charrnn");
    assert_eq!(
        meta["format_version"],
        checkpoint::FORMAT_VERSION.to_string()
    );
    for key in ["config", "model", "vocab", "progress", "rng", "corpus"] {
        serde_json::from_str::<serde_json::Value>(&meta[key])
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
}

/// Resuming on a corpus with another vocabulary is refused, naming the new symbols.
#[test]
fn resuming_on_a_different_corpus_is_an_error() {
    let corpus = corpus();
    let trainer = Trainer::<f32>::new(config(), &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
    let other = Corpus::from_bytes(
        "ZZZ ".repeat(200).as_bytes(),
        SymbolKind::Chars,
        None,
        "other",
    )
    .unwrap();
    let err = checkpoint::load(&path)
        .unwrap()
        .into_trainer(&other)
        .err()
        .expect("different vocabulary")
        .to_string();
    assert!(err.contains("'Z'"), "{err}");
}
