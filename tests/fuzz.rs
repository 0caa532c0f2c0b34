//! Seeded mutation fuzzing of every loader that reads user files: model files, corpora, and
//! prepared data directories. Each input must give `Ok` or a clear `Err`: no panic, no abort
//! (an abort kills this test binary, which fails the run), no hang.
//!
//! `cargo test --release --test fuzz` runs a short pass (CHARRNN_FUZZ_INPUTS, default 1,500
//! inputs per loader, seconds); the long run reported in docs/reliability.md sets it to 200,000:
//!
//! ```sh
//! CHARRNN_FUZZ_INPUTS=200000 cargo test --release --test fuzz -- --nocapture
//! ```
//!
//! A failure prints the loader, the input's index and the seed, and leaves the input in
//! `target/fuzz-failure.*` to reproduce it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use charrnn::checkpoint;
use charrnn::data::{tokens, Corpus, SymbolKind};
use charrnn::sample::{sample, SampleOptions};
use charrnn::session::{Session, Silent, Source, TrainData};
use charrnn::train::{Stop, Trainer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod common;

fn inputs() -> usize {
    std::env::var("CHARRNN_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500)
}

/// Runs `check` on `n` mutated inputs; a panic fails the test naming the input, after
/// saving the bytes that caused it.
fn fuzz(
    loader: &str,
    n: usize,
    mut make: impl FnMut(&mut ChaCha8Rng) -> Vec<u8>,
    check: impl Fn(&[u8]) -> bool,
) {
    let seed = 0x00F0_22ED;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let mut accepted = 0usize;
    for i in 0..n {
        let input = make(&mut rng);
        match catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(cause) => {
                let _ = std::panic::take_hook();
                let dump = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                    .join(format!("fuzz-failure.{loader}"));
                std::fs::write(&dump, &input).unwrap();
                let msg = cause
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| cause.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "{loader}: input {i} (seed {seed:#x}) panicked: {msg}; saved as {}",
                    dump.display()
                );
            }
        }
    }
    let _ = std::panic::take_hook();
    eprintln!(
        "fuzz {loader}: {n} inputs in {:.1} s, none panicked; {accepted} loaded, {} refused with an error",
        start.elapsed().as_secs_f64(),
        n - accepted
    );
}

/// One random mutation of `base`: bit flips, a truncation, an overwrite with an extreme
/// value, an insertion or a deletion.
fn mutate(base: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..rng.random_range(1..4) {
        if b.is_empty() {
            b.push(rng.random());
        }
        let at = rng.random_range(0..b.len());
        match rng.random_range(0..6) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b.truncate(at),
            2 => {
                let v: [u8; 8] = match rng.random_range(0..4) {
                    0 => u64::MAX.to_le_bytes(),
                    1 => 0u64.to_le_bytes(),
                    2 => (1u64 << 40).to_le_bytes(),
                    _ => rng.random::<u64>().to_le_bytes(),
                };
                let end = (at + 8).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => {
                let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
                b.splice(at..at, extra);
            }
            4 => {
                let end = (at + rng.random_range(1..16)).min(b.len());
                b.drain(at..end);
            }
            _ => b[at] = rng.random(),
        }
    }
    b
}

