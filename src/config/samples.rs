//! Text sampled from the model while it trains ([`TrainSamples`]).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Samples drawn from the model during training: the tutorial prints 50 characters after
/// every epoch, min-char-rnn 200 every 100 steps. Sample `k` is seeded by the run's seed and
/// its step, so a run's samples are the same on every replay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainSamples {
    /// When to sample.
    pub every: SampleEvery,
    /// Symbols per sample.
    pub len: usize,
    /// Softmax temperature (0: always the most likely symbol).
    pub temperature: f64,
    /// Text every sample starts from (printed first); empty: a newline.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prime: String,
}

/// When a [`TrainSamples`] is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SampleEvery {
    /// After every N optimizer steps.
    Steps(u64),
    /// After the last step of every epoch (the tutorial's).
    Epoch,
}

impl TrainSamples {
    /// The tutorial's: 50 symbols at temperature 1 after every epoch.
    pub fn tutorial() -> Self {
        TrainSamples {
            every: SampleEvery::Epoch,
            len: 50,
            temperature: 1.0,
            prime: String::new(),
        }
    }

    /// Every `steps` steps, with `sample`'s defaults otherwise (200 symbols at temperature 1,
    /// min-char-rnn's length).
    pub fn every(steps: u64) -> Self {
        TrainSamples {
            every: SampleEvery::Steps(steps),
            len: 200,
            ..Self::tutorial()
        }
    }

    /// Refuses settings out of range (no steps between samples, an empty sample, a
    /// temperature below 0).
    pub fn validate(&self) -> Result<()> {
        if self.every == SampleEvery::Steps(0) {
            return Err(Error::config(
                "--sample-every",
                0,
                "sample every 1 or more steps (or leave the flag out for no samples)",
            ));
        }
        if self.len == 0 {
            return Err(Error::config("--sample-len", 0, "sample 1 or more symbols"));
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::config(
                "--sample-temperature",
                self.temperature,
                "use a finite number ≥ 0 (0 = the most likely symbol)",
            ));
        }
        Ok(())
    }
}
