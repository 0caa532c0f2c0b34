//! Forward-only throughput: evaluation (chars/s scored) and sampling (chars/s generated).
//! Run: `cargo bench --bench inference`.

mod common;

use charrnn::linalg::Precision;
use charrnn::model::{CellKind, CharLm};
use charrnn::sample::{sample, SampleOptions};
use charrnn::train::evaluate;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use std::time::Duration;

fn inference(c: &mut Criterion) {
    let corpus = common::corpus();
    // 64k characters to score per iteration.
    let ids = corpus.ids.slice(0..corpus.ids.len().min(65_536));
    let mut group = c.benchmark_group("inference");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let v = corpus.vocab.len();
    let models = [
        CharLm::vanilla(v, 128),
        CharLm::vanilla(v, 512),
        CharLm {
            vocab: v,
            hidden: 512,
            cell: CellKind::Gru,
            layers: 2,
            embed: None,
        },
        CharLm {
            vocab: v,
            hidden: 512,
            cell: CellKind::Lstm,
            layers: 2,
            embed: None,
        },
    ];
    for model in models {
        let name = if model.layers == 1 {
            format!("H{}", model.hidden)
        } else {
            format!(
                "{}{}_H{}",
                model.cell.name().to_uppercase(),
                model.layers,
                model.hidden
            )
        };
        let params: Vec<f32> = model.init(
            charrnn::model::Init::Seed,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
        );
        group.throughput(Throughput::Elements(ids.len() as u64 - 64));
        group.bench_function(BenchmarkId::new("evaluate_B64_T64", &name), |b| {
            b.iter(|| evaluate(&model, &params, &ids, 64, 64, Precision::F32).unwrap())
        });
        let opts = SampleOptions {
            len: 2_000,
            ..SampleOptions::default()
        };
        group.throughput(Throughput::Elements(opts.len as u64));
        group.bench_function(BenchmarkId::new("sample", &name), |b| {
            b.iter(|| sample(&model, &params, &corpus.vocab, &opts, |_| Ok(())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
