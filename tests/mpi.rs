//! Data-parallel training over real MPI: `mpirun -n N charrnn train DATA_DIR` on loopback.
//! N ranks train the bits one process trains with the same shards; a run resumes on another
//! N; a killed or hung rank ends the job with an error within a bounded time and the saved
//! model intact; SIGTERM to mpirun saves one consistent model, and SIGTERM to one rank in an
//! evaluation ends the job at once. In bf16 too, where the CPU has bf16 units (ignored
//! elsewhere).
//!
//! Built only with the `mpi` feature (`cargo test --release --features mpi --test mpi`,
//! after scripts/install-mpi.sh); the rest of the suite runs without MPI.

#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use charrnn::checkpoint::{self, Checkpoint};

mod common;

use common::bin::{show, succeeds, text};

/// One job at a time: ranks busy-wait in MPI, and two jobs on two cores would slow each
/// other enough to blur the timing tests.
static ONE_JOB: Mutex<()> = Mutex::new(());

/// One test's setup: the machine to itself (held until the guard drops), a temporary
/// directory, and a prepared data directory in it.
fn setup() -> (MutexGuard<'static, ()>, tempfile::TempDir, PathBuf) {
    let one = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    let d = tempfile::tempdir().unwrap();
    let data = data(d.path());
    (one, d, data)
}

/// A prepared data directory (20k symbols of the built-in source), made once per test.
fn data(dir: &Path) -> PathBuf {
    let (txt, data) = (dir.join("text.txt"), dir.join("data"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    succeeds(&["synth", "--chars", "20000", "--out", &s(&txt)]);
    succeeds(&["prepare", &s(&txt), "--out", &s(&data)]);
    data
}

/// A 2-layer GRU over 12 streams in 6 shards with dropout and weight drop (masks keyed by
/// shard), Adam, validating every 10 steps.
fn train_args(data: &Path, out: &Path, steps: u64) -> Vec<String> {
    [
        "train",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--cell",
        "gru",
        "--layers",
        "2",
        "--hidden",
        "24",
        "--batch",
        "12",
        "--seq-len",
        "16",
        "--shards",
        "6",
        "--dropout",
        "0.1",
        "--weight-drop",
        "0.2",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--val-chars",
        "2000",
        "--eval-every",
        "10",
        "--steps",
        &steps.to_string(),
        "--quiet",
    ]
    .map(String::from)
    .to_vec()
}

/// `mpirun -n ranks charrnn args...` (as root too, more ranks than cores allowed).
fn mpirun(ranks: usize, args: &[String]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-n"])
        .arg(ranks.to_string())
        .arg(env!("CARGO_BIN_EXE_charrnn"))
        .args(args);
    cmd
}

fn output(mut cmd: Command, what: &str) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot start mpirun for {what} ({e}): run scripts/install-mpi.sh")
    })
}

fn describe(ranks: usize, args: &[String], out: &Output) -> String {
    format!("mpirun -n {ranks} {}", show(args, out))
}

/// Runs the job and asserts it succeeded.
fn mpi_succeeds(ranks: usize, args: &[String]) -> Output {
    let out = output(mpirun(ranks, args), "a job");
    assert!(out.status.success(), "{}", describe(ranks, args, &out));
    out
}

fn saved(dir: &Path) -> Checkpoint {
    checkpoint::load(&dir.join("model.safetensors")).unwrap()
}

/// A long job started in the background, with its output captured.
fn start_long(ranks: usize, args: &[String]) -> Child {
    mpirun(ranks, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start mpirun: run scripts/install-mpi.sh")
}

/// Waits until `path` exists (the job saved once).
fn wait_for(path: &Path, job: &mut Child) {
    let start = Instant::now();
    while !path.exists() {
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        assert!(start.elapsed() < Duration::from_secs(60), "no save in 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rank processes mpirun started (its children running charrnn).
fn ranks_of(job: &Child) -> Vec<i32> {
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", job.id()))
        .unwrap_or_default();
    children
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("charrnn"))
        })
        .collect()
}

/// Waits at most `limit` for the job to end; returns its output and how long it took.
fn finish_within(job: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let pid = job.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(job.wait_with_output()));
    match rx.recv_timeout(limit) {
        Ok(out) => (out.unwrap(), start.elapsed()),
        Err(_) => {
            // SAFETY: plain kill(2) of the job this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the job did not end within {limit:?}");
        }
    }
}

