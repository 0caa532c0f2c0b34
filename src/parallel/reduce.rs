//! The gradient reduction across shards: a fixed order, whatever the thread count.

use rayon::prelude::*;

use super::{Shard, CHUNK};
use crate::linalg::Float;

/// Sums every shard's gradient into the first shard's, element by element in shard order.
/// Inside a rayon pool the chunks of parameters are summed in parallel; the order of each
/// element's sum is the same either way.
pub fn reduce_grads<F: Float>(shards: &mut [Shard<F>]) {
    if let Some((first, rest)) = shards.split_first_mut() {
        add_shards(&mut first.grads, 0, rest);
    }
}

/// Adds the gradients of `shards`, in order, to `out`, which holds elements `start..` of the
/// flat gradient (in parallel over chunks inside a rayon pool).
pub fn add_shards<F: Float>(out: &mut [F], start: usize, shards: &[Shard<F>]) {
    if shards.is_empty() {
        return;
    }
    let sum_chunk = |(c, out): (usize, &mut [F])| {
        let range = start + c * CHUNK..start + c * CHUNK + out.len();
        for s in shards {
            for (o, &g) in out.iter_mut().zip(&s.grads[range.clone()]) {
                *o += g;
            }
        }
    };
    if rayon::current_thread_index().is_some() {
        out.par_chunks_mut(CHUNK).enumerate().for_each(sum_chunk);
    } else {
        out.chunks_mut(CHUNK).enumerate().for_each(sum_chunk);
    }
}
