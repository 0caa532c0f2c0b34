//! Deterministic data parallelism: the shard partition comes from the config, so 1, 2, 3 or 8
//! threads give bit-identical parameters, optimizer state, hidden state and evaluation, with
//! and without dropout or DropConnect (whose masks are keyed by seed, step and shard, not by
//! thread), for every cell.

use charrnn::data::{Corpus, SymbolKind};
use charrnn::linalg::Precision;
use charrnn::model::CellKind;
use charrnn::train::{evaluate, evaluate_in, Evaluation, Stop, Trainer};

mod common;

fn corpus() -> Corpus {
    let text = charrnn::synth::MarkovSource::builtin().generate(40_000, 21);
    Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap()
}

/// H = 192 (or 2 gated layers of 64) gives ≈ 45k parameters: more than two reduction chunks,
/// so the parallel gradient sum and the parallel optimizer update are exercised, not only the
/// parallel shards.
fn run(
    threads: usize,
    corpus: &Corpus,
    (dropout, weight_drop): (f64, f64),
    cell: CellKind,
) -> Trainer<f32> {
    let gated = cell != CellKind::Rnn;
    // 40,000 / 24 streams = 1,666 per stream = 104 steps per epoch: 110 steps cross one.
    let mut config = common::train_config(if gated { 64 } else { 192 }, 16, 24, Stop::Steps(110));
    config.model.cell = cell;
    config.model.layers = if gated { 2 } else { 1 };
    config.optim.dropout = dropout;
    config.optim.weight_drop = weight_drop;
    config.optim.lr = 0.05;
    config.run.shards = Some(6);
    let mut t = Trainer::<f32>::new(config, corpus).unwrap();
    t.set_threads(threads).unwrap();
    assert_eq!((t.threads(), t.num_shards()), (threads.min(6), 6));
    while !t.done() {
        t.step(&corpus.ids).unwrap();
    }
    t
}

#[test]
fn thread_count_does_not_change_a_single_bit() {
    same_bits_on_any_thread_count((0.0, 0.0), CellKind::Rnn);
}

#[test]
fn thread_count_does_not_change_a_single_bit_with_dropout() {
    same_bits_on_any_thread_count((0.3, 0.0), CellKind::Rnn);
}

#[test]
fn thread_count_does_not_change_a_single_bit_with_weight_drop() {
    same_bits_on_any_thread_count((0.0, 0.3), CellKind::Rnn);
}

#[test]
fn two_layer_gru_gives_the_same_bits_on_any_thread_count() {
    same_bits_on_any_thread_count((0.0, 0.0), CellKind::Gru);
    same_bits_on_any_thread_count((0.25, 0.2), CellKind::Gru);
}

#[test]
fn two_layer_lstm_gives_the_same_bits_on_any_thread_count() {
    same_bits_on_any_thread_count((0.0, 0.0), CellKind::Lstm);
    same_bits_on_any_thread_count((0.25, 0.2), CellKind::Lstm);
}

/// The average of the weights (`--ema`) is blended over the pool's threads: the same bits on
/// any thread count.
#[test]
fn the_average_of_the_weights_gives_the_same_bits_on_any_thread_count() {
    let corpus = corpus();
    let run = |threads: usize| {
        let mut config = common::train_config(64, 16, 24, Stop::Steps(20));
        config.model.cell = CellKind::Lstm;
        config.model.layers = 2;
        config.optim.optimizer = charrnn::optim::Optimizer::adam();
        config.optim.lr = 4e-3;
        config.optim.ema = Some(0.9);
        config.run.shards = Some(6);
        let mut t = Trainer::<f32>::new(config, &corpus).unwrap();
        t.set_threads(threads).unwrap();
        while !t.done() {
            t.step(&corpus.ids).unwrap();
        }
        assert!(
            t.params.len() > 2 * charrnn::parallel::CHUNK,
            "the parallel blend runs"
        );
        common::f32_bits(t.average.as_deref().unwrap())
    };
    let one = run(1);
    for threads in [2, 3] {
        assert!(run(threads) == one, "{threads} threads: other bits");
    }
}

