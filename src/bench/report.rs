//! A throughput report, its Markdown table, and the regression gate between two reports.

use serde::{Deserialize, Serialize};

use crate::linalg::Precision;

use super::{BenchResult, KernelRate};

/// The machine a report was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (from /proc/cpuinfo where available).
    pub cpu: String,
    /// Vendor, family and model numbers (`AuthenticAMD family 26 model 2`): virtual machines
    /// often report a generic model name, so the gate compares these too.
    #[serde(default)]
    pub cpu_id: String,
    /// Cores available to the process.
    pub cores: usize,
    /// OpenBLAS's kernel family.
    pub blas_core: String,
    /// OpenBLAS's configuration string.
    pub blas_config: String,
    /// OpenBLAS threads inside each gemm during the run.
    pub blas_threads: usize,
    /// The instruction set charrnn's own kernels ran with ([`crate::linalg::isa`]).
    #[serde(default)]
    pub isa: String,
    /// The bf16 kernel of the bf16 cases (`amx`, `avx512-bf16`), when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_kernel: Option<String>,
}

/// A whole throughput report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// What build ran it (build.rs's record), as JSON.
    pub build: serde_json::Value,
    /// Corpus name and its V.
    pub corpus: String,
    /// Single-thread sgemm GFLOP/s at 1024³, measured in the same run: the median of samples
    /// taken before and after the cases, so that drift during the run is shared.
    pub sgemm_gflops: f64,
    /// Single-thread bf16 product GFLOP/s at 1024³ on [`Machine::bf16_kernel`], measured in
    /// the same run as sgemm, when there are bf16 cases: their efficiency is against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bf16_gflops: Option<f64>,
    /// The best kernel family's rate, when the active family is narrower than the CPU's
    /// best (efficiency is then against the faster of the two).
    #[serde(default)]
    pub best_kernel: Option<KernelRate>,
    /// When it was measured: seconds since the Unix epoch (0 in reports that predate it).
    #[serde(default)]
    pub unix_time: u64,
    /// One entry per case.
    pub results: Vec<BenchResult>,
}

impl Machine {
    /// True when efficiency measured on `other` is comparable with this machine's: the same
    /// CPU (name and, where both recorded them, family and model) and the same kernels.
    pub fn comparable(&self, other: &Machine) -> bool {
        self.cpu == other.cpu
            && self.blas_core == other.blas_core
            && (self.cpu_id.is_empty() || other.cpu_id.is_empty() || self.cpu_id == other.cpu_id)
    }
}

impl Report {
    /// A case's efficiency against this report's own calibration of the active kernels
    /// (`efficiency` itself is against the faster of those and the CPU's best kernels); bf16
    /// cases against the bf16 calibration.
    pub fn active_efficiency(&self, r: &BenchResult) -> f64 {
        let peak = match r.case.precision {
            Precision::F32 => self.sgemm_gflops,
            Precision::Bf16 => self.bf16_gflops.unwrap_or(f64::NAN),
        };
        r.gflops / (peak * r.case.threads as f64)
    }

    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "machine: {} ({} cores), BLAS core {}, charrnn kernels {}, corpus {}\nsingle-thread sgemm 1024³: {:.1} GFLOP/s{}{}\n\n\
             | config | path | threads | shards | chars/s | GFLOP/s | efficiency | × naive | peak heap |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            self.machine.cpu,
            self.machine.cores,
            self.machine.blas_core,
            self.machine.isa,
            self.corpus,
            self.sgemm_gflops,
            self.best_kernel.as_ref().map_or(String::new(), |b| format!(
                " with the active {} kernels; {:.1} GFLOP/s with {}, the CPU's own choice \
                 (efficiency is against the faster)",
                self.machine.blas_core, b.gflops, b.family
            )),
            self.bf16_gflops.map_or(String::new(), |g| format!(
                "; bf16 product 1024³ ({}): {g:.1} GFLOP/s (the bf16 cases' efficiency is against it)",
                self.machine.bf16_kernel.as_deref().unwrap_or("?")
            ))
        );
        for r in &self.results {
            s += &format!(
                "| {} | {} | {} | {} | {:.0} | {:.1} | {:.0}% | {} | {} |\n",
                r.config,
                r.path,
                r.case.threads,
                r.case.shards,
                r.chars_per_sec,
                r.gflops,
                100.0 * r.efficiency,
                r.speedup_vs_naive
                    .map_or("—".into(), |x| format!("{x:.1}×")),
                r.peak_heap_bytes.map_or("—".into(), |b| format!(
                    "{:.1} MiB",
                    b as f64 / (1 << 20) as f64
                )),
            );
        }
        s
    }
}

