//! Model files round-trip exactly: save, load, and the next steps give bit-identical
//! parameters, optimizer state, carried state and position to an uninterrupted run, for every
//! cell and depth; files written by format version 1 still load and sample as they did.

use charrnn::checkpoint;
use charrnn::data::{Corpus, SymbolKind};
use charrnn::model::CellKind;
use charrnn::sample::{sample, SampleOptions};
use charrnn::train::{Stop, TrainConfig, Trainer};

mod common;

fn corpus() -> Corpus {
    // Short enough that 10 steps cross two epoch boundaries (a hidden-state reset each).
    let text = charrnn::synth::MarkovSource::builtin().generate(1_000, 3);
    Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap()
}

fn info(corpus: &Corpus) -> checkpoint::CorpusInfo {
    checkpoint::CorpusInfo {
        source: "synthetic".into(),
        fingerprint: corpus.ids.fingerprint().unwrap(),
    }
}

fn config() -> TrainConfig {
    let mut c = common::train_config(16, 20, 12, Stop::Steps(10));
    c.optim.optimizer = charrnn::optim::Optimizer::adam();
    c.optim.lr = 0.05;
    // Three shards: the carried state is split on load and gathered on save.
    c.run.shards = Some(3);
    c
}

#[test]
fn save_load_continue_is_bit_identical_to_an_uninterrupted_run() {
    round_trip(config());
}

#[test]
fn gated_and_stacked_runs_resume_bit_identically() {
    for (cell, layers) in [
        (CellKind::Gru, 2),
        (CellKind::Lstm, 2),
        (CellKind::Lstm, 3),
        (CellKind::Rnn, 2),
    ] {
        round_trip({
            let mut c = config();
            c.model.cell = cell;
            c.model.layers = layers;
            c.optim.dropout = 0.2;
            c.optim.weight_drop = 0.1;
            c
        });
    }
}

#[test]
fn muon_runs_resume_bit_identically() {
    for (cell, layers) in [(CellKind::Lstm, 2), (CellKind::Rnn, 1)] {
        round_trip({
            let mut c = config();
            c.model.cell = cell;
            c.model.layers = layers;
            c.optim.optimizer = charrnn::optim::Optimizer::muon();
            c.optim.lr = 4e-3;
            c
        });
    }
}

#[test]
fn runs_that_average_their_weights_resume_bit_identically() {
    for (cell, layers) in [(CellKind::Lstm, 2), (CellKind::Rnn, 1)] {
        round_trip({
            let mut c = config();
            c.model.cell = cell;
            c.model.layers = layers;
            c.optim.ema = Some(0.8);
            c
        });
    }
}

/// With `--ema D` the model is the average: it starts as the initial weights, follows
/// average ← D·average + (1 − D)·weights after every step, and is what the file holds under
/// the layout names, with the weights the optimizer moves beside it as `optim.w.<name>`.
#[test]
fn the_average_of_the_weights_follows_its_rule_and_is_saved_as_the_model() {
    let corpus = corpus();
    let mut c = config();
    c.optim.ema = Some(0.75);
    let mut t = Trainer::<f32>::new(c, &corpus).unwrap();
    let w0 = t.params.clone();
    assert_eq!(t.average.as_deref(), Some(&w0[..]));
    t.step(&corpus.ids).unwrap();
    let w1 = t.params.clone();
    t.step(&corpus.ids).unwrap();
    let w2 = t.params.clone();
    let want: Vec<f32> = (0..w0.len())
        .map(|i| {
            let a1 = 0.75 * w0[i] + 0.25 * w1[i];
            0.75 * a1 + 0.25 * w2[i]
        })
        .collect();
    let average = t.average.clone().unwrap();
    assert_eq!(common::f32_bits(&average), common::f32_bits(&want));
    assert_ne!(average, w2, "the average is not the weights");
    assert_eq!(t.model_params(), &average[..]);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &t, &corpus.vocab, &info(&corpus)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> Vec<f32> {
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let spec = t.model.layout().into_iter().last().unwrap();
    assert_eq!(f32s(&spec.name), average[spec.range()]);
    assert_eq!(f32s(&format!("optim.w.{}", spec.name)), w2[spec.range()]);
    let loaded = checkpoint::load(&path).unwrap();
    assert_eq!(loaded.params, average);
    assert_eq!(loaded.weights.as_deref(), Some(&w2[..]));
}

fn round_trip(config: TrainConfig) {
    let config = || config.clone();
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
    assert_eq!(resumed.state(), first.state());
    assert_eq!(resumed.rng, first.rng);
    while !resumed.done() {
        resumed.step(&corpus.ids).unwrap();
    }

    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&resumed.params), bits(&straight.params));
    assert_eq!(straight.average.is_some(), config().optim.ema.is_some());
    assert_eq!(
        resumed.average.as_deref().map(bits),
        straight.average.as_deref().map(bits)
    );
    assert_eq!(bits(&resumed.opt.m), bits(&straight.opt.m));
    assert_eq!(bits(&resumed.opt.v), bits(&straight.opt.v));
    assert_eq!(resumed.state(), straight.state());
    assert_eq!(resumed.progress, straight.progress);
    // The write was atomic: only the model file is in the directory, no temporary left over.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("model.safetensors")]);
}

