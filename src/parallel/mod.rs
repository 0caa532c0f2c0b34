//! Data parallelism over independent streams: the B streams of a step are cut into S shards
//! (contiguous groups of streams, fixed by the config, never by the thread count). Each shard
//! ([`shard`]) runs forward and backward with its own workspace, carried state and gradient
//! buffer; the shard gradients are then summed in shard order ([`reduce`]). Every element's
//! sum has the same order whatever the number of threads, so 1, 2 or 16 threads give the same
//! bits. Across processes ([`group`]) the shards are divided among the ranks and summed along
//! a chain in the same order, so N processes give the bits of one.

pub mod group;
pub mod launch;
#[cfg(feature = "mpi")]
pub mod mpi;
pub mod reduce;
pub mod shard;

use rayon::prelude::*;

use crate::error::Result;

pub use group::{Group, LocalGroup};
pub use reduce::{add_shards, reduce_grads};
pub use shard::{gather_state, scatter_state, ChunkFn, Noise, Shard};

/// Elements per task of the parallel gradient reduction and optimizer update: large enough to
/// amortise rayon's scheduling, small enough to spread H = 512 (≈ 330k parameters) over 16 threads.
pub const CHUNK: usize = 16 * 1024;

/// Streams `[b0, b0 + nb)`, contiguous, with sizes differing by at most one.
pub fn partition(batch: usize, shards: usize) -> Vec<(usize, usize)> {
    let shards = shards.clamp(1, batch.max(1));
    let (base, extra) = (batch / shards, batch % shards);
    let mut b0 = 0;
    (0..shards)
        .map(|i| {
            let nb = base + usize::from(i < extra);
            let range = (b0, nb);
            b0 += nb;
            range
        })
        .collect()
}

/// Runs `f` on every item (shard): in parallel inside a rayon pool, in order otherwise.
/// Returns an error of a shard that failed (reading its data), if any did.
pub fn for_each_shard<T: Send>(
    items: &mut [T],
    f: impl Fn(&mut T) -> Result<()> + Sync + Send,
) -> Result<()> {
    if rayon::current_thread_index().is_some() {
        items.par_iter_mut().try_for_each(f)
    } else {
        items.iter_mut().try_for_each(f)
    }
}
