//! Sampling: the same seed gives the same text, temperature → 0 is argmax, prime texts are
//! checked against the vocabulary, and the softmax survives extreme logits.

use charrnn::data::{Corpus, SymbolKind};
use charrnn::error::Error;
use charrnn::linalg::softmax_into;
use charrnn::sample::{argmax, sample, SampleOptions};
use charrnn::train::{Stop, Trainer};

mod common;

fn trained() -> (Trainer<f32>, Corpus) {
    let text = charrnn::synth::MarkovSource::builtin().generate(20_000, 11);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap();
    let config = common::train_config(32, 16, 8, Stop::Steps(60));
    let mut t = Trainer::<f32>::new(config, &corpus).unwrap();
    while !t.done() {
        t.step(&corpus.ids).unwrap();
    }
    (t, corpus)
}

fn generate(t: &Trainer<f32>, c: &Corpus, opts: &SampleOptions) -> charrnn::Result<String> {
    let mut out = Vec::new();
    sample(&t.model, &t.params, &c.vocab, opts, |b| {
        out.extend_from_slice(b);
        Ok(())
    })?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn same_seed_same_text_and_temperature_zero_is_argmax() {
    let (t, c) = trained();
    let opts = |seed, temperature| SampleOptions {
        len: 300,
        temperature,
        prime: "the ".into(),
        seed,
        ..SampleOptions::default()
    };
    let a = generate(&t, &c, &opts(1, 1.0)).unwrap();
    assert_eq!(
        a,
        generate(&t, &c, &opts(1, 1.0)).unwrap(),
        "same seed, same text"
    );
    assert_ne!(
        a,
        generate(&t, &c, &opts(2, 1.0)).unwrap(),
        "another seed, another text"
    );
    assert!(
        a.starts_with("the ") && a.chars().count() == 304,
        "prime echoed, then 300 symbols"
    );

    let greedy = generate(&t, &c, &opts(1, 0.0)).unwrap();
    assert_eq!(
        greedy,
        generate(&t, &c, &opts(99, 0.0)).unwrap(),
        "argmax ignores the seed"
    );
    // A tiny temperature turns the distribution into a point mass on the argmax.
    assert_eq!(greedy, generate(&t, &c, &opts(5, 1e-4)).unwrap());
}

/// top-k 1 and a tiny top-p both leave only the most likely symbol: argmax, whatever the seed;
/// top-k 2 samples, but never outside the two most likely symbols.
#[test]
fn top_k_and_top_p_truncate_the_distribution() {
    let (t, c) = trained();
    let base = SampleOptions {
        len: 200,
        prime: "the ".into(),
        ..SampleOptions::default()
    };
    let greedy = generate(
        &t,
        &c,
        &SampleOptions {
            temperature: 0.0,
            ..base.clone()
        },
    )
    .unwrap();
    for seed in [1, 2] {
        assert_eq!(
            generate(
                &t,
                &c,
                &SampleOptions {
                    top_k: Some(1),
                    seed,
                    ..base.clone()
                }
            )
            .unwrap(),
            greedy
        );
        assert_eq!(
            generate(
                &t,
                &c,
                &SampleOptions {
                    top_p: Some(1e-9),
                    seed,
                    ..base.clone()
                }
            )
            .unwrap(),
            greedy
        );
    }
    let two = generate(
        &t,
        &c,
        &SampleOptions {
            top_k: Some(2),
            ..base.clone()
        },
    )
    .unwrap();
    assert_ne!(two, greedy, "top-k 2 still samples");

    let mut p = [0.1, 0.4, 0.2, 0.3];
    let mut order = [0; 4];
    charrnn::sample::truncate(&mut p, Some(2), None, &mut order);
    assert_eq!(p, [0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7]);
    let mut p = [0.1, 0.4, 0.2, 0.3];
    charrnn::sample::truncate(&mut p, None, Some(0.65), &mut order);
    assert_eq!(
        p,
        [0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7],
        "0.4 + 0.3 is the smallest set reaching 0.65"
    );
    let bad = SampleOptions {
        top_p: Some(1.5),
        ..base.clone()
    };
    assert!(generate(&t, &c, &bad)
        .unwrap_err()
        .to_string()
        .contains("--top-p"));
}

/// The unknown symbols are named once each, in order of first appearance (a non-ASCII one as
/// itself); known ones are not listed. (tests/cli.rs checks that `sample --prime` exits 1
/// with this message.)
#[test]
fn prime_text_with_unknown_characters_is_an_error_naming_them() {
    let (t, c) = trained();
    let opts = SampleOptions {
        prime: "hello QXQ!\u{e9}".into(),
        ..SampleOptions::default()
    };
    let err = generate(&t, &c, &opts).unwrap_err();
    let msg = err.to_string();
    match err {
        Error::UnknownSymbols { what, symbols } => {
            assert_eq!(what, "prime text");
            assert_eq!(symbols, ["'Q'", "'X'", "'!'", "'\u{e9}'"]);
        }
        other => panic!("expected UnknownSymbols, got {other:?}"),
    }
    assert!(
        msg.contains("prime text contains 4 symbol(s) not in the model's vocabulary"),
        "{msg}"
    );
}

#[test]
fn temperature_and_argmax_on_extreme_logits() {
    let mut p = [0.0; 3];
    softmax_into(&[1000.0f32, 0.0, -1000.0], 1.0, &mut p);
    assert_eq!(p, [1.0, 0.0, 0.0]);
    softmax_into(&[1.0f64, 2.0, 3.0], 1e-3, &mut p);
    assert_eq!(argmax(&p), 2);
    assert!(p[2] > 0.999_999);
    softmax_into(&[1.0f64, 2.0, 3.0], 1e6, &mut p);
    assert!(
        p.iter().all(|&x| (x - 1.0 / 3.0).abs() < 1e-5),
        "high temperature is uniform: {p:?}"
    );
}

/// Generation runs the model's own chunk forward with T = B = 1: fed one symbol at a time, the
/// logits after each symbol equal those of one forward over the whole text as a chunk, for
/// every cell and depth (bit for bit up to the gemm's blocking: 1e-5 relative in f32).
#[test]
fn stepped_logits_equal_the_chunk_forward() {
    use charrnn::model::{CellKind, CharLm, Workspace};
    use charrnn::sample::Stepper;
    let text: Vec<u32> = "the cat sat on the mat and the dog ran off"
        .bytes()
        .map(|b| u32::from(b % 13))
        .collect();
    for cell in CellKind::ALL {
        for layers in [1, 2, 3] {
            let model = CharLm {
                vocab: 13,
                hidden: 10,
                cell,
                layers,
                embed: None,
            };
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(9);
            let p: Vec<f32> = model.init(charrnn::model::Init::Uniform, &mut rng);
            let t = text.len();
            let mut ws = Workspace::<f32>::new(&model, t, 1);
            ws.xs.copy_from_slice(&text);
            model.forward(&p, &model.zero_state(1).view(), &mut ws);
            let mut stepper = Stepper::new(&model);
            for (i, &x) in text.iter().enumerate() {
                stepper.step(&p, x);
                for (a, b) in stepper.logits().iter().zip(ws.z.row(i)) {
                    assert!(
                        (a - b).abs() <= 1e-5 * a.abs().max(1.0),
                        "{layers}×{cell} step {i}: {a} vs {b}"
                    );
                }
            }
        }
    }
}
