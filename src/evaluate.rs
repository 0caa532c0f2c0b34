//! Evaluation: the forward-only loss of a model over a text, in parallel over shards of
//! streams, and shared among the processes of a distributed run.

use serde::{Deserialize, Serialize};

use crate::data::{Ids, Streams};
use crate::error::{Error, Result};
use crate::linalg::{Float, Precision};
use crate::model::{CharLm, Workspace};
use crate::parallel::group::reduce_chain;
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

/// Forward-only loss of `params` over `ids`, cut into at most `max_batch` streams walked in
/// chunks of up to `seq_len`, each stream starting from a zero state and carrying it along.
///
/// Every symbol of a stream but its first is predicted; the at most B−1 symbols left over
/// when N is not a multiple of B are not. Streams are evaluated in shards of up to 16 (in
/// parallel inside a rayon pool), whose losses are summed in shard order: the result does not
/// depend on the number of threads. Products run at `precision`.
pub fn evaluate<F: Float>(
    model: &CharLm,
    params: &[F],
    ids: &Ids,
    seq_len: usize,
    max_batch: usize,
    precision: Precision,
) -> Result<EvalStats> {
    evaluate_in(model, params, ids, seq_len, max_batch, precision, None)
}

/// [`evaluate`] shared among the ranks of `group`: each evaluates a contiguous block of the
/// shards, and the shard losses are exchanged, so that every rank gets the result one process
/// computes, bit for bit, in a fraction of the time.
pub fn evaluate_in<F: Float>(
    model: &CharLm,
    params: &[F],
    ids: &Ids,
    seq_len: usize,
    max_batch: usize,
    precision: Precision,
    group: Option<&mut dyn Group>,
) -> Result<EvalStats> {
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
    let batch = (n / (seq_len + 1)).clamp(1, max_batch.max(1));
    let streams = Streams::new(n, batch, 1)?;
    let per_stream = streams.stream_len - 1;
    let t_full = seq_len.min(per_stream);
    // (first stream, streams, summed loss) of each shard.
    let mut shards: Vec<(usize, usize, f64)> = partition(batch, batch.div_ceil(16))
        .into_iter()
        .map(|(b0, nb)| (b0, nb, 0.0))
        .collect();
    // This rank's block of shards (all of them for one process).
    let (rank, size) = group.as_ref().map_or((0, 1), |g| (g.rank(), g.size()));
    let mine = partition(shards.len(), size)
        .get(rank)
        .map_or(0..0, |&(s0, ns)| s0..s0 + ns);
    for_each_shard(&mut shards[mine], |(b0, nb, total)| {
        let mut ws_full = Workspace::new(model, t_full, *nb);
        let mut ws_tail = Workspace::new(model, (per_stream % t_full).max(1), *nb);
        ws_full.set_precision(precision);
        ws_tail.set_precision(precision);
        let mut state = model.zero_state::<F>(*nb);
        let mut pos = 0;
        while pos < per_stream {
            let ws = if per_stream - pos >= t_full {
                &mut ws_full
            } else {
                &mut ws_tail
            };
            streams.fill(ids, pos, *b0, *nb, &mut ws.xs, &mut ws.ys)?;
            model.forward(params, &state.view(), ws);
            ws.last_state(&mut state.view_mut());
            *total += model.loss(ws).to_f64().unwrap_or(f64::NAN);
            pos += ws.xs.len() / *nb;
        }
        Ok(())
    })?;
    let mut totals: Vec<f64> = shards.iter().map(|s| s.2).collect();
    if let Some(group) = group {
        // Each total is non-zero on one rank only: x + 0 is x, so the chain copies them.
        reduce_chain(group, &mut totals, &mut Vec::new(), |_, _| {})?;
    }
    let total: f64 = totals.iter().sum();
    let chars = (per_stream * batch) as u64;
    let loss = total / chars as f64;
    Ok(EvalStats {
        loss,
        bpc: loss / std::f64::consts::LN_2,
        chars,
        streams: batch,
    })
}