/// Replaces one number in `text` (JSON) by an extreme or random value.
fn mutate_number(text: &str, rng: &mut ChaCha8Rng) -> String {
    let starts: Vec<usize> = text
        .char_indices()
        .filter(|&(i, c)| {
            c.is_ascii_digit() && (i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
        })
        .map(|(i, _)| i)
        .collect();
    if starts.is_empty() {
        return text.to_string();
    }
    let at = starts[rng.random_range(0..starts.len())];
    let end = at
        + text[at..]
            .find(|c: char| !c.is_ascii_digit() && c != '.' && c != 'e' && c != '-')
            .unwrap_or(text.len() - at);
    let v = [
        "0",
        "1",
        "-1",
        "4294967295",
        "18446744073709551615",
        "1e308",
        "1099511627776",
        "2147483648",
        "\"x\"",
        "null",
        "3.5",
    ];
    let new = if rng.random_bool(0.8) {
        v[rng.random_range(0..v.len())].to_string()
    } else {
        rng.random_range(0..100_000u64).to_string()
    };
    format!("{}{}{}", &text[..at], new, &text[end..])
}

/// A small trained model file of `cell` and `layers`, as bytes.
fn model_file(dir: &Path, cell: charrnn::model::CellKind, layers: usize) -> Vec<u8> {
    let mut c = common::session_config(3);
    c.model.cell = cell;
    c.model.layers = layers;
    c.model.hidden = 8;
    c.run.stop = Stop::Steps(3);
    let text = charrnn::synth::MarkovSource::builtin().generate(3_000, 1);
    let source = Source::Text {
        name: "t".into(),
        bytes: text.into_bytes(),
    };
    let data = TrainData::load(&source, &c).unwrap();
    let run = dir.join(format!("run-{cell}-{layers}"));
    Session::start(c, data, &run, true)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    std::fs::read(run.join("model.safetensors")).unwrap()
}

/// The safetensors header (JSON) of a model file, edited, with its length field fixed up so
/// the edit reaches the loader's checks instead of the framing's.
fn edit_header(file: &[u8], rng: &mut ChaCha8Rng) -> Vec<u8> {
    let n = u64::from_le_bytes(file[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8_lossy(&file[8..8 + n]).into_owned();
    // Metadata values are JSON strings holding JSON: unescape-free numeric edits work on both.
    let edited = mutate_number(&header, rng);
    let mut out = (edited.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(edited.as_bytes());
    out.extend_from_slice(&file[8 + n..]);
    out
}

#[test]
fn model_files() {
    let d = tempfile::tempdir().unwrap();
    use charrnn::model::CellKind;
    let bases: Vec<Vec<u8>> = vec![
        model_file(d.path(), CellKind::Rnn, 1),
        model_file(d.path(), CellKind::Gru, 2),
        model_file(d.path(), CellKind::Lstm, 2),
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/v1/model.safetensors"
        ))
        .unwrap(),
    ];
    let path = d.path().join("fuzzed.safetensors");
    let corpus = Corpus::from_bytes(
        charrnn::synth::MarkovSource::builtin()
            .generate(3_000, 1)
            .as_bytes(),
        SymbolKind::Chars,
        None,
        "t",
    )
    .unwrap();
    fuzz(
        "model-file",
        inputs(),
        |rng| {
            let base = &bases[rng.random_range(0..bases.len())];
            if rng.random_bool(0.5) {
                edit_header(base, rng)
            } else {
                mutate(base, rng)
            }
        },
        |bytes| {
            std::fs::write(&path, bytes).unwrap();
            let loaded = checkpoint::load(&path);
            let accepted = loaded.is_ok();
            if let Ok(ck) = loaded {
                let opts = SampleOptions {
                    len: 5,
                    ..SampleOptions::default()
                };
                let _ = ck.model.health(&ck.params);
                let _ = sample(&ck.model, &ck.params, &ck.vocab, &opts, |_| Ok(()));
                if let Ok(mut t) = ck.into_trainer(&corpus) {
                    let _: Option<Trainer<f32>> = t.step(&corpus.ids).ok().map(|_| t);
                }
            }
            accepted
        },
    );
}

#[test]
fn corpora() {
    let text = charrnn::synth::MarkovSource::builtin().generate(400, 2);
    let base = format!("{text}é€😀\u{10ffff}");
    let vocab = Corpus::from_bytes(base.as_bytes(), SymbolKind::Chars, None, "b")
        .unwrap()
        .vocab;
    fuzz(
        "corpus",
        inputs(),
        |rng| {
            let mut b = mutate(base.as_bytes(), rng);
            if rng.random_bool(0.2) {
                // Many distinct code points: a huge vocabulary.
                for _ in 0..rng.random_range(1..2000) {
                    let c = char::from_u32(rng.random_range(0..0x110000)).unwrap_or('x');
                    b.extend_from_slice(c.to_string().as_bytes());
                }
            }
            b
        },
        |bytes| {
            for kind in [SymbolKind::Chars, SymbolKind::Bytes] {
                let _ = Corpus::from_bytes(bytes, kind, None, "fuzz");
                let _ = Corpus::from_bytes(bytes, kind, Some(17), "fuzz");
            }
            let _ = vocab.keep_known(&String::from_utf8_lossy(bytes));
            Corpus::with_vocab(&vocab, bytes, "fuzz", "fuzz").is_ok()
        },
    );
}

#[test]
fn prepared_data() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    let text = charrnn::synth::MarkovSource::builtin().generate(2_000, 3) + "é€";
    let src = d.path().join("t.txt");
    std::fs::write(&src, &text).unwrap();
    let opts = charrnn::data::prepare::Options {
        inputs: vec![src],
        include: vec![],
        exclude: vec![],
        separator: None,
        kind: SymbolKind::Chars,
        min_count: 1,
        max_vocab: None,
        out: good.clone(),
        force: false,
    };
    charrnn::data::prepare::prepare(&opts, &mut |_, _| {}).unwrap();
    let token_bytes = std::fs::read(good.join("tokens.bin")).unwrap();
    let vocab_text = std::fs::read_to_string(good.join("vocab.json")).unwrap();
    let dir = d.path().join("fuzzed");
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = common::session_config(1);
    c.model.hidden = 8;
    c.data.val_frac = 0.0;
    // The input is the token file and the vocabulary, separated by a NUL.
    fuzz(
        "prepared-data",
        inputs(),
        |rng| {
            let (t, v) = if rng.random_bool(0.6) {
                (mutate(&token_bytes, rng), vocab_text.clone())
            } else {
                (token_bytes.clone(), mutate_number(&vocab_text, rng))
            };
            let mut input = t;
            input.push(0);
            input.extend_from_slice(v.as_bytes());
            input
        },
        |input| {
            let cut = input.iter().rposition(|&b| b == 0).unwrap();
            std::fs::write(dir.join("tokens.bin"), &input[..cut]).unwrap();
            std::fs::write(dir.join("vocab.json"), &input[cut + 1..]).unwrap();
            let Ok(corpus) = tokens::open(&dir) else {
                return false;
            };
            let mut all = vec![0u32; corpus.ids.len().min(1 << 16)];
            let read = corpus.ids.read(0, &mut all).is_ok();
            let _ = corpus.ids.fingerprint();
            if let Ok(mut t) = Trainer::<f32>::new(c.clone(), &corpus) {
                let _ = t.step(&corpus.ids);
            }
            read
        },
    );
}
