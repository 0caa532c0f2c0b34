//! Evaluation: the forward-only loss of a model over a text, in parallel over shards of
//! streams, and shared among the processes of a distributed run. An evaluation can be
//! abandoned between two chunks when a signal asks the program to stop ([`evaluate_in`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use ndarray::Array3;
use rayon::ThreadPool;
use serde::{Deserialize, Serialize};

use crate::data::{Cursor, Ids, Streams};
use crate::error::{Error, Result};
use crate::linalg::{Float, Precision};
use crate::model::{CharLm, WeightPacks, Workspace};
use crate::parallel::group::{agree_ok, agree_signal, reduce_chain};
use crate::parallel::{for_each_shard, partition, Group};

/// Mean loss of a model over a text.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalStats {
    /// Mean loss, nats/char.
    pub loss: f64,
    /// Mean loss, bits/char.
    pub bpc: f64,
    /// Characters predicted.
    pub chars: u64,
    /// Streams the text was cut into, each read from a zero state.
    #[serde(default)]
    pub streams: usize,
}

/// How an evaluation that may be interrupted ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Evaluation {
    /// The whole text was read.
    Done(EvalStats),
    /// Abandoned between two chunks, because this signal (SIGINT, SIGTERM) asked the program
    /// to stop; in a distributed run, every rank abandons it.
    Interrupted(i32),
}

/// Forward-only loss of `params` over `ids`, cut into at most `max_batch` streams walked in
/// chunks of up to `seq_len`, each stream starting from a zero state and carrying it along.
///
/// Every symbol of a stream but its first is predicted; the at most B−1 symbols left over
/// when N is not a multiple of B are not ([`streams_for`] gives B). Streams are evaluated in
/// shards of up to [`EVAL_SHARD`] (in parallel inside a rayon pool), whose losses are summed
/// in shard order: the result does not depend on the number of threads. Products run at
/// `precision`.
pub fn evaluate<F: Float>(
    model: &CharLm,
    params: &[F],
    ids: &Ids,
    seq_len: usize,
    max_batch: usize,
    precision: Precision,
) -> Result<EvalStats> {
    let cut = (max_batch, EVAL_SHARD);
    let mut pass = Pass::new(model, ids, seq_len, cut, precision, (0, 1))?;
    let reader = pass.reader;
    let packs = reader.packs(params);
    let weights = Params {
        p: params,
        packs: packs.as_ref(),
    };
    for_each_shard(&mut pass.parts, |part| {
        let mut ws = None;
        while !reader.done(part) {
            reader.advance(part, &mut ws, weights)?;
        }
        Ok(())
    })?;
    pass.finish(None)
}

/// [`evaluate`] on `pool`'s threads (None: on this one), in shards of up to `per_shard`
/// streams, shared among the ranks of `group`, and abandoned when `interrupt` asks.
///
/// Each rank evaluates a contiguous block of the shards, and the shard losses are exchanged,
/// so that every rank gets the result one process computes, bit for bit, in a fraction of
/// the time. `interrupt` is polled on this thread: before every chunk (T symbols of a
/// shard's streams) without a pool, every [`POLL`] while the shards run on one. A signal it
/// returns on any rank is agreed on by all, which stop their shards after their current
/// chunk and return [`Evaluation::Interrupted`].
#[allow(clippy::too_many_arguments)]
pub fn evaluate_in<F: Float>(
    model: &CharLm,
    params: &[F],
    ids: &Ids,
    seq_len: usize,
    max_batch: usize,
    per_shard: usize,
    precision: Precision,
    pool: Option<&ThreadPool>,
    group: Option<&mut dyn Group>,
    interrupt: &dyn Fn() -> Option<i32>,
) -> Result<Evaluation> {
    let place = group.as_ref().map_or((0, 1), |g| (g.rank(), g.size()));
    let pass = Pass::new(
        model,
        ids,
        seq_len,
        (max_batch, per_shard),
        precision,
        place,
    )?;
    pass.run(params, pool, group, interrupt)
}

/// B, the streams an evaluation of `n` symbols in chunks of `seq_len` cuts them into: as many
/// as leave each stream a chunk and the symbol after it, at most `max_batch`, at least 1.
pub fn streams_for(n: usize, seq_len: usize, max_batch: usize) -> usize {
    (n / (seq_len + 1)).clamp(1, max_batch.max(1))
}

/// The streams of an evaluation's shard: enough rows for the per-step products to run at
/// speed, few enough to give 64 streams to 4 threads. Part of the result (each shard's loss is
/// summed in f32 over its rows), so never taken from the number of threads.
pub const EVAL_SHARD: usize = 16;

/// How long the thread that watches an evaluation running on a pool waits between two polls
/// of the interrupt (and, in a distributed run, two agreements with the other ranks).
pub const POLL: Duration = Duration::from_millis(20);