#[test]
fn ranks_train_the_bits_of_one_process() {
    let (_one, d, data) = setup();
    let one = d.path().join("one");
    succeeds(&train_args(&data, &one, 25));
    for ranks in [2, 3] {
        let dir = d.path().join(format!("ranks{ranks}"));
        let out = mpi_succeeds(ranks, &train_args(&data, &dir, 25));
        let stdout = text(&out.stdout);
        assert_eq!(
            stdout.matches("trained 25 steps").count(),
            1,
            "rank 0 alone reports:\n{stdout}"
        );
        common::assert_same_run(&saved(&dir), &saved(&one), &format!("{ranks} ranks"));
        let best = |p: &Path| checkpoint::load(&p.join("best.safetensors")).unwrap();
        common::assert_same_run(&best(&dir), &best(&one), &format!("{ranks} ranks, best"));
    }
}

/// The evaluations a run in `dir` recorded: (step, validation loss, screen loss).
fn evaluations(dir: &Path) -> Vec<(u64, Option<f64>, Option<f64>)> {
    let (lines, _) = charrnn::run::RunDir::new(dir)
        .read_metrics(u64::MAX)
        .unwrap();
    lines
        .iter()
        .map(|m| (m.step, m.val_loss, m.screen_loss))
        .collect()
}

/// A race with screened evaluations (`--val-screen`) over 2 and 3 ranks screens, reads the
/// whole validation part and stops exactly where one process does.
#[test]
fn ranks_screen_evaluations_as_one_process() {
    let (_one, d, data) = setup();
    let plain = d.path().join("plain");
    succeeds(&train_args(&data, &plain, 60));
    let curve = evaluations(&plain);
    let target = curve[curve.len() / 2].1.unwrap().to_string();
    let args = |out: &Path| {
        let mut a = train_args(&data, out, 60);
        for f in [
            "--target-loss",
            &target,
            "--val-screen",
            "8",
            "--screen-margin",
            "0",
        ] {
            a.push(f.to_string());
        }
        a
    };
    let one = d.path().join("one");
    succeeds(&args(&one));
    let screened = evaluations(&one);
    assert!(
        screened.iter().any(|e| e.1.is_none())
            && screened.iter().filter(|e| e.0 < 60).all(|e| e.2.is_some()),
        "some evaluations read only the screen: {screened:?}"
    );
    for ranks in [2, 3] {
        let dir = d.path().join(format!("ranks{ranks}"));
        mpi_succeeds(ranks, &args(&dir));
        assert_eq!(evaluations(&dir), screened, "{ranks} ranks");
        common::assert_same_run(&saved(&dir), &saved(&one), &format!("{ranks} ranks"));
    }
}

/// The same in bf16 (`--precision bf16`): 2 and 3 ranks train the bits of one process.
#[test]
#[ignore = "needs a CPU with AVX512-BF16 or AMX-BF16; .ci/run runs it where /proc/cpuinfo lists avx512_bf16 or amx_bf16"]
fn bf16_ranks_train_the_bits_of_one_process() {
    let (_one, d, data) = setup();
    let bf16 = |mut args: Vec<String>| {
        args.extend(["--precision".to_string(), "bf16".to_string()]);
        args
    };
    let one = d.path().join("one");
    succeeds(&bf16(train_args(&data, &one, 25)));
    let f32_run = d.path().join("f32");
    succeeds(&train_args(&data, &f32_run, 25));
    assert_ne!(
        common::f32_bits(&saved(&one).params),
        common::f32_bits(&saved(&f32_run).params),
        "bf16 changes the run"
    );
    for ranks in [2, 3] {
        let dir = d.path().join(format!("ranks{ranks}"));
        mpi_succeeds(ranks, &bf16(train_args(&data, &dir, 25)));
        common::assert_same_run(&saved(&dir), &saved(&one), &format!("bf16, {ranks} ranks"));
    }
}

