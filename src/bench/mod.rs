//! Throughput reports: the machine's calibration (single-thread sgemm, and with bf16 cases the
//! bf16 product of the same shape), chars/s of every path per configuration, achieved GFLOP/s
//! by the FLOP model, efficiency against the calibration of the case's precision,
//! and the regression gate that compares two reports by efficiency (a ratio measured within
//! one run, so machine drift cancels).

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::build_info::BUILD;
use crate::config::{DataConfig, ModelConfig, OptimConfig, RunConfig};
use crate::data::Corpus;
use crate::error::Result;
use crate::linalg::bf16;
use crate::linalg::{blas_config, blas_corename, blas_threads, Precision};
use crate::model::{CellKind, CharLm};
use crate::session::{Source, TrainData};
use crate::train::{PathKind, Stop, TrainConfig, Trainer};

mod calibrate;
mod history;
mod report;

pub use calibrate::{bf16_gflops, kernel_rate_in, median, sgemm_gflops};
pub use history::{append_history, plot_history, read_history};
pub use report::{
    check_threshold, compare, comparison_markdown, gate, Comparison, Gate, Machine, Report,
};

/// One configuration and path to measure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchCase {
    /// The recurrent cell (reports from before gated cells hold vanilla cases).
    #[serde(default)]
    pub cell: CellKind,
    /// L (default 1).
    #[serde(default = "one")]
    pub layers: usize,
    /// H.
    pub hidden: usize,
    /// T.
    pub seq_len: usize,
    /// B.
    pub batch: usize,
    /// Which implementation.
    pub path: PathKind,
    /// Threads running the shards (1 for the single-thread paths).
    pub threads: usize,
    /// Shards (1 for the single-thread paths).
    pub shards: usize,
    /// The precision of the products (reports from before bf16 hold f32 cases).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn one() -> usize {
    1
}

impl BenchCase {
    /// A short stable name: `H512_T64_B64` for one vanilla layer, else with the cell and the
    /// depth in front, e.g. `GRU2_H512_T64_B64`.
    pub fn config_name(&self) -> String {
        let shape = format!("H{}_T{}_B{}", self.hidden, self.seq_len, self.batch);
        if self.cell == CellKind::Rnn && self.layers == 1 {
            shape
        } else {
            format!("{}{}_{shape}", self.cell.name().to_uppercase(), self.layers)
        }
    }

    /// The model measured, over a vocabulary of `vocab` symbols.
    pub fn model(&self, vocab: usize) -> CharLm {
        self.config().model(vocab)
    }

    /// The training run measured: it never stops by itself (the benchmark decides how many
    /// steps to take).
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            model: ModelConfig {
                cell: self.cell,
                layers: self.layers,
                hidden: self.hidden,
                ..ModelConfig::default()
            },
            data: DataConfig {
                seq_len: self.seq_len,
                batch: self.batch,
                ..DataConfig::default()
            },
            optim: OptimConfig {
                // A small rate keeps large models finite over many repetitions; it does not
                // change the work per step.
                lr: 1e-3,
                ..OptimConfig::default()
            },
            run: RunConfig {
                path: self.path,
                shards: Some(self.shards),
                stop: Stop::Steps(u64::MAX),
                precision: self.precision,
                ..RunConfig::default()
            },
        }
    }

    /// The path's name in reports: `naive`, `blas` (one thread) or `blas_rayon`, with `_bf16`
    /// after it for bf16 products.
    pub fn path_name(&self) -> &'static str {
        match (self.path, self.threads, self.precision) {
            (PathKind::Naive, _, _) => "naive",
            (PathKind::Blas, 1, Precision::F32) => "blas",
            (PathKind::Blas, _, Precision::F32) => "blas_rayon",
            (PathKind::Blas, 1, Precision::Bf16) => "blas_bf16",
            (PathKind::Blas, _, Precision::Bf16) => "blas_rayon_bf16",
        }
    }
}

