//! What a session tells its caller: the [`Observer`] it reports to, how a run ended
//! ([`Outcome`], [`Report`]), and the interval between two metrics lines.

use std::time::Instant;

use super::Session;
use crate::train::{EvalStats, Progress};

/// What a session reports while it runs. Every method does nothing by default.
pub trait Observer {
    /// The session is about to take its first step.
    fn started(&mut self, _session: &Session) {}
    /// A step was taken; `chars_per_sec` is this session's mean so far; `at_eval` marks the
    /// steps that are followed by an evaluation and a save.
    fn stepped(&mut self, _progress: &Progress, _total: u64, _chars_per_sec: f64, _at_eval: bool) {}
    /// The validation loss was measured at `step`; `best` when it is the lowest so far (and
    /// `best.safetensors` was saved).
    fn evaluated(&mut self, _step: u64, _stats: &EvalStats, _best: bool) {}
    /// Text was sampled from the model after `step` (see [`crate::config::TrainSamples`]); it is also
    /// recorded in the run directory.
    fn sampled(&mut self, _step: u64, _text: &str) {}
    /// Something the user should know.
    fn note(&mut self, _message: &str) {}
    /// The loop is over (finished, interrupted or failed).
    fn finished(&mut self) {}
}

/// An observer that reports nothing.
pub struct Silent;

impl Observer for Silent {}

/// How a session's [`Session::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Outcome {
    /// The configured number of steps or epochs is done.
    Finished,
    /// Stopped early by this signal number (SIGINT, SIGTERM); the state was saved.
    Interrupted(i32),
    /// Stopped at an evaluation whose validation loss reached the configured target
    /// ([`crate::config::RunConfig::target_loss`]); the model of that step was saved.
    TargetReached,
}

/// What a session's [`Session::run`] did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Report {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock seconds of the loop.
    pub seconds: f64,
    /// Characters trained on by this call (not counting earlier legs of a resumed run).
    pub chars: u64,
    /// The last validation measured by this call.
    pub last_val: Option<EvalStats>,
    /// Seconds spent in training steps over every leg of the run (evaluation, saving and
    /// plotting excluded).
    pub train_secs: f64,
}

impl Report {
    /// Training throughput of this call.
    pub fn chars_per_sec(&self) -> f64 {
        self.chars as f64 / self.seconds.max(1e-9)
    }
}

/// The steps since the previous metrics line: when it began, the characters seen then, the
/// summed loss (nats/char) and count of the steps since, and, once closed, its seconds of
/// training (what follows, an evaluation and a save, is not training).
pub(super) struct Interval {
    pub(super) since: Instant,
    pub(super) chars: u64,
    pub(super) loss_sum: f64,
    pub(super) steps: u64,
    pub(super) closed: Option<f64>,
}

impl Interval {
    pub(super) fn new(chars: u64) -> Self {
        Interval {
            since: Instant::now(),
            chars,
            loss_sum: 0.0,
            steps: 0,
            closed: None,
        }
    }

    /// Ends the interval's training time (the first call counts).
    pub(super) fn close(&mut self) {
        self.closed
            .get_or_insert(self.since.elapsed().as_secs_f64());
    }

    /// Seconds of training in the interval (up to now while it is open).
    pub(super) fn secs(&self) -> f64 {
        self.closed
            .unwrap_or_else(|| self.since.elapsed().as_secs_f64())
    }

    pub(super) fn add(&mut self, loss: f64) {
        self.loss_sum += loss;
        self.steps += 1;
    }
}
