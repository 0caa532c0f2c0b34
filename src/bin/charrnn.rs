//! The `charrnn` command line: parse flags, map them onto library configs, call the library.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;

use charrnn::bench;
use charrnn::build_info::BUILD;
use charrnn::checkpoint;
use charrnn::data::{Corpus, SymbolKind};
use charrnn::linalg::{blas_config, blas_corename, blas_threads, cpu_features, set_blas_threads};
use charrnn::model::{CellKind, Health, Init};
use charrnn::optim::{ClipMode, Optimizer, Schedule};
use charrnn::sample::{sample, SampleOptions};
use charrnn::session::{Observer, Outcome, Session, Source, TrainData};
use charrnn::synth;
use charrnn::train::{evaluate, EvalStats, PathKind, Progress, Stop, TrainConfig};

#[derive(Parser)]
#[command(
    name = "charrnn",
    version,
    about = "Train, sample and evaluate character-level RNNs, fast, on CPUs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model on a text file (or on the built-in corpus) and save it.
    Train(Box<TrainArgs>),
    /// Generate text from a saved model.
    Sample(SampleArgs),
    /// Report a saved model's loss (nats/char) and bits/char over a text.
    Eval(EvalArgs),
    /// Measure training throughput on this machine (and gate against a saved report).
    Bench(BenchArgs),
    /// Show a model file: configuration, vocabulary, size, progress, and the health of the
    /// recurrence (spectral radius of W_hh, weight norms).
    Inspect(InspectArgs),
}

#[derive(Args)]
struct BenchArgs {
    /// Fewer configurations and repetitions (well under a minute), for CI.
    #[arg(long)]
    quick: bool,
    /// Text to train on [default: the built-in corpus].
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compare against this saved report; exit 1 when any case's efficiency dropped by more
    /// than --threshold.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// With --compare: use this saved report as the current one instead of measuring.
    #[arg(long, requires = "compare")]
    current: Option<PathBuf>,
    /// Tolerated relative drop in efficiency.
    #[arg(long, default_value_t = 0.10)]
    threshold: f64,
}

#[derive(Clone, Copy, ValueEnum)]
enum Preset {
    /// The tutorial's run: hidden 75, seq-len 20, lr 1e-2, clip 5, 50 epochs, batch 1, the
    /// first 20,000 characters, init seed.
    Seed,
}

