//! Training with `--precision bf16` (every matrix product with bf16 operands and f32 sums):
//!
//! - a gradient check means nothing in bf16, so instead the bf16 forward and backward agree
//!   with the f32 path to a stated relative bound on seeded models, per cell and depth, and
//!   differ from it (bf16 is really used);
//! - a short training run's loss curve stays within a stated bound of f32's;
//! - for one kernel, a bf16 run is bit-identical on any thread count and across a resume, and
//!   `Trainer::set_precision` switches a run between precisions;
//! - bf16 is refused where it cannot run, with a message that says what to do.
//!
//! Each needing the CPU's bf16 units runs once per bf16 kernel the CPU has (AMX, AVX512-BF16),
//! is ignored elsewhere, and `.ci/run` runs it where `/proc/cpuinfo` lists either unit.

mod common;

use charrnn::config::{DataConfig, ModelConfig, OptimConfig, RunConfig};
use charrnn::data::{Corpus, SymbolKind};
use charrnn::linalg::bf16::{self, BfKernel};
use charrnn::linalg::Precision;
use charrnn::model::{CellKind, CharLm, WeightPacks, Workspace};
use charrnn::session::{Session, Silent, Source, TrainData};
use charrnn::train::{PathKind, Stop, TrainConfig, Trainer};
use common::{cells_and_depths, f32_bits, model, random_ids, random_params, random_state, rng};

const NEEDS_BF16: &str = "needs a CPU with AVX512-BF16 or AMX-BF16";

/// Runs `f` once per bf16 kernel this CPU has, one test at a time (the kernel is chosen per
/// process). Fails when there is none: these tests are ignored on such CPUs.
fn on_every_kernel(mut f: impl FnMut(BfKernel)) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let kernels = BfKernel::available();
    assert!(
        !kernels.is_empty(),
        "this CPU has no bf16 kernel: {NEEDS_BF16}"
    );
    for k in kernels {
        bf16::set_kernel(k).unwrap();
        f(k);
    }
}

/// A model of every cell and depth (V = 11, H = 40), and a 2-layer LSTM with an explicit
/// embedding (E = 9).
fn every_model() -> Vec<CharLm> {
    let mut models: Vec<_> = cells_and_depths()
        .into_iter()
        .map(|(cell, layers)| model(cell, layers, 11, 40))
        .collect();
    models.push(CharLm {
        embed: Some(9),
        ..model(CellKind::Lstm, 2, 11, 40)
    });
    models
}

/// ‖a − b‖ / ‖b‖.
fn rel_norm(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let n: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (d / n).sqrt()
}

/// The bf16 forward and backward of one chunk against f32's, per cell and depth, with a
/// carried state and B > 1: the loss within 1e-3 relative, the gradient within 3e-2 in
/// norm (bf16 keeps 8 significant bits: each operand is off by up to 2⁻⁹ ≈ 2e-3 relative,
/// and T = 12 steps of the recurrence compound it), and not equal to f32's.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn bf16_forward_and_backward_agree_with_f32() {
    on_every_kernel(|k| {
        for (cell, layers) in cells_and_depths() {
            let (v, h, t, b) = (11, 40, 12, 5);
            let m = model(cell, layers, v, h);
            let mut r = rng(7);
            let p: Vec<f32> = random_params(&m, 0.3, &mut r);
            let s0 = random_state::<f32>(&m, b, &mut r);
            let xs = random_ids(t * b, v, &mut r);
            let ys = random_ids(t * b, v, &mut r);
            let run = |precision| {
                let mut ws = Workspace::<f32>::new(&m, t, b);
                ws.set_precision(precision);
                ws.xs.copy_from_slice(&xs);
                ws.ys.copy_from_slice(&ys);
                let mut g = vec![0.0f32; p.len()];
                let mut s = s0.clone();
                let loss = m.forward_backward(&p, None, &mut g, &mut s.view_mut(), &mut ws, 1.0);
                (f64::from(loss), g)
            };
            let (loss32, g32) = run(Precision::F32);
            let (loss16, g16) = run(Precision::Bf16);
            let what = format!("{k:?} {cell} L={layers}");
            let loss_err = (loss16 - loss32).abs() / loss32.abs();
            let grad_err = rel_norm(&g16, &g32);
            println!("{what}: loss {loss_err:.2e}, gradient {grad_err:.2e}");
            assert!(loss_err < 1e-3, "{what}: loss {loss16} vs f32 {loss32}");
            assert!(
                grad_err < 3e-2,
                "{what}: gradient off by {grad_err:.3} in norm"
            );
            assert_ne!(f32_bits(&g16), f32_bits(&g32), "{what}: bf16 was not used");
        }
    });
}

