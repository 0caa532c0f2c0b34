//! The processes of an `mpirun` as a [`Group`] (the `mpi` feature).
//!
//! MPI's calls block without limit when a peer dies or stops. A watchdog thread ends this
//! process (with a message naming the call and the peer) when one call has waited longer than
//! the timeout; `mpirun` then ends the others. Every file charrnn writes is written
//! atomically, so the last saved model stays loadable.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::{Destination, Root, Source};

use super::group::Group;
use crate::error::Result;

/// Exit status of a process ended by the watchdog.
pub const TIMEOUT_EXIT: i32 = 3;

/// What the one MPI call in progress is, and since when.
struct Watch {
    start: Instant,
    /// Milliseconds after `start` at which the call began, plus one; 0 when none runs.
    since: AtomicU64,
    /// The call: 1 send, 2 receive, 3 broadcast; and the peer (or root).
    what: AtomicI64,
    rank: usize,
    size: usize,
    timeout: Duration,
    run_dir: String,
}

impl Watch {
    fn begin(&self, call: i64, peer: usize) {
        self.what.store(call << 32 | peer as i64, Ordering::SeqCst);
        let ms = self.start.elapsed().as_millis() as u64 + 1;
        self.since.store(ms, Ordering::SeqCst);
    }

    fn end(&self) {
        self.since.store(0, Ordering::SeqCst);
    }

    /// Ends the process if the call in progress has waited longer than the timeout.
    fn check(&self) {
        let since = self.since.load(Ordering::SeqCst);
        if since == 0 {
            return;
        }
        let waited = self.start.elapsed().as_millis() as u64 + 1 - since;
        if waited < self.timeout.as_millis() as u64 {
            return;
        }
        let what = self.what.load(Ordering::SeqCst);
        let peer = what & 0xffff_ffff;
        let call = match what >> 32 {
            1 => format!("sending to rank {peer}"),
            2 => format!("receiving from rank {peer}"),
            _ => format!("in a broadcast from rank {peer}"),
        };
        eprintln!(
            "error: rank {} of {}: waited {:.0} s {call} (--comm-timeout {}): another rank has died, \
             hangs, or is much slower; stopping. The last saved model is intact: continue with \
             `charrnn train --resume {}` (under mpirun or not)",
            self.rank,
            self.size,
            waited as f64 / 1e3,
            self.timeout.as_secs_f64(),
            self.run_dir
        );
        // SAFETY: _exit ends the process at once; no Rust state is touched afterwards.
        unsafe { libc::_exit(TIMEOUT_EXIT) };
    }
}

/// MPI's world communicator as a [`Group`], each call bounded by a timeout.
pub struct MpiGroup {
    world: SimpleCommunicator,
    watch: Arc<Watch>,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED or better (checked by `new`), which
// allows calls from any thread one at a time; a `Group` is only used through `&mut`, so one
// thread at a time.
unsafe impl Send for MpiGroup {}

impl MpiGroup {
    /// The world of an initialised MPI (`universe` must live as long as the group), with a
    /// watchdog ending the process when one call waits longer than `timeout`.
    /// Fails when MPI grants less than serialized threading. `run_dir` is named in the
    /// message of a timeout (where the last saved model is).
    pub fn new(
        universe: &mpi::environment::Universe,
        threading: mpi::Threading,
        timeout: Duration,
        run_dir: &Path,
    ) -> std::result::Result<MpiGroup, String> {
        if threading < mpi::Threading::Serialized {
            return Err(format!(
                "this MPI grants {threading:?} threading; charrnn needs Serialized (rebuild or configure MPI with thread support)"
            ));
        }
        let world = universe.world();
        let watch = Arc::new(Watch {
            start: Instant::now(),
            since: AtomicU64::new(0),
            what: AtomicI64::new(0),
            rank: world.rank() as usize,
            size: world.size() as usize,
            timeout,
            run_dir: run_dir.display().to_string(),
        });
        let w = Arc::clone(&watch);
        std::thread::Builder::new()
            .name("charrnn-mpi-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_millis(200));
                w.check();
            })
            .map_err(|e| format!("cannot start the watchdog thread: {e}"))?;
        Ok(MpiGroup { world, watch })
    }

    fn timed<R>(&self, call: i64, peer: usize, f: impl FnOnce() -> R) -> R {
        self.watch.begin(call, peer);
        let r = f();
        self.watch.end();
        r
    }
}

impl Group for MpiGroup {
    fn rank(&self) -> usize {
        self.watch.rank
    }

    fn size(&self) -> usize {
        self.watch.size
    }

    fn send(&mut self, to: usize, buf: &[u8]) -> Result<()> {
        let p = self.world.process_at_rank(to as i32);
        self.timed(1, to, || p.send(buf));
        Ok(())
    }

    fn recv(&mut self, from: usize, buf: &mut [u8]) -> Result<()> {
        let p = self.world.process_at_rank(from as i32);
        self.timed(2, from, || p.receive_into(buf));
        Ok(())
    }

    fn broadcast(&mut self, root: usize, buf: &mut [u8]) -> Result<()> {
        let p = self.world.process_at_rank(root as i32);
        self.timed(3, root, || p.broadcast_into(buf));
        Ok(())
    }
}