/// What was measured for one case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// `H…_T…_B…`.
    pub config: String,
    /// `naive`, `blas` or `blas_rayon`.
    pub path: String,
    /// The case measured.
    pub case: BenchCase,
    /// V of the corpus.
    pub vocab: usize,
    /// Median training chars/s over the repetitions.
    pub chars_per_sec: f64,
    /// chars/s · FLOP/char / 1e9 (see [`CharLm::flops_per_char`]).
    pub gflops: f64,
    /// gflops ÷ (the run's single-thread sgemm GFLOP/s × threads).
    pub efficiency: f64,
    /// chars/s ÷ the naive path's chars/s for the same config, when naive was measured.
    pub speedup_vs_naive: Option<f64>,
    /// Peak heap bytes while the case ran (trainer, buffers and all), when known.
    pub peak_heap_bytes: Option<u64>,
}

/// Measures training throughput of one case on `corpus`: one warm-up step sizes the
/// repetitions to about `rep_seconds` each; returns the median chars/s of `reps`.
pub fn measure(case: &BenchCase, corpus: &Corpus, reps: usize, rep_seconds: f64) -> Result<f64> {
    let config = case.config();
    let mut trainer = Trainer::<f32>::new(config, corpus)?;
    trainer.set_threads(case.threads)?;
    let t = Instant::now();
    trainer.step(&corpus.ids)?;
    let first = t.elapsed().as_secs_f64().max(1e-6);
    let steps = ((rep_seconds / first).ceil() as usize).max(1);
    let chars = (steps * case.seq_len * case.batch) as f64;
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        for _ in 0..steps {
            trainer.step(&corpus.ids)?;
        }
        rates.push(chars / t.elapsed().as_secs_f64());
    }
    Ok(median(&mut rates))
}

/// What `charrnn bench` measures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Fewer configurations and repetitions (well under a minute), for CI.
    pub quick: bool,
    /// Cores available: the threaded cases use up to this many.
    pub cores: usize,
    /// Measure only the configurations whose name (e.g. `GRU2_H512_T64_B64`) is one of these,
    /// or contains one that is not a whole name (`H512` selects every H = 512 case); all when
    /// empty.
    pub only: Vec<String>,
    /// The single-thread sgemm rate of the best kernel family this CPU runs, when the active
    /// one is narrower (measured by the caller, e.g. in a child process without
    /// `OPENBLAS_CORETYPE`): efficiency is then computed against it.
    pub best_kernel: Option<KernelRate>,
    /// With bf16, every fast-path case is measured in f32 and in bf16 (and the bf16 product
    /// calibrated beside sgemm); with f32, in f32 only.
    pub precision: Precision,
}

/// A kernel family's single-thread sgemm rate at 1024³.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelRate {
    /// OpenBLAS's name of the family (e.g. `Cooperlake`).
    pub family: String,
    /// GFLOP/s (median of the samples).
    pub gflops: f64,
}

impl Eq for KernelRate {}

/// Measures the heap a case allocates; the binary counts it with a global allocator.
pub trait HeapProbe {
    /// Starts a measurement; returns the bytes allocated now.
    fn start(&self) -> usize;
    /// The peak allocated above `start` since [`HeapProbe::start`], when known.
    fn peak_since(&self, start: usize) -> Option<u64>;
}

/// A probe that knows nothing: reports have no peak-heap figures.
pub struct NoHeapProbe;

impl HeapProbe for NoHeapProbe {
    fn start(&self) -> usize {
        0
    }

    fn peak_since(&self, _start: usize) -> Option<u64> {
        None
    }
}

/// True when the `--only` entry `only` selects the configuration `name`: its whole name, or a
/// part of names when it is not one.
fn selects(only: &str, name: &str, quick: bool) -> bool {
    let whole = configs(quick)
        .iter()
        .any(|c| case_of(c, PathKind::Blas, 1, 1, Precision::F32).config_name() == only);
    if whole {
        name == only
    } else {
        name.contains(only)
    }
}

