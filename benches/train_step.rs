//! Training-step throughput, naive loop vs BLAS-batched (one thread) vs BLAS-batched with
//! rayon shards on every core, side by side, in characters per second
//! (`Throughput::Elements`). Run: `cargo bench --bench train_step` (or `-- H512` for one size).
//!
//! `blas_dropout` is the one-thread fast path with `--dropout 0.25` at B = 64: the price of
//! drawing and applying the output-dropout mask; `blas_weight_drop` the same with
//! `--weight-drop 0.2` (a W_hh mask and a masked parameter copy per step).
//!
//! `gru2_blas` and `lstm2_blas` are two-layer gated models of the same H on the one-thread
//! fast path, at B = 32 and 64.
//!
//! The naive loop is measured at the tutorial's config and at H = 128 only: above that one of
//! its steps takes seconds (its cost per character is 6·H·(H+V) scalar multiply-adds plus the
//! one-hot products, with no BLAS).

mod common;

use charrnn::config::{DataConfig, ModelConfig, OptimConfig, RunConfig};
use charrnn::model::CellKind;
use charrnn::train::{PathKind, Stop, TrainConfig, Trainer};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;

fn train_step(c: &mut Criterion) {
    let corpus = common::corpus();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut group = c.benchmark_group("train_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut configs = vec![(75, 20, 1)];
    for h in [128, 256, 512, 1024] {
        for b in [1, 32, 64, 256] {
            configs.push((h, 64, b));
        }
    }
    for (h, t, b) in configs {
        group.throughput(Throughput::Elements((t * b) as u64));
        let rnn = (CellKind::Rnn, 1);
        // (name, (cell, layers), path, threads, shards, (dropout, weight drop))
        let mut paths = vec![("blas", rnn, PathKind::Blas, 1, 1, (0.0, 0.0))];
        if h <= 128 {
            paths.insert(0, ("naive", rnn, PathKind::Naive, 1, 1, (0.0, 0.0)));
        }
        if b == 64 {
            paths.push(("blas_dropout", rnn, PathKind::Blas, 1, 1, (0.25, 0.0)));
            paths.push(("blas_weight_drop", rnn, PathKind::Blas, 1, 1, (0.0, 0.2)));
        }
        if (b == 32 || b == 64) && h <= 512 {
            let no_noise = (0.0, 0.0);
            paths.push((
                "gru2_blas",
                (CellKind::Gru, 2),
                PathKind::Blas,
                1,
                1,
                no_noise,
            ));
            paths.push((
                "lstm2_blas",
                (CellKind::Lstm, 2),
                PathKind::Blas,
                1,
                1,
                no_noise,
            ));
        }
        if b > 1 && cores > 1 {
            let shards = TrainConfig::auto_shards(b, h);
            paths.push((
                "blas_rayon",
                rnn,
                PathKind::Blas,
                cores.min(shards),
                shards,
                (0.0, 0.0),
            ));
        }
        for (name, (cell, layers), path, threads, shards, (dropout, weight_drop)) in paths {
            let config = TrainConfig {
                model: ModelConfig {
                    cell,
                    layers,
                    hidden: h,
                    ..ModelConfig::default()
                },
                data: DataConfig {
                    seq_len: t,
                    batch: b,
                    ..DataConfig::default()
                },
                optim: OptimConfig {
                    dropout,
                    weight_drop,
                    lr: 1e-3,
                    ..OptimConfig::default()
                },
                run: RunConfig {
                    path,
                    shards: Some(shards),
                    stop: Stop::Steps(u64::MAX),
                    ..RunConfig::default()
                },
            };
            let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
            trainer.set_threads(threads).unwrap();
            group.bench_function(BenchmarkId::new(name, format!("H{h}_T{t}_B{b}")), |bench| {
                bench.iter(|| trainer.step(&corpus.ids).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
