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

use crate::config::{ValScreen, VAL_STREAMS};
use crate::data::Ids;
use crate::error::{Error, Result};
use crate::evaluate::EVAL_SHARD;

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
        // As the evaluation cuts it (crate::evaluate): B streams of L = N / B.
        let of = (n / (seq_len + 1)).clamp(1, VAL_STREAMS);
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