/// The cases of a report, (cell, layers, H, T, B): the tutorial's, the vanilla sizes of
/// PERF.md's table, and the gated cells at one and two layers.
fn configs(quick: bool) -> &'static [(CellKind, usize, usize, usize, usize)] {
    use CellKind::{Gru, Lstm, Rnn};
    if quick {
        &[
            (Rnn, 1, 75, 20, 1),
            (Rnn, 1, 128, 64, 32),
            (Rnn, 1, 512, 64, 64),
            (Gru, 2, 128, 64, 32),
            (Lstm, 2, 128, 64, 32),
        ]
    } else {
        &[
            (Rnn, 1, 75, 20, 1),
            (Rnn, 1, 128, 64, 1),
            (Rnn, 1, 128, 64, 32),
            (Rnn, 1, 256, 64, 64),
            (Rnn, 1, 512, 64, 64),
            (Rnn, 1, 1024, 64, 128),
            (Gru, 2, 128, 64, 32),
            (Lstm, 2, 128, 64, 32),
            (Gru, 1, 512, 64, 64),
            (Lstm, 1, 512, 64, 64),
            (Gru, 2, 512, 64, 64),
            (Lstm, 2, 512, 64, 64),
        ]
    }
}

/// The case of `config` (cell, layers, H, T, B) on `path` with `threads` and `shards`, at
/// `precision`.
fn case_of(
    &(cell, layers, hidden, seq_len, batch): &(CellKind, usize, usize, usize, usize),
    path: PathKind,
    threads: usize,
    shards: usize,
    precision: Precision,
) -> BenchCase {
    BenchCase {
        cell,
        layers,
        hidden,
        seq_len,
        batch,
        path,
        threads,
        shards,
        precision,
    }
}

