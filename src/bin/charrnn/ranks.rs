//! Training as one of the processes of an `mpirun` (the `mpi` feature): whether this process
//! was launched so, and the group it trains in. The training itself is the library's
//! ([`charrnn::parallel::group`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use charrnn::parallel::Group;

/// How many processes an MPI launcher started with this one, from the environment it sets
/// (Open MPI's, or the PMI variables of MPICH and Slurm).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Launch {
    /// Processes in the job.
    pub(crate) size: usize,
    /// This process's rank.
    pub(crate) rank: usize,
    /// Processes of the job on this machine.
    pub(crate) local_size: usize,
}

/// The launch this process is part of, if an MPI launcher started it.
pub(crate) fn launch() -> Option<Launch> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok()?.parse::<usize>().ok())
    };
    let size = get(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])?;
    let local_size = get(&["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]).unwrap_or(size);
    Some(Launch {
        size,
        rank: get(&["OMPI_COMM_WORLD_RANK", "PMI_RANK"]).unwrap_or(0),
        local_size: local_size.max(1),
    })
}

/// A joined MPI job: holds MPI open until [`Joined::leave`].
pub(crate) struct Joined {
    #[cfg(feature = "mpi")]
    universe: mpi::environment::Universe,
}

impl Joined {
    /// Leaves the job. With `ok` (every rank finished together) MPI is finalised; after an
    /// error it is not, because MPI_Finalize may wait for ranks that wait on this one: the
    /// launcher ends the job when this process exits non-zero.
    pub(crate) fn leave(self, ok: bool) {
        #[cfg(feature = "mpi")]
        if ok {
            drop(self.universe);
        } else {
            std::mem::forget(self.universe);
        }
        #[cfg(not(feature = "mpi"))]
        let _ = (self, ok);
    }
}

/// Initialises MPI and returns this process's group, each exchange bounded by `timeout`
/// (`run_dir`: where the run is saved, named when a timeout ends it).
#[cfg(feature = "mpi")]
pub(crate) fn join(timeout: Duration, run_dir: &Path) -> Result<(Joined, Box<dyn Group>)> {
    let Some((universe, threading)) = mpi::initialize_with_threading(mpi::Threading::Serialized)
    else {
        bail!("MPI was already initialised in this process");
    };
    let group = charrnn::parallel::mpi::MpiGroup::new(&universe, threading, timeout, run_dir)
        .map_err(anyhow::Error::msg)?;
    Ok((Joined { universe }, Box::new(group)))
}

/// Without the `mpi` feature there is no group to join: a clear error instead of N copies
/// of one run writing the same files.
#[cfg(not(feature = "mpi"))]
pub(crate) fn join(_timeout: Duration, _run_dir: &Path) -> Result<(Joined, Box<dyn Group>)> {
    bail!(
        "this charrnn was launched by mpirun but built without MPI support: build it with \
         `cargo build --release --features mpi` (after scripts/install-mpi.sh), or run it without mpirun"
    )
}
