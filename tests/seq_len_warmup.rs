//! A sequence-length warm-up (`--seq-len-warmup T0:N`): its steps are those of a run on chunks
//! of T0, the steps after it those of a run on chunks of T that stands where the warm-up
//! left the streams, a resumed run takes the same steps, and a warm-up that cannot run is
//! refused.

mod common;

use charrnn::checkpoint;
use charrnn::config::SeqLenWarmup;
use charrnn::data::{Corpus, StreamOrder, SymbolKind};
use charrnn::model::CellKind;
use charrnn::train::{Stop, TrainConfig, Trainer};

fn corpus() -> Corpus {
    // 12 streams of 249 symbols: 6 chunks of 40 an epoch, 12 of 20.
    let text = charrnn::synth::MarkovSource::builtin().generate(3_000, 3);
    Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap()
}

/// A 2-layer LSTM at T = 40 whose first `steps` steps read chunks of 14, over two shards.
fn config(steps: u64) -> TrainConfig {
    let mut c = common::train_config(16, 40, 12, Stop::Steps(12));
    c.model.cell = CellKind::Lstm;
    c.model.layers = 2;
    c.optim.optimizer = charrnn::optim::Optimizer::adam();
    c.optim.lr = 0.02;
    c.optim.ema = Some(0.9);
    c.run.shards = Some(2);
    c.data.seq_len_warmup = Some(SeqLenWarmup { seq_len: 14, steps });
    c
}

fn run_to(trainer: &mut Trainer<f32>, corpus: &Corpus, step: u64) {
    while trainer.progress.step < step {
        trainer.step(&corpus.ids).unwrap();
    }
}

#[test]
fn the_warmup_steps_are_those_of_a_run_on_the_short_chunks() {
    let corpus = corpus();
    let mut warm = Trainer::<f32>::new(config(5), &corpus).unwrap();
    let mut short = Trainer::<f32>::new(
        {
            let mut c = config(5);
            c.data.seq_len = 14;
            c.data.seq_len_warmup = None;
            c
        },
        &corpus,
    )
    .unwrap();
    for step in 1..=5 {
        warm.step(&corpus.ids).unwrap();
        short.step(&corpus.ids).unwrap();
        assert_eq!(
            common::f32_bits(&warm.params),
            common::f32_bits(&short.params),
            "step {step}"
        );
        assert_eq!(
            warm.state(),
            short.state(),
            "carried state after step {step}"
        );
    }
    assert_eq!(warm.progress.chars_seen, 5 * 14 * 12);
    assert_eq!(warm.progress.last_loss, short.progress.last_loss);
    // The smoothed loss is of a chunk of 40 (it starts at ln(V)·40), a chunk of 14 counted
    // as 40/14 of itself.
    assert!(warm.progress.smooth_loss > 2.5 * short.progress.smooth_loss);
}

/// After the warm-up each stream goes on from the chunk of T that starts at or after the
/// characters it has read: 5 chunks of 14 are 70 characters, so the next chunk of 40 is the
/// third (at 80). The steps from there are those of a run without a warm-up standing there.
#[test]
fn after_the_warmup_the_streams_go_on_at_the_next_whole_chunk() {
    let corpus = corpus();
    let mut warm = Trainer::<f32>::new(config(5), &corpus).unwrap();
    run_to(&mut warm, &corpus, 5);
    let mut progress = warm.progress.clone();
    progress.step_in_epoch = 2;
    let mut plain = Trainer::<f32>::from_parts(
        {
            let mut c = config(5);
            c.data.seq_len_warmup = None;
            c
        },
        corpus.ids.len(),
        warm.model,
        warm.params.clone(),
        warm.average.clone(),
        Some((warm.opt.m.clone(), Some(warm.opt.v.clone()))),
        Some(warm.state()),
        progress,
        warm.rng.clone(),
    )
    .unwrap();
    // Step 6 reads chunk 2, step 7 chunk 3, ..., step 9 chunk 5, step 10 a new epoch's first.
    for step in 6..=12 {
        warm.step(&corpus.ids).unwrap();
        plain.step(&corpus.ids).unwrap();
        assert_eq!(
            common::f32_bits(&warm.params),
            common::f32_bits(&plain.params),
            "step {step}"
        );
        assert_eq!(warm.progress.step_in_epoch, plain.progress.step_in_epoch);
        assert_eq!(warm.progress.epoch, plain.progress.epoch);
    }
    assert_eq!(
        warm.progress.epoch, 1,
        "the first epoch ended after chunk 5"
    );
    assert_eq!(warm.progress.chars_seen, (5 * 14 + 7 * 40) * 12);
}

