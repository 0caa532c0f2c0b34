//! What the operating system says about this process's machine: for now, the memory it can
//! still get ([`available_memory`]). A leaf: it reads `/proc` and `/sys` and imports nothing
//! from the crate. The checks that use the answer (`TrainConfig::check_memory`,
//! `data::check_fits`) take it as an argument, so that tests can pass any value.
//!
//! The probe parses a few files, each step a pure function of their contents, put together
//! over a file reader that the tests replace with a map of sample contents.

/// Bytes of memory this process can still get: the kernel's MemAvailable, capped by what the
/// process's own memory cgroup has left (its limit less its usage, at its level and every
/// level above it that sets one; cgroup v2's `memory.max` and `memory.current`, or v1's
/// `memory.limit_in_bytes` and `memory.usage_in_bytes`). None when nothing can be read.
pub fn available_memory() -> Option<u64> {
    available_memory_from(|path| std::fs::read_to_string(path).ok())
}

/// [`available_memory`] over `read`, which gives a file's contents (None for a file that is
/// missing or unreadable).
fn available_memory_from(read: impl Fn(&str) -> Option<String>) -> Option<u64> {
    let free = read("/proc/meminfo").as_deref().and_then(mem_available);
    let left = read("/proc/self/cgroup")
        .as_deref()
        .and_then(memory_cgroup)
        .and_then(|cgroup| {
            ancestors(&cgroup.path)
                .filter_map(|dir| {
                    let dir = format!("{}{dir}", cgroup.version.root());
                    let [limit, usage] = cgroup.version.files();
                    headroom(
                        &read(&format!("{dir}/{limit}"))?,
                        &read(&format!("{dir}/{usage}"))?,
                    )
                })
                .min()
        });
    match (free, left) {
        (Some(f), Some(l)) => Some(f.min(l)),
        (f, l) => f.or(l),
    }
}

/// MemAvailable of `/proc/meminfo` (`MemAvailable:   24055308 kB`), in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb.saturating_mul(1024))
}

/// Which cgroup hierarchy holds the memory controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CgroupVersion {
    /// The unified hierarchy, mounted at `/sys/fs/cgroup`.
    V2,
    /// The memory hierarchy of cgroup v1, mounted at `/sys/fs/cgroup/memory`.
    V1,
}

impl CgroupVersion {
    /// Where the hierarchy is mounted (a cgroup's path is appended to it).
    fn root(self) -> &'static str {
        match self {
            CgroupVersion::V2 => "/sys/fs/cgroup",
            CgroupVersion::V1 => "/sys/fs/cgroup/memory",
        }
    }

    /// The files of a cgroup's memory limit and its current usage.
    fn files(self) -> [&'static str; 2] {
        match self {
            CgroupVersion::V2 => ["memory.max", "memory.current"],
            CgroupVersion::V1 => ["memory.limit_in_bytes", "memory.usage_in_bytes"],
        }
    }
}

/// The memory cgroup of a process: its hierarchy, and its path inside it (`/` at the root).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cgroup {
    version: CgroupVersion,
    path: String,
}

/// The memory cgroup named by `/proc/self/cgroup`: the v1 line whose controllers include
/// `memory` (`4:memory:/a/b`) where there is one (a hybrid system keeps memory in v1), else
/// the v2 line (`0::/a/b`). None when neither is there.
fn memory_cgroup(self_cgroup: &str) -> Option<Cgroup> {
    // Each line is `id:controllers:path`.
    let entries = || {
        self_cgroup.lines().filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            Some((parts.next()?, parts.next()?, parts.next()?))
        })
    };
    let v1 = entries()
        .find(|(_, controllers, _)| controllers.split(',').any(|c| c == "memory"))
        .map(|(_, _, path)| (CgroupVersion::V1, path));
    let v2 = || {
        entries()
            .find(|&(id, controllers, _)| id == "0" && controllers.is_empty())
            .map(|(_, _, path)| (CgroupVersion::V2, path))
    };
    v1.or_else(v2).map(|(version, path)| Cgroup {
        version,
        path: path.trim().to_string(),
    })
}

/// A cgroup's path and those of its ancestors, itself first, the root (`""`) last:
/// `/a/b` gives `/a/b`, `/a`, `""`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let path = path.trim_end_matches('/');
    std::iter::successors(Some(path), |p| {
        (!p.is_empty()).then(|| &p[..p.rfind('/').unwrap_or(0)])
    })
}

