//! Training-step throughput: the naive per-character loop and the BLAS-batched path side by
//! side, in characters per second (criterion's `Throughput::Elements`).
//!
//! Run: `cargo bench --bench train_step` (add `-- sgemm` for the gemm calibration alone). The naive loop is skipped above H = 128, where one
//! of its steps takes seconds (its cost per character grows as H·(H+V) with no BLAS).

use charrnn::data::{Corpus, SymbolKind};
use charrnn::synth::MarkovSource;
use charrnn::train::{PathKind, Stop, TrainConfig, Trainer};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn train_step(c: &mut Criterion) {
    charrnn::linalg::set_blas_threads(1);
    let text = MarkovSource::builtin().generate(400_000, 1);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap();
    let mut group = c.benchmark_group("train_step");
    group.sample_size(10);
    // (H, T, B): the tutorial's config, then the shapes of the README's performance table.
    for (h, t, b) in [(75, 20, 1), (128, 64, 1), (128, 64, 32), (512, 64, 64)] {
        group.throughput(Throughput::Elements((t * b) as u64));
        for path in [PathKind::Naive, PathKind::Blas] {
            if path == PathKind::Naive && h > 128 {
                continue;
            }
            let config = TrainConfig {
                hidden: h,
                seq_len: t,
                batch: b,
                stop: Stop::Epochs(1000),
                path,
                ..TrainConfig::default()
            };
            let mut trainer = Trainer::<f32>::new(config, &corpus).unwrap();
            let id = BenchmarkId::new(
                format!("{path:?}").to_lowercase(),
                format!("H{h}_T{t}_B{b}"),
            );
            group.bench_function(id, |bench| {
                bench.iter(|| trainer.step(&corpus.ids).unwrap())
            });
        }
    }
    group.finish();
}

/// The machine's calibration: single-thread sgemm at 1024³, in FLOP/s (elements = 2·n³), and
/// the recurrent and output shapes of H = 512, B = 64. Efficiency = model FLOP/s ÷ this.
fn sgemm(c: &mut Criterion) {
    use ndarray::Array2;
    charrnn::linalg::set_blas_threads(1);
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(10);
    for (m, k, n) in [(1024, 1024, 1024), (64, 512, 512), (4096, 512, 65)] {
        let a = Array2::<f32>::from_elem((m, k), 0.5);
        let b = Array2::<f32>::from_elem((k, n), 0.25);
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{m}x{k}x{n}"), |bench| {
            bench
                .iter(|| charrnn::linalg::gemm(1.0, &a.view(), &b.view(), 0.0, &mut out.view_mut()))
        });
    }
    group.finish();
}

criterion_group!(benches, train_step, sgemm);
criterion_main!(benches);
