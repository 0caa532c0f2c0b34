//! Running the real `charrnn` binary and checking how it ends.

use std::ffi::OsStr;
use std::process::{Command, Output};

/// Runs the binary with `args`.
pub fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_charrnn"))
        .args(args)
        .output()
        .expect("cannot start charrnn")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Describes a run for assertion messages.
pub fn show<S: AsRef<OsStr>>(args: &[S], out: &Output) -> String {
    let args: Vec<_> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    format!(
        "charrnn {}\nstatus: {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs `args`, asserts exit 0, returns stdout.
pub fn succeeds<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "expected success:\n{}",
        show(args, &out)
    );
    text(&out.stdout)
}

/// Runs `args` and asserts a clean failure: a non-zero exit code that is not a panic (101) or
/// a signal, and a stderr holding every one of `needles`. Returns the exit code.
pub fn fails_with<S: AsRef<OsStr>>(args: &[S], needles: &[&str]) -> i32 {
    let out = run(args);
    let ctx = show(args, &out);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("killed by a signal:\n{ctx}"));
    assert_ne!(code, 0, "expected failure:\n{ctx}");
    assert_ne!(code, 101, "panicked:\n{ctx}");
    let stderr = text(&out.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}:\n{ctx}");
    }
    code
}