/// What one level of a cgroup has left: its limit less its usage (0 when over it), from the
/// contents of its limit and usage files. None where the level sets no limit (`max`) or the
/// contents are not numbers. A v1 level without a limit holds a huge number (2⁶³ less a page)
/// and leaves a huge headroom, which MemAvailable then caps.
fn headroom(limit: &str, usage: &str) -> Option<u64> {
    let limit = limit.trim().parse::<u64>().ok()?;
    let usage = usage.trim().parse::<u64>().ok()?;
    Some(limit.saturating_sub(usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const MEMINFO: &str = "MemTotal:       32767516 kB\nMemFree:         1034208 kB\n\
                           MemAvailable:   24055308 kB\nBuffers:          123456 kB\n";
    const FREE: u64 = 24_055_308 * 1024;

    /// [`available_memory_from`] over a machine whose files are `files`.
    fn probe(files: &[(&str, &str)]) -> Option<u64> {
        let files: HashMap<&str, &str> = files.iter().copied().collect();
        available_memory_from(|p| files.get(p).map(|s| s.to_string()))
    }

    #[test]
    fn mem_available_is_read_in_bytes() {
        assert_eq!(mem_available(MEMINFO), Some(FREE));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(mem_available(""), None);
    }

    #[test]
    fn the_memory_cgroup_is_v1_where_memory_is_there_else_v2() {
        let v2 = |path: &str| {
            Some(Cgroup {
                version: CgroupVersion::V2,
                path: path.into(),
            })
        };
        assert_eq!(
            memory_cgroup("0::/user.slice/run.scope\n"),
            v2("/user.slice/run.scope")
        );
        assert_eq!(memory_cgroup("0::/\n"), v2("/"));
        // Hybrid: the unified line is there, but memory is a v1 controller.
        let hybrid = "9:name=systemd:/\n4:memory:/process_api/0a4d\n2:cpu,cpuacct:/\n0::/\n";
        let v1 = Some(Cgroup {
            version: CgroupVersion::V1,
            path: "/process_api/0a4d".into(),
        });
        assert_eq!(memory_cgroup(hybrid), v1);
        assert_eq!(
            memory_cgroup("5:cpu,memory:/a\n").map(|c| c.version),
            Some(CgroupVersion::V1)
        );
        assert_eq!(memory_cgroup("3:cpuset:/\n"), None);
        assert_eq!(memory_cgroup(""), None);
    }

    #[test]
    fn ancestors_run_from_the_cgroup_up_to_the_root() {
        let all = |p: &'static str| ancestors(p).collect::<Vec<_>>();
        assert_eq!(all("/a/b"), ["/a/b", "/a", ""]);
        assert_eq!(all("/a/"), ["/a", ""]);
        assert_eq!(all("/"), [""]);
    }

    #[test]
    fn headroom_is_the_limit_less_the_usage() {
        assert_eq!(headroom("1000\n", "300\n"), Some(700));
        assert_eq!(headroom("100\n", "300\n"), Some(0), "over the limit");
        assert_eq!(
            headroom("max\n", "300\n"),
            None,
            "v2: no limit at this level"
        );
        assert_eq!(
            headroom("9223372036854771712\n", "9003008\n"),
            Some(9_223_372_036_845_768_704),
            "v1: no limit is a huge one"
        );
        assert_eq!(headroom("", "1"), None);
    }

    #[test]
    fn the_probe_takes_the_least_of_meminfo_and_every_cgroup_level() {
        let cgroup = ("/proc/self/cgroup", "0::/ci/job\n");
        // No cgroup limit anywhere (`max`, and no files at the root): MemAvailable.
        assert_eq!(
            probe(&[
                ("/proc/meminfo", MEMINFO),
                cgroup,
                ("/sys/fs/cgroup/ci/job/memory.max", "max\n"),
                ("/sys/fs/cgroup/ci/job/memory.current", "5000\n"),
            ]),
            Some(FREE)
        );
        // The job sets no limit; its parent does, and has 4 GB left: the parent's headroom.
        let parent_left = 4_000_000_000;
        assert_eq!(
            probe(&[
                ("/proc/meminfo", MEMINFO),
                cgroup,
                ("/sys/fs/cgroup/ci/job/memory.max", "max\n"),
                ("/sys/fs/cgroup/ci/job/memory.current", "1000000000\n"),
                ("/sys/fs/cgroup/ci/memory.max", "6000000000\n"),
                ("/sys/fs/cgroup/ci/memory.current", "2000000000\n"),
            ]),
            Some(parent_left)
        );
        // A limit that is not what is free: 8 GB of which 7 GB are used leaves 1 GB.
        assert_eq!(
            probe(&[
                ("/proc/meminfo", MEMINFO),
                ("/proc/self/cgroup", "0::/\n"),
                ("/sys/fs/cgroup/memory.max", "8000000000\n"),
                ("/sys/fs/cgroup/memory.current", "7000000000\n"),
            ]),
            Some(1_000_000_000)
        );
        // cgroup v1 without a limit (a huge one): MemAvailable.
        let v1 = "/sys/fs/cgroup/memory/process_api/0a4d";
        assert_eq!(
            probe(&[
                ("/proc/meminfo", MEMINFO),
                ("/proc/self/cgroup", "4:memory:/process_api/0a4d\n0::/\n"),
                (
                    &format!("{v1}/memory.limit_in_bytes"),
                    "9223372036854771712\n"
                ),
                (&format!("{v1}/memory.usage_in_bytes"), "9003008\n"),
            ]),
            Some(FREE)
        );
        // cgroup v1 with a limit of 2 GB, 0.5 GB used.
        assert_eq!(
            probe(&[
                ("/proc/meminfo", MEMINFO),
                ("/proc/self/cgroup", "4:memory:/process_api/0a4d\n0::/\n"),
                (&format!("{v1}/memory.limit_in_bytes"), "2000000000\n"),
                (&format!("{v1}/memory.usage_in_bytes"), "500000000\n"),
            ]),
            Some(1_500_000_000)
        );
        // Missing files: no cgroup files, or no /proc/self/cgroup, leave MemAvailable; no
        // meminfo leaves the cgroup's headroom; nothing at all, None.
        assert_eq!(probe(&[("/proc/meminfo", MEMINFO), cgroup]), Some(FREE));
        assert_eq!(probe(&[("/proc/meminfo", MEMINFO)]), Some(FREE));
        assert_eq!(
            probe(&[
                cgroup,
                ("/sys/fs/cgroup/ci/job/memory.max", "3000\n"),
                ("/sys/fs/cgroup/ci/job/memory.current", "1000\n"),
            ]),
            Some(2000)
        );
        assert_eq!(
            probe(&[cgroup, ("/sys/fs/cgroup/ci/job/memory.max", "3000\n")]),
            None,
            "a limit without its usage says nothing"
        );
        assert_eq!(probe(&[]), None);
    }
}
