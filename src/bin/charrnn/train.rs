//! `charrnn train`: signals, the progress display (an [`Observer`] of the library's session),
//! and the summary.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::json;

use charrnn::build_info::BUILD;
use charrnn::linalg::{blas_config, blas_corename, blas_threads, Precision};
use charrnn::session::{Observer, Outcome, Session, Source, TrainData};
use charrnn::synth;
use charrnn::train::{EvalStats, Progress, TrainConfig};

use crate::args::TrainArgs;
use crate::flags::{apply_flags, check_flag_scope, config_from};
use charrnn::parallel::launch::{available_cores, default_threads, join, Launch};

/// SIGINT/SIGTERM handling: the first signal asks the loop to stop after the current step,
/// or an evaluation to stop after its current chunk (`train` then saves and exits 130 or
/// 143); a second one exits at once with that code. Every file is written atomically, so an
/// exit at any moment leaves the last save loadable.
pub(crate) struct Interrupt {
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    pub(crate) fn install() -> Result<Interrupt> {
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
    pub(crate) fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s as i32),
        }
    }
}

/// The name of the signal `sig` (one [`Interrupt`] handles).
pub(crate) fn signal_name(sig: i32) -> &'static str {
    if sig == signal_hook::consts::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
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
             epoch), path {:?}, {} shard(s) on {} thread(s){}, BLAS core {} with {} thread(s)",
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
            t.steps_per_epoch(),
            c.run.path,
            t.num_shards(),
            t.threads(),
            match t.ranks() {
                1 => String::new(),
                n => format!(" in each of {n} processes"),
            },
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
                    p.step.is_multiple_of(*every)
                } else {
                    last.elapsed().as_secs_f64() >= 1.0
                };
                if due || force {
                    *last = Instant::now();
                    let chars_left = p.chars_seen as f64 / p.step.max(1) as f64
                        * total.saturating_sub(p.step) as f64;
                    eprintln!(
                        "step {:>7}/{total} | epoch {:>3} | loss {:.4} nats/char | smooth {:.3}{val} | {rate:.0} chars/s | ETA {}",
                        p.step,
                        p.epoch + 1,
                        p.last_loss,
                        p.smooth_loss,
                        indicatif::FormattedDuration(std::time::Duration::from_secs_f64(
                            (chars_left / rate.max(1e-9)).clamp(0.0, 1e9)
                        ))
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

    fn sampled(&mut self, step: u64, text: &str) {
        let show = || println!("--- sample after step {step} ---\n{text}");
        match self {
            Display::Bar(bar) => bar.suspend(show),
            Display::Lines { .. } => show(),
            Display::Quiet => {}
        }
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

/// `charrnn train`, alone or as one rank of an `mpirun` (`launch`).
pub(crate) fn train(a: TrainArgs, launch: Option<Launch>) -> Result<ExitCode> {
    let stop = Interrupt::install()?;
    let timeout = a.comm_timeout.unwrap_or(120.0);
    if !(timeout.is_finite() && timeout > 0.0) {
        bail!(
            "invalid --comm-timeout = {timeout}: give the seconds an exchange may wait, e.g. 120"
        );
    }
    // A one-process mpirun of a build without MPI simply runs alone.
    let (joined, group) = match launch {
        Some(l) if l.joins() => {
            let dir = a.resume.as_ref().unwrap_or(&a.out);
            let (j, g) = join(std::time::Duration::from_secs_f64(timeout), dir)?;
            (Some(j), Some(g))
        }
        _ => (None, None),
    };
    let rank = group.as_ref().map_or(0, |g| g.rank());
    let result = train_in(&a, launch, group, &stop);
    if let Some(j) = joined {
        j.leave(result.is_ok());
    }
    match result {
        Ok(code) => Ok(code),
        Err(e) => {
            let ours = e
                .downcast_ref::<charrnn::Error>()
                .is_some_and(|e| matches!(e, charrnn::Error::Group { .. }));
            if rank > 0 && !ours {
                let size = launch.map_or(1, |l| l.size);
                return Err(e.context(format!("rank {rank} of {size}")));
            }
            Err(e)
        }
    }
}

/// `charrnn train` in `group` (None: alone).
fn train_in(
    a: &TrainArgs,
    launch: Option<Launch>,
    group: Option<Box<dyn charrnn::parallel::Group>>,
    stop: &Interrupt,
) -> Result<ExitCode> {
    let root = group.as_ref().is_none_or(|g| g.rank() == 0);
    let mut session = match &a.resume {
        Some(dir) => {
            // The flags apply to the saved configuration; the session refuses any that would
            // change what defines the run.
            let mut saved = Precision::F32;
            let ask = |config: &TrainConfig| {
                saved = config.run.precision;
                check_flag_scope(a, Some(config)).map_err(charrnn::Error::Refused)?;
                Ok(apply_flags(a, config.clone()))
            };
            let source = a.corpus.clone().map(Source::File);
            let s = Session::resume_asking(dir, source, ask, group)?;
            let now = s.trainer.config.run.precision;
            if root && now != saved {
                eprintln!(
                    "note: --precision {now}: the run was saved with {saved}, it goes on in {now}"
                );
            } else if root && now != Precision::F32 {
                eprintln!("note: resuming in {now} as saved (--precision f32 to change)");
            }
            s
        }
        None => {
            check_flag_scope(a, None).map_err(anyhow::Error::msg)?;
            let mut config = config_from(a);
            config.validate()?;
            let source = match &a.corpus {
                Some(path) => Source::File(path.clone()),
                None => {
                    if !a.quiet && root {
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
            let asked = a.bytes.then_some(charrnn::data::SymbolKind::Bytes);
            config.data.symbols = source.symbols(asked)?;
            let data = TrainData::load(&source, &config)?;
            Session::start_in(config, data, &a.out, a.force, group)?
        }
    };
    // Threaded BLAS runs one shard on one rayon thread; otherwise set_threads caps the pool at
    // the number of shards. The ranks on one machine share its cores.
    let threads = if a.blas_threads.is_some() {
        1
    } else {
        a.threads
            .unwrap_or_else(|| default_threads(available_cores(), launch.as_ref()))
    };
    if threads == 0 {
        bail!("invalid --threads = 0: use at least 1 thread");
    }
    session.trainer.set_threads(threads)?;
    // Rank 0 speaks for a distributed run.
    let (mut display, mut silent) = (Display::new(a), charrnn::session::Silent);
    let observer: &mut dyn Observer = if root { &mut display } else { &mut silent };
    let report = session.run(observer, &|| stop.requested())?;
    if !root {
        // Rank 0 reports the job, its exit status included (an interrupted run exits 130 or
        // 143 there); another rank exiting non-zero would make mpirun end rank 0 at once.
        return Ok(ExitCode::SUCCESS);
    }
    let (t, run) = (&session.trainer, &session.run);
    if let Outcome::Interrupted(sig) = report.outcome {
        eprintln!(
            "interrupted ({}) at step {}: saved {}; continue with `charrnn train --resume {}`",
            signal_name(sig),
            t.progress.step,
            run.model().display(),
            run.dir().display()
        );
        return Ok(ExitCode::from((128 + sig) as u8));
    }
    let p = &t.progress;
    let last_val = report.last_val;
    let reached = report.outcome == Outcome::TargetReached;
    if reached {
        println!(
            "reached the target validation loss {} nats/char at step {} after {:.2} s of training",
            t.config.run.target_loss.unwrap_or(f64::NAN),
            p.step,
            report.train_secs
        );
    }
    println!(
        "trained {} step{} ({} chars) in {:.2} s ({:.2} s of training steps): {:.0} chars/s; final loss {:.4} nats/char ({:.4} bits/char), smoothed loss {:.3}{}",
        p.step,
        if p.step == 1 { "" } else { "s" },
        p.chars_seen,
        report.seconds,
        report.train_secs,
        report.chars_per_sec(),
        p.last_loss,
        p.last_loss / std::f64::consts::LN_2,
        p.smooth_loss,
        last_val.map_or(String::new(), |v: EvalStats| format!("; validation loss {:.4} nats/char ({:.4} bits/char)", v.loss, v.bpc))
    );
    if t.ranks() > 1 {
        println!(
            "{} processes: rank 0 spent {:.2} s ({:.1}% of the run) summing gradients with the others",
            t.ranks(),
            t.reduce_seconds(),
            100.0 * t.reduce_seconds() / report.seconds.max(1e-9)
        );
    }
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
            "train_secs": report.train_secs,
            "target_loss": t.config.run.target_loss,
            "reached_target": reached,
            "model": run.model(),
            "config": t.config,
            "blas_core": blas_corename(),
            "blas_kernel_note": crate::blas_kernel_note(),
            "blas_config": blas_config(),
            "blas_threads": blas_threads(),
            "threads": t.threads(),
            "shards": t.num_shards() * t.ranks(),
            "ranks": t.ranks(),
            "reduce_seconds": t.reduce_seconds(),
            "build": BUILD,
        });
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}