/// Measures every case of a report on `source` (read as characters), printing a line per
/// case through `progress`: the calibration (single-thread sgemm at 1024³, and the bf16
/// product at 1024³ when bf16 cases are measured, each sampled before and after the cases),
/// and per case the median chars/s, GFLOP/s by the FLOP model, efficiency against the
/// calibration of its precision, the speedup over the naive loop and the peak heap.
pub fn run(
    opts: &Options,
    source: &Source,
    heap: &dyn HeapProbe,
    progress: &mut dyn FnMut(&str),
) -> Result<Report> {
    let symbols = source.symbols(None)?;
    let config = TrainConfig {
        data: DataConfig {
            symbols,
            val_frac: 0.0,
            ..DataConfig::default()
        },
        ..TrainConfig::default()
    };
    let corpus = TrainData::load(source, &config)?.train;
    opts.precision
        .check()
        .map_err(|why| crate::error::Error::config("--precision", opts.precision, why))?;
    let with_bf16 = opts.precision == Precision::Bf16;
    let sgemm_reps = if opts.quick { 10 } else { 20 };
    let mut sgemm_samples = sgemm_gflops(1024, sgemm_reps);
    let mut bf16_samples = if with_bf16 {
        bf16_gflops(1024, sgemm_reps)
    } else {
        Vec::new()
    };
    progress(&format!(
        "single-thread sgemm 1024³: {:.1} GFLOP/s{}; measuring...",
        median(&mut sgemm_samples.clone()),
        if with_bf16 {
            format!(
                ", bf16 ({}) {:.1} GFLOP/s",
                bf16::kernel().map_or("none", |k| k.name()),
                median(&mut bf16_samples.clone())
            )
        } else {
            String::new()
        }
    ));
    let (reps, rep_seconds) = if opts.quick { (3, 0.3) } else { (5, 1.0) };
    let vocab = corpus.vocab.len();
    let mut results: Vec<BenchResult> = Vec::new();
    for config in configs(opts.quick) {
        let (cell, hidden, batch) = (config.0, config.2, config.4);
        let case = |path, threads, shards| case_of(config, path, threads, shards, Precision::F32);
        let name = case(PathKind::Blas, 1, 1).config_name();
        if !opts.only.is_empty() && !opts.only.iter().any(|o| selects(o, &name, opts.quick)) {
            continue;
        }
        let mut cases = Vec::new();
        // The naive loop costs seconds per step above H = 128 (and for batched gated cells).
        if hidden <= 128 && (cell == CellKind::Rnn || batch == 1) {
            cases.push(case(PathKind::Naive, 1, 1));
        }
        cases.push(case(PathKind::Blas, 1, 1));
        if batch > 1 && opts.cores > 1 {
            let shards = TrainConfig::auto_shards(batch, hidden);
            cases.push(case(PathKind::Blas, opts.cores.min(shards), shards));
        }
        if with_bf16 {
            let fast: Vec<BenchCase> = cases
                .iter()
                .filter(|c| c.path == PathKind::Blas)
                .map(|c| BenchCase {
                    precision: Precision::Bf16,
                    ..c.clone()
                })
                .collect();
            cases.extend(fast);
        }
        let mut naive_rate = None;
        for case in cases {
            let before = heap.start();
            let rate = measure(&case, &corpus, reps, rep_seconds)?;
            let peak = heap.peak_since(before);
            let gflops = rate * case.model(vocab).flops_per_char() / 1e9;
            if case.path == PathKind::Naive {
                naive_rate = Some(rate);
            }
            let r = BenchResult {
                config: case.config_name(),
                path: case.path_name().to_string(),
                vocab,
                chars_per_sec: rate,
                gflops,
                efficiency: 0.0, // set below, once the calibration is complete
                speedup_vs_naive: naive_rate.map(|n| rate / n),
                peak_heap_bytes: peak,
                case,
            };
            progress(&format!(
                "  {} {}: {:.0} chars/s",
                r.config, r.path, r.chars_per_sec
            ));
            results.push(r);
        }
    }
    if results.is_empty() {
        let names: Vec<String> = configs(opts.quick)
            .iter()
            .map(|c| case_of(c, PathKind::Blas, 1, 1, Precision::F32).config_name())
            .collect();
        return Err(crate::error::Error::config(
            "--only",
            opts.only.join(","),
            format!(
                "no configuration matches; the names are {}",
                names.join(", ")
            ),
        ));
    }
    sgemm_samples.extend(sgemm_gflops(1024, sgemm_reps));
    let sgemm = median(&mut sgemm_samples);
    let bf16_peak = with_bf16.then(|| {
        bf16_samples.extend(bf16_gflops(1024, sgemm_reps));
        median(&mut bf16_samples)
    });
    // Against the machine's real peak: the faster of the active kernels and the best ones.
    let peak = opts
        .best_kernel
        .as_ref()
        .map_or(sgemm, |b| b.gflops.max(sgemm));
    for r in &mut results {
        let peak = match r.case.precision {
            Precision::F32 => peak,
            Precision::Bf16 => bf16_peak.unwrap_or(f64::NAN),
        };
        r.efficiency = r.gflops / (peak * r.case.threads as f64);
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let cpu = field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cpu_id = match (field("vendor_id"), field("cpu family"), field("model")) {
        (Some(v), Some(f), Some(m)) => format!("{v} family {f} model {m}"),
        _ => String::new(),
    };
    Ok(Report {
        machine: Machine {
            cpu,
            cpu_id,
            cores: opts.cores,
            blas_core: blas_corename(),
            blas_config: blas_config(),
            blas_threads: blas_threads(),
            isa: format!("{:?}", crate::linalg::isa()),
            bf16_kernel: bf16_peak.and(bf16::kernel()).map(|k| k.name().to_string()),
        },
        build: serde_json::to_value(BUILD).expect("plain data serialises to JSON"),
        corpus: format!("{} (V={vocab})", source.name()),
        sgemm_gflops: sgemm,
        bf16_gflops: bf16_peak,
        best_kernel: opts.best_kernel.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(effs: &[(&str, &str, f64)]) -> Report {
        let case = BenchCase {
            cell: CellKind::Rnn,
            layers: 1,
            hidden: 8,
            seq_len: 4,
            batch: 2,
            path: PathKind::Blas,
            threads: 1,
            shards: 1,
            precision: Precision::F32,
        };
        Report {
            machine: Machine {
                cpu: "test".into(),
                cpu_id: String::new(),
                isa: String::new(),
                cores: 1,
                blas_core: "x".into(),
                blas_config: "x".into(),
                blas_threads: 1,
                bf16_kernel: None,
            },
            build: serde_json::Value::Null,
            corpus: "test".into(),
            sgemm_gflops: 100.0,
            bf16_gflops: None,
            best_kernel: None,
            unix_time: 0,
            results: effs
                .iter()
                .map(|&(config, path, efficiency)| BenchResult {
                    config: config.into(),
                    path: path.into(),
                    case: case.clone(),
                    vocab: 20,
                    chars_per_sec: 1.0,
                    // Consistent with sgemm_gflops: the gate reads gflops ÷ calibration.
                    gflops: efficiency * 100.0,
                    efficiency,
                    speedup_vs_naive: None,
                    peak_heap_bytes: None,
                })
                .collect(),
        }
    }

    #[test]
    fn the_gate_passes_equal_reports_and_fails_regressed_or_missing_ones() {
        let base = report(&[("H512_T64_B64", "blas", 0.70), ("H75_T20_B1", "blas", 0.30)]);
        assert!(compare(&base, &base, 0.10).iter().all(|c| !c.regressed));
        // 9% slower passes a 10% gate; 11% slower does not.
        let ok = report(&[
            ("H512_T64_B64", "blas", 0.637),
            ("H75_T20_B1", "blas", 0.30),
        ]);
        assert!(compare(&base, &ok, 0.10).iter().all(|c| !c.regressed));
        let bad = report(&[("H512_T64_B64", "blas", 0.62), ("H75_T20_B1", "blas", 0.31)]);
        let rows = compare(&base, &bad, 0.10);
        assert_eq!(rows.iter().filter(|c| c.regressed).count(), 1);
        assert!(rows[0].regressed && rows[0].case == "H512_T64_B64 blas");
        assert!(comparison_markdown(&rows, 0.10).contains("REGRESSED"));
        let missing = report(&[("H75_T20_B1", "blas", 0.30)]);
        assert!(
            compare(&base, &missing, 0.10)[0].regressed,
            "a case that disappeared fails the gate"
        );
        // A multi-threaded case is compared, shown, and never fails the gate.
        let mut two = report(&[("H512_T64_B64", "blas_rayon", 0.70)]);
        two.results[0].case.threads = 2;
        let mut halved = two.clone();
        halved.results[0].gflops /= 2.0;
        let rows = compare(&two, &halved, 0.10);
        assert!(!rows[0].gated && !rows[0].regressed);
        assert!(comparison_markdown(&rows, 0.10).contains("not gated"));
    }

    #[test]
    fn flop_model_and_median() {
        assert_eq!(CharLm::vanilla(65, 75).flops_per_char(), 63_000.0);
        let gru = BenchCase {
            cell: CellKind::Gru,
            layers: 2,
            hidden: 512,
            seq_len: 64,
            batch: 64,
            path: PathKind::Blas,
            threads: 1,
            shards: 1,
            precision: Precision::F32,
        };
        assert_eq!(gru.config_name(), "GRU2_H512_T64_B64");
        // PERF.md: 6·[g·H·H + (L−1)·g·H·2H + H·V] = 14.35 MFLOP per character.
        assert_eq!(
            gru.model(65).flops_per_char(),
            6.0 * (3.0 * 512.0 * 512.0 + 3.0 * 512.0 * 1024.0 + 512.0 * 65.0)
        );
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