#[derive(Clone, Copy, ValueEnum)]
enum InitArg {
    Seed,
    Orthogonal,
    Xavier,
    Uniform,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum OptimizerArg {
    Adagrad,
    Sgd,
    Rmsprop,
    Adam,
}

#[derive(Clone, Copy, ValueEnum)]
enum ScheduleArg {
    Constant,
    Step,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClipModeArg {
    Elementwise,
    Norm,
}

#[derive(Clone, Copy, ValueEnum)]
enum CellArg {
    /// The tutorial's vanilla tanh RNN.
    Rnn,
    /// Gated recurrent unit (PyTorch's nn.GRU).
    Gru,
    /// Long short-term memory (PyTorch's nn.LSTM).
    Lstm,
}

#[derive(Clone, Copy, ValueEnum)]
enum PathArg {
    Blas,
    Naive,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct TrainArgs {
    /// Text file to train on (UTF-8; see --bytes). Default: the built-in synthetic corpus.
    corpus: Option<PathBuf>,
    /// Start from a preset configuration; the other flags override it.
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Recurrent cell [default: rnn, the tutorial's].
    #[arg(long, value_enum)]
    cell: Option<CellArg>,
    /// Stacked recurrent layers L [default: 1].
    #[arg(long)]
    layers: Option<usize>,
    /// Hidden units H of every layer [default: 128].
    #[arg(long)]
    hidden: Option<usize>,
    /// Characters per chunk of truncated BPTT, T [default: 32].
    #[arg(long)]
    seq_len: Option<usize>,
    /// Independent streams per step, B [default: 32].
    #[arg(long)]
    batch: Option<usize>,
    /// Update rule [default: adagrad, the tutorial's].
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerArg>,
    /// Learning rate [default: 0.05 for adagrad and sgd, 2e-3 for rmsprop and adam].
    #[arg(long)]
    lr: Option<f64>,
    /// SGD momentum (with --optimizer sgd) [default: 0.9].
    #[arg(long)]
    momentum: Option<f64>,
    /// RMSProp's decay of the squared-gradient average (with --optimizer rmsprop) [default: 0.95].
    #[arg(long)]
    rms_decay: Option<f64>,
    /// Adam's β₁ (with --optimizer adam) [default: 0.9].
    #[arg(long)]
    beta1: Option<f64>,
    /// Adam's β₂ (with --optimizer adam) [default: 0.999].
    #[arg(long)]
    beta2: Option<f64>,
    /// Adam's decoupled weight decay λ (AdamW; with --optimizer adam) [default: 0, plain Adam].
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Dropout between layers and before the output layer: the probability that an element
    /// of a layer's output is left out of what reads it (regularises large models; the
    /// recurrence is never masked) [default: 0].
    #[arg(long)]
    dropout: Option<f64>,
    /// DropConnect on the recurrence: the probability that an element of a layer's W_hh is
    /// left out of a step (one mask per layer, step and shard; regularises large models)
    /// [default: 0].
    #[arg(long)]
    weight_drop: Option<f64>,
    /// Learning-rate schedule [default: constant].
    #[arg(long, value_enum)]
    schedule: Option<ScheduleArg>,
    /// Step schedule: decay every N steps [default: 1000].
    #[arg(long)]
    decay_every: Option<u64>,
    /// Step schedule: multiply the rate by this at each decay [default: 0.5].
    #[arg(long)]
    gamma: Option<f64>,
    /// Cosine schedule: linear warm-up steps [default: 100].
    #[arg(long)]
    warmup: Option<u64>,
    /// Cosine schedule: final rate as a fraction of --lr [default: 0.1].
    #[arg(long)]
    min_lr_frac: Option<f64>,
    /// Gradient clipping bound [default: 5].
    #[arg(long)]
    clip: Option<f64>,
    /// Clip every element to ±clip (the tutorial's) or the gradient's global norm to clip
    /// [default: elementwise].
    #[arg(long, value_enum)]
    clip_mode: Option<ClipModeArg>,
    /// Passes over the corpus [default: 10].
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<u64>,
    /// Optimizer steps (instead of --epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Train on the first N characters only.
    #[arg(long)]
    max_chars: Option<usize>,
    /// Seed of the weight initialisation [default: 42].
    #[arg(long)]
    seed: Option<u64>,
    /// Weight initialisation [default: seed, the tutorial's]; `uniform` is PyTorch's
    /// U(±1/√H).
    #[arg(long, value_enum)]
    init: Option<InitArg>,
    /// Draw W_xh, the character embedding table, from N(0, σ²) with this σ instead of by
    /// --init (e.g. 1, nn.Embedding's scale: a strong input drive learns much faster at
    /// large H) [default: --init's scale].
    #[arg(long)]
    embed_std: Option<f64>,
    /// Threads running the shards in parallel [default: the available cores]. Results do not
    /// depend on it.
    #[arg(long, conflicts_with = "blas_threads")]
    threads: Option<usize>,
    /// Groups of streams computed in parallel [default: one per 16 streams, at most 16]. Part
    /// of the run's config: the same value gives the same bits on any number of threads.
    #[arg(long, conflicts_with = "blas_threads")]
    shards: Option<usize>,
    /// The other strategy, for comparison: one shard, one rayon thread, and N OpenBLAS threads
    /// inside every gemm.
    #[arg(long)]
    blas_threads: Option<usize>,
    /// Implementation: the BLAS-batched fast path or the per-character reference loop
    /// [default: blas].
    #[arg(long, value_enum)]
    path: Option<PathArg>,
    /// Train on raw bytes instead of UTF-8 characters.
    #[arg(long)]
    bytes: bool,
    /// Fraction of the corpus (its end) held out for validation; 0 disables [default: 0.1,
    /// 0 for --preset seed].
    #[arg(long)]
    val_frac: Option<f64>,
    /// Steps between validations, saves of model.safetensors, metrics lines and plots
    /// [default: 500; the end of the run always gets one].
    #[arg(long)]
    eval_every: Option<u64>,
    /// Run directory: model.safetensors, best.safetensors, metrics.jsonl, loss.png.
    #[arg(long, default_value = "run", conflicts_with = "resume")]
    out: PathBuf,
    /// Replace a model already in --out instead of refusing to.
    #[arg(long)]
    force: bool,
    /// Continue the run saved in DIR exactly where it stopped (same corpus; --steps or
    /// --epochs may extend it).
    #[arg(long, value_name = "DIR")]
    resume: Option<PathBuf>,
    /// Print a progress line every N steps when stderr is not a terminal (0: about once a
    /// second).
    #[arg(long, default_value_t = 0)]
    log_every: u64,
    /// No progress lines; only the summary.
    #[arg(long)]
    quiet: bool,
    /// End stdout with one JSON object summarising the run.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
struct SampleArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    model: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    len: usize,
    /// Softmax temperature: < 1 is more conservative, 0 always takes the most likely character.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Text to start from (it warms the hidden state and is printed first).
    #[arg(long, default_value = "")]
    prime: String,
    /// Seed: the same seed gives the same text.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Sample only among the K most likely characters.
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample only among the most likely characters that make up probability mass P.
    #[arg(long)]
    top_p: Option<f64>,
    /// Always take the most likely character (same as --temperature 0).
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    argmax: bool,
    /// Drop characters of --prime that the model does not know (with a note) instead of
    /// refusing.
    #[arg(long)]
    skip_unknown: bool,
}

#[derive(Args)]
struct InspectArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    model: PathBuf,
    /// End stdout with one JSON object of everything shown.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvalArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    model: PathBuf,
    /// Text to evaluate on.
    corpus: PathBuf,
    /// Evaluate at most this many streams at once.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Threads [default: the available cores]; the result does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// End stdout with one JSON object {loss, bpc, chars}.
    #[arg(long)]
    json: bool,
}

/// Re-executes this program once with the environment OpenBLAS must see at load time: the
/// BLAS thread count, and a CPU-specific kernel family when OpenBLAS fell back to generic
/// kernels on a CPU it does not recognise.
fn reexec_for_blas(blas_threads: usize) {
    const GUARD: &str = "CHARRNN_REEXEC";
    if std::env::var_os(GUARD).is_some() {
        return;
    }
    let core = blas_corename();
    let fixes = charrnn::linalg::blas_env_fixes(
        |k| std::env::var(k).ok(),
        &core,
        cpu_features(),
        blas_threads,
    );
    if fixes.is_empty() {
        return;
    }
    if let Some((_, kind)) = fixes.iter().find(|(k, _)| *k == "OPENBLAS_CORETYPE") {
        eprintln!(
            "note: OpenBLAS chose its generic '{core}' kernels on this CPU, which has {}; \
             restarting with OPENBLAS_CORETYPE={kind} (set OPENBLAS_CORETYPE yourself to override)",
            if kind == "SkylakeX" {
                "AVX-512"
            } else {
                "AVX2"
            }
        );
    }
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.args(std::env::args_os().skip(1))
        .env(GUARD, "1")
        .envs(fixes.iter().map(|(k, v)| (k, v)));
    // exec only returns on failure; then run on in this process with BLAS threads set below.
    let err = cmd.exec();
    eprintln!("note: could not re-execute with {fixes:?} ({err}); continuing without");
}

/// The build targets x86-64-v3 (.cargo/config.toml); on an older CPU say so instead of
/// dying of an illegal instruction somewhere in the first gemm.
fn check_cpu() -> Result<(), String> {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        return Err("this charrnn was built for x86-64-v3 CPUs (AVX2 + FMA) and this CPU lacks them: \
                    rebuild with `RUSTFLAGS=\"\" cargo build --release` or remove .cargo/config.toml"
            .into());
    }
    Ok(())
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of stdout goes away
    // (`charrnn sample | head`) instead of panicking on a failed print.
    // SAFETY: restores the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = check_cpu() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    let blas_threads = match &cli.command {
        Command::Train(a) => a.blas_threads.unwrap_or(1),
        _ => 1,
    };
    reexec_for_blas(blas_threads);
    // charrnn's parallelism is its streams (rayon shards); OpenBLAS threading inside each gemm
    // collapses under load. Multi-threaded BLAS only with --blas-threads. Set before any gemm.
    set_blas_threads(blas_threads);
    let result = match cli.command {
        Command::Train(a) => train(*a),
        Command::Sample(a) => sample_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Eval(a) => eval_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Bench(a) => bench_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Inspect(a) => inspect_cmd(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_from(a: &TrainArgs) -> TrainConfig {
    let mut c = match a.preset {
        Some(Preset::Seed) => TrainConfig::seed_preset(),
        None => TrainConfig::default(),
    };
    if let Some(cell) = a.cell {
        c.model.cell = match cell {
            CellArg::Rnn => CellKind::Rnn,
            CellArg::Gru => CellKind::Gru,
            CellArg::Lstm => CellKind::Lstm,
        };
    }
    c.model.layers = a.layers.unwrap_or(c.model.layers);
    c.model.hidden = a.hidden.unwrap_or(c.model.hidden);
    c.data.seq_len = a.seq_len.unwrap_or(c.data.seq_len);
    c.data.batch = a.batch.unwrap_or(c.data.batch);
    if let Some(o) = a.optimizer {
        c.optim.optimizer = match o {
            OptimizerArg::Adagrad => Optimizer::Adagrad,
            OptimizerArg::Sgd => Optimizer::Sgd {
                momentum: a.momentum.unwrap_or(0.9),
            },
            OptimizerArg::Rmsprop => Optimizer::Rmsprop {
                decay: a.rms_decay.unwrap_or(0.95),
            },
            OptimizerArg::Adam => Optimizer::Adam {
                beta1: a.beta1.unwrap_or(0.9),
                beta2: a.beta2.unwrap_or(0.999),
                weight_decay: a.weight_decay.unwrap_or(0.0),
            },
        };
        c.optim.lr = c.optim.optimizer.default_lr();
    }
    c.optim.lr = a.lr.unwrap_or(c.optim.lr);
    c.optim.clip = a.clip.unwrap_or(c.optim.clip);
    if let Some(m) = a.clip_mode {
        c.optim.clip_mode = match m {
            ClipModeArg::Elementwise => ClipMode::Elementwise,
            ClipModeArg::Norm => ClipMode::Norm,
        };
    }
    if let Some(sch) = a.schedule {
        c.optim.schedule = match sch {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::Step {
                every: a.decay_every.unwrap_or(1000),
                gamma: a.gamma.unwrap_or(0.5),
            },
            ScheduleArg::Cosine => Schedule::Cosine {
                warmup: a.warmup.unwrap_or(100),
                min_frac: a.min_lr_frac.unwrap_or(0.1),
            },
        };
    }
    if let Some(e) = a.epochs {
        c.run.stop = Stop::Epochs(e);
    }
    if let Some(s) = a.steps {
        c.run.stop = Stop::Steps(s);
    }
    c.data.max_chars = a.max_chars.or(c.data.max_chars);
    c.run.seed = a.seed.unwrap_or(c.run.seed);
    if let Some(i) = a.init {
        c.model.init = match i {
            InitArg::Seed => Init::Seed,
            InitArg::Orthogonal => Init::Orthogonal,
            InitArg::Xavier => Init::Xavier,
            InitArg::Uniform => Init::Uniform,
        };
    }
    c.model.embed_std = a.embed_std.or(c.model.embed_std);
    if let Some(p) = a.path {
        c.run.path = match p {
            PathArg::Blas => PathKind::Blas,
            PathArg::Naive => PathKind::Naive,
        };
    }
    c.data.val_frac = a.val_frac.unwrap_or(c.data.val_frac);
    c.optim.dropout = a.dropout.unwrap_or(c.optim.dropout);
    c.optim.weight_drop = a.weight_drop.unwrap_or(c.optim.weight_drop);
    c.run.eval_every = a.eval_every.unwrap_or(c.run.eval_every);
    if a.blas_threads.is_some() {
        c.run.shards = Some(1);
    } else if a.shards.is_some() {
        c.run.shards = a.shards;
    }
    c.data.symbols = if a.bytes {
        SymbolKind::Bytes
    } else {
        SymbolKind::Chars
    };
    c
}

/// Refuses a setting of an optimizer or schedule the run does not use (it would be ignored
/// without a word): `--weight-decay` without `--optimizer adam`, `--warmup` without
/// `--schedule cosine`, and so on.
fn check_flag_scope(a: &TrainArgs) -> Result<()> {
    use OptimizerArg::{Adam, Rmsprop, Sgd};
    use ScheduleArg::{Cosine, Step};
    let (opt, sch) = (a.optimizer, a.schedule);
    let scoped = [
        (
            "--momentum",
            a.momentum.is_some(),
            matches!(opt, Some(Sgd)),
            "--optimizer sgd",
        ),
        (
            "--rms-decay",
            a.rms_decay.is_some(),
            matches!(opt, Some(Rmsprop)),
            "--optimizer rmsprop",
        ),
        (
            "--beta1",
            a.beta1.is_some(),
            matches!(opt, Some(Adam)),
            "--optimizer adam",
        ),
        (
            "--beta2",
            a.beta2.is_some(),
            matches!(opt, Some(Adam)),
            "--optimizer adam",
        ),
        (
            "--weight-decay",
            a.weight_decay.is_some(),
            matches!(opt, Some(Adam)),
            "--optimizer adam",
        ),
        (
            "--decay-every",
            a.decay_every.is_some(),
            matches!(sch, Some(Step)),
            "--schedule step",
        ),
        (
            "--gamma",
            a.gamma.is_some(),
            matches!(sch, Some(Step)),
            "--schedule step",
        ),
        (
            "--warmup",
            a.warmup.is_some(),
            matches!(sch, Some(Cosine)),
            "--schedule cosine",
        ),
        (
            "--min-lr-frac",
            a.min_lr_frac.is_some(),
            matches!(sch, Some(Cosine)),
            "--schedule cosine",
        ),
    ];
    for (flag, given, used, needs) in scoped {
        if given && !used {
            bail!("{flag} applies only with {needs}: add {needs}, or leave out {flag}");
        }
    }
    Ok(())
}

/// The flags that define a run; a resumed run takes them from its model file.
fn run_defining_flags(a: &TrainArgs) -> Vec<&'static str> {
    let set = [
        ("--preset", a.preset.is_some()),
        ("--cell", a.cell.is_some()),
        ("--layers", a.layers.is_some()),
        ("--hidden", a.hidden.is_some()),
        ("--seq-len", a.seq_len.is_some()),
        ("--batch", a.batch.is_some()),
        ("--optimizer", a.optimizer.is_some()),
        ("--momentum", a.momentum.is_some()),
        ("--rms-decay", a.rms_decay.is_some()),
        ("--beta1", a.beta1.is_some()),
        ("--beta2", a.beta2.is_some()),
        ("--weight-decay", a.weight_decay.is_some()),
        ("--decay-every", a.decay_every.is_some()),
        ("--gamma", a.gamma.is_some()),
        ("--warmup", a.warmup.is_some()),
        ("--min-lr-frac", a.min_lr_frac.is_some()),
        ("--lr", a.lr.is_some()),
        ("--schedule", a.schedule.is_some()),
        ("--clip", a.clip.is_some()),
        ("--clip-mode", a.clip_mode.is_some()),
        ("--max-chars", a.max_chars.is_some()),
        ("--seed", a.seed.is_some()),
        ("--init", a.init.is_some()),
        ("--embed-std", a.embed_std.is_some()),
        ("--shards", a.shards.is_some()),
        ("--blas-threads", a.blas_threads.is_some()),
        ("--path", a.path.is_some()),
        ("--bytes", a.bytes),
        ("--val-frac", a.val_frac.is_some()),
        ("--dropout", a.dropout.is_some()),
        ("--weight-drop", a.weight_drop.is_some()),
        ("--eval-every", a.eval_every.is_some()),
    ];
    set.iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect()
}

/// SIGINT/SIGTERM handling: the first signal asks the loop to stop after the current step
/// (it then saves and exits 130 or 143); a second one exits at once with that code. Every
/// file is written atomically, so an exit at any moment leaves the last save loadable.
struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    fn install() -> Result<Interrupt> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let signal = Arc::new(AtomicUsize::new(0));
        let asked = Arc::new(AtomicBool::new(false));
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees `asked` still false on the first signal.
            signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, Arc::clone(&asked))
                .context("cannot install the signal handlers")?;
            signal_hook::flag::register(sig, Arc::clone(&asked))
                .context("cannot install the signal handlers")?;
            signal_hook::flag::register_usize(sig, Arc::clone(&signal), sig as usize)
                .context("cannot install the signal handlers")?;
        }
        Ok(Interrupt { signal })
    }

    /// The signal received, if any.
    fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// Progress display: a bar on a terminal, plain lines otherwise, nothing with --quiet.
