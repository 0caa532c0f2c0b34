//! The training session: what `charrnn train` runs, as a library.
//!
//! A [`Session`] owns a run in memory ([`Trainer`]), its data ([`TrainData`]) and its run
//! directory ([`RunDir`]). [`Session::run`] steps until the configured end, and every
//! `eval_every` steps (and at the end) validates, keeps the best model, saves the latest,
//! appends a metrics line and redraws the plot. It stops early, with everything saved, when
//! asked to (an interrupt), and with the last saved model kept when training diverges.
//! [`Session::resume`] continues a saved run exactly, and refuses data other than the data
//! it was trained on. Progress is reported to an [`Observer`]; the session prints nothing.
//!
//! ```no_run
//! use charrnn::session::{Session, Silent, Source, TrainData};
//! use charrnn::config::RunConfig;
//! use charrnn::train::{Stop, TrainConfig};
//!
//! let config = TrainConfig {
//!     run: RunConfig { stop: Stop::Steps(100), ..Default::default() },
//!     ..Default::default()
//! };
//! let data = TrainData::load(&Source::Builtin, &config)?;
//! let mut session = Session::start(config, data, "run".as_ref(), true)?;
//! session.run(&mut Silent, &|| None)?;
//! // Later, 100 steps more on the same data:
//! let mut more = Session::resume("run".as_ref(), None, Some(Stop::Steps(200)))?;
//! more.run(&mut Silent, &|| None)?;
//! # Ok::<(), charrnn::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::checkpoint;
use crate::config::SampleEvery;
use crate::error::{Error, Result};
use crate::parallel::group::{agree_ok, broadcast_bytes, group_error};
use crate::parallel::Group;
use crate::run::{Metrics, RunDir, RunLock, SampleLine};
use crate::sample::{sample, SampleOptions};
use crate::train::{EvalStats, Stop, TrainConfig, Trainer};

mod data;
mod observe;
mod screen;

use data::check_samples;
use observe::Interval;
use screen::{screen_for, Measured, Screen};

pub use data::{Source, TrainData, SPREAD_ABOVE};
pub use observe::{Observer, Outcome, Report, Silent};

/// Removes what a killed process left in `run`'s directory; a note naming it, if anything.
fn cleaned(run: &RunDir) -> Option<String> {
    let removed = run.clean_stale_temps();
    (!removed.is_empty()).then(|| {
        format!(
            "note: removed temporary file(s) left by an interrupted process in {}: {}",
            run.dir().display(),
            removed.join(" ")
        )
    })
}

/// Ends every rank of a distributed setup when `setup` failed on any (on the rank that
/// failed, with its error).
fn agree(trainer: &mut Trainer<f32>, setup: Result<()>) -> Result<()> {
    let Some(group) = trainer.group() else {
        return setup;
    };
    let ok = agree_ok(group, setup.is_ok())?;
    setup?;
    if ok {
        Ok(())
    } else {
        Err(group_error(
            group,
            "another rank failed to set up the run (its message says why); stopping too",
        ))
    }
}

/// A training run with its data and its directory.
pub struct Session {
    /// The run in memory.
    pub trainer: Trainer<f32>,
    /// Its data.
    pub data: TrainData,
    /// Its directory: model files, metrics and plot.
    pub run: RunDir,
    /// True when the session continues a saved run.
    pub resumed: bool,
    history: Vec<Metrics>,
    /// The screen of the run's evaluations (`--val-screen`), if it has one.
    screen: Option<Screen>,
    /// The run directory's lock (rank 0 of a distributed run holds it for all).
    _lock: Option<RunLock>,
}

impl Session {
    /// A new run of `config` on `data`, saved in `dir`. Refuses a directory that already
    /// holds a model unless `force` (which replaces it, and its metrics).
    pub fn start(config: TrainConfig, data: TrainData, dir: &Path, force: bool) -> Result<Session> {
        Self::start_in(config, data, dir, force, None)
    }