/// A chunk on the weights packed once outside ([`WeightPacks`], as a trainer shares them
/// among its shards) gives the bits of a chunk that packs them itself, per cell and depth and
/// with an explicit embedding (whose layer 0 multiplies by its W_ih): every packing is of the
/// right matrix, the right way round.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn shared_weight_packings_give_the_same_bits() {
    on_every_kernel(|k| {
        for m in every_model() {
            let (t, b) = (12, 5);
            let mut r = rng(7);
            let p: Vec<f32> = random_params(&m, 0.3, &mut r);
            let s0 = random_state::<f32>(&m, b, &mut r);
            let xs = random_ids(t * b, m.vocab, &mut r);
            let ys = random_ids(t * b, m.vocab, &mut r);
            let mut packs = WeightPacks::new(&m);
            packs.pack(&m, &p);
            let run = |packs: Option<&WeightPacks>| {
                let mut ws = Workspace::<f32>::new(&m, t, b);
                ws.set_precision(Precision::Bf16);
                ws.xs.copy_from_slice(&xs);
                ws.ys.copy_from_slice(&ys);
                let mut g = vec![0.0f32; p.len()];
                let mut s = s0.clone();
                let loss = m.forward_backward(&p, packs, &mut g, &mut s.view_mut(), &mut ws, 1.0);
                (
                    loss.to_bits(),
                    f32_bits(&g),
                    f32_bits(s.as_slice().unwrap()),
                )
            };
            let what = format!("{k:?} {} L={} embed {:?}", m.cell, m.layers, m.embed);
            assert_eq!(run(Some(&packs)), run(None), "{what}");
        }
    });
}

/// A bf16 evaluation packs the weights once for all its shards and chunks: it gives the bits
/// of reading every chunk of every shard with a forward pass that packs its own, the loop
/// written out here (streams of the whole text in shards of at most [`EVAL_SHARD`], T = 7
/// with a shorter last chunk, losses summed per shard and then in shard order), on one thread
/// and inside a pool of two.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn an_evaluation_packs_once_and_reads_the_bits_of_packing_per_chunk() {
    use charrnn::data::{Cursor, Ids, Streams};
    use charrnn::evaluate::streams_for;
    use charrnn::parallel::partition;
    use charrnn::train::{evaluate, evaluate_in, Evaluation, EVAL_SHARD};
    on_every_kernel(|k| {
        for m in every_model() {
            let mut r = rng(11);
            let p: Vec<f32> = random_params(&m, 0.3, &mut r);
            let ids = Ids::from_u32(random_ids(1000, m.vocab, &mut r), m.vocab);
            let (t_full, max_batch) = (7, 40);
            let batch = streams_for(ids.len(), t_full, max_batch);
            let streams = Streams::new(ids.len(), batch, 1).unwrap();
            let per_stream = streams.stream_len - 1;
            let mut totals = Vec::new();
            for (b0, nb) in partition(batch, batch.div_ceil(EVAL_SHARD)) {
                let mut state = m.zero_state::<f32>(nb);
                let (mut pos, mut total) = (0, 0.0f64);
                while pos < per_stream {
                    let t = t_full.min(per_stream - pos);
                    let mut ws = Workspace::<f32>::new(&m, t, nb);
                    ws.set_precision(Precision::Bf16);
                    let at = Cursor {
                        epoch: 0,
                        chunk: pos,
                    };
                    streams
                        .fill(&ids, at, b0, nb, &mut ws.xs, &mut ws.ys)
                        .unwrap();
                    m.forward(&p, &state.view(), &mut ws);
                    ws.last_state(&mut state.view_mut());
                    total += f64::from(m.loss(&ws));
                    pos += t;
                }
                totals.push(total);
            }
            assert!(totals.len() > 2, "several shards");
            let want = totals.iter().sum::<f64>() / (per_stream * batch) as f64;
            let what = format!("{k:?} {} L={} embed {:?}", m.cell, m.layers, m.embed);
            let got = evaluate(&m, &p, &ids, t_full, max_batch, Precision::Bf16).unwrap();
            assert_eq!(got.loss.to_bits(), want.to_bits(), "{what}");
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            let cut = (max_batch, EVAL_SHARD);
            let on_pool = evaluate_in(
                &m,
                &p,
                &ids,
                t_full,
                cut.0,
                cut.1,
                Precision::Bf16,
                Some(&pool),
                None,
                &|| None,
            )
            .unwrap();
            assert_eq!(on_pool, Evaluation::Done(got), "{what}: on a pool");
        }
    });
}

