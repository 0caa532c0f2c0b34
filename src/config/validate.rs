//! Refusing a configuration that cannot run, with the flag, the value and what to use.

use super::{PathKind, Stop, TrainConfig, VAL_STREAMS};
use crate::error::{Error, Result};
use crate::linalg::Precision;
use crate::optim::{Optimizer, Schedule};

/// A dropout-like probability must lie in [0, 1): 1 would drop everything.
fn probability(flag: &'static str, p: f64, example: &str) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(
            flag,
            p,
            format!("use a probability in [0, 1) ({example})"),
        ))
    }
}

impl TrainConfig {
    /// Checks every hyperparameter that does not depend on the corpus.
    pub fn validate(&self) -> Result<()> {
        if self.model.layers == 0 || self.model.layers > 64 {
            return Err(Error::config(
                "--layers",
                self.model.layers,
                "use 1 to 64 stacked layers (e.g. 2)",
            ));
        }
        if self.model.hidden == 0 {
            return Err(Error::config(
                "--hidden",
                self.model.hidden,
                "the hidden size must be at least 1",
            ));
        }
        if self.model.embed == Some(0) {
            return Err(Error::config(
                "--embed",
                0,
                "the embedding width must be at least 1 (leave --embed out to fold it into layer 0)",
            ));
        }
        if self.data.seq_len == 0 {
            return Err(Error::config(
                "--seq-len",
                self.data.seq_len,
                "the sequence length must be at least 1",
            ));
        }
        if let Some(w) = self.data.seq_len_warmup {
            let shown = format!("{}:{}", w.seq_len, w.steps);
            if w.seq_len == 0 || w.seq_len >= self.data.seq_len || w.steps == 0 {
                return Err(Error::config(
                    "--seq-len-warmup",
                    shown,
                    format!(
                        "give T0:STEPS with 1 <= T0 < --seq-len ({}) and STEPS >= 1, e.g. {}:100, \
                         or 0 for none",
                        self.data.seq_len,
                        (self.data.seq_len / 2).max(1)
                    ),
                ));
            }
            if matches!(self.run.stop, Stop::Epochs(_)) {
                return Err(Error::config(
                    "--seq-len-warmup",
                    shown,
                    "a warm-up on shorter chunks changes how many steps an epoch takes: end the \
                     run with --steps or --chars instead of --epochs, or give --seq-len-warmup 0",
                ));
            }
        }
        if self.data.batch == 0 {
            return Err(Error::config(
                "--batch",
                self.data.batch,
                "the number of streams must be at least 1",
            ));
        }
        if !(self.optim.lr.is_finite() && self.optim.lr > 0.0) {
            return Err(Error::config(
                "--lr",
                self.optim.lr,
                "the learning rate must be a finite number > 0 (e.g. 0.1)",
            ));
        }
        if !(self.optim.clip.is_finite() && self.optim.clip > 0.0) {
            return Err(Error::config(
                "--clip",
                self.optim.clip,
                "the clipping bound must be a finite number > 0 (e.g. 5)",
            ));
        }
        if self.run.precision == Precision::Bf16 {
            if self.run.path == PathKind::Naive {
                return Err(Error::config(
                    "--precision",
                    "bf16",
                    "the reference loop (--path naive) runs in f32 only: use --path blas",
                ));
            }
            self.run
                .precision
                .check()
                .map_err(|why| Error::config("--precision", "bf16", why))?;
        }
        match self.run.stop {
            Stop::Epochs(0) => {
                return Err(Error::config("--epochs", 0, "train for at least 1 epoch"))
            }
            Stop::Steps(0) => return Err(Error::config("--steps", 0, "train for at least 1 step")),
            Stop::Chars(0) => {
                return Err(Error::config("--chars", 0, "train on at least 1 character"))
            }
            _ => {}
        }
        let unit = |name: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(name, v, "use a number in [0, 1)"))
            }
        };
        let positive_eps = |eps: f64| {
            if eps.is_finite() && eps > 0.0 {
                Ok(())
            } else {
                Err(Error::config("--eps", eps, "use a number > 0 (e.g. 1e-8)"))
            }
        };
        match self.optim.optimizer {
            Optimizer::Adagrad => {}
            Optimizer::Sgd { momentum } => unit("--momentum", momentum)?,
            Optimizer::Rmsprop { decay } => unit("--rms-decay", decay)?,
            Optimizer::Adam {
                beta1,
                beta2,
                weight_decay,
                eps,
            } => {
                unit("--beta1", beta1)?;
                unit("--beta2", beta2)?;
                positive_eps(eps)?;
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return Err(Error::config(
                        "--weight-decay",
                        weight_decay,
                        "use a number ≥ 0 (e.g. 0.1)",
                    ));
                }
            }
            Optimizer::Muon {
                momentum,
                matrix_lr,
                beta1,
                beta2,
                eps,
            } => {
                unit("--momentum", momentum)?;
                unit("--beta1", beta1)?;
                unit("--beta2", beta2)?;
                positive_eps(eps)?;
                if !(matrix_lr.is_finite() && matrix_lr > 0.0) {
                    return Err(Error::config(
                        "--matrix-lr",
                        matrix_lr,
                        "use a multiple of --lr > 0 (e.g. 5)",
                    ));
                }
            }
        }
        match self.optim.schedule {
            Schedule::Constant => {}
            Schedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::config(
                        "--decay-every",
                        every,
                        "decay every 1 or more steps",
                    ));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::config(
                        "--gamma",
                        gamma,
                        "use a factor > 0 (e.g. 0.5)",
                    ));
                }
            }
            Schedule::Cosine { min_frac, .. } => {
                if !(0.0..=1.0).contains(&min_frac) {
                    return Err(Error::config(
                        "--min-lr-frac",
                        min_frac,
                        "use a fraction in [0, 1]",
                    ));
                }
            }
        }
        // Refuse sizes whose buffers could not be allocated, before anything allocates them:
        // an overflow or an abort on allocation failure is no way to say "too big".
        let (h, t, b) = (
            self.model.hidden as u128,
            self.data.seq_len as u128,
            self.data.batch as u128,
        );
        let (l, g) = (self.model.layers as u128, self.model.cell.gates() as u128);
        let floats = l * (2 * g * h * h + 2 * (t + 1) * b * h * (g + 3)) + t * b * 256;
        if floats * 4 > 1 << 40 {
            return Err(Error::config(
                "--hidden/--seq-len/--batch",
                format!(
                    "{}/{}/{}",
                    self.model.hidden, self.data.seq_len, self.data.batch
                ),
                "these sizes need over a terabyte of memory; lower them",
            ));
        }
        if let Some(sh) = self.run.shards {
            if sh == 0 || sh > self.data.batch {
                return Err(Error::config(
                    "--shards",
                    sh,
                    format!("use 1 to --batch ({}) shards", self.data.batch),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.data.val_frac) {
            return Err(Error::config(
                "--val-frac",
                self.data.val_frac,
                "use a fraction in [0, 1) (0 disables validation)",
            ));
        }
        probability(
            "--dropout",
            self.optim.dropout,
            "e.g. 0.25; 0 disables dropout",
        )?;
        for (flag, mult) in [
            ("--bias-lr-mult", self.optim.bias_lr_mult),
            ("--embed-lr-mult", self.optim.embed_lr_mult),
        ] {
            if let Some(mult) = mult.filter(|m| !(m.is_finite() && *m > 0.0)) {
                return Err(Error::config(
                    flag,
                    mult,
                    "use a multiple of --lr > 0 (e.g. 2)",
                ));
            }
        }
        if let Some(d) = self.optim.ema {
            if !(d > 0.0 && d < 1.0) {
                return Err(Error::config(
                    "--ema",
                    d,
                    "use a decay in (0, 1), e.g. 0.95 (an average over about 20 steps)",
                ));
            }
        }
        if let Some(std) = self.model.embed_std {
            if !(std.is_finite() && std > 0.0) {
                return Err(Error::config(
                    "--embed-std",
                    std,
                    "the embedding's initial standard deviation must be a finite number > 0 (e.g. 1)",
                ));
            }
        }
        if let Some(factor) = self.model.head_scale {
            if !(factor.is_finite() && factor > 0.0) {
                return Err(Error::config(
                    "--head-scale",
                    factor,
                    "the output layer's initial scale must be a finite number > 0 (e.g. 1)",
                ));
            }
        }
        if let Some(bias) = self.model.forget_bias {
            if !bias.is_finite() {
                return Err(Error::config(
                    "--forget-bias",
                    bias,
                    "the forget gate's initial bias must be a finite number (e.g. 1)",
                ));
            }
            if self.model.cell.spec().forget_gate().is_none() {
                return Err(Error::config(
                    "--forget-bias",
                    bias,
                    "only --cell lstm has a forget gate; leave --forget-bias out",
                ));
            }
        }
        probability(
            "--weight-drop",
            self.optim.weight_drop,
            "e.g. 0.2; 0 disables DropConnect on W_hh",
        )?;
        if self.optim.dropout > 0.0 && self.run.path == PathKind::Naive {
            return Err(Error::config(
                "--dropout",
                self.optim.dropout,
                "the reference loop (--path naive) has no dropout; use the fast path or --dropout 0",
            ));
        }
        if self.run.eval_every == 0 {
            return Err(Error::config(
                "--eval-every",
                0,
                "evaluate every 1 or more steps",
            ));
        }
        if let Some(s) = &self.run.samples {
            s.validate()?;
        }
        if let Some(t) = self.run.target_loss {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::config(
                    "--target-loss",
                    t,
                    "use a validation loss in nats/char > 0 (e.g. 1.5)",
                ));
            }
            if self.data.val_frac == 0.0 && self.data.val_chars.is_none_or(|n| n == 0) {
                return Err(Error::config(
                    "--target-loss",
                    t,
                    "a target is checked against the validation loss: hold some of the corpus out \
                     (--val-frac 0.1, or --val-chars N)",
                ));
            }
        }
        if let Some(screen) = &self.run.val_screen {
            if self.run.target_loss.is_none() {
                return Err(Error::config(
                    "--val-screen",
                    screen.streams,
                    "a screen decides when to read the whole validation part on the way to a \
                     target: give --target-loss too",
                ));
            }
            if !(1..VAL_STREAMS).contains(&screen.streams) {
                return Err(Error::config(
                    "--val-screen",
                    screen.streams,
                    format!(
                        "screen with 1 to {} of the {VAL_STREAMS} validation streams (16 reads a \
                         quarter of the validation part)",
                        VAL_STREAMS - 1
                    ),
                ));
            }
            if !(screen.margin.is_finite() && screen.margin >= 0.0) {
                return Err(Error::config(
                    "--screen-margin",
                    screen.margin,
                    "use a margin in nats/char >= 0 (e.g. 0.05)",
                ));
            }
        }
        if self.data.max_chars == Some(0) {
            return Err(Error::config(
                "--max-chars",
                0,
                "keep at least seq_len+1 characters",
            ));
        }
        Ok(())
    }
}