#[test]
fn a_two_rank_run_resumes_in_one_process() {
    let (_one, d, data) = setup();
    let (one, two) = (d.path().join("one"), d.path().join("two"));
    succeeds(&train_args(&data, &one, 30));
    mpi_succeeds(2, &train_args(&data, &two, 15));
    let two_s = two.to_str().unwrap();
    succeeds(&["train", "--resume", two_s, "--steps", "22", "--quiet"]);
    let resume = ["train", "--resume", two_s, "--steps", "30", "--quiet"].map(String::from);
    mpi_succeeds(3, &resume);
    common::assert_same_run(
        &saved(&two),
        &saved(&one),
        "2 ranks, then 1 process, then 3 ranks",
    );
}

#[test]
fn shards_that_do_not_divide_among_the_ranks_are_a_clear_error() {
    let (_one, d, data) = setup();
    let args = train_args(&data, &d.path().join("run"), 5);
    let out = output(mpirun(4, &args), "a job");
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("6 shard(s) cannot be divided among 4 processes")
            && stderr.contains("--shards"),
        "{}",
        describe(4, &args, &out)
    );
    assert!(!d.path().join("run").join("model.safetensors").exists());
}

#[test]
fn a_killed_rank_ends_the_job_with_the_saved_model_intact() {
    let (_one, d, data) = setup();
    let run = d.path().join("run");
    let mut job = start_long(2, &train_args(&data, &run, 1_000_000));
    wait_for(&run.join("model.safetensors"), &mut job);
    let ranks = ranks_of(&job);
    assert_eq!(ranks.len(), 2, "mpirun's ranks: {ranks:?}");
    // SAFETY: plain kill(2) of a rank this test started.
    unsafe { libc::kill(ranks[1], libc::SIGKILL) };
    let (out, took) = finish_within(job, Duration::from_secs(30));
    assert!(!out.status.success(), "the job must fail");
    eprintln!("killed rank: the job ended in {took:?}");
    let ck = saved(&run);
    assert!(ck.progress.step >= 10 && ck.progress.step.is_multiple_of(10));
    let run_s = run.to_str().unwrap();
    let more = (ck.progress.step + 3).to_string();
    succeeds(&["train", "--resume", run_s, "--steps", &more, "--quiet"]);
}

#[test]
fn a_hung_rank_ends_the_job_within_the_timeout() {
    let (_one, d, data) = setup();
    let run = d.path().join("run");
    let mut args = train_args(&data, &run, 1_000_000);
    args.extend(["--comm-timeout", "2"].map(String::from));
    let mut job = start_long(2, &args);
    wait_for(&run.join("model.safetensors"), &mut job);
    let ranks = ranks_of(&job);
    assert_eq!(ranks.len(), 2, "mpirun's ranks: {ranks:?}");
    // SAFETY: plain kill(2) of a rank this test started.
    unsafe { libc::kill(ranks[1], libc::SIGSTOP) };
    let (out, took) = finish_within(job, Duration::from_secs(30));
    // SAFETY: as above; the stopped rank must not outlive the test if mpirun left it.
    unsafe { libc::kill(ranks[1], libc::SIGKILL) };
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains("(--comm-timeout 2)")
            && stderr.contains(run.to_str().unwrap()),
        "status {}:\n{stderr}",
        out.status
    );
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
    eprintln!("hung rank, --comm-timeout 2: the job ended in {took:?}");
    assert!(saved(&run).progress.step >= 10);
}

