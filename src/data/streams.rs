//! The corpus cut into B contiguous streams, walked in chunks of T by truncated BPTT.

use super::ids::Ids;
use crate::error::{Error, Result};

/// The corpus cut into B contiguous streams, each walked in chunks of T (truncated BPTT).
///
/// Stream b covers symbols `[b·S, (b+1)·S)` with S = ⌊N/B⌋ (karpathy/char-rnn's layout); a
/// step takes inputs `[p, p+T)` and targets `[p+1, p+T+1)` of every stream, so an epoch has
/// ⌊(S−1)/T⌋ steps and the last few symbols of a stream that do not fill a chunk are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// B, the number of streams.
    pub batch: usize,
    /// T, steps per chunk.
    pub seq_len: usize,
    /// S, symbols per stream.
    pub stream_len: usize,
}

impl Streams {
    /// Lays out `n` symbols as `batch` streams of chunks of `seq_len`.
    pub fn new(n: usize, batch: usize, seq_len: usize) -> Result<Streams> {
        if batch == 0 {
            return Err(Error::config(
                "--batch",
                batch,
                "the number of streams must be at least 1",
            ));
        }
        if seq_len == 0 {
            return Err(Error::config(
                "--seq-len",
                seq_len,
                "the sequence length must be at least 1",
            ));
        }
        let stream_len = n / batch;
        if stream_len < seq_len + 1 {
            return Err(Error::CorpusTooShort {
                chars: n,
                batch,
                per_stream: stream_len,
                needed: seq_len + 1,
            });
        }
        Ok(Streams {
            batch,
            seq_len,
            stream_len,
        })
    }

    /// Steps (chunks of T per stream) in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        (self.stream_len - 1) / self.seq_len
    }

    /// Symbols predicted per step, T·B.
    pub fn chars_per_step(&self) -> usize {
        self.seq_len * self.batch
    }

    /// Fills `xs` and `ys`, both (T', B') time-major, with the symbols of streams
    /// `b0 .. b0+B'` from position `pos` on (T' = `xs.len() / nb`, usually T).
    ///
    /// `xs[t·nb + j]` is the input at time t of stream b0+j; `ys` holds the next symbols.
    pub fn fill(
        &self,
        ids: &Ids,
        pos: usize,
        b0: usize,
        nb: usize,
        xs: &mut [u32],
        ys: &mut [u32],
    ) -> Result<()> {
        let t = xs.len() / nb;
        debug_assert!(xs.len() == t * nb && ys.len() == t * nb && pos + t < self.stream_len);
        // One read of T+1 ids per stream gives both its inputs and its targets.
        let mut buf = [0u32; 512];
        for j in 0..nb {
            let start = (b0 + j) * self.stream_len + pos;
            let mut k0 = 0;
            while k0 < t {
                let n = (t - k0).min(buf.len() - 1);
                ids.read(start + k0, &mut buf[..n + 1])?;
                for k in 0..n {
                    xs[(k0 + k) * nb + j] = buf[k];
                    ys[(k0 + k) * nb + j] = buf[k + 1];
                }
                k0 += n;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_contiguous_and_targets_are_the_next_symbols() {
        let ids = Ids::from_u32(0..=40, 41);
        let s = Streams::new(41, 2, 4).unwrap(); // S = 20: streams [0, 20) and [20, 40)
        assert_eq!(s.steps_per_epoch(), 4);
        let (mut xs, mut ys) = (vec![0; 8], vec![0; 8]);
        s.fill(&ids, 4, 0, 2, &mut xs, &mut ys).unwrap();
        assert_eq!(xs, vec![4, 24, 5, 25, 6, 26, 7, 27]); // (T, B) time-major
        assert_eq!(ys, vec![5, 25, 6, 26, 7, 27, 8, 28]);
        assert!(matches!(
            Streams::new(9, 2, 4),
            Err(Error::CorpusTooShort {
                per_stream: 4,
                needed: 5,
                ..
            })
        ));
    }

    /// Training streams over the kept part of a spread split (ids that are their own
    /// positions) never read a held-out position, and read every kept one but the few at the
    /// end of each stream that do not fill a chunk.
    #[test]
    fn streams_over_a_spread_split_never_read_a_held_out_block() {
        let n = 4096 * 9 + 100;
        let ids = Ids::from_u32(0..n as u32, n);
        let (kept, held) = ids.spread(4096, 3).unwrap();
        let mut held_at = vec![0; held.len()];
        held.read(0, &mut held_at).unwrap();
        let s = Streams::new(kept.len(), 4, 16).unwrap();
        let mut seen = vec![false; n];
        let (mut xs, mut ys) = (vec![0; 16 * 4], vec![0; 16 * 4]);
        for step in 0..s.steps_per_epoch() {
            s.fill(&kept, step * 16, 0, 4, &mut xs, &mut ys).unwrap();
            for &p in xs.iter().chain(&ys) {
                seen[p as usize] = true;
            }
        }
        assert!(
            held_at.iter().all(|&p| !seen[p as usize]),
            "a held-out id was read"
        );
        let unread = (0..n)
            .filter(|&p| !seen[p] && !held_at.contains(&(p as u32)))
            .count();
        // Per stream: S − 1 − steps·T symbols after the last chunk; plus N − B·S at the end.
        let tail = s.stream_len - 1 - s.steps_per_epoch() * 16;
        assert_eq!(unread, 4 * tail + kept.len() - 4 * s.stream_len);
    }
}
