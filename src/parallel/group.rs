//! Processes that train one run together: data parallelism beyond one process.
//!
//! A run's S shards ([`super::partition`]) are divided among the N processes of a [`Group`]
//! (MPI ranks with the `mpi` feature, `MpiGroup` in `parallel::mpi`; threads in tests,
//! [`LocalGroup`]): rank r owns shards `[r·S/N, (r+1)·S/N)` and reads only their streams.
//! Everything a step decides is computed from values every rank holds bit for bit:
//!
//! - **The gradient** is summed along a chain ([`reduce_chain`]): rank 0 sums its shards in
//!   order and sends the running sum to rank 1, which adds its shards in order and passes it
//!   on; the last rank broadcasts the total. Each element is therefore added in global shard
//!   order, exactly as one process sums its shards ([`super::reduce_grads`]), so the result
//!   does not depend on N. (An all-reduce whose association varies with N, as MPI's own
//!   reductions may, could not promise that.) The chain goes in pieces of [`PIECE`] elements,
//!   so rank r+1 adds piece k while rank r adds piece k+1.
//! - **The loss** travels with the gradient, so divergence is detected by every rank at once.
//! - **An interrupt** seen by any rank is agreed on before each step ([`agree_signal`]).
//!
//! Each rank then takes the same optimizer step on the same numbers: parameters and
//! optimizer state stay identical everywhere without ever being sent.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

use super::{add_shards, Shard};
use crate::error::{Error, Result};
use crate::linalg::Float;

/// Elements per message of the gradient chain: big enough that a message's latency is
/// small against its transfer, small enough that the ranks of a chain overlap.
pub const PIECE: usize = 64 * 1024;

/// Point-to-point messages and a broadcast among the N processes of a run.
///
/// Messages between two ranks arrive in the order they were sent; a receive names its sender
/// and its exact length. An implementation bounds how long it waits (a peer that died or
/// hangs must end the run with an error, not a hang).
pub trait Group: Send {
    /// This process's rank, 0..size.
    fn rank(&self) -> usize;
    /// Processes in the group, N.
    fn size(&self) -> usize;
    /// Sends `buf` to rank `to`.
    fn send(&mut self, to: usize, buf: &[u8]) -> Result<()>;
    /// Receives exactly `buf.len()` bytes from rank `from`.
    fn recv(&mut self, from: usize, buf: &mut [u8]) -> Result<()>;
    /// Makes every rank's `buf` (the same length everywhere) a copy of rank `root`'s.
    fn broadcast(&mut self, root: usize, buf: &mut [u8]) -> Result<()>;
}

/// An [`Error::Group`] of `group`'s rank.
pub fn group_error(group: &dyn Group, what: impl Into<String>) -> Error {
    Error::Group {
        rank: group.rank(),
        size: group.size(),
        what: what.into(),
    }
}

/// Sums, along the chain of ranks, the values of every rank's shards in global shard order.
///
/// `acc` is this rank's buffer: on entry it holds its first shard's values; `add_rest` adds
/// its other shards' values to a range of it, in shard order. On return every rank's `acc`
/// holds the total, identical bit for bit on every rank and to one process summing all
/// shards in order.
pub fn reduce_chain<F: Float>(
    group: &mut dyn Group,
    acc: &mut [F],
    scratch: &mut Vec<F>,
    mut add_rest: impl FnMut(std::ops::Range<usize>, &mut [F]),
) -> Result<()> {
    let (rank, size) = (group.rank(), group.size());
    // Grown once to a piece and kept: no allocation or clearing step after step.
    if scratch.len() < PIECE.min(acc.len()) {
        scratch.resize(PIECE.min(acc.len()), F::zero());
    }
    for start in (0..acc.len()).step_by(PIECE) {
        let range = start..(start + PIECE).min(acc.len());
        let piece = &mut acc[range.clone()];
        if rank > 0 {
            let incoming = &mut scratch[..piece.len()];
            group.recv(rank - 1, F::as_bytes_mut(incoming))?;
            // The sum so far, then this rank's first shard: a + b is b + a, bit for bit.
            for (a, &s) in piece.iter_mut().zip(incoming.iter()) {
                *a = s + *a;
            }
        }
        add_rest(range, piece);
        if rank + 1 < size {
            group.send(rank + 1, F::as_bytes(piece))?;
        }
    }
    group.broadcast(size - 1, F::as_bytes_mut(acc))
}

/// The signal any rank was asked to stop with (the largest number, if several), agreed on
/// by every rank.
pub fn agree_signal(group: &mut dyn Group, local: Option<i32>) -> Result<Option<i32>> {
    let mut v = [i64::from(local.unwrap_or(0))];
    let (rank, size) = (group.rank(), group.size());
    if rank > 0 {
        let mut incoming = [0u8; 8];
        group.recv(rank - 1, &mut incoming)?;
        v[0] = v[0].max(i64::from_le_bytes(incoming));
    }
    if rank + 1 < size {
        group.send(rank + 1, &v[0].to_le_bytes())?;
    }
    let mut out = v[0].to_le_bytes();
    group.broadcast(size - 1, &mut out)?;
    Ok(match i64::from_le_bytes(out) {
        0 => None,
        s => Some(s as i32),
    })
}

/// True on every rank when `ok` is true on every rank: a step of setup that may fail on
/// one rank (reading a file, a refused directory) ends on all of them.
pub fn agree_ok(group: &mut dyn Group, ok: bool) -> Result<bool> {
    let signal = agree_signal(group, (!ok).then_some(1))?;
    Ok(signal.is_none())
}