/// `noise`: (dropout, DropConnect on W_hh).
/// Muon orthogonalises its blocks in parallel: the same bits on any thread count, and not
/// Adam's.
#[test]
fn muon_gives_the_same_bits_on_any_thread_count() {
    let corpus = corpus();
    let run = |threads: usize, optimizer: charrnn::optim::Optimizer| {
        let mut config = common::train_config(64, 16, 24, Stop::Steps(30));
        config.model.cell = CellKind::Lstm;
        config.model.layers = 2;
        config.optim.optimizer = optimizer;
        config.optim.lr = 4e-3;
        config.run.shards = Some(6);
        let mut t = Trainer::<f32>::new(config, &corpus).unwrap();
        t.set_threads(threads).unwrap();
        while !t.done() {
            t.step(&corpus.ids).unwrap();
        }
        (common::f32_bits(&t.params), common::f32_bits(&t.opt.m))
    };
    let muon = charrnn::optim::Optimizer::muon();
    let one = run(1, muon);
    for threads in [2, 3] {
        assert!(run(threads, muon) == one, "{threads} threads: other bits");
    }
    assert!(run(1, charrnn::optim::Optimizer::adam()).0 != one.0);
}

fn same_bits_on_any_thread_count(noise: (f64, f64), cell: CellKind) {
    let corpus = corpus();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let one = run(1, &corpus, noise, cell);
    assert_eq!(one.progress.epoch, 1, "the run crosses an epoch boundary");
    if noise != (0.0, 0.0) {
        let plain = run(1, &corpus, (0.0, 0.0), cell);
        assert_ne!(
            bits(&plain.params),
            bits(&one.params),
            "{cell}: {noise:?} changes the run"
        );
    }
    for threads in [2, 3, 8] {
        let many = run(threads, &corpus, noise, cell);
        assert_eq!(
            bits(&many.params),
            bits(&one.params),
            "{cell}, {threads} threads: parameters"
        );
        assert_eq!(
            bits(&many.opt.m),
            bits(&one.opt.m),
            "{threads} threads: AdaGrad state"
        );
        assert_eq!(
            many.state(),
            one.state(),
            "{cell}, {threads} threads: carried state"
        );
        assert_eq!(
            many.progress, one.progress,
            "{threads} threads: progress and losses"
        );
    }
}

#[test]
fn sharded_evaluation_does_not_depend_on_threads() {
    let corpus = corpus();
    let t = run(1, &corpus, (0.0, 0.0), CellKind::Lstm);
    let serial = evaluate(&t.model, &t.params, &corpus.ids, 32, 64, Precision::F32).unwrap();
    // Run on a pool from outside it (or on this thread), watched for signals.
    let watched = |pool: Option<&rayon::ThreadPool>| {
        let ids = &corpus.ids;
        evaluate_in(
            &t.model,
            &t.params,
            ids,
            32,
            64,
            charrnn::train::EVAL_SHARD,
            Precision::F32,
            pool,
            None,
            &|| None,
        )
        .unwrap()
    };
    assert_eq!(
        watched(None),
        Evaluation::Done(serial),
        "one thread, watched"
    );
    for threads in [2, 5] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let parallel = pool.install(|| {
            evaluate(&t.model, &t.params, &corpus.ids, 32, 64, Precision::F32).unwrap()
        });
        assert_eq!(
            parallel.loss.to_bits(),
            serial.loss.to_bits(),
            "{threads} threads"
        );
        assert_eq!(parallel.chars, serial.chars);
        let on_pool = watched(Some(&pool));
        assert_eq!(
            on_pool,
            Evaluation::Done(serial),
            "{threads} threads, watched"
        );
    }
    assert_eq!(serial.chars, 64 * (40_000 / 64 - 1));
}
