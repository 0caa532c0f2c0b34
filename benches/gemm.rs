//! The raw products the model runs, single-threaded, in FLOP/s (elements = 2·m·k·n): the
//! machine's calibration (1024³) and the shapes of H = 512, B = 64, T = 64, V = 65; and the
//! per-step recurrent products through BLAS against charrnn's packed kernel (the weight
//! packed once, as a chunk does; `linalg::packed`); on a CPU with bf16 units, the same
//! products in bf16 on each bf16 kernel it runs (`linalg::bf16`: AMX tiles, AVX512-BF16
//! vectors; the weight packed once) beside them; and the ceiling the vector kernels work
//! under: the issue rate of f32 FMAs and of `vdpbf16ps` alone (`isa_rate`).
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

    lstm_shard(c, 512);
    lstm_shard(c, 384);
}

/// Every product of one shard (32 streams) of a 2 × `h` LSTM step, B = 64, T = 64, in f32
/// (BLAS) and bf16 (512: the bf16 issue's model; 384: the speedrun preset's).
fn lstm_shard(c: &mut Criterion, h: usize) {
    let mut group = c.benchmark_group(format!("lstm2x{h}_shard"));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    // (M, K, N, what, A transposed as dW's Hᵀ is).
    for (m, k, n, what, at) in [
        (32, h, 4 * h, "step_forward", false),
        (32, 4 * h, h, "step_backward", false),
        (2048, h, 4 * h, "input_projection", false),
        (2048, 4 * h, h, "grad_below", false),
        (h, 2048, 4 * h, "dW", true),
        (2048, h, 65, "head", false),
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

/// The peak of the vector units, from the instructions alone: [`isa::CHAINS`] independent
/// chains of 512-bit f32 FMAs (32 FLOPs each) and of `vdpbf16ps` (64: 16 lanes × 2 pairs ×
/// 2), in FLOP/s. Where both issue at the same rate, the bf16 product's ceiling is twice f32's.
fn isa_rates(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    {
        use isa::CHAINS;
        use std::arch::is_x86_feature_detected as has;
        /// Instructions per chain per iteration of the timed loop.
        const REPS: usize = 10_000;
        let mut group = c.benchmark_group("isa_rate");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2));
        if has!("avx512f") {
            group.throughput(Throughput::Elements((CHAINS * REPS * 32) as u64));
            // SAFETY: AVX-512 F is present.
            group.bench_function("fma_f32_zmm", |bench| {
                bench.iter(|| unsafe { isa::fma_chains(REPS) })
            });
        } else {
            eprintln!("isa_rate: no AVX-512 on this CPU: not measured");
        }
        if has!("avx512f") && has!("avx512bf16") {
            group.throughput(Throughput::Elements((CHAINS * REPS * 64) as u64));
            // SAFETY: AVX-512 F and BF16 are present.
            group.bench_function("vdpbf16ps_zmm", |bench| {
                bench.iter(|| unsafe { isa::dpbf16_chains(REPS) })
            });
        } else {
            eprintln!("isa_rate: no AVX512-BF16 on this CPU: vdpbf16ps not measured");
        }
        group.finish();
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = c;
}

/// The instruction loops of [`isa_rates`].
#[cfg(target_arch = "x86_64")]
mod isa {
    use std::arch::x86_64::*;
    use std::hint::black_box;

    /// Independent chains: more than latency × issue rate on the CPUs measured (16 were too
    /// few for `vdpbf16ps` on a Zen 4), few enough to stay in registers.
    pub const CHAINS: usize = 24;

    /// The sum of every lane of every chain (one vector sum, then one reduction: a
    /// reduction per chain made the compiler keep chains in memory inside the loop).
    #[target_feature(enable = "avx512f")]
    unsafe fn sum(acc: [__m512; CHAINS]) -> f32 {
        let mut total = _mm512_setzero_ps();
        for a in acc {
            total = _mm512_add_ps(total, a);
        }
        _mm512_reduce_add_ps(total)
    }

    /// [`CHAINS`] chains of `reps` f32 FMAs on 512-bit vectors; returns their sum.
    ///
    /// # Safety
    /// The CPU has AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma_chains(reps: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        let x = _mm512_set1_ps(black_box(1.0));
        let y = _mm512_set1_ps(black_box(0.5));
        for _ in 0..reps {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(x, y, *a);
            }
        }
        sum(acc)
    }

    /// [`CHAINS`] chains of `reps` `vdpbf16ps` on 512-bit vectors; returns their sum.
    ///
    /// # Safety
    /// The CPU has AVX-512 F and AVX512-BF16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16_chains(reps: usize) -> f32 {
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        // Pairs of bf16 1.0 and 0.5.
        let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3f80_3f80)));
        let y: __m512bh = std::mem::transmute(_mm512_set1_epi32(black_box(0x3f00_3f00)));
        for _ in 0..reps {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, x, y);
            }
        }
        sum(acc)
    }
}

criterion_group!(benches, gemms, isa_rates);
criterion_main!(benches);
