//! Memory does not grow with the corpus: training from a prepared corpus of 1 GB peaks within
//! 32 MB of the same run from a prepared corpus of 10 MB (the ids are read a step at a time,
//! never loaded or mapped whole). Its own test binary, so no other test's child processes
//! share the measurement.

use std::path::Path;
use std::process::Command;

mod common;
use common::bin::succeeds;

/// Runs the binary with `args` and returns its peak resident set size in bytes.
#[allow(clippy::zombie_processes)] // reaped by the wait4 below, which std cannot see
fn peak_rss(args: &[&str]) -> u64 {
    let child = Command::new(env!("CARGO_BIN_EXE_charrnn"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cannot start charrnn");
    let mut status = 0;
    // SAFETY: plain wait4 on our own child, with valid pointers to locals.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "charrnn {args:?} failed: status {status}"
    );
    usage.ru_maxrss as u64 * 1024
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn peak_memory_does_not_grow_with_a_prepared_corpus() {
    let d = tempfile::tempdir().unwrap();
    let text = d.path().join("10mb.txt");
    succeeds(&["synth", "--chars", "10000000", "--out", &s(&text)]);
    let (small, big) = (d.path().join("small"), d.path().join("big"));
    succeeds(&["prepare", &s(&text), "--out", &s(&small), "--quiet"]);
    // The same file 100 times: 1 GB of tokens.
    let mut args = vec![
        "prepare".to_string(),
        "--quiet".into(),
        "--out".into(),
        s(&big),
    ];
    args.extend(std::iter::repeat_n(s(&text), 100));
    succeeds(&args);
    let size = std::fs::metadata(big.join("tokens.bin")).unwrap().len();
    assert!(size >= 1_000_000_000, "{size}");

    let train = |data: &Path, out: &str| {
        let out = s(&d.path().join(out));
        let data = s(data);
        let args = [
            "train",
            &data,
            "--out",
            &out,
            "--hidden=256",
            "--batch=64",
            "--seq-len=64",
            "--steps=8",
            "--eval-every=4",
            "--val-chars=20000",
            "--threads=1",
            "--quiet",
        ];
        peak_rss(&args)
    };
    let rss_small = train(&small, "run-small");
    let rss_big = train(&big, "run-big");
    eprintln!(
        "peak RSS: {} MB from 10 MB, {} MB from 1 GB",
        rss_small >> 20,
        rss_big >> 20
    );
    assert!(
        rss_big.abs_diff(rss_small) <= 32 << 20,
        "peak RSS {} MB from 1 GB against {} MB from 10 MB",
        rss_big >> 20,
        rss_small >> 20
    );
}