    /// [`Session::start`] as one rank of `group` (every rank calls it with the same
    /// arguments; its own data and the run directory as rank 0 sees it). Only rank 0 touches
    /// the directory.
    pub fn start_in(
        config: TrainConfig,
        data: TrainData,
        dir: &Path,
        force: bool,
        group: Option<Box<dyn Group>>,
    ) -> Result<Session> {
        let mut config = config;
        // The layout is part of the run: record the one the data was split with.
        config.data.val_layout = data.layout;
        config.data.stream_order = data.order;
        config.validate()?;
        if let (Some(t), None) = (config.run.target_loss, &data.val) {
            return Err(Error::config(
                "--target-loss",
                t,
                "the corpus leaves no validation part to check the target against; hold more out \
                 (--val-frac, --val-chars) or train on a longer text",
            ));
        }
        check_samples(config.run.samples.as_ref(), &data)?;
        let screen = screen_for(&config, &data)?;
        let mut trainer = Trainer::new(config, &data.train)?;
        if let Some(group) = group {
            trainer.distribute(group)?;
        }
        let run = RunDir::new(dir);
        let mut data = data;
        let mut lock = None;
        let setup = if trainer.rank() == 0 {
            (|| {
                // Taken (and checked) once the inputs are known good, so that bad input is
                // reported as such.
                lock = Some(run.lock()?);
                if run.model().exists() && !force {
                    return Err(Error::RunExists { dir: dir.into() });
                }
                data.notes.extend(cleaned(&run));
                // A replaced run's metrics describe another run (damaged or not).
                if run.metrics().exists() {
                    run.rewrite_metrics(&[])?;
                }
                if run.samples().exists() {
                    run.rewrite_samples(&[])?;
                }
                Ok(())
            })()
        } else {
            Ok(())
        };
        agree(&mut trainer, setup)?;
        Ok(Session {
            trainer,
            data,
            run,
            resumed: false,
            history: Vec::new(),
            screen,
            _lock: lock,
        })
    }

    /// Continues the run saved in `dir` exactly where it stopped. `source` replaces the data
    /// source the model file records (None: the recorded one); `stop` replaces its end
    /// (extending or shortening it). The data must be the data the run was trained on: its
    /// vocabulary and its fingerprint are checked.
    pub fn resume(dir: &Path, source: Option<Source>, stop: Option<Stop>) -> Result<Session> {
        Self::resume_in(dir, source, stop, None)
    }

    /// [`Session::resume`] as one rank of `group`, whatever the number of processes the run
    /// was trained on so far (it must divide the run's shards). Rank 0 reads the model file
    /// and sends it to the others; each rank reads its own data and checks its fingerprint.
    pub fn resume_in(
        dir: &Path,
        source: Option<Source>,
        stop: Option<Stop>,
        group: Option<Box<dyn Group>>,
    ) -> Result<Session> {
        let ask = |saved: &TrainConfig| {
            let mut c = saved.clone();
            if let Some(stop) = stop {
                c.run.stop = stop;
            }
            Ok(c)
        };
        Self::resume_asking(dir, source, ask, group)
    }

