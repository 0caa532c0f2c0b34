//! The raw products the model runs, single-threaded, in FLOP/s (elements = 2·m·k·n): the
//! machine's calibration (1024³) and the shapes of H = 512, B = 64, T = 64, V = 65; and the
//! per-step recurrent products through BLAS against charrnn's packed kernel (the weight
//! packed once, as a chunk does; `linalg::packed`); on a CPU with AMX, the same products in
//! bf16 on AMX tiles (`linalg::amx`, the weight packed once) beside them.
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
        bench_amx(&mut group, what, &a, &b);
    }
    group.finish();
}

/// The bf16 product on AMX tiles of the same shape, weight packed once (c += a·b).
#[cfg(target_arch = "x86_64")]
fn bench_amx(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    what: &str,
    a: &Array2<f32>,
    b: &Array2<f32>,
) {
    use charrnn::linalg::amx;
    if !amx::available() {
        eprintln!("{what}: no AMX bf16 on this CPU or kernel: bf16 not measured");
        return;
    }
    let packed = amx::BfPacked::pack(b.view());
    let mut out = Array2::<f32>::zeros((a.nrows(), b.ncols()));
    group.bench_function(format!("{what}_amx_bf16"), |bench| {
        bench.iter(|| amx::gemm_bf16(a.view(), &packed, &mut out.view_mut()))
    });
}

#[cfg(not(target_arch = "x86_64"))]
fn bench_amx(
    _: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    _: &str,
    _: &Array2<f32>,
    _: &Array2<f32>,
) {
}

criterion_group!(benches, gemms);
criterion_main!(benches);
