//! The corpus cut into B streams walked in chunks of T by truncated BPTT: contiguous (each
//! stream reads its own 1/B of the corpus from the start), or shuffled (every stream reads K
//! chunks from one place, then jumps to another the seed chose, so that a run reading a
//! fraction of a large corpus reads all of it).

use super::ids::Ids;
use crate::error::{Error, Result};

/// Where every stream stands: the epoch, and the chunk of it the next step reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Completed epochs.
    pub epoch: u64,
    /// Chunks read in this epoch.
    pub chunk: usize,
}

/// How streams move through the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Stream b covers symbols `[b·S, (b+1)·S)` with S = ⌊N/B⌋ (karpathy/char-rnn's layout).
    Contiguous,
    /// The corpus is cut into `segments` segments of K = `chunks` chunks (K·T symbols, plus the
    /// next symbol as the last target). Each epoch deals the segments, in an order the seed and
    /// the epoch determine, to the streams B at a time: stream b reads segment π(r·B + b) in
    /// round r (the epoch's chunks `[r·K, (r+1)·K)`). The `segments mod B` segments left over
    /// are skipped in that epoch only. The trainer zeroes the carried state at every jump.
    Shuffled {
        /// K, chunks per segment.
        chunks: usize,
        /// Segments in the corpus, ⌊(N − 1)/(K·T)⌋.
        segments: usize,
        /// The seed of the segments' order.
        seed: u64,
    },
}

/// The corpus cut into B streams, each walked in chunks of T (truncated BPTT), in an
/// [`Order`].
///
/// A step takes inputs `[p, p+T)` and targets `[p+1, p+T+1)` of every stream, p its own
/// position. Contiguous: p = b·S + c·T at chunk c, an epoch has ⌊(S−1)/T⌋ steps, and the
/// last few symbols of a stream that do not fill a chunk are skipped. Shuffled: an epoch
/// has ⌊segments/B⌋·K steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// B, the number of streams.
    pub batch: usize,
    /// T, steps per chunk.
    pub seq_len: usize,
    /// S, symbols per stream of the contiguous order.
    pub stream_len: usize,
    /// How the streams move through the corpus.
    pub order: Order,
}

