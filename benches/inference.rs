//! Forward-only throughput: evaluation (chars/s scored) and sampling (chars/s generated).
//! Run: `cargo bench --bench inference`.

mod common;

use charrnn::model::CharRnn;
use charrnn::sample::{sample, SampleOptions};
use charrnn::train::evaluate;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use std::time::Duration;

fn inference(c: &mut Criterion) {
    let corpus = common::corpus();
    let ids = match &corpus.ids {
        // 64k characters to score per iteration.
        charrnn::data::Ids::U8(v) => charrnn::data::Ids::U8(v[..65_536].to_vec()),
        other => other.clone(),
    };
    let mut group = c.benchmark_group("inference");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for h in [128, 512] {
        let model = CharRnn {
            vocab: corpus.vocab.len(),
            hidden: h,
        };
        let params: Vec<f32> = model.init(
            charrnn::model::Init::Seed,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(1),
        );
        group.throughput(Throughput::Elements(ids.len() as u64 - 64));
        group.bench_function(BenchmarkId::new("evaluate_B64_T64", format!("H{h}")), |b| {
            b.iter(|| evaluate(&model, &params, &ids, 64, 64).unwrap())
        });
        let opts = SampleOptions {
            len: 2_000,
            ..SampleOptions::default()
        };
        group.throughput(Throughput::Elements(opts.len as u64));
        group.bench_function(BenchmarkId::new("sample", format!("H{h}")), |b| {
            b.iter(|| sample(&model, &params, &corpus.vocab, &opts, |_| Ok(())).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