/// One evaluation in progress: this rank's shards of streams, each with its position,
/// carried state and summed loss.
struct Pass<'a, F: Float> {
    reader: Reader<'a>,
    /// Shards of the whole evaluation (on every rank).
    shards: usize,
    /// The first of this rank's shards.
    first: usize,
    /// This rank's shards.
    parts: Vec<Part<F>>,
}

/// The parameters an evaluation reads, and their bf16 packings ([`Reader::packs`]).
#[derive(Clone, Copy)]
struct Params<'a, F> {
    p: &'a [F],
    packs: Option<&'a WeightPacks>,
}

/// What every shard of an evaluation reads with.
#[derive(Clone, Copy)]
struct Reader<'a> {
    model: &'a CharLm,
    ids: &'a Ids,
    precision: Precision,
    streams: Streams,
    /// Symbols predicted per stream.
    per_stream: usize,
    /// T of every chunk but perhaps the last.
    t_full: usize,
}

/// A shard of an evaluation: streams `[b0, b0 + nb)`, the symbols of each predicted so far,
/// their carried state and summed loss.
struct Part<F> {
    b0: usize,
    nb: usize,
    pos: usize,
    state: Array3<F>,
    total: f64,
}

impl Reader<'_> {
    /// The weights the forward pass multiplies by, packed once for every shard and chunk of
    /// the evaluation (where each packed its own for every chunk: the same bits); `None` for
    /// f32 products. Packed in parallel when called inside a rayon pool.
    fn packs<F: Float>(&self, params: &[F]) -> Option<WeightPacks> {
        (self.precision == Precision::Bf16).then(|| {
            let mut packs = WeightPacks::forward(self.model);
            packs.pack(self.model, params);
            packs
        })
    }

    /// True once `part` has read its streams to the end.
    fn done<F>(&self, part: &Part<F>) -> bool {
        part.pos >= self.per_stream
    }

    /// Reads the next chunk of `part`'s streams, in `ws` (replaced when it does not fit).
    fn advance<F: Float>(
        &self,
        part: &mut Part<F>,
        ws: &mut Option<Workspace<F>>,
        params: Params<F>,
    ) -> Result<()> {
        let t = self.t_full.min(self.per_stream - part.pos);
        let mut w = match ws.take() {
            Some(w) if w.batch == part.nb && w.xs.len() == t * part.nb => w,
            _ => {
                let mut w = Workspace::new(self.model, t, part.nb);
                w.set_precision(self.precision);
                w
            }
        };
        // Streams of chunks of 1: chunk `pos` starts at symbol `pos` of each.
        let at = Cursor {
            epoch: 0,
            chunk: part.pos,
        };
        self.streams
            .fill(self.ids, at, part.b0, part.nb, &mut w.xs, &mut w.ys)?;
        let state = part.state.view();
        self.model
            .forward_packed(params.p, params.packs, &state, &mut w);
        w.last_state(&mut part.state.view_mut());
        part.total += self.model.loss(&w).to_f64().unwrap_or(f64::NAN);
        part.pos += t;
        *ws = Some(w);
        Ok(())
    }
}

impl<'a, F: Float> Pass<'a, F> {
    /// An evaluation of `ids` (see [`evaluate`]) in at most `cut.0` streams, in shards of up
    /// to `cut.1`, by rank `place.0` of `place.1`.
    fn new(
        model: &'a CharLm,
        ids: &'a Ids,
        seq_len: usize,
        (max_batch, per_shard): (usize, usize),
        precision: Precision,
        (rank, size): (usize, usize),
    ) -> Result<Self> {
        precision
            .check()
            .map_err(|why| Error::config("--precision", precision, why))?;
        let n = ids.len();
        if n < 2 {
            return Err(Error::TooShortToEvaluate {
                path: "the evaluation text".into(),
                chars: n,
            });
        }
        let batch = streams_for(n, seq_len, max_batch);
        let streams = Streams::new(n, batch, 1)?;
        let per_stream = streams.stream_len - 1;
        let all = partition(batch, batch.div_ceil(per_shard.max(1)));
        let (first, mine) = partition(all.len(), size)
            .get(rank)
            .map_or((0, 0), |&(s0, ns)| (s0, ns));
        let parts = all[first..first + mine]
            .iter()
            .map(|&(b0, nb)| Part {
                b0,
                nb,
                pos: 0,
                state: model.zero_state(nb),
                total: 0.0,
            })
            .collect();
        Ok(Pass {
            reader: Reader {
                model,
                ids,
                precision,
                streams,
                per_stream,
                t_full: seq_len.min(per_stream),
            },
            shards: all.len(),
            first,
            parts,
        })
    }