    /// [`Session::resume_in`] with the configuration `ask` makes of the saved one (e.g. the
    /// saved configuration with the command line's flags applied; an error from it ends the
    /// resume). Of what it asks, the run's end, target loss, precision, samples and evaluation
    /// interval are taken; any other difference is refused with [`Error::ResumeChanges`],
    /// before the directory is touched.
    pub fn resume_asking(
        dir: &Path,
        source: Option<Source>,
        ask: impl FnOnce(&TrainConfig) -> Result<TrainConfig>,
        mut group: Option<Box<dyn Group>>,
    ) -> Result<Session> {
        let path = RunDir::new(dir).model();
        let resume_error = |e| Error::Resume {
            dir: dir.into(),
            cause: Box::new(e),
        };
        let read =
            || std::fs::read(&path).map_err(|e| Error::io("cannot read model file", &path, e));
        let bytes = match group.as_deref_mut() {
            Some(g) => {
                let mine = (g.rank() == 0).then(read);
                broadcast_bytes(g, 0, mine)
            }
            None => read(),
        }
        .map_err(resume_error)?;
        let mut ck = checkpoint::parse(&bytes, &path).map_err(resume_error)?;
        drop(bytes);
        let asked = ask(&ck.config)?;
        let changes = ck.config.changes_on_resume(&asked);
        if !changes.is_empty() {
            return Err(Error::ResumeChanges {
                dir: dir.into(),
                changes,
            });
        }
        ck.config = ck.config.resumed_with(&asked);
        ck.config.validate()?;
        let source = match (source, &ck.corpus) {
            (Some(s), _) => s,
            (None, Some(info)) if info.source != "<built-in>" => {
                Source::File(PathBuf::from(&info.source))
            }
            _ => Source::Builtin,
        };
        let data = TrainData::load(&source, &ck.config)?;
        check_samples(ck.config.run.samples.as_ref(), &data)?;
        let screen = screen_for(&ck.config, &data)?;
        if let Some(saved) = &ck.corpus {
            if saved.fingerprint != data.info.fingerprint {
                return Err(Error::DataChanged {
                    corpus: data.info.source,
                    now: data.info.fingerprint,
                    saved: saved.fingerprint.clone(),
                });
            }
        }
        let mut trainer = ck.into_trainer(&data.train)?;
        if let Some(group) = group {
            trainer.distribute(group)?;
        }
        let run = RunDir::new(dir);
        let mut data = data;
        let mut history = Vec::new();
        let mut lock = None;
        let setup = if trainer.rank() == 0 {
            (|| {
                lock = Some(run.lock()?);
                data.notes.extend(cleaned(&run));
                // Metrics lines after the saved step belong to steps the model does not contain.
                let (kept, torn) = run.read_metrics(trainer.progress.step)?;
                data.notes.extend(torn);
                run.rewrite_metrics(&kept)?;
                history = kept;
                let (samples, torn) = run.read_samples(trainer.progress.step)?;
                data.notes.extend(torn);
                if run.samples().exists() {
                    run.rewrite_samples(&samples)?;
                }
                Ok(())
            })()
        } else {
            Ok(())
        };
        agree(&mut trainer, setup)?;
        Ok(Session {
            trainer,
            data,
            run,
            resumed: true,
            history,
            screen,
            _lock: lock,
        })
    }

    /// The plot's title: the corpus, the model, T, B and the optimizer.
    pub fn title(&self) -> String {
        let source = &self.data.info.source;
        let file = Path::new(source)
            .file_name()
            .map_or(source.clone(), |f| f.to_string_lossy().into_owned());
        let c = &self.trainer.config;
        format!(
            "{file}: {} T={} B={}, {}",
            c.describe_model(),
            c.data.seq_len,
            c.data.batch,
            c.optim.optimizer.name()
        )
    }