/// ∂L/∂W_hh's right operand staged a step at a time (as backward stages it, last step first)
/// gives the product packing it whole gives, bit for bit; a part of odd rows ends the staging
/// and the product packs it whole (the same bits again).
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn a_staged_operand_gives_the_bits_of_a_whole_one() {
    use charrnn::linalg::Products;
    use ndarray::Array2;
    on_every_kernel(|k| {
        let mut r = rng(5);
        for (steps, batch, n, h) in [(12, 4, 40, 24), (7, 5, 33, 17), (3, 32, 96, 40)] {
            let rows = steps * batch;
            let d: Vec<f32> = random_params_of(rows * n, &mut r);
            let hs = Array2::from_shape_vec((rows, h), random_params_of(rows * h, &mut r)).unwrap();
            let d2 = Array2::from_shape_vec((rows, n), d.clone()).unwrap();
            let product = |staged: bool| {
                let mut p = Products::new(Precision::Bf16);
                let mut c = Array2::<f32>::zeros((h, n));
                if staged {
                    p.stage(rows, n);
                    for t in (0..steps).rev() {
                        p.stage_rows(t * batch, &d[t * batch * n..(t + 1) * batch * n]);
                    }
                    p.mul_staged(&hs.t(), &d2.view(), false, &mut c.view_mut());
                } else {
                    p.mul(&hs.t(), &d2.view(), false, &mut c.view_mut());
                }
                f32_bits(c.as_slice().unwrap())
            };
            assert_eq!(product(true), product(false), "{k:?} T {steps} B {batch}");
        }
    });
}

/// `len` values drawn uniformly from ±1.
fn random_params_of(len: usize, r: &mut impl rand::Rng) -> Vec<f32> {
    (0..len).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

fn corpus() -> Corpus {
    let text = charrnn::synth::MarkovSource::builtin().generate(30_000, 5);
    Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap()
}

/// A 2-layer LSTM of 64 with dropout, B = 16 in 2 shards, T = 32.
fn config(precision: Precision, steps: u64) -> TrainConfig {
    let mut c = TrainConfig::for_cell(CellKind::Lstm);
    c.model = ModelConfig {
        layers: 2,
        hidden: 64,
        ..c.model
    };
    c.data = DataConfig {
        seq_len: 32,
        batch: 16,
        ..DataConfig::default()
    };
    c.optim = OptimConfig {
        dropout: 0.1,
        ..c.optim
    };
    c.run = RunConfig {
        stop: Stop::Steps(steps),
        shards: Some(2),
        eval_every: 20,
        precision,
        ..RunConfig::default()
    };
    c
}

fn train(config: TrainConfig, threads: usize, corpus: &Corpus) -> (Trainer<f32>, Vec<f64>) {
    let mut t = Trainer::<f32>::new(config, corpus).unwrap();
    t.set_threads(threads).unwrap();
    let mut losses = Vec::new();
    while !t.done() {
        losses.push(t.step(&corpus.ids).unwrap());
    }
    (t, losses)
}

/// 120 steps of a 2-layer LSTM: every training loss of the bf16 run (averaged over 20 steps)
/// within 2% of f32's, and the model's held-out loss within 0.01 nats/char of f32's.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn bf16_training_follows_the_f32_curve() {
    let corpus = corpus();
    let other = charrnn::synth::MarkovSource::builtin().generate(20_000, 6);
    let held_out =
        Corpus::with_vocab(&corpus.vocab, other.as_bytes(), "held-out text", "markov-6").unwrap();
    let (t32, l32) = train(config(Precision::F32, 120), 1, &corpus);
    on_every_kernel(|k| {
        let (t16, l16) = train(config(Precision::Bf16, 120), 1, &corpus);
        for (w, (a, b)) in l16.chunks(20).zip(l32.chunks(20)).enumerate() {
            let (a, b) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
            assert!(
                (a - b).abs() / b < 0.02,
                "{k:?}: steps {}–{}: bf16 loss {a} vs f32 {b}",
                20 * w,
                20 * w + 19
            );
        }
        let eval = |t: &Trainer<f32>| {
            charrnn::train::evaluate(&t.model, &t.params, &held_out.ids, 32, 16, Precision::F32)
                .unwrap()
                .loss
        };
        let (e16, e32) = (eval(&t16), eval(&t32));
        println!("{k:?}: held-out loss bf16 {e16:.4}, f32 {e32:.4}");
        assert!(
            (e16 - e32).abs() < 0.01,
            "{k:?}: held-out {e16} vs f32 {e32}"
        );
        assert!(e32 < 2.5, "the run learns (held-out {e32})");
    });
}