    /// Reads every shard to the end (see [`evaluate_in`]) and sums their losses, unless a
    /// signal stops it first.
    fn run(
        mut self,
        params: &[F],
        pool: Option<&ThreadPool>,
        mut group: Option<&mut dyn Group>,
        interrupt: &dyn Fn() -> Option<i32>,
    ) -> Result<Evaluation> {
        let packs = match pool {
            Some(pool) => pool.install(|| self.reader.packs(params)),
            None => self.reader.packs(params),
        };
        let params = Params {
            p: params,
            packs: packs.as_ref(),
        };
        let signal = match pool {
            Some(pool) => self.read_on(pool, params, &mut group, interrupt)?,
            None => self.read_here(params, &mut group, interrupt)?,
        };
        match signal {
            Some(sig) => Ok(Evaluation::Interrupted(sig)),
            None => self.finish(group).map(Evaluation::Done),
        }
    }

    /// Reads the shards on this thread, one after the other, a chunk between two polls.
    /// Returns the signal that stopped it, if any.
    fn read_here(
        &mut self,
        params: Params<F>,
        group: &mut Option<&mut dyn Group>,
        interrupt: &dyn Fn() -> Option<i32>,
    ) -> Result<Option<i32>> {
        let reader = self.reader;
        let mut ws = None;
        loop {
            let next = self.parts.iter_mut().find(|p| !reader.done(p));
            match agree(group, interrupt(), next.is_none())? {
                (Some(sig), _) => return Ok(Some(sig)),
                (None, true) => return Ok(None),
                (None, false) => {}
            }
            if let Some(part) = next {
                reader.advance(part, &mut ws, params)?;
            }
        }
    }

    /// Reads the shards on `pool`'s threads while this thread polls. Returns the signal
    /// that stopped it, if any.
    fn read_on(
        &mut self,
        pool: &ThreadPool,
        params: Params<F>,
        group: &mut Option<&mut dyn Group>,
        interrupt: &dyn Fn() -> Option<i32>,
    ) -> Result<Option<i32>> {
        let reader = self.reader;
        let stop = AtomicBool::new(false);
        let (tx, rx) = channel();
        let running = self.parts.len();
        pool.in_place_scope(|scope| {
            for part in self.parts.iter_mut() {
                let (tx, stop) = (tx.clone(), &stop);
                scope.spawn(move |_| {
                    let mut ws = None;
                    let mut read = Ok(());
                    while read.is_ok() && !reader.done(part) && !stop.load(Ordering::Relaxed) {
                        read = reader.advance(part, &mut ws, params);
                    }
                    // The receiver outlives the scope.
                    let _ = tx.send(read);
                });
            }
            drop(tx);
            let watched = watch(&rx, running, group, interrupt);
            // However the watch ended, the shards stop after their current chunk.
            stop.store(true, Ordering::Relaxed);
            watched
        })
    }

    /// The result, once every shard is read: the shards' losses summed in shard order (sent
    /// to every rank of `group`).
    fn finish(self, group: Option<&mut dyn Group>) -> Result<EvalStats> {
        let mut totals = vec![0.0; self.shards];
        for (k, p) in self.parts.iter().enumerate() {
            totals[self.first + k] = p.total;
        }
        if let Some(group) = group {
            // Each total is non-zero on one rank only: x + 0 is x, so the chain copies them.
            reduce_chain(group, &mut totals, &mut Vec::new(), |_, _| {})?;
        }
        let total: f64 = totals.iter().sum();
        let batch = self.reader.streams.batch;
        let chars = (self.reader.per_stream * batch) as u64;
        let loss = total / chars as f64;
        Ok(EvalStats {
            loss,
            bpc: loss / std::f64::consts::LN_2,
            chars,
            streams: batch,
        })
    }
}

/// Waits for `running` shards to report on `rx`, polling `interrupt` (agreed on with every
/// rank of `group`) at least every [`POLL`]. Returns the signal that stopped the evaluation,
/// if any, or the first shard's error.
fn watch(
    rx: &Receiver<Result<()>>,
    mut running: usize,
    group: &mut Option<&mut dyn Group>,
    interrupt: &dyn Fn() -> Option<i32>,
) -> Result<Option<i32>> {
    loop {
        match agree(group, interrupt(), running == 0)? {
            (Some(sig), _) => return Ok(Some(sig)),
            (None, true) => return Ok(None),
            (None, false) => {}
        }
        match rx.recv_timeout(POLL) {
            Ok(read) => {
                read?;
                running = running.saturating_sub(1);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Every shard reports before it ends, so this only follows a shard's panic, which
            // the scope raises once this returns.
            Err(RecvTimeoutError::Disconnected) => running = 0,
        }
    }
}

/// The signal any rank of `group` was asked to stop with, and whether every rank is `done`
/// (this process's own, alone).
fn agree(
    group: &mut Option<&mut dyn Group>,
    local: Option<i32>,
    done: bool,
) -> Result<(Option<i32>, bool)> {
    match group {
        None => Ok((local, done)),
        Some(g) => {
            let signal = agree_signal(&mut **g, local)?;
            Ok((signal, agree_ok(&mut **g, done)?))
        }
    }
}
