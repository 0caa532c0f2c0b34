//! Learning-rate schedules: the rate as a pure function of the step.

use serde::{Deserialize, Serialize};

/// The learning rate as a pure function of the step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    /// lr at every step.
    #[default]
    Constant,
    /// lr·γ^⌊step/every⌋.
    Step {
        /// Steps between decays.
        every: u64,
        /// Factor per decay.
        gamma: f64,
    },
    /// Linear warm-up from 0 over `warmup` steps, then a half cosine down to `min_frac`·lr at
    /// the last step of the run.
    Cosine {
        /// Warm-up steps.
        warmup: u64,
        /// Final learning rate as a fraction of lr.
        min_frac: f64,
    },
}

impl Schedule {
    /// The step schedule's defaults: halve the rate every 1000 steps.
    pub fn step() -> Self {
        Schedule::Step {
            every: 1000,
            gamma: 0.5,
        }
    }

    /// The cosine schedule's defaults: 100 warm-up steps, down to a tenth of the rate.
    pub fn cosine() -> Self {
        Schedule::Cosine {
            warmup: 100,
            min_frac: 0.1,
        }
    }

    /// The learning rate of step `step` (0-based) of a run of `total` steps with base `lr`.
    pub fn lr(&self, lr: f64, step: u64, total: u64) -> f64 {
        match *self {
            Schedule::Constant => lr,
            Schedule::Step { every, gamma } => lr * gamma.powi((step / every.max(1)) as i32),
            Schedule::Cosine { warmup, min_frac } => {
                if step < warmup {
                    return lr * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
                lr * (min_frac + (1.0 - min_frac) * cos)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_pure_functions_of_the_step() {
        assert_eq!(Schedule::Constant.lr(0.1, 12345, 100), 0.1);
        let s = Schedule::Step {
            every: 10,
            gamma: 0.5,
        };
        assert_eq!(
            (s.lr(1.0, 9, 100), s.lr(1.0, 10, 100), s.lr(1.0, 25, 100)),
            (1.0, 0.5, 0.25)
        );
        let c = Schedule::Cosine {
            warmup: 10,
            min_frac: 0.1,
        };
        assert!((c.lr(1.0, 0, 110) - 0.1).abs() < 1e-12 && (c.lr(1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((c.lr(1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!(
            (c.lr(1.0, 60, 110) - 0.55).abs() < 1e-12,
            "half way: the mean of 1 and 0.1"
        );
        assert!((c.lr(1.0, 110, 110) - 0.1).abs() < 1e-12);
    }
}