/// Any safetensors reader sees the weights under their layout names and shapes.
/// A model file is plain safetensors (read here by the `safetensors` crate, not charrnn's
/// loader): every tensor under its name with its shape and values, the metadata strings, a
/// header whose length is a multiple of 8; and the same run saved twice is the same bytes.
#[test]
fn model_files_are_plain_safetensors_with_self_describing_metadata() {
    let corpus = corpus();
    let trainer = Trainer::<f32>::new(config(), &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let again = dir.path().join("again.safetensors");
    checkpoint::save(&again, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
    assert!(bytes == std::fs::read(&again).unwrap(), "the same bytes");
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(header % 8, 0, "the data starts 8-byte aligned");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let values = |name: &str| -> Vec<f32> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    for spec in trainer.model.layout() {
        let want = &trainer.params[spec.range()];
        assert!(values(&spec.name) == want, "{}", spec.name);
        let m = format!("optim.m.{}", spec.name);
        assert!(values(&m) == trainer.opt.m[spec.range()], "{m}");
    }
    assert!(
        values("state") == trainer.state().as_slice().unwrap(),
        "state"
    );
    let v = corpus.vocab.len();
    for (name, shape) in [
        ("layers.0.W_ih", vec![v, 16]),
        ("layers.0.W_hh", vec![16, 16]),
        ("layers.0.b", vec![16]),
        ("W_hy", vec![16, v]),
        ("b_y", vec![v]),
        ("state", vec![1, 12, 16]),
        ("optim.m.layers.0.W_hh", vec![16, 16]),
        ("optim.v.b_y", vec![v]),
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

/// A GRU's file names every layer's tensors, b_hn included, and an LSTM's state holds (h, c).
#[test]
fn gated_files_name_every_layer() {
    let corpus = corpus();
    let dir = tempfile::tempdir().unwrap();
    let v = corpus.vocab.len();
    for (cell, g, s) in [(CellKind::Gru, 3, 16), (CellKind::Lstm, 4, 32)] {
        let config = {
            let mut c = config();
            c.model.cell = cell;
            c.model.layers = 2;
            c
        };
        let trainer = Trainer::<f32>::new(config, &corpus).unwrap();
        let path = dir.path().join(format!("{cell}.safetensors"));
        checkpoint::save(&path, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut want = vec![
            ("layers.0.W_ih", vec![v, g * 16]),
            ("layers.1.W_ih", vec![16, g * 16]),
            ("layers.1.W_hh", vec![16, g * 16]),
            ("layers.1.b", vec![g * 16]),
            ("state", vec![2, 12, s]),
        ];
        if cell == CellKind::Gru {
            want.push(("layers.1.b_hn", vec![16]));
        }
        for (name, shape) in want {
            assert_eq!(
                st.tensor(name).unwrap().shape(),
                shape.as_slice(),
                "{cell} {name}"
            );
        }
        let loaded = checkpoint::load(&path).unwrap();
        assert_eq!((loaded.model.cell, loaded.model.layers), (cell, 2));
        assert_eq!(loaded.params, trainer.params);
        assert_eq!(loaded.state, trainer.state());
    }
}

/// `tests/data/v1/` holds a file written by format version 1 and what that release sampled
/// from it (see its README): the current build loads it as one vanilla layer and samples the
/// same text, byte for byte.
#[test]
fn version_1_files_load_and_sample_as_before() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1");
    let ck = checkpoint::load(&dir.join("model.safetensors")).unwrap();
    assert_eq!(
        (ck.model.cell, ck.model.layers, ck.model.hidden),
        (CellKind::Rnn, 1, 16)
    );
    assert_eq!(ck.state.dim(), (1, 4, 16));
    assert_eq!(ck.progress.step, 30);
    for (file, temperature) in [("sample-seed3.txt", 1.0), ("sample-argmax.txt", 0.0)] {
        let opts = SampleOptions {
            len: 80,
            temperature,
            prime: "the ".into(),
            seed: 3,
            ..SampleOptions::default()
        };
        let mut out = Vec::new();
        sample(&ck.model, &ck.params, &ck.vocab, &opts, |b| {
            out.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        // The release's `charrnn sample` ended its output with a newline.
        out.push(b'\n');
        let want = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want),
            "{file}"
        );
    }
}

/// A version-1 run resumes too: its recorded data (the built-in corpus) is found and checked,
/// and training continues from its saved step and state.
#[test]
fn version_1_runs_resume() {
    use charrnn::session::{Session, Silent};
    let d = tempfile::tempdir().unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1");
    std::fs::copy(
        src.join("model.safetensors"),
        d.path().join("model.safetensors"),
    )
    .unwrap();
    let mut s = Session::resume(d.path(), None, Some(Stop::Steps(40))).unwrap();
    assert_eq!(s.trainer.progress.step, 30);
    let before = s.trainer.params.clone();
    s.run(&mut Silent, &|| None).unwrap();
    assert_eq!(s.trainer.progress.step, 40);
    assert_ne!(s.trainer.params, before);
    let saved = checkpoint::load(&d.path().join("model.safetensors")).unwrap();
    assert_eq!(saved.progress.step, 40);
}

/// A file whose metadata claims an absurd depth is refused before anything is sized from it.
#[test]
fn a_file_claiming_too_many_layers_is_refused() {
    let corpus = corpus();
    let trainer = Trainer::<f32>::new(config(), &corpus).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &trainer, &corpus.vocab, &info(&corpus)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    for key in ["model", "config"] {
        let edited = meta[key].replace("\"layers\":1", "\"layers\":1000000000");
        assert_ne!(edited, meta[key], "{key} names the layers");
        meta.insert(key.to_string(), edited);
    }
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t))
        .collect();
    let forged = safetensors::serialize(tensors, Some(meta)).unwrap();
    std::fs::write(&path, forged).unwrap();
    let err = checkpoint::load(&path).expect_err("refused").to_string();
    assert!(err.contains("--layers") && err.contains("1 to 64"), "{err}");
}

/// A shuffled order zeroes the carried state where its streams jump to new segments: a run
/// handed another state just before a jump takes the step it would have taken, while one
/// handed it inside a segment does not.
#[test]
fn shuffled_streams_start_every_segment_from_a_zero_state() {
    let text = charrnn::synth::MarkovSource::builtin().generate(5_000, 3);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "s").unwrap();
    let mut c = config();
    c.data.stream_order = charrnn::data::StreamOrder::Shuffled { chunks: 3 };
    // The bits after `steps` steps, the state replaced by 0.5 everywhere after `swap` of them.
    let run = |swap: u64, steps: u64| {
        let mut t = Trainer::<f32>::new(c.clone(), &corpus).unwrap();
        for _ in 0..swap {
            t.step(&corpus.ids).unwrap();
        }
        let state = t.state().mapv(|_| 0.5);
        let opt = (t.opt.m.clone(), Some(t.opt.v.clone()));
        let mut t = Trainer::from_parts(
            t.config.clone(),
            corpus.ids.len(),
            t.model,
            t.params.clone(),
            None,
            Some(opt),
            Some(state),
            t.progress.clone(),
            t.rng.clone(),
        )
        .unwrap();
        for _ in swap..steps {
            t.step(&corpus.ids).unwrap();
        }
        common::f32_bits(&t.params)
    };
    let straight = run(0, 7);
    assert_eq!(run(3, 7), straight, "swapped before the jump at step 3");
    assert_eq!(run(6, 7), straight, "swapped before the jump at step 6");
    assert_ne!(run(4, 7), straight, "swapped inside a segment");
}
