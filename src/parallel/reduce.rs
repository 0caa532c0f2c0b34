//! The gradient reduction across shards: a fixed order, whatever the thread count.

use rayon::prelude::*;

use super::{Shard, CHUNK};
use crate::linalg::Float;

/// Sums every shard's gradient into the first shard's, element by element in shard order.
/// Inside a rayon pool the chunks of parameters are summed in parallel; the order of each
/// element's sum is the same either way.
pub fn reduce_grads<F: Float>(shards: &mut [Shard<F>]) {
    let Some((first, rest)) = shards.split_first_mut() else {
        return;
    };
    if rest.is_empty() {
        return;
    }
    let sum_chunk = |(c, out): (usize, &mut [F])| {
        let range = c * CHUNK..c * CHUNK + out.len();
        for s in rest.iter() {
            for (o, &g) in out.iter_mut().zip(&s.grads[range.clone()]) {
                *o += g;
            }
        }
    };
    if rayon::current_thread_index().is_some() {
        first
            .grads
            .par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(sum_chunk);
    } else {
        first
            .grads
            .chunks_mut(CHUNK)
            .enumerate()
            .for_each(sum_chunk);
    }
}