impl Streams {
    /// Lays out `n` symbols as `batch` contiguous streams of chunks of `seq_len`.
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
            order: Order::Contiguous,
        })
    }

    /// Lays out `n` symbols as `batch` streams that jump to a new segment every `chunks`
    /// chunks of `seq_len`, in an order drawn from `seed` ([`Order::Shuffled`]). The corpus
    /// must hold at least `batch` segments.
    pub fn shuffled(
        n: usize,
        batch: usize,
        seq_len: usize,
        chunks: usize,
        seed: u64,
    ) -> Result<Streams> {
        let mut s = Streams::new(n, batch, seq_len)?;
        if chunks == 0 {
            return Err(Error::config(
                "--segment",
                chunks,
                "a segment holds at least one chunk",
            ));
        }
        let span = chunks.saturating_mul(seq_len);
        let segments = (n - 1) / span;
        if segments < batch {
            return Err(Error::config(
                "--stream-order",
                "shuffled",
                format!(
                    "the corpus's {n} symbols hold {segments} segment(s) of {chunks} chunks of \
                     {seq_len}, fewer than the {batch} streams: use --stream-order contiguous, \
                     or shorter segments (--segment)"
                ),
            ));
        }
        s.order = Order::Shuffled {
            chunks,
            segments,
            seed,
        };
        Ok(s)
    }

    /// Steps (chunks of T per stream) in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        match self.order {
            Order::Contiguous => (self.stream_len - 1) / self.seq_len,
            Order::Shuffled {
                chunks, segments, ..
            } => segments / self.batch * chunks,
        }
    }

    /// Symbols predicted per step, T·B.
    pub fn chars_per_step(&self) -> usize {
        self.seq_len * self.batch
    }

    /// True when the step at `at` starts new segments: the trainer zeroes the carried state
    /// there (the start of every epoch, and every K chunks of a shuffled order).
    pub fn jumps_at(&self, at: Cursor) -> bool {
        match self.order {
            Order::Contiguous => at.chunk == 0,
            Order::Shuffled { chunks, .. } => at.chunk.is_multiple_of(chunks),
        }
    }

    /// The position of the first input symbol of stream `b` at `at`.
    pub fn start(&self, b: usize, at: Cursor) -> usize {
        match self.order {
            Order::Contiguous => b * self.stream_len + at.chunk * self.seq_len,
            Order::Shuffled {
                chunks,
                segments,
                seed,
            } => {
                let (round, within) = (at.chunk / chunks, at.chunk % chunks);
                let order = Permutation::new(segments as u64, seed, at.epoch);
                let segment = order.apply((round * self.batch + b) as u64) as usize;
                (segment * chunks + within) * self.seq_len
            }
        }
    }

    /// Fills `xs` and `ys`, both (T', B') time-major, with the symbols of streams
    /// `b0 .. b0+B'` at `at` (T' = `xs.len() / nb`, usually T).
    ///
    /// `xs[t·nb + j]` is the input at time t of stream b0+j; `ys` holds the next symbols.
    pub fn fill(
        &self,
        ids: &Ids,
        at: Cursor,
        b0: usize,
        nb: usize,
        xs: &mut [u32],
        ys: &mut [u32],
    ) -> Result<()> {
        let t = xs.len() / nb;
        debug_assert!(xs.len() == t * nb && ys.len() == t * nb);
        // One read of T+1 ids per stream gives both its inputs and its targets.
        let mut buf = [0u32; 512];
        for j in 0..nb {
            let start = self.start(b0 + j, at);
            debug_assert!(start + t < ids.len());
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

/// A seed-determined permutation of `[0, n)` in O(1) memory: a four-round Feistel network
/// on the smallest even number of bits that holds n, walked until it lands below n (each
/// value is a cycle of the network's permutation restricted to `[0, n)`, so the result is
/// a bijection; under four tries a value on average, as the domain is below 4n).
struct Permutation {
    n: u64,
    half: u32,
    keys: [u64; 4],
}

impl Permutation {
    fn new(n: u64, seed: u64, epoch: u64) -> Permutation {
        let bits = 64 - n.saturating_sub(1).leading_zeros();
        let half = bits.div_ceil(2).max(1);
        let mut keys = [0u64; 4];
        for (i, k) in keys.iter_mut().enumerate() {
            *k = mix(seed ^ mix(epoch ^ mix(i as u64 + 0x5354_5245_414d_5300)));
        }
        Permutation { n, half, keys }
    }

    fn apply(&self, x: u64) -> u64 {
        debug_assert!(x < self.n);
        let mask = (1u64 << self.half) - 1;
        let mut x = x;
        loop {
            let (mut l, mut r) = (x >> self.half, x & mask);
            for k in self.keys {
                (l, r) = (r, l ^ (mix(r ^ k) & mask));
            }
            x = (l << self.half) | r;
            if x < self.n {
                return x;
            }
        }
    }
}

/// A 64-bit integer hash, SplitMix64's output function: every bit of the input moves every
/// bit of the output.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
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
        s.fill(&ids, Cursor { epoch: 0, chunk: 1 }, 0, 2, &mut xs, &mut ys)
            .unwrap();
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
    /// positions) never read a held-out position, in either order; the contiguous order
    /// reads every kept one but the few at the end of each stream that do not fill a chunk.
    #[test]
    fn streams_over_a_spread_split_never_read_a_held_out_block() {
        let n = 4096 * 9 + 100;
        let ids = Ids::from_u32(0..n as u32, n);
        let (kept, held) = ids.spread(4096, 3).unwrap();
        let mut held_at = vec![0; held.len()];
        held.read(0, &mut held_at).unwrap();
        let contiguous = Streams::new(kept.len(), 4, 16).unwrap();
        let shuffled = Streams::shuffled(kept.len(), 4, 16, 3, 9).unwrap();
        for s in [contiguous, shuffled] {
            let mut seen = vec![false; n];
            let (mut xs, mut ys) = (vec![0; 16 * 4], vec![0; 16 * 4]);
            for epoch in 0..2 {
                for chunk in 0..s.steps_per_epoch() {
                    s.fill(&kept, Cursor { epoch, chunk }, 0, 4, &mut xs, &mut ys)
                        .unwrap();
                    for &p in xs.iter().chain(&ys) {
                        seen[p as usize] = true;
                    }
                }
            }
            let order = s.order;
            assert!(
                held_at.iter().all(|&p| !seen[p as usize]),
                "{order:?}: a held-out id was read"
            );
            if order == Order::Contiguous {
                let unread = (0..n)
                    .filter(|&p| !seen[p] && !held_at.contains(&(p as u32)))
                    .count();
                // Per stream: S − 1 − steps·T symbols after the last chunk; plus N − B·S.
                let tail = s.stream_len - 1 - s.steps_per_epoch() * 16;
                assert_eq!(unread, 4 * tail + kept.len() - 4 * s.stream_len);
            }
        }
    }

    #[test]
    fn the_permutation_is_a_bijection_that_depends_on_seed_and_epoch() {
        for n in (1..200).chain([1000, 4097, 65_536, 100_003]) {
            let p = Permutation::new(n, 7, 0);
            let mut seen = vec![false; n as usize];
            for x in 0..n {
                let y = p.apply(x);
                assert!(
                    y < n && !seen[y as usize],
                    "n = {n}: {x} → {y} twice or out of range"
                );
                seen[y as usize] = true;
            }
        }
        let order = |seed, epoch| -> Vec<u64> {
            let p = Permutation::new(1000, seed, epoch);
            (0..1000).map(|x| p.apply(x)).collect()
        };
        assert_ne!(order(7, 0), order(7, 1));
        assert_ne!(order(7, 0), order(8, 0));
        assert_eq!(order(7, 3), order(7, 3));
        let fixed = order(7, 0)
            .iter()
            .enumerate()
            .filter(|(i, &y)| *i as u64 == y)
            .count();
        assert!(fixed < 10, "{fixed} of 1000 values stay in place");
    }

    /// One epoch of a shuffled order reads every segment but the `segments mod B` left over
    /// whole, from its start, each by one stream; the next epoch deals them otherwise.
    #[test]
    fn a_shuffled_epoch_reads_each_segment_once_and_whole() {
        let (n, b, t, k) = (10_000, 6, 8, 5); // segments of 40: 249 of them, 41 rounds
        let ids = Ids::from_u32(0..n as u32, n);
        let s = Streams::shuffled(n, b, t, k, 3).unwrap();
        assert_eq!(
            s.order,
            Order::Shuffled {
                chunks: k,
                segments: 249,
                seed: 3
            }
        );
        assert_eq!(s.steps_per_epoch(), 41 * k);
        let read = |epoch| {
            let mut count = vec![0u32; n];
            let (mut xs, mut ys) = (vec![0; t * b], vec![0; t * b]);
            for chunk in 0..s.steps_per_epoch() {
                s.fill(&ids, Cursor { epoch, chunk }, 0, b, &mut xs, &mut ys)
                    .unwrap();
                assert_eq!(s.jumps_at(Cursor { epoch, chunk }), chunk % k == 0);
                for (x, y) in xs.iter().zip(&ys) {
                    assert_eq!(*y, *x + 1, "targets are the next symbols");
                    count[*x as usize] += 1;
                }
            }
            count
        };
        let first = read(0);
        let segments: Vec<u32> = (0..249)
            .map(|g| first[g * 40..(g + 1) * 40].iter().sum())
            .collect();
        for (g, &c) in segments.iter().enumerate() {
            let whole = first[g * 40..(g + 1) * 40].iter().all(|&x| x == 1);
            assert!(
                c == 0 || whole,
                "segment {g} read {c} times, not whole once"
            );
        }
        assert_eq!(segments.iter().filter(|&&c| c == 0).count(), 249 % 6);
        assert!(
            first[249 * 40..].iter().all(|&c| c == 0),
            "the tail past the last segment"
        );
        assert_ne!(
            first,
            read(1),
            "a new epoch deals the segments in a new order"
        );
    }

    /// On a corpus of tagged blocks (every symbol is its block's number), a run that reads a
    /// tenth of it in a shuffled order reads from nearly every part of it, evenly; the
    /// contiguous order reads from the B places where its streams start.
    #[test]
    fn shuffled_streams_cover_a_corpus_a_run_reads_a_tenth_of() {
        let (blocks, block) = (1000, 1024);
        let n = blocks * block;
        let ids = Ids::from_u32((0..n).map(|p| (p / block) as u32), blocks);
        let (b, t, k) = (16, 16, 8);
        let steps = n / (b * t) / 10;
        let bins_hit = |s: &Streams| {
            let mut hits = vec![0usize; 100]; // bins of 10 blocks
            let (mut xs, mut ys) = (vec![0; t * b], vec![0; t * b]);
            for step in 0..steps {
                let at = Cursor {
                    epoch: 0,
                    chunk: step,
                };
                s.fill(&ids, at, 0, b, &mut xs, &mut ys).unwrap();
                for &tag in &xs {
                    hits[tag as usize / 10] += 1;
                }
            }
            hits
        };
        let shuffled = bins_hit(&Streams::shuffled(n, b, t, k, 1).unwrap());
        let mean = (steps * b * t / 100) as f64;
        let empty = shuffled.iter().filter(|&&h| h == 0).count();
        let most = *shuffled.iter().max().unwrap() as f64;
        assert!(empty <= 2, "{empty} of 100 bins never read: {shuffled:?}");
        assert!(
            most < 3.0 * mean,
            "a bin read {most} times, the mean {mean}: {shuffled:?}"
        );
        let contiguous = bins_hit(&Streams::new(n, b, t).unwrap());
        let read = contiguous.iter().filter(|&&h| h > 0).count();
        assert!(read <= 2 * b, "the contiguous order read {read} bins");
    }

    #[test]
    fn a_shuffled_order_needs_a_segment_per_stream() {
        assert!(Streams::shuffled(1000, 4, 10, 20, 0).is_ok()); // ⌊999/200⌋ = 4 segments
        let err = Streams::shuffled(1000, 4, 10, 25, 0)
            .unwrap_err()
            .to_string(); // 3

        assert!(err.contains("--stream-order contiguous"), "{err}");
        assert!(Streams::shuffled(1000, 4, 10, 0, 0).is_err());
    }
}