    /// Trains to the configured end. `interrupt` is polled before every step and between
    /// the chunks of every evaluation: when it returns a signal number, an evaluation under
    /// way is abandoned (nothing of it recorded), the state of the last step is saved and the
    /// run ends with [`Outcome::Interrupted`].
    /// A diverged step ends it with [`Error::TrainingStopped`], keeping the last saved model.
    pub fn run(
        &mut self,
        observer: &mut dyn Observer,
        interrupt: &dyn Fn() -> Option<i32>,
    ) -> Result<Report> {
        for note in &self.data.notes {
            observer.note(note);
        }
        observer.started(self);
        let total = self.trainer.total_steps();
        let start = Instant::now();
        let start_chars = self.trainer.progress.chars_seen;
        let mut interval = Interval::new(start_chars);
        let mut last_val = None;
        let mut outcome = Outcome::Finished;
        // The step the latest model file was saved at by this call, if any.
        let mut saved_at = None;
        let target = self.trainer.config.run.target_loss;
        while !self.trainer.done() {
            // Every process of a distributed run stops before the same step.
            let asked = self.trainer.agree_signal(interrupt());
            if let Some(sig) = self.stopped(asked, observer)? {
                outcome = Outcome::Interrupted(sig);
                break;
            }
            if let Err(e) = self.trainer.step(&self.data.train.ids) {
                return Err(self.stop_on(e, observer));
            }
            let p = &self.trainer.progress;
            interval.add(p.last_loss);
            let rate = (p.chars_seen - start_chars) as f64 / start.elapsed().as_secs_f64();
            let at_eval =
                p.step.is_multiple_of(self.trainer.config.run.eval_every) || self.trainer.done();
            observer.stepped(p, total, rate, at_eval);
            self.sample_if_due(observer)?;
            if at_eval {
                interval.close();
                let (stats, screened) = match self.measure(interrupt, observer)? {
                    Measured::Interrupted(sig) => {
                        // Abandoned: no validation is recorded, and best.safetensors stays.
                        observer.note(&format!(
                            "step {}: validation abandoned (signal {sig})",
                            self.trainer.progress.step
                        ));
                        outcome = Outcome::Interrupted(sig);
                        break;
                    }
                    Measured::Read { whole, screened } => (whole, screened),
                };
                self.save_evaluated(stats, screened, &interval, observer)?;
                saved_at = Some(self.trainer.progress.step);
                last_val = stats;
                interval = Interval::new(self.trainer.progress.chars_seen);
                if let (Some(t), Some(v)) = (target, last_val) {
                    if v.loss <= t {
                        outcome = Outcome::TargetReached;
                        break;
                    }
                }
            }
        }
        observer.finished();
        if let Outcome::Interrupted(_) = outcome {
            interval.close();
            // A signal during an evaluation's save (or its plot) need not wait for another.
            if saved_at != Some(self.trainer.progress.step) {
                self.save(false)?;
            }
            // Right after an evaluation the last line already describes this step.
            if interval.steps > 0 && self.trainer.rank() == 0 {
                self.log(None, None, &interval)?;
                interval = Interval::new(self.trainer.progress.chars_seen);
            }
            // No rank leaves before rank 0 has saved: a launcher ends the rest of a job when
            // one process exits.
            if let Some(group) = self.trainer.group() {
                agree_ok(group, true)?;
            }
        }
        Ok(Report {
            outcome,
            seconds: start.elapsed().as_secs_f64(),
            chars: self.trainer.progress.chars_seen - start_chars,
            last_val,
            train_secs: self.train_secs(&interval),
        })
    }

    /// Samples from the model when the step just taken is one the run samples after
    /// (rank 0 alone: every rank holds the same weights). Its generator is its own, seeded
    /// by the run's seed and the step, so training is the same with samples or without.
    fn sample_if_due(&mut self, observer: &mut dyn Observer) -> Result<()> {
        let t = &self.trainer;
        let (Some(spec), 0) = (&t.config.run.samples, t.rank()) else {
            return Ok(());
        };
        let p = &t.progress;
        let epoch_done = p.step_in_epoch as usize == t.streams.steps_per_epoch();
        let due = match spec.every {
            SampleEvery::Steps(n) => p.step.is_multiple_of(n),
            SampleEvery::Epoch => epoch_done,
        };
        if !due {
            return Ok(());
        }
        let opts = SampleOptions {
            len: spec.len,
            temperature: spec.temperature,
            prime: spec.prime.clone(),
            seed: t.config.run.seed.wrapping_add(p.step),
            top_k: None,
            top_p: None,
        };
        let mut bytes = Vec::new();
        sample(
            &t.model,
            t.model_params(),
            &self.data.train.vocab,
            &opts,
            |b: &[u8]| {
                bytes.extend_from_slice(b);
                Ok(())
            },
        )?;
        let line = SampleLine {
            step: p.step,
            epoch: p.epoch + u64::from(epoch_done),
            text: String::from_utf8_lossy(&bytes).into_owned(),
        };
        self.run.append_sample(&line)?;
        observer.sampled(line.step, &line.text);
        Ok(())
    }