/// One kernel, 1 and 2 threads, and a run switched to bf16 half way: the same bits where
/// they must be, other bits where the precision differs.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn bf16_runs_are_bit_identical_on_any_thread_count() {
    let corpus = corpus();
    on_every_kernel(|k| {
        let (one, _) = train(config(Precision::Bf16, 30), 1, &corpus);
        let (two, _) = train(config(Precision::Bf16, 30), 2, &corpus);
        assert_eq!(
            f32_bits(&one.params),
            f32_bits(&two.params),
            "{k:?}: parameters"
        );
        assert_eq!(f32_bits(&one.opt.m), f32_bits(&two.opt.m), "{k:?}: moments");
        assert_eq!(one.progress, two.progress, "{k:?}: progress");

        // f32 for 15 steps, then bf16: not the bf16 run, and recorded in the config.
        let mut mixed = Trainer::<f32>::new(config(Precision::F32, 30), &corpus).unwrap();
        for _ in 0..15 {
            mixed.step(&corpus.ids).unwrap();
        }
        mixed.set_precision(Precision::Bf16).unwrap();
        assert_eq!(mixed.config.run.precision, Precision::Bf16);
        while !mixed.done() {
            mixed.step(&corpus.ids).unwrap();
        }
        assert_ne!(
            f32_bits(&mixed.params),
            f32_bits(&one.params),
            "{k:?}: mixed run"
        );
    });
}

fn source() -> Source {
    let text = charrnn::synth::MarkovSource::builtin().generate(30_000, 5);
    Source::Text {
        name: "markov".into(),
        bytes: text.into_bytes(),
    }
}

/// A bf16 run saved and resumed gives the bits of the run that never stopped; the model file
/// records the precision.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn a_resumed_bf16_run_keeps_its_precision_and_its_bits() {
    on_every_kernel(|k| {
        let d = tempfile::tempdir().unwrap();
        let (straight, legs) = (d.path().join("straight"), d.path().join("legs"));
        let cfg = config(Precision::Bf16, 30);
        let data = TrainData::load(&source(), &cfg).unwrap();
        let mut s = Session::start(cfg.clone(), data, &straight, false).unwrap();
        s.run(&mut Silent, &|| None).unwrap();
        let data = TrainData::load(&source(), &config(Precision::Bf16, 12)).unwrap();
        let mut first = Session::start(config(Precision::Bf16, 12), data, &legs, false).unwrap();
        first.run(&mut Silent, &|| None).unwrap();
        drop(first); // it holds the directory while it lives
        let mut second = Session::resume(&legs, Some(source()), Some(Stop::Steps(30))).unwrap();
        assert_eq!(
            second.trainer.config.run.precision,
            Precision::Bf16,
            "{k:?}"
        );
        second.run(&mut Silent, &|| None).unwrap();
        assert_eq!(
            f32_bits(&second.trainer.params),
            f32_bits(&s.trainer.params),
            "{k:?}: resumed parameters"
        );
        assert_eq!(second.trainer.progress, s.trainer.progress, "{k:?}");
    });
}

/// The reference loop runs in f32 only: bf16 there is refused on any CPU, naming the flag.
#[test]
fn bf16_on_the_reference_loop_is_refused() {
    let mut c = config(Precision::Bf16, 10);
    c.run.path = PathKind::Naive;
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("--precision") && e.contains("--path blas"),
        "{e}"
    );
}

/// On a CPU without bf16 units a bf16 run is refused with a message that names the way out;
/// with them it is accepted.
#[test]
fn bf16_is_refused_exactly_where_the_cpu_cannot_run_it() {
    let c = config(Precision::Bf16, 10);
    match bf16::kernel() {
        Some(_) => c.validate().unwrap(),
        None => {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("--precision f32"), "{e}");
        }
    }
}