enum Display {
    Bar(indicatif::ProgressBar),
    Lines { every: u64, last: Instant },
    Quiet,
}

impl Display {
    fn new(a: &TrainArgs) -> Display {
        use std::io::IsTerminal;
        if a.quiet {
            Display::Quiet
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::hidden();
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} steps | {msg} | ETA {eta}",
            )
            .expect("valid template");
            bar.set_style(style);
            Display::Bar(bar)
        } else {
            Display::Lines {
                every: a.log_every,
                last: Instant::now(),
            }
        }
    }
}

impl Observer for Display {
    fn started(&mut self, session: &Session) {
        let t = &session.trainer;
        if let Display::Bar(bar) = self {
            bar.set_length(t.total_steps());
            bar.set_position(t.progress.step);
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
        if matches!(self, Display::Quiet) {
            return;
        }
        let (c, data) = (&t.config, &session.data);
        eprintln!(
            "{}: {} training symbols{}, V={}, {}, {}, {} steps ({} per \
             epoch), path {:?}, {} shard(s) on {} thread(s), BLAS core {} with {} thread(s)",
            if session.resumed {
                format!("resuming at step {}", t.progress.step)
            } else {
                "training".into()
            },
            data.train.ids.len(),
            data.val
                .as_ref()
                .map_or(String::new(), |v| format!(" + {} validation", v.ids.len())),
            data.train.vocab.len(),
            c.describe_model(),
            c.describe_step(),
            t.total_steps(),
            t.streams.steps_per_epoch(),
            c.run.path,
            t.num_shards(),
            t.threads(),
            blas_corename(),
            blas_threads()
        );
    }

    fn stepped(&mut self, p: &Progress, total: u64, rate: f64, force: bool) {
        let val = p
            .best_val
            .map_or(String::new(), |(v, _)| format!(" | best val {v:.4}"));
        match self {
            Display::Bar(bar) => {
                bar.set_position(p.step);
                bar.set_message(format!(
                    "loss {:.4} nats/char{val} | {rate:.0} chars/s",
                    p.last_loss
                ));
            }
            Display::Lines { every, last } => {
                let due = if *every > 0 {
                    p.step % *every == 0
                } else {
                    last.elapsed().as_secs_f64() >= 1.0
                };
                if due || force {
                    *last = Instant::now();
                    eprintln!(
                        "step {:>7}/{total} | epoch {:>3} | loss {:.4} nats/char | smooth {:.3}{val} | {rate:.0} chars/s",
                        p.step,
                        p.epoch + 1,
                        p.last_loss,
                        p.smooth_loss
                    );
                }
            }
            Display::Quiet => {}
        }
    }

    fn evaluated(&mut self, step: u64, s: &EvalStats, best: bool) {
        self.note(&format!(
            "step {step}: validation loss {:.4} nats/char ({:.4} bits/char){}",
            s.loss,
            s.bpc,
            if best {
                ", best so far: saved best.safetensors"
            } else {
                ""
            }
        ));
    }

    fn note(&mut self, msg: &str) {
        match self {
            Display::Bar(bar) => bar.println(msg),
            Display::Lines { .. } => eprintln!("{msg}"),
            // Notes about the data are worth the space even with --quiet.
            Display::Quiet if msg.starts_with("note:") => eprintln!("{msg}"),
            Display::Quiet => {}
        }
    }

    fn finished(&mut self) {
        if let Display::Bar(bar) = self {
            bar.finish();
        }
    }
}

fn train(a: TrainArgs) -> Result<ExitCode> {
    let stop = Interrupt::install()?;
    let mut session = match &a.resume {
        Some(dir) => {
            let flags = run_defining_flags(&a);
            if !flags.is_empty() {
                bail!(
                    "{} cannot change when resuming: a resumed run continues with the configuration saved in \
                     {}/model.safetensors (only --steps, --epochs, --threads and the display flags apply)",
                    flags.join(", "),
                    dir.display()
                );
            }
            let end = match (a.epochs, a.steps) {
                (Some(e), _) => Some(Stop::Epochs(e)),
                (_, Some(s)) => Some(Stop::Steps(s)),
                _ => None,
            };
            Session::resume(dir, a.corpus.clone().map(Source::File), end)?
        }
        None => {
            check_flag_scope(&a)?;
            let config = config_from(&a);
            config.validate()?;
            let source = match &a.corpus {
                Some(path) => Source::File(path.clone()),
                None => {
                    if !a.quiet {
                        eprintln!(
                            "no corpus given: training on the built-in synthetic corpus ({} characters of a random \
                             order-2 Markov source; the best possible loss is its entropy rate, {:.4} nats/char)",
                            synth::BUILTIN_CHARS,
                            synth::MarkovSource::builtin().entropy_rate_nats()
                        );
                    }
                    Source::Builtin
                }
            };
            let data = TrainData::load(&source, &config)?;
            Session::start(config, data, &a.out, a.force)?
        }
    };
    // Threaded BLAS runs one shard on one rayon thread; otherwise set_threads caps the pool at
    // the number of shards.
    let threads = if a.blas_threads.is_some() {
        1
    } else {
        a.threads.unwrap_or_else(available_cores)
    };
    if threads == 0 {
        bail!("invalid --threads = 0: use at least 1 thread");
    }
    session.trainer.set_threads(threads)?;
    let mut display = Display::new(&a);
    let report = session.run(&mut display, &|| stop.requested())?;
    let (t, run) = (&session.trainer, &session.run);
    if let Outcome::Interrupted(sig) = report.outcome {
        eprintln!(
            "interrupted ({}) at step {}: saved {}; continue with `charrnn train --resume {}`",
            if sig == signal_hook::consts::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            },
            t.progress.step,
            run.model().display(),
            run.dir().display()
        );
        return Ok(ExitCode::from((128 + sig) as u8));
    }
    let p = &t.progress;
    let last_val = report.last_val;
    println!(
        "trained {} steps ({} chars) in {:.2} s: {:.0} chars/s; final loss {:.4} nats/char ({:.4} bits/char), smoothed loss {:.3}{}",
        p.step,
        p.chars_seen,
        report.seconds,
        report.chars_per_sec(),
        p.last_loss,
        p.last_loss / std::f64::consts::LN_2,
        p.smooth_loss,
        last_val.map_or(String::new(), |v: EvalStats| format!("; validation loss {:.4} nats/char ({:.4} bits/char)", v.loss, v.bpc))
    );
    println!(
        "saved {} (plot: {}, metrics: {})",
        run.model().display(),
        run.plot().display(),
        run.metrics().display()
    );
    if a.json {
        let summary = json!({
            "chars_per_sec": report.chars_per_sec(),
            "steps": p.step,
            "epochs": p.epoch + u64::from(p.step_in_epoch as usize == t.streams.steps_per_epoch()),
            "chars_seen": p.chars_seen,
            "final_loss": p.last_loss,
            "smooth_loss": p.smooth_loss,
            "val_loss": last_val.map(|v| v.loss),
            "val_bpc": last_val.map(|v| v.bpc),
            "best_val_loss": p.best_val.map(|b| b.0),
            "seconds": report.seconds,
            "model": run.model(),
            "config": t.config,
            "blas_core": blas_corename(),
            "blas_config": blas_config(),
            "blas_threads": blas_threads(),
            "threads": t.threads(),
            "shards": t.num_shards(),
            "build": BUILD,
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect_cmd(a: InspectArgs) -> Result<()> {
    let ck = checkpoint::load(&a.model)?;
    let (m, h) = (ck.model, ck.model.hidden);
    let Health { radii, norms } = m
        .health(&ck.params)
        .map_err(|e| anyhow::anyhow!("{}: {e}", a.model.display()))?;
    let symbols: Vec<String> = ck.vocab.symbols.iter().map(|&s| ck.vocab.show(s)).collect();
    let p = &ck.progress;
    let c = &ck.config;
    println!("model file   {}", a.model.display());
    println!(
        "model        {} layer(s) of {}, V={} H={}, {} parameters",
        m.layers,
        m.cell.long_name(),
        m.vocab,
        h,
        m.num_params()
    );
    println!(
        "training     {}, init {:?}{}, seed {}, {} shard(s)",
        c.describe_step(),
        c.model.init,
        c.model
            .embed_std
            .map(|s| format!(" with W_xh ~ N(0, {s}²)"))
            .unwrap_or_default(),
        c.run.seed,
        c.shard_count()
    );
    println!(
        "progress     step {} (epoch {}), {} characters seen, last loss {:.4} nats/char, smoothed {:.3}",
        p.step, p.epoch, p.chars_seen, p.last_loss, p.smooth_loss
    );
    match p.best_val {
        Some((v, at)) => println!(
            "best val     {v:.4} nats/char ({:.4} bits/char) at step {at}",
            v / std::f64::consts::LN_2
        ),
        None => println!("best val     none (no validation split)"),
    }
    if let Some(info) = &ck.corpus {
        println!("corpus       {} ({})", info.source, info.fingerprint);
    }
    println!(
        "vocabulary   {} {:?}: {}",
        ck.vocab.len(),
        ck.vocab.kind,
        symbols.join(" ")
    );
    let gate_names = m.cell.gate_names();
    for (l, blocks) in radii.iter().enumerate() {
        let shown: Vec<String> = blocks
            .iter()
            .zip(gate_names)
            .map(|(r, g)| {
                if g.is_empty() {
                    format!("{r:.4}")
                } else {
                    format!("{g} {r:.4}")
                }
            })
            .collect();
        let top = blocks.iter().copied().fold(0.0, f64::max);
        println!(
            "recurrence   layer {l}: spectral radius of W_hh {} ({})",
            shown.join(", "),
            if top < 1.0 {
                "contracting: the state forgets"
            } else {
                "≥ 1: its linear part can amplify the state, which the nonlinearity bounds"
            }
        );
    }
    println!(
        "norms        {}",
        norms
            .iter()
            .map(|(n, v)| format!("|{n}| {v:.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if a.json {
        let norms: serde_json::Map<String, serde_json::Value> = norms
            .iter()
            .map(|(n, v)| (n.to_string(), json!(v)))
            .collect();
        println!(
            "{}",
            json!({
                "vocab": m.vocab,
                "hidden": h,
                "cell": m.cell,
                "layers": m.layers,
                "parameters": m.num_params(),
                "config": ck.config,
                "progress": ck.progress,
                "symbols": symbols,
                "spectral_radius_w_hh": radii,
                "norms": norms,
                "corpus": ck.corpus,
            })
        );
    }
    Ok(())
}

/// The cores this process may use (1 when that cannot be told).
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn sample_cmd(a: SampleArgs) -> Result<()> {
    let ck = checkpoint::load(&a.model)?;
    let prime = if a.skip_unknown {
        let (kept, unknown) = ck.vocab.keep_known(&a.prime);
        if !unknown.is_empty() {
            eprintln!(
                "note: skipped {} symbol(s) of --prime the model does not know: {}",
                unknown.len(),
                unknown.join(" ")
            );
        }
        kept
    } else {
        a.prime
    };
    let opts = SampleOptions {
        len: a.len,
        temperature: if a.argmax { 0.0 } else { a.temperature },
        prime,
        seed: a.seed,
        top_k: a.top_k,
        top_p: a.top_p,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    sample(&ck.model, &ck.params, &ck.vocab, &opts, |bytes| {
        out.write_all(bytes)?;
        // Stream: show each character as it is generated.
        out.flush()
    })?;
    writeln!(out).context("cannot write to stdout")?;
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> Result<()> {
    let ck = checkpoint::load(&a.model)?;
    if a.batch == 0 {
        bail!("invalid --batch = 0: evaluate at least 1 stream at a time");
    }
    let bytes = std::fs::read(&a.corpus)
        .with_context(|| format!("cannot read corpus {}", a.corpus.display()))?;
    let corpus = Corpus::with_vocab(
        &ck.vocab,
        &bytes,
        "evaluation corpus",
        &a.corpus.display().to_string(),
    )?;
    let threads = a.threads.unwrap_or_else(available_cores);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .context("cannot start the evaluation threads")?;
    let stats = pool.install(|| {
        evaluate(
            &ck.model,
            &ck.params,
            &corpus.ids,
            ck.config.data.seq_len,
            a.batch,
        )
    })?;
    println!(
        "{}: loss {:.4} nats/char, {:.4} bits/char over {} characters",
        a.corpus.display(),
        stats.loss,
        stats.bpc,
        stats.chars
    );
    if a.json {
        println!(
            "{}",
            json!({ "loss": stats.loss, "bpc": stats.bpc, "chars": stats.chars })
        );
    }
    Ok(())
}

/// Counts heap bytes in use and their peak, so `charrnn bench` can report each case's memory.
struct CountingAlloc;

static HEAP_NOW: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only
// observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            let now = HEAP_NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            HEAP_NOW.fetch_sub(layout.size(), Ordering::Relaxed);
            let now = HEAP_NOW.fetch_add(new_size, Ordering::Relaxed) + new_size;
            HEAP_PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn read_report(path: &std::path::Path) -> Result<bench::Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read report {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a charrnn bench report (written by `charrnn bench --json`)",
            path.display()
        )
    })
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    if !(a.threshold.is_finite() && (0.0..1.0).contains(&a.threshold)) {
        bail!(
            "invalid --threshold = {}: use a fraction in [0, 1), e.g. 0.1 for 10%",
            a.threshold
        );
    }
    let current = match &a.current {
        Some(path) => read_report(path)?,
        None => run_bench(&a)?,
    };
    if a.current.is_none() {
        println!("{}", current.markdown());
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&current).context("cannot serialise the report")?;
        checkpoint::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.compare {
        let baseline = read_report(path)?;
        let rows = bench::compare(&baseline, &current, a.threshold);
        println!("{}", bench::comparison_markdown(&rows, a.threshold));
        let bad: Vec<&str> = rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.case.as_str())
            .collect();
        if !bad.is_empty() {
            bail!(
                "performance regressed against {}: {} (efficiency down more than {:.0}%, or missing)",
                path.display(),
                bad.join(", "),
                a.threshold * 100.0
            );
        }
        println!("no regression against {}", path.display());
    }
    Ok(())
}

fn run_bench(a: &BenchArgs) -> Result<bench::Report> {
    let source = match &a.corpus {
        Some(path) => Source::File(path.clone()),
        None => Source::Builtin,
    };
    let opts = bench::Options {
        quick: a.quick,
        cores: available_cores(),
    };
    Ok(bench::run(&opts, &source, &HeapCounter, &mut |line| {
        eprintln!("{line}")
    })?)
}

/// The heap counters of [`CountingAlloc`], for `bench`'s peak-heap column.
struct HeapCounter;

impl bench::HeapProbe for HeapCounter {
    fn start(&self) -> usize {
        let now = HEAP_NOW.load(Ordering::Relaxed);
        HEAP_PEAK.store(now, Ordering::Relaxed);
        now
    }

    fn peak_since(&self, start: usize) -> Option<u64> {
        Some(HEAP_PEAK.load(Ordering::Relaxed).saturating_sub(start) as u64)
    }
}
