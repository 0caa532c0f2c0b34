//! The `charrnn` command line: parse flags, map them onto library configs, call the library,
//! print. The flags are in `args.rs`, their mapping onto the configuration in `flags.rs`,
//! `train`'s signals, display and summary in `train.rs`, `prepare` and `synth` in `data.rs`,
//! the heap counter for `bench` in `heap.rs`; the math, the training session and every
//! decision of policy are the library's.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::json;

use charrnn::bench;
use charrnn::checkpoint;
use charrnn::data::Corpus;
use charrnn::linalg::{blas_corename, cpu_features, set_blas_threads};
use charrnn::model::Health;
use charrnn::parallel::launch::{available_cores, Launch};
use charrnn::sample::{sample, SampleOptions};
use charrnn::session::Source;
use charrnn::train::{evaluate_in, Evaluation, EVAL_SHARD};

mod args;
mod data;
mod flags;
mod heap;
mod train;

use args::{BenchArgs, Cli, Command, EvalArgs, InspectArgs, SampleArgs};
use heap::HeapCounter;

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

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of stdout goes away
    // (`charrnn sample | head`) instead of panicking on a failed print.
    // SAFETY: restores the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Err(e) = charrnn::linalg::kernels_from_env(|k| std::env::var(k).ok()) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let blas_threads = match &cli.command {
        Command::Train(a) => a.blas_threads.unwrap_or(1),
        _ => 1,
    };
    reexec_for_blas(blas_threads);
    // charrnn's parallelism is its streams (rayon shards); OpenBLAS threading inside each gemm
    // collapses under load. Multi-threaded BLAS only with --blas-threads. Set before any gemm.
    set_blas_threads(blas_threads);
    let launch = Launch::from_env(|k| std::env::var(k).ok());
    // Rank 0 speaks for an mpirun.
    if launch.is_none_or(|l| l.rank == 0)
        && matches!(
            cli.command,
            Command::Train(_) | Command::Bench(_) | Command::Eval(_)
        )
    {
        if let Some(note) = blas_kernel_note() {
            eprintln!("{note}");
        }
    }
    if let Some(l) = launch.filter(|l| l.size > 1) {
        if !matches!(cli.command, Command::Train(_)) {
            eprintln!(
                "error: under mpirun ({} processes) only `charrnn train` runs: run the other commands without mpirun",
                l.size
            );
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Train(a) => train::train(*a, launch),
        Command::Sample(a) => sample_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Eval(a) => eval_cmd(a),
        Command::Bench(a) => bench_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Inspect(a) => inspect_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Prepare(a) => data::prepare_cmd(a).map(|()| ExitCode::SUCCESS),
        Command::Synth(a) => data::synth_cmd(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        "model        {} layer(s) of {}, V={}{} H={}, {} parameters",
        m.layers,
        m.cell.long_name(),
        m.vocab,
        m.embed
            .map(|e| format!(" (embedded in E={e})"))
            .unwrap_or_default(),
        h,
        m.num_params()
    );
    println!(
        "training     {}, init {:?}{}, seed {}, {} shard(s)",
        c.describe_step(),
        c.model.init,
        c.model
            .embed_std
            .map(|s| format!(" with the embedding ~ N(0, {s}²)"))
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
                "embed": m.embed,
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

/// [`charrnn::linalg::kernel_note`] for this process: set when the environment holds
/// OpenBLAS on narrower kernels than this CPU runs.
pub(crate) fn blas_kernel_note() -> Option<String> {
    charrnn::linalg::kernel_note(|k| std::env::var(k).ok(), &blas_corename(), cpu_features())
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

fn eval_cmd(a: EvalArgs) -> Result<ExitCode> {
    let ck = checkpoint::load(&a.model)?;
    if a.batch == 0 {
        bail!("invalid --batch = 0: evaluate at least 1 stream at a time");
    }
    let name = a.corpus.display().to_string();
    let (corpus, skipped) = Corpus::for_evaluation(&a.corpus, &ck.vocab, a.skip_unknown)?;
    if skipped.count > 0 {
        eprintln!(
            "note: skipped {} character(s) the model does not know ({} distinct: {})",
            skipped.count,
            skipped.symbols.len(),
            skipped.symbols.join(" ")
        );
    }
    let threads = a.threads.unwrap_or_else(available_cores);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .context("cannot start the evaluation threads")?;
    let seq_len = ck.config.data.seq_len;
    let precision = a.precision.unwrap_or(ck.config.run.precision);
    // From here on a signal ends the evaluation after its current chunk (before, the default
    // action ends the process at once).
    let stop = train::Interrupt::install()?;
    let result = evaluate_in(
        &ck.model,
        &ck.params,
        &corpus.ids,
        seq_len,
        a.batch,
        EVAL_SHARD,
        precision,
        Some(&pool),
        None,
        &|| stop.requested(),
    )?;
    let stats = match result {
        Evaluation::Done(stats) => stats,
        Evaluation::Interrupted(sig) => {
            eprintln!(
                "interrupted ({}): evaluation of {name} abandoned",
                train::signal_name(sig)
            );
            return Ok(ExitCode::from((128 + sig) as u8));
        }
    };
    let streams = stats.streams;
    println!(
        "{name}: loss {:.4} nats/char, {:.4} bits/char over {} characters ({streams} stream(s), each from a zero state)",
        stats.loss, stats.bpc, stats.chars
    );
    if a.json {
        println!(
            "{}",
            json!({ "loss": stats.loss, "bpc": stats.bpc, "chars": stats.chars, "streams": streams, "skipped": skipped.count })
        );
    }
    Ok(ExitCode::SUCCESS)
}

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

/// The single-thread sgemm rate of the kernels OpenBLAS picks for this CPU by itself, from
/// this program in a child process; None (with a note) when that fails.
fn best_kernel_rate() -> Option<bench::KernelRate> {
    let mut child = std::process::Command::new(std::env::current_exe().ok()?);
    child.args(["bench", "--calibrate-only"]);
    let rate = bench::kernel_rate_in(child);
    if rate.is_none() {
        eprintln!("note: could not measure the CPU's own kernel family in a child process; efficiency is against the active kernels");
    }
    rate
}

fn bench_cmd(a: BenchArgs) -> Result<()> {
    if a.calibrate_only {
        let rate = bench::KernelRate {
            family: blas_corename(),
            gflops: bench::median(&mut bench::sgemm_gflops(1024, 10)),
        };
        println!(
            "{}",
            serde_json::to_string(&rate).context("cannot serialise")?
        );
        return Ok(());
    }
    bench::check_threshold(a.threshold)?;
    let current = match &a.current {
        Some(path) => read_report(path)?,
        None => run_bench(&a)?,
    };
    if a.current.is_none() {
        println!("{}", current.markdown());
    }
    if let Some(path) = &a.json {
        let text = serde_json::to_string_pretty(&current).context("cannot serialise the report")?;
        charrnn::atomic::write_atomic(path, text.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.markdown {
        charrnn::atomic::write_atomic(path, current.markdown().as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(path) = &a.history {
        bench::append_history(path, &current)?;
        let all = bench::read_history(path)?;
        let png = bench::plot_history(path, &all)?;
        println!(
            "appended to {} ({} report(s)); drew {}",
            path.display(),
            all.len(),
            png.display()
        );
    }
    if let Some(path) = &a.compare {
        let baseline = read_report(path)?;
        match bench::gate(&baseline, &current, a.threshold)? {
            bench::Gate::NotComparable(why) => {
                println!("not compared with {}: {why}", path.display());
            }
            bench::Gate::Compared { rows, regressed } => {
                println!("{}", bench::comparison_markdown(&rows, a.threshold));
                if !regressed.is_empty() {
                    bail!(
                        "performance regressed against {}: {} (efficiency down more than {:.0}%, or missing)",
                        path.display(),
                        regressed.join(", "),
                        a.threshold * 100.0
                    );
                }
                println!("no regression against {}", path.display());
            }
        }
    }
    Ok(())
}

fn run_bench(a: &BenchArgs) -> Result<bench::Report> {
    let source = match &a.corpus {
        Some(path) => Source::File(path.clone()),
        None => Source::Builtin,
    };
    let best_kernel = blas_kernel_note().and_then(|_| best_kernel_rate());
    let opts = bench::Options {
        quick: a.quick,
        cores: available_cores(),
        only: a.only.clone(),
        best_kernel,
        precision: a.precision,
    };
    Ok(bench::run(&opts, &source, &HeapCounter, &mut |line| {
        eprintln!("{line}")
    })?)
}