/// Rank `root`'s bytes on every rank (any length). When `root` fails to produce them, every
/// other rank gets an error saying so, and `root` its own error.
pub fn broadcast_bytes(
    group: &mut dyn Group,
    root: usize,
    bytes: Option<Result<Vec<u8>>>,
) -> Result<Vec<u8>> {
    const FAILED: u64 = u64::MAX;
    let mut len = match &bytes {
        Some(Ok(b)) => b.len() as u64,
        _ => FAILED,
    }
    .to_le_bytes();
    group.broadcast(root, &mut len)?;
    let len = u64::from_le_bytes(len);
    if group.rank() == root {
        let bytes = bytes.expect("the root passes its bytes")?;
        let mut bytes = bytes;
        group.broadcast(root, &mut bytes)?;
        return Ok(bytes);
    }
    if len == FAILED {
        return Err(group_error(
            group,
            format!("rank {root} failed (its message says why); stopping too"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    group.broadcast(root, &mut buf)?;
    Ok(buf)
}

/// Every rank's `local` values at rank 0, in rank order (None on the other ranks).
pub fn gather_to_root<F: Float>(group: &mut dyn Group, local: &[F]) -> Result<Option<Vec<F>>> {
    let (rank, size) = (group.rank(), group.size());
    if rank > 0 {
        group.send(0, &(local.len() as u64).to_le_bytes())?;
        group.send(0, F::as_bytes(local))?;
        return Ok(None);
    }
    let mut all = local.to_vec();
    for from in 1..size {
        let mut len = [0u8; 8];
        group.recv(from, &mut len)?;
        let start = all.len();
        all.resize(start + u64::from_le_bytes(len) as usize, F::zero());
        group.recv(from, F::as_bytes_mut(&mut all[start..]))?;
    }
    Ok(Some(all))
}

/// N threads of one process as a [`Group`], talking over channels: the distributed code
/// path without MPI, for tests and for trying it out. Each receive waits at most `timeout`.
pub struct LocalGroup {
    rank: usize,
    to: Vec<Sender<Vec<u8>>>,
    from: Vec<Receiver<Vec<u8>>>,
    timeout: Duration,
}

impl LocalGroup {
    /// The N members of a new group, rank 0 first; hand one to each thread.
    pub fn new(size: usize, timeout: Duration) -> Vec<LocalGroup> {
        // channels[i][j]: from rank i to rank j.
        let mut senders: Vec<Vec<Sender<Vec<u8>>>> = vec![Vec::new(); size];
        let mut receivers: Vec<Vec<Receiver<Vec<u8>>>> = (0..size).map(|_| Vec::new()).collect();
        for sender in senders.iter_mut() {
            for receiver in receivers.iter_mut() {
                let (tx, rx) = channel();
                sender.push(tx);
                receiver.push(rx);
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(rank, (to, from))| LocalGroup {
                rank,
                to,
                from,
                timeout,
            })
            .collect()
    }
}

impl Group for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.to.len()
    }

    fn send(&mut self, to: usize, buf: &[u8]) -> Result<()> {
        self.to[to]
            .send(buf.to_vec())
            .map_err(|_| group_error(self, format!("rank {to} has gone")))
    }

    fn recv(&mut self, from: usize, buf: &mut [u8]) -> Result<()> {
        let msg = self.from[from].recv_timeout(self.timeout).map_err(|e| {
            group_error(
                self,
                match e {
                    RecvTimeoutError::Timeout => {
                        format!("no message from rank {from} in {:?}", self.timeout)
                    }
                    RecvTimeoutError::Disconnected => format!("rank {from} has gone"),
                },
            )
        })?;
        if msg.len() != buf.len() {
            return Err(group_error(
                self,
                format!(
                    "rank {from} sent {} bytes where {} were expected",
                    msg.len(),
                    buf.len()
                ),
            ));
        }
        buf.copy_from_slice(&msg);
        Ok(())
    }

    fn broadcast(&mut self, root: usize, buf: &mut [u8]) -> Result<()> {
        if self.rank == root {
            for to in (0..self.size()).filter(|&r| r != root) {
                self.send(to, buf)?;
            }
            Ok(())
        } else {
            self.recv(root, buf)
        }
    }
}

/// This process's place in a run trained by a group of processes: the group, and the
/// receive buffer of the gradient chain.
pub(crate) struct Team<F> {
    pub(crate) group: Box<dyn Group>,
    pub(crate) scratch: Vec<F>,
    /// Wall-clock seconds spent summing gradients with the other ranks (waiting included).
    pub(crate) seconds: f64,
}

impl<F: Float> Team<F> {
    /// Sums the gradients and losses of every rank's shards in global shard order (see
    /// [`crate::parallel::group`]): into the first local shard's gradient on every rank.
    /// Returns the step's summed loss.
    pub(crate) fn reduce(&mut self, shards: &mut [Shard<F>]) -> Result<F> {
        let start = std::time::Instant::now();
        let (first, rest) = shards.split_first_mut().expect("every rank owns a shard");
        let group = self.group.as_mut();
        reduce_chain(
            group,
            &mut first.grads,
            &mut self.scratch,
            |range, piece| add_shards(piece, range.start, rest),
        )?;
        let mut loss = [first.loss];
        reduce_chain(group, &mut loss, &mut self.scratch, |_, l| {
            for s in rest.iter() {
                l[0] += s.loss;
            }
        })?;
        self.seconds += start.elapsed().as_secs_f64();
        Ok(loss[0])
    }
}
