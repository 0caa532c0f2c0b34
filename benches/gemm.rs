//! The raw products the model runs, single-threaded, in FLOP/s (elements = 2·m·k·n): the
//! machine's calibration (1024³) and the shapes of H = 512, B = 64, T = 64, V = 65; and the
//! per-step recurrent products through BLAS against charrnn's packed kernel (the weight
//! packed once, as a chunk does; `linalg::packed`); on a CPU with bf16 units, the same
//! products in bf16 on each bf16 kernel it runs (`linalg::bf16`: AMX tiles, AVX512-BF16
//! vectors; the weight packed once) beside them.
//! Run: `cargo bench --bench gemm`.

use charrnn::linalg::packed::Packed;
use charrnn::linalg::{gemm, set_blas_threads};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::Array2;
use std::time::Duration;

fn gemms(c: &mut Criterion) {
    set_blas_threads(1);
    let mut group = c.benchmark_group("sgemm");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    // (m, k, n, what)
    for (m, k, n, what) in [
        (1024, 1024, 1024, "calibration"),
        (64, 512, 512, "recurrence_B64"),
        (1, 512, 512, "recurrence_B1_gemv"),
        (4096, 512, 65, "logits_TB"),
        (512, 4096, 65, "dW_hy"),
        (512, 4096, 512, "dW_hh"),
    ] {
        let a = Array2::<f32>::from_elem((m, k), 0.5);
        let b = Array2::<f32>::from_elem((k, n), 0.25);
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{what}_{m}x{k}x{n}"), |bench| {
            bench.iter(|| gemm(1.0, &a.view(), &b.view(), 0.0, &mut out.view_mut()))
        });
    }
    group.finish();

    let mut group = c.benchmark_group("recurrent_step");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    // (B, H, g·H): the forward product h·W_hh of vanilla, GRU and LSTM layers, and the
    // tutorial's batch-1 step.
    for (m, k, n, what) in [
        (64, 512, 512, "rnn_H512_B64"),
        (64, 512, 1536, "gru_H512_B64"),
        (64, 512, 2048, "lstm_H512_B64"),
        (32, 128, 384, "gru_H128_B32"),
        (1, 75, 75, "rnn_H75_B1"),
    ] {
        let a = Array2::<f32>::from_elem((m, k), 0.5);
        let b = Array2::<f32>::from_elem((k, n), 0.25);
        let mut out = Array2::<f32>::zeros((m, n));
        let mut packed = Packed::new();
        packed.pack(&b.view());
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{what}_blas"), |bench| {
            bench.iter(|| gemm(1.0, &a.view(), &b.view(), 0.0, &mut out.view_mut()))
        });
        let x = a.as_slice().expect("standard layout");
        let y = out.as_slice_mut().expect("standard layout");
        group.bench_function(format!("{what}_packed"), |bench| {
            bench.iter(|| packed.mul(x, y, false))
        });
        bench_bf16(&mut group, what, a.view(), &b);
    }
    group.finish();

    // Every product of one shard (32 streams) of a 2 × 512 LSTM step, B = 64, T = 64, in
    // f32 (BLAS) and bf16: (M, K, N, what, A transposed as dW's Hᵀ is).
    let mut group = c.benchmark_group("lstm2x512_shard");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (m, k, n, what, at) in [
        (32, 512, 2048, "step_forward", false),
        (32, 2048, 512, "step_backward", false),
        (2048, 512, 2048, "input_projection", false),
        (2048, 2048, 512, "grad_below", false),
        (512, 2048, 2048, "dW", true),
        (2048, 512, 65, "head", false),
    ] {
        let stored = Array2::<f32>::from_elem(if at { (k, m) } else { (m, k) }, 0.5);
        let a = if at { stored.t() } else { stored.view() };
        let b = Array2::<f32>::from_elem((k, n), 0.25);
        let mut out = Array2::<f32>::zeros((m, n));
        group.throughput(Throughput::Elements((2 * m * k * n) as u64));
        group.bench_function(format!("{what}_blas"), |bench| {
            bench.iter(|| gemm(1.0, &a, &b.view(), 0.0, &mut out.view_mut()))
        });
        bench_bf16(&mut group, what, a, &b);
    }
    group.finish();
}

/// The bf16 products of the same shape on every bf16 kernel this CPU runs, weight packed
/// once (c = a·b).
fn bench_bf16(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    what: &str,
    a: ndarray::ArrayView2<f32>,
    b: &Array2<f32>,
) {
    use charrnn::linalg::bf16::{self, BfKernel, BfPacked};
    let kernels = BfKernel::available();
    if kernels.is_empty() {
        eprintln!("{what}: no bf16 units on this CPU: bf16 not measured");
    }
    let packed = BfPacked::new(&b.view());
    let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    for k in kernels {
        bf16::set_kernel(k).expect("an available kernel");
        group.bench_function(format!("{what}_bf16_{}", k.name()), |bench| {
            bench.iter(|| bf16::gemm(&a, &packed, false, &mut out.view_mut()))
        });
    }
}

criterion_group!(benches, gemms);
criterion_main!(benches);