/// One line of a comparison between a baseline and a current report.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// `config path`.
    pub case: String,
    /// Baseline efficiency.
    pub baseline: f64,
    /// Current efficiency (None: the case is missing from the current report).
    pub current: Option<f64>,
    /// False for multi-threaded cases: their efficiency depends on the other cores being
    /// idle (a job on the second vCPU halved it), so they are reported, not gated.
    pub gated: bool,
    /// True when a gated case's current < baseline·(1 − threshold), or it is missing.
    pub regressed: bool,
}

/// Compares two reports case by case on efficiency against the active kernels' calibration
/// ([`Report::active_efficiency`]: both measured in one process, so the machine's speed of the
/// day divides out); `threshold` is the tolerated relative drop (0.10 = 10%). Single-thread
/// cases are gated; multi-threaded ones are compared and shown but never fail the gate.
pub fn compare(baseline: &Report, current: &Report, threshold: f64) -> Vec<Comparison> {
    baseline
        .results
        .iter()
        .map(|b| {
            let cur = current
                .results
                .iter()
                .find(|c| c.config == b.config && c.path == b.path);
            let base = baseline.active_efficiency(b);
            let current = cur.map(|c| current.active_efficiency(c));
            let gated = b.case.threads == 1;
            let regressed = gated && current.is_none_or(|e| e < base * (1.0 - threshold));
            Comparison {
                case: format!("{} {}", b.config, b.path),
                baseline: base,
                current,
                gated,
                regressed,
            }
        })
        .collect()
}

/// The verdict of the regression gate ([`gate`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Gate {
    /// The reports come from different CPUs or kernels, whose efficiencies are not
    /// comparable: nothing is gated. The message says what differs and what to do.
    NotComparable(String),
    /// Compared case by case: the rows, and the cases that regressed (none: passed).
    Compared {
        /// Every case of the baseline.
        rows: Vec<Comparison>,
        /// The gated cases whose efficiency dropped past the threshold, or that are missing.
        regressed: Vec<String>,
    },
}

/// Refuses a gate threshold outside [0, 1) (checked before measuring anything).
pub fn check_threshold(threshold: f64) -> crate::error::Result<()> {
    if threshold.is_finite() && (0.0..1.0).contains(&threshold) {
        return Ok(());
    }
    Err(crate::error::Error::config(
        "--threshold",
        threshold,
        "use a fraction in [0, 1), e.g. 0.1 for 10%",
    ))
}

/// The regression gate: `current` against `baseline` with the tolerated relative drop
/// `threshold` (in [0, 1)), when both were measured on the same CPU and kernels
/// ([`Machine::comparable`]); see [`compare`].
pub fn gate(baseline: &Report, current: &Report, threshold: f64) -> crate::error::Result<Gate> {
    check_threshold(threshold)?;
    let (b, c) = (&baseline.machine, &current.machine);
    if !b.comparable(c) {
        return Ok(Gate::NotComparable(format!(
            "the baseline was measured on {} ({}) with {} kernels, this report on {} ({}) with {} \
             (efficiency is comparable only on the same CPU and kernels; record a baseline on \
             this machine with --json)",
            b.cpu, b.cpu_id, b.blas_core, c.cpu, c.cpu_id, c.blas_core
        )));
    }
    let rows = compare(baseline, current, threshold);
    let regressed = rows
        .iter()
        .filter(|r| r.regressed)
        .map(|r| r.case.clone())
        .collect();
    Ok(Gate::Compared { rows, regressed })
}

/// A Markdown table of a comparison.
pub fn comparison_markdown(rows: &[Comparison], threshold: f64) -> String {
    let mut s = format!(
        "| case | baseline efficiency | current | change | verdict (threshold −{:.0}%) |\n|---|---|---|---|---|\n",
        threshold * 100.0
    );
    for r in rows {
        let (cur, change) = match r.current {
            Some(c) => (
                format!("{:.1}%", 100.0 * c),
                format!("{:+.1}%", 100.0 * (c / r.baseline - 1.0)),
            ),
            None => ("missing".into(), "—".into()),
        };
        let verdict = match (r.gated, r.regressed) {
            (false, _) => "not gated (threads > 1)",
            (true, true) => "REGRESSED",
            (true, false) => "ok",
        };
        s += &format!(
            "| {} | {:.1}% | {} | {} | {} |\n",
            r.case,
            100.0 * r.baseline,
            cur,
            change,
            verdict
        );
    }
    s
}
