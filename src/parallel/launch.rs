//! How this process was started and what it may use: whether an MPI launcher (`mpirun`,
//! `srun`) started it with others, joining their group, and the cores it may run threads on.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::parallel::Group;

/// The processes an MPI launcher started together with this one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Processes in the job.
    pub size: usize,
    /// This process's rank.
    pub rank: usize,
    /// Processes of the job on this machine.
    pub local_size: usize,
}

impl Launch {
    /// The launch this process is part of, from the variables an MPI launcher sets (Open
    /// MPI's, or the PMI ones of MPICH and Slurm); `get` reads one. None: no launcher.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Launch> {
        let read = |names: &[&str]| names.iter().find_map(|n| get(n)?.trim().parse().ok());
        let size: usize = read(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])?;
        let local_size = read(&["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]).unwrap_or(size);
        Some(Launch {
            size,
            rank: read(&["OMPI_COMM_WORLD_RANK", "PMI_RANK"]).unwrap_or(0),
            local_size: local_size.max(1),
        })
    }

    /// Whether this process trains in a group: with other processes, or alone in a build with
    /// MPI. A one-process `mpirun` of a build without MPI simply runs alone.
    pub fn joins(&self) -> bool {
        self.size > 1 || cfg!(feature = "mpi")
    }
}

/// The cores this process may use (1 when that cannot be told).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The threads a process should run by default: the `available` cores shared by the
/// `launch`'s processes on this machine (all of them alone), at least 1.
pub fn default_threads(available: usize, launch: Option<&Launch>) -> usize {
    (available / launch.map_or(1, |l| l.local_size).max(1)).max(1)
}

/// A joined MPI job: holds MPI open until [`Joined::leave`].
pub struct Joined {
    #[cfg(feature = "mpi")]
    universe: mpi::environment::Universe,
}

impl Joined {
    /// Leaves the job. With `ok` (every rank finished together) MPI is finalised; after an
    /// error it is not, because MPI_Finalize may wait for ranks that wait on this one: the
    /// launcher ends the job when this process exits non-zero.
    pub fn leave(self, ok: bool) {
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
pub fn join(timeout: Duration, run_dir: &Path) -> Result<(Joined, Box<dyn Group>)> {
    let Some((universe, threading)) = mpi::initialize_with_threading(mpi::Threading::Serialized)
    else {
        return Err(Error::Mpi(
            "MPI was already initialised in this process".into(),
        ));
    };
    let group =
        super::mpi::MpiGroup::new(&universe, threading, timeout, run_dir).map_err(Error::Mpi)?;
    Ok((Joined { universe }, Box::new(group)))
}

/// Without the `mpi` feature there is no group to join: a clear error instead of N copies
/// of one run writing the same files.
#[cfg(not(feature = "mpi"))]
pub fn join(_timeout: Duration, _run_dir: &Path) -> Result<(Joined, Box<dyn Group>)> {
    Err(Error::Mpi(
        "this charrnn was launched by mpirun but built without MPI support: build it with \
         `cargo build --release --features mpi` (after scripts/install-mpi.sh), or run it without mpirun"
            .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn a_launch_is_read_from_open_mpi_or_pmi_variables() {
        assert_eq!(Launch::from_env(env(&[])), None);
        let ompi = env(&[
            ("OMPI_COMM_WORLD_SIZE", "4"),
            ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_LOCAL_SIZE", "2"),
        ]);
        let l = Launch::from_env(ompi).unwrap();
        assert_eq!((l.size, l.rank, l.local_size), (4, 3, 2));
        // MPICH/Slurm: no local size means every process on this machine.
        let pmi = Launch::from_env(env(&[("PMI_SIZE", "3"), ("PMI_RANK", "1")])).unwrap();
        assert_eq!((pmi.size, pmi.rank, pmi.local_size), (3, 1, 3));
        // A size that is not a number is no launch.
        assert_eq!(Launch::from_env(env(&[("PMI_SIZE", "x")])), None);
        assert!(pmi.joins());
        let alone = Launch::from_env(env(&[("PMI_SIZE", "1")])).unwrap();
        assert_eq!(alone.joins(), cfg!(feature = "mpi"));
    }

    #[test]
    fn the_cores_are_shared_by_the_processes_on_a_machine() {
        let two_here = Launch {
            size: 4,
            rank: 0,
            local_size: 2,
        };
        assert_eq!(default_threads(16, None), 16);
        assert_eq!(default_threads(16, Some(&two_here)), 8);
        assert_eq!(default_threads(1, Some(&two_here)), 1);
        assert_eq!(default_threads(0, None), 1);
        assert!(available_cores() >= 1);
    }
}
