//! Screened evaluations (`--val-screen K`, [`ValScreen`]): on the way to a target loss, most
//! evaluations are far above it, and reading the whole validation part to learn that costs
//! as much as the one that reaches it. A screen reads K of the part's streams instead, and
//! the whole part is read only when the screen's loss, corrected by the gap between the two
//! at the last evaluation that read both, comes within the margin of the target.
//!
//! The screen's streams are streams of the whole evaluation, not a new cut of the text: the
//! validation part is read in B streams of L symbols each (B ≤ [`VAL_STREAMS`]), and the
//! screen holds K of those slices (evenly spread) end to end, evaluated in K streams of the
//! same L. Each screen stream therefore reads, from a zero state and in the same chunks, what
//! the same stream of a whole evaluation reads.
//!
//! [`Session::measure`], the evaluation step of a session, reads the screen and the whole part
//! as this decides.

use super::{Observer, Session, TrainData};
use crate::config::{ValScreen, VAL_STREAMS};
use crate::data::Ids;
use crate::error::{Error, Result};
use crate::evaluate::{streams_for, EvalStats, Evaluation, EVAL_SHARD};
use crate::train::TrainConfig;

/// The streams of a screen's shard: half a whole evaluation's, so that a screen of 16
/// streams still runs on two threads.
pub(super) const SCREEN_SHARD: usize = EVAL_SHARD / 2;

/// A run's screen: its text, and the gap that corrects it.
pub(super) struct Screen {
    /// The K slices of the validation part, end to end.
    pub ids: Ids,
    /// K.
    pub streams: usize,
    /// The whole evaluation's B.
    pub of: usize,
    margin: f64,
    /// The whole part's loss minus the screen's at the last evaluation that read both (None
    /// before the first: that one reads the whole part).
    gap: Option<f64>,
}

impl Screen {
    /// The screen of `spec.streams` of the streams that an evaluation in chunks of `seq_len`
    /// cuts `val` (ids below `vocab_len`) into.
    pub(super) fn new(
        val: &Ids,
        spec: ValScreen,
        seq_len: usize,
        vocab_len: usize,
    ) -> Result<Self> {
        let (k, n) = (spec.streams, val.len());
        // As the evaluation cuts it: B streams of L = N / B.
        let of = streams_for(n, seq_len, VAL_STREAMS);
        if k >= of {
            return Err(Error::config(
                "--val-screen",
                k,
                format!(
                    "the validation part ({n} symbols) is read in {of} streams of {} symbols at \
                     --seq-len {seq_len}: screen with fewer, or hold more out (--val-frac, \
                     --val-chars)",
                    n / of
                ),
            ));
        }
        let len = n / of;
        let mut ids = vec![0u32; k * len];
        for (i, out) in ids.chunks_exact_mut(len).enumerate() {
            val.read(spread(i, k, of) * len, out)?;
        }
        Ok(Screen {
            ids: Ids::from_u32(ids, vocab_len),
            streams: k,
            of,
            margin: spec.margin,
            gap: None,
        })
    }

    /// The whole part's loss as the screen's `screened` loss predicts it (None before the
    /// first calibration).
    pub(super) fn estimate(&self, screened: f64) -> Option<f64> {
        self.gap.map(|g| screened + g)
    }

    /// True when the whole part must be read after a screen of `screened` nats/char: before
    /// the first calibration, or when the estimate lies within the margin of `target`.
    pub(super) fn wants_whole(&self, screened: f64, target: f64) -> bool {
        self.estimate(screened)
            .is_none_or(|e| e <= target + self.margin)
    }

    /// Nats/char above the target at which the whole part is read.
    pub(super) fn margin(&self) -> f64 {
        self.margin
    }

    /// Records the gap between the `whole` part's loss and the `screened` loss of the same
    /// weights.
    pub(super) fn calibrate(&mut self, screened: f64, whole: f64) {
        self.gap = Some(whole - screened);
    }
}

/// The stream of B = `of` that screen stream `i` of `k` reads: the middle of the i-th of k
/// equal runs of streams (distinct for k < B).
fn spread(i: usize, k: usize, of: usize) -> usize {
    (2 * i + 1) * of / (2 * k)
}

/// What an evaluation step measured.
pub(super) enum Measured {
    /// Abandoned, because this signal asked the program to stop.
    Interrupted(i32),
    /// The whole validation part's loss, when it was read (none without a validation part,
    /// or when a screen found the target out of reach), and the screen's loss, when one was
    /// read.
    Read {
        whole: Option<EvalStats>,
        screened: Option<f64>,
    },
}

/// The screen of `config`'s evaluations on `data`'s validation part, if it asks for one.
pub(super) fn screen_for(config: &TrainConfig, data: &TrainData) -> Result<Option<Screen>> {
    match (config.run.val_screen, &data.val) {
        (Some(spec), Some(val)) => {
            Screen::new(&val.ids, spec, config.data.seq_len, val.vocab.len()).map(Some)
        }
        _ => Ok(None),
    }
}