/// Saved inside the warm-up, at its end, or after it, a run resumes on the steps of the run
/// that was not stopped.
#[test]
fn runs_with_a_warmup_resume_bit_identically() {
    let corpus = corpus();
    let info = checkpoint::CorpusInfo {
        source: "synthetic".into(),
        fingerprint: corpus.ids.fingerprint().unwrap(),
    };
    let mut straight = Trainer::<f32>::new(config(5), &corpus).unwrap();
    run_to(&mut straight, &corpus, 12);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    for stop in [3, 5, 8] {
        let mut first = Trainer::<f32>::new(config(5), &corpus).unwrap();
        run_to(&mut first, &corpus, stop);
        checkpoint::save(&path, &first, &corpus.vocab, &info).unwrap();
        let loaded = checkpoint::load(&path).unwrap();
        assert_eq!(
            loaded.config,
            config(5),
            "the warm-up is saved with the run"
        );
        let mut resumed = loaded.into_trainer(&corpus).unwrap();
        run_to(&mut resumed, &corpus, 12);
        assert_eq!(
            common::f32_bits(&resumed.params),
            common::f32_bits(&straight.params),
            "saved at step {stop}"
        );
        assert_eq!(resumed.state(), straight.state(), "saved at step {stop}");
        assert_eq!(resumed.progress, straight.progress, "saved at step {stop}");
    }
}

/// In a shuffled order the streams go on at the next segment, from a zero state: the carried
/// state at the switch does not reach the steps after it (in the contiguous order it does).
#[test]
fn in_a_shuffled_order_the_streams_go_on_at_the_next_segment() {
    let corpus = corpus();
    // The bits after the first step past the warm-up, the state replaced by 0.5 before it
    // when `poison`.
    let run = |order: StreamOrder, poison: bool| {
        let mut c = config(3);
        c.data.stream_order = order;
        let mut t = Trainer::<f32>::new(c, &corpus).unwrap();
        run_to(&mut t, &corpus, 3);
        if poison {
            let state = t.state().mapv(|_| 0.5);
            t = Trainer::from_parts(
                t.config.clone(),
                corpus.ids.len(),
                t.model,
                t.params.clone(),
                t.average.clone(),
                Some((t.opt.m.clone(), Some(t.opt.v.clone()))),
                Some(state),
                t.progress.clone(),
                t.rng.clone(),
            )
            .unwrap();
        }
        t.step(&corpus.ids).unwrap();
        (common::f32_bits(&t.params), t.progress.step_in_epoch)
    };
    let shuffled = StreamOrder::Shuffled { chunks: 2 };
    let (clean, at) = run(shuffled, false);
    // 3 chunks of 14 (42 characters) round up to chunk 2 of 40, a segment's start.
    assert_eq!(at, 3);
    assert_eq!(
        run(shuffled, true).0,
        clean,
        "the state was zeroed at the switch"
    );
    let contiguous = StreamOrder::Contiguous;
    assert_ne!(
        run(contiguous, true).0,
        run(contiguous, false).0,
        "a contiguous order carries the state on"
    );
}

#[test]
fn steps_for_chars_count_the_warmup_steps_at_their_length() {
    let mut c = config(5);
    // 5 steps of 14·12 = 840 characters, then 480 a step.
    assert_eq!(c.data.steps_for_chars(840), 5);
    assert_eq!(c.data.steps_for_chars(841), 6);
    assert_eq!(c.data.steps_for_chars(840 + 480), 6);
    assert_eq!(c.data.steps_for_chars(840 + 481), 7);
    assert_eq!(c.data.steps_for_chars(1), 1);
    c.data.seq_len_warmup = None;
    assert_eq!(c.data.steps_for_chars(841), 2);
    assert_eq!(c.data.seq_len_at(0), 40);
}

#[test]
fn a_warmup_that_cannot_run_is_refused() {
    for (t0, steps, stop, why) in [
        (40, 5, Stop::Steps(12), "T0 not shorter than T"),
        (0, 5, Stop::Steps(12), "T0 of 0"),
        (14, 0, Stop::Steps(12), "no warm-up steps"),
        (14, 5, Stop::Epochs(2), "an end in epochs"),
    ] {
        let mut c = config(steps);
        c.data.seq_len_warmup = Some(SeqLenWarmup { seq_len: t0, steps });
        c.run.stop = stop;
        let err = c.validate().expect_err(why).to_string();
        assert!(err.contains("--seq-len-warmup"), "{why}: {err}");
    }
    assert!(config(5).validate().is_ok());
}

/// A corpus long enough for the warm-up's chunks but not for the run's T is refused when the
/// run is made, not when the warm-up ends.
#[test]
fn a_corpus_too_short_for_t_is_refused_before_the_warmup() {
    // 12 streams of 32 symbols: chunks of 14 fit, chunks of 40 do not.
    let text = charrnn::synth::MarkovSource::builtin().generate(12 * 32, 3);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap();
    let err = Trainer::<f32>::new(config(5), &corpus)
        .err()
        .expect("a corpus too short for T = 40")
        .to_string();
    assert!(err.contains("too short") && err.contains("41"), "{err}");
    let short = {
        let mut c = config(5);
        c.data.seq_len = 14;
        c.data.seq_len_warmup = None;
        c
    };
    assert!(Trainer::<f32>::new(short, &corpus).is_ok());
}

/// The count of steps an epoch holds is that of the run's T, during the warm-up too.
#[test]
fn an_epoch_is_counted_in_chunks_of_t() {
    let corpus = corpus();
    let mut t = Trainer::<f32>::new(config(5), &corpus).unwrap();
    assert_eq!((t.steps_per_epoch(), t.streams.steps_per_epoch()), (6, 17));
    run_to(&mut t, &corpus, 6);
    assert_eq!((t.steps_per_epoch(), t.streams.steps_per_epoch()), (6, 6));
}