    /// The training error `e` ends the loop, keeping the last saved model.
    fn stop_on(&self, e: Error, observer: &mut dyn Observer) -> Error {
        observer.finished();
        let model = self.run.model();
        Error::TrainingStopped {
            kept: model.exists().then_some(model),
            cause: Box::new(e),
        }
    }

    /// The agreed signal to stop with, if any (an error of the agreement ends the loop).
    fn stopped(
        &self,
        asked: Result<Option<i32>>,
        observer: &mut dyn Observer,
    ) -> Result<Option<i32>> {
        asked.map_err(|e| self.stop_on(e, observer))
    }

    /// Saves the latest model (and, with `best`, the best one): the state is gathered from
    /// every process of a distributed run, and rank 0 alone writes.
    fn save(&mut self, best: bool) -> Result<()> {
        let state = self.trainer.full_state()?;
        let Some(state) = state else {
            return Ok(());
        };
        let (t, vocab, info) = (&self.trainer, &self.data.train.vocab, &self.data.info);
        let (best_path, model) = (self.run.best(), self.run.model());
        if best {
            checkpoint::save_with_state(&best_path, t, &state, vocab, info)?;
            // The latest model is the same state, the same bytes: a second name for the file
            // (written again where the file system has no hard links).
            if crate::atomic::link_atomic(&best_path, &model).is_ok() {
                return Ok(());
            }
        }
        checkpoint::save_with_state(&model, t, &state, vocab, info)
    }

    /// At an evaluation step, with its validation `stats`: keep the best model, save the
    /// latest, log and plot (rank 0 alone writes).
    fn save_evaluated(
        &mut self,
        stats: Option<EvalStats>,
        screened: Option<f64>,
        interval: &Interval,
        observer: &mut dyn Observer,
    ) -> Result<()> {
        let t = &mut self.trainer;
        let mut best = false;
        if let Some(s) = stats {
            let step = t.progress.step;
            best = t.progress.best_val.is_none_or(|(b, _)| s.loss < b);
            if best {
                t.progress.best_val = Some((s.loss, step));
            }
        }
        self.save(best)?;
        if let Some(s) = stats {
            observer.evaluated(self.trainer.progress.step, &s, best);
        }
        if self.trainer.rank() == 0 {
            self.log(stats, screened, interval)?;
        }
        Ok(())
    }

    /// Seconds of training over every leg of the run up to the end of `interval`: the last
    /// metrics line's (which has counted every interval before this one) plus this one's.
    fn train_secs(&self, interval: &Interval) -> f64 {
        let before = self.history.last().map_or(0.0, |m| m.train_secs);
        if interval.steps == 0 {
            before
        } else {
            before + interval.secs()
        }
    }

    /// Appends a metrics line for the interval just ended and redraws the plot.
    fn log(
        &mut self,
        val: Option<EvalStats>,
        screened: Option<f64>,
        interval: &Interval,
    ) -> Result<()> {
        let p = &self.trainer.progress;
        let m = Metrics {
            step: p.step,
            epoch: p.epoch,
            chars_seen: p.chars_seen,
            train_loss: p.last_loss,
            smooth_loss: p.smooth_loss,
            smooth_loss_per_char: p.smooth_loss / self.trainer.config.data.seq_len as f64,
            interval_loss: interval.loss_sum / interval.steps.max(1) as f64,
            val_loss: val.map(|v| v.loss),
            val_bpc: val.map(|v| v.bpc),
            screen_loss: screened,
            chars_per_sec: (p.chars_seen - interval.chars) as f64 / interval.secs().max(1e-9),
            lr: p.lr,
            grad_norm: p.grad_norm,
            train_secs: self.train_secs(interval),
        };
        self.run.append_metrics(&m)?;
        self.history.push(m);
        self.run.plot_losses(&self.history, &self.title())
    }
}
