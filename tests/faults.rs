//! Fault injection through the real binary: SIGKILL at many moments of a run that saves and
//! appends metrics at every step, and a full disk during saves, plots and metrics writes.
//! After each fault the run directory must resume, its model must load, and no temporary
//! file may stay behind.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use charrnn::checkpoint;

mod common;
use common::bin::{fails_with, run, succeeds, text};

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Names of the temporary files in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// A small vanilla run on the built-in corpus that saves, logs and plots at every step.
fn train_args(out: &Path, steps: u64) -> Vec<String> {
    [
        "train",
        "--hidden=32",
        "--batch=8",
        "--seq-len=16",
        "--eval-every=1",
        "--val-frac=0.01",
        "--quiet",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([format!("--out={}", s(out)), format!("--steps={steps}")])
    .collect()
}

/// `train --resume DIR` towards a million steps, in the background, output discarded.
fn resume_in_background(dir: &Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_charrnn"))
        .args([
            "train",
            "--resume",
            &s(dir),
            "--steps",
            "1000000",
            "--quiet",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The step the run directory's model file holds.
fn saved_step(dir: &Path) -> u64 {
    checkpoint::load(&dir.join("model.safetensors"))
        .expect("the saved model loads")
        .progress
        .step
}

#[test]
fn sigkill_at_any_moment_leaves_a_run_that_resumes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    succeeds(&train_args(&dir, 2));
    // Kill resumed legs after 0 to ~0.5 s: during steps, saves, metrics appends and plots.
    for k in 0..12u64 {
        let before = saved_step(&dir);
        let mut child = resume_in_background(&dir);
        std::thread::sleep(Duration::from_millis(40 * k + 7));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let after = saved_step(&dir);
        assert!(
            after >= before,
            "kill {k}: the saved step went back from {before} to {after}"
        );
        // Resume one more step: the directory is consistent (metrics, temporaries cleaned).
        let out = run(&[
            "train",
            "--resume",
            &s(&dir),
            "--steps",
            &(after + 1).to_string(),
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "kill {k}: resume failed:\n{}",
            text(&out.stderr)
        );
        assert_eq!(saved_step(&dir), after + 1);
        assert_eq!(temporaries(&dir), Vec::<String>::new(), "kill {k}");
        let log = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        for (i, line) in log.lines().enumerate() {
            assert!(
                serde_json::from_str::<serde_json::Value>(line).is_ok(),
                "kill {k}: metrics line {} is damaged: {line}",
                i + 1
            );
        }
    }
}

/// Mounts a tmpfs of `kb` KiB on `dir` (root only); false when that is not possible here.
fn mount_tmpfs(dir: &Path, kb: u64) -> bool {
    std::fs::create_dir_all(dir).unwrap();
    Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!("size={kb}k"),
            "tmpfs",
            &s(dir),
        ])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|st| st.success())
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
#[ignore = "needs root to mount a small tmpfs; .ci/run runs it when it runs as root"]
fn a_full_disk_keeps_what_was_saved_and_leaves_no_temporaries() {
    let d = tempfile::tempdir().unwrap();
    let disk = d.path().join("disk");
    assert!(
        mount_tmpfs(&disk, 1024),
        "cannot mount a tmpfs at {} (this test needs root)",
        disk.display()
    );
    let _unmount = Unmount(&disk);
    let dir = disk.join("run");
    succeeds(&train_args(&dir, 3));
    // Fill the disk, leaving less than a model file: the next save, plot or metrics append
    // fails with ENOSPC, whichever comes first.
    let free = |p: &Path| -> u64 {
        let st = nix_statvfs(p);
        st.0 * st.1
    };
    let filler = disk.join("filler");
    let mut step = 3;
    // Leave less and less room: the save of model.safetensors, of best.safetensors, the
    // metrics append or the plot fails with ENOSPC, whichever comes first.
    for leave_kb in [160, 96, 64, 40, 24, 8] {
        let room = free(&disk).saturating_sub(leave_kb * 1024);
        std::fs::write(&filler, vec![0u8; room as usize]).unwrap();
        let model = std::fs::read(dir.join("model.safetensors")).unwrap();
        let out = run(&["train", "--resume", &s(&dir), "--steps", "1000", "--quiet"]);
        let code = out.status.code().expect("exited, not killed");
        let err = text(&out.stderr);
        assert!(
            code != 0 && code != 101,
            "leave {leave_kb}k: exit {code}: {err}"
        );
        assert!(
            err.contains("No space left on device"),
            "leave {leave_kb}k: {err}"
        );
        assert_eq!(temporaries(&dir), Vec::<String>::new(), "leave {leave_kb}k");
        // What was saved last is whole: the old file, or a newer one that was completed.
        let now = saved_step(&dir);
        assert!(now >= step, "leave {leave_kb}k: saved step went back");
        if now == step {
            assert_eq!(std::fs::read(dir.join("model.safetensors")).unwrap(), model);
        }
        // With room again, the run resumes (a torn metrics line is dropped with a note).
        std::fs::remove_file(&filler).unwrap();
        succeeds(&[
            "train",
            "--resume",
            &s(&dir),
            "--steps",
            &(now + 2).to_string(),
            "--quiet",
        ]);
        step = saved_step(&dir);
        assert_eq!(step, now + 2);
    }
}

/// (fragment size, available fragments) of the file system holding `p`.
fn nix_statvfs(p: &Path) -> (u64, u64) {
    let c = std::ffi::CString::new(s(p)).unwrap();
    // SAFETY: statvfs with a valid C string and a zeroed struct to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    (st.f_frsize, st.f_bavail)
}

/// A second `train` on a directory another process is training in is refused, naming the
/// holder's pid, and leaves the run as it is; once the holder is killed, the run resumes.
#[test]
fn a_second_writer_is_refused_while_a_run_trains() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    succeeds(&train_args(&dir, 2));
    let mut first = resume_in_background(&dir);
    // Wait until it has saved a step of its own: it holds the directory by then.
    let start = std::time::Instant::now();
    while saved_step(&dir) <= 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never saved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = first.id().to_string();
    let resume = [
        "train",
        "--resume",
        &s(&dir),
        "--steps",
        "1000000",
        "--quiet",
    ];
    fails_with(
        &resume,
        &["another charrnn process", &pid, "is training in"],
    );
    let mut force = train_args(&dir, 5);
    force.push("--force".into());
    fails_with(&force, &["another charrnn process", &pid]);
    first.kill().unwrap();
    first.wait().unwrap();
    let after = saved_step(&dir);
    succeeds(&[
        "train",
        "--resume",
        &s(&dir),
        "--steps",
        &(after + 1).to_string(),
        "--quiet",
    ]);
    assert_eq!(saved_step(&dir), after + 1);
}