/// Sends SIGTERM to the process `target` picks (mpirun or a rank) mid-run, then checks that
/// the job ended with exit status `status`, and that the saved model, resumed, equals a run
/// that never stopped.
fn interrupt_and_resume(target: impl Fn(&Child) -> i32, status: i32) {
    let (_one, d, data) = setup();
    let run = d.path().join("run");
    let mut job = start_long(2, &train_args(&data, &run, 1_000_000));
    wait_for(&run.join("model.safetensors"), &mut job);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(target(&job), libc::SIGTERM) };
    let (out, _) = finish_within(job, Duration::from_secs(30));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("interrupted (SIGTERM) at step"), "{stderr}");
    assert_eq!(out.status.code(), Some(status), "{stderr}");
    let step = saved(&run).progress.step;
    // The saved state continues exactly as a run that never stopped.
    let (straight, run_s) = (d.path().join("straight"), run.to_str().unwrap());
    let end = step + 7;
    succeeds(&train_args(&data, &straight, end));
    succeeds(&[
        "train",
        "--resume",
        run_s,
        "--steps",
        &end.to_string(),
        "--quiet",
    ]);
    common::assert_same_run(
        &saved(&run),
        &saved(&straight),
        &format!("stopped at {step}, resumed"),
    );
}

#[test]
fn sigterm_to_mpirun_saves_one_consistent_model() {
    // mpirun passes SIGTERM on to the ranks, and itself exits 1.
    interrupt_and_resume(|job| job.id() as i32, 1);
}

#[test]
fn sigterm_to_one_rank_stops_every_rank_with_one_consistent_model() {
    // The job's status is rank 0's: 128 + SIGTERM.
    interrupt_and_resume(|job| *ranks_of(job).last().unwrap(), 143);
}

#[test]
fn sigterm_to_one_rank_in_a_long_evaluation_stops_every_rank_at_once() {
    use std::io::BufRead;
    let (_one, d, _) = setup();
    // 2,050,000 symbols, 2,000,000 of them held out: seconds of evaluation at H = 512.
    let (txt, data, run) = (
        d.path().join("long.txt"),
        d.path().join("long"),
        d.path().join("run"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    succeeds(&["synth", "--chars", "2050000", "--out", &s(&txt)]);
    succeeds(&["prepare", &s(&txt), "--out", &s(&data), "--quiet"]);
    let args: Vec<String> = [
        "train",
        &s(&data),
        "--out",
        &s(&run),
        "--hidden",
        "512",
        "--batch",
        "8",
        "--seq-len",
        "16",
        "--shards",
        "2",
        "--steps",
        "2",
        "--val-chars",
        "2000000",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec();
    let mut job = start_long(2, &args);
    // Rank 0's progress line of the last step comes right before the end-of-run evaluation.
    let stderr = job.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("no step 2 in 60 s");
        if line.starts_with("step") && line.contains(" 2/2 ") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    // SAFETY: plain kill(2) of a process this test started.
    unsafe { libc::kill(*ranks_of(&job).last().unwrap(), libc::SIGTERM) };
    // Rank 0 says so once the model is saved (mpirun then takes its own time to end the job
    // of a rank that exited non-zero: 1-2 s).
    let mut stderr = String::new();
    while !stderr.contains("interrupted (SIGTERM)") {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => stderr += &(line + "\n"),
            Err(_) => break,
        }
    }
    let took = start.elapsed().as_secs_f64();
    let (out, ended) = finish_within(job, Duration::from_secs(60));
    stderr.extend(rx.try_iter().map(|l| l + "\n"));
    eprintln!(
        "SIGTERM to rank 1, 0.3 s into the evaluation: saved and said so in {took:.3} s, \
         mpirun ended in {:.3} s",
        took + ended.as_secs_f64()
    );
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(
        stderr.contains("validation abandoned")
            && stderr.contains("interrupted (SIGTERM) at step 2"),
        "{stderr}"
    );
    assert!(took < 2.0, "the job took {took:.3} s to stop");
    let ck = saved(&run);
    assert_eq!((ck.progress.step, ck.progress.best_val), (2, None));
}