impl Session {
    /// The validation loss of the current parameters, if the run holds a validation part
    /// out: shared among the processes of a distributed run (all get its result), and
    /// abandoned between two chunks when `interrupt` asks on any of them. With a screen, at
    /// every evaluation but the run's last, the screen is read first and the whole part only
    /// when the screen asks for it ([`Screen::wants_whole`]).
    pub(super) fn measure(
        &mut self,
        interrupt: &dyn Fn() -> Option<i32>,
        observer: &mut dyn Observer,
    ) -> Result<Measured> {
        let Some(v) = &self.data.val else {
            return Ok(Measured::Read {
                whole: None,
                screened: None,
            });
        };
        let t = &mut self.trainer;
        let seq_len = t.config.data.seq_len;
        let mut screened = None;
        if let (Some(screen), Some(target), false) =
            (&self.screen, t.config.run.target_loss, t.done())
        {
            let loss = match t.evaluate(
                &screen.ids,
                seq_len,
                (screen.streams, SCREEN_SHARD),
                interrupt,
            )? {
                Evaluation::Done(s) => s.loss,
                Evaluation::Interrupted(sig) => return Ok(Measured::Interrupted(sig)),
            };
            if !screen.wants_whole(loss, target) {
                observer.note(&format!(
                    "step {}: screen loss {loss:.4} nats/char on {} of {} streams, the whole \
                     part's estimated at {:.4}: above the target {target} + {}, not read",
                    t.progress.step,
                    screen.streams,
                    screen.of,
                    screen.estimate(loss).unwrap_or(f64::NAN),
                    screen.margin(),
                ));
                return Ok(Measured::Read {
                    whole: None,
                    screened: Some(loss),
                });
            }
            screened = Some(loss);
        }
        match t.evaluate(&v.ids, seq_len, (VAL_STREAMS, EVAL_SHARD), interrupt)? {
            Evaluation::Interrupted(sig) => Ok(Measured::Interrupted(sig)),
            Evaluation::Done(s) => {
                if let (Some(screen), Some(loss)) = (&mut self.screen, screened) {
                    screen.calibrate(loss, s.loss);
                }
                Ok(Measured::Read {
                    whole: Some(s),
                    screened,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The screen's streams are distinct, in order, and spread over the whole part.
    #[test]
    fn screen_streams_are_distinct_and_spread() {
        for of in [2, 3, 7, 64] {
            for k in 1..of {
                let picked: Vec<usize> = (0..k).map(|i| spread(i, k, of)).collect();
                assert!(
                    picked.windows(2).all(|w| w[0] < w[1]),
                    "{k} of {of}: {picked:?}"
                );
                assert!(*picked.last().unwrap() < of, "{k} of {of}: {picked:?}");
            }
        }
        let quarter: Vec<usize> = (0..16).map(|i| spread(i, 16, 64)).collect();
        assert_eq!(quarter, (0..16).map(|i| 4 * i + 2).collect::<Vec<_>>());
    }

    /// The screen holds the chosen streams' slices end to end; too many streams, or a part
    /// too short for them, is refused with the flag named.
    #[test]
    fn the_screen_is_the_chosen_slices() {
        let val = Ids::from_u32((0..6_500u32).map(|i| i % 200), 200);
        // T = 64: 6,500 / 65 = 100 streams, clamped to 64, of 101 symbols.
        let spec = ValScreen {
            streams: 4,
            margin: 0.02,
        };
        let s = Screen::new(&val, spec, 64, 200).unwrap();
        assert_eq!((s.streams, s.of, s.ids.len()), (4, 64, 4 * 101));
        for (i, j) in [8, 24, 40, 56].into_iter().enumerate() {
            for q in [0, 50, 100] {
                assert_eq!(
                    s.ids.get(i * 101 + q).unwrap(),
                    val.get(j * 101 + q).unwrap()
                );
            }
        }
        let short = Ids::from_u32((0..260u32).map(|i| i % 200), 200);
        let err = Screen::new(&short, spec, 64, 200)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--val-screen") && err.contains("in 4 streams"),
            "{err}"
        );
        let spec = ValScreen {
            streams: 64,
            ..spec
        };
        assert!(Screen::new(&val, spec, 64, 200).is_err());
    }

    /// Before a calibration every screen asks for the whole part; after one, only those whose
    /// corrected loss is within the margin of the target.
    #[test]
    fn the_whole_part_is_read_near_the_target() {
        let val = Ids::from_u32((0..6_500u32).map(|i| i % 200), 200);
        let spec = ValScreen {
            streams: 16,
            margin: 0.02,
        };
        let mut s = Screen::new(&val, spec, 64, 200).unwrap();
        assert!(s.wants_whole(3.0, 1.45) && s.estimate(3.0).is_none());
        s.calibrate(2.0, 1.99);
        assert!(!s.wants_whole(1.49, 1.45), "1.48 is above 1.47");
        assert!(s.wants_whole(1.475, 1.45), "1.465 is within the margin");
        assert_eq!(s.estimate(1.5), Some(1.5 + (1.99 - 2.0)));
    }
}
