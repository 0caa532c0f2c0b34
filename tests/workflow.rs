//! The training workflow through the real binary: validation and best model, metrics and
//! plot, resume (bit-identical to an uninterrupted run), SIGINT/SIGTERM (save, then exit
//! 130/143; a second signal exits at once), the divergence guard, refusing to overwrite a run,
//! and `inspect`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_charrnn");

fn corpus(dir: &Path) -> PathBuf {
    markov(dir, "corpus.txt", 30_000, 9)
}

/// `chars` symbols of the built-in Markov source (`seed`), written to `dir/name`.
fn markov(dir: &Path, name: &str, chars: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        charrnn::synth::MarkovSource::builtin().generate(chars, seed),
    )
    .unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every tensor of a model file, by name, as raw bytes.
fn tensors(path: &Path) -> Vec<(String, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<(String, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n.to_string(), t.data().to_vec()))
        .collect();
    out.sort();
    out
}

const SMALL: [&str; 8] = [
    "--hidden",
    "24",
    "--seq-len",
    "16",
    "--batch",
    "8",
    "--quiet",
    "--eval-every",
];

#[test]
fn validation_best_model_metrics_and_plot() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let out = d.path().join("run");
    let (c, out_s) = (c.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", c, "--steps", "30", "--out", out_s, "--json"];
    args.extend(SMALL);
    args.push("10");
    let o = ok(&args);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let val = summary["val_loss"].as_f64().expect("a validation loss");
    assert!(summary["best_val_loss"].as_f64().unwrap() <= val);

    let lines: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [10, 20, 30]);
    for l in &lines {
        for key in [
            "chars_seen",
            "train_loss",
            "smooth_loss",
            "val_loss",
            "val_bpc",
            "chars_per_sec",
            "lr",
            "grad_norm",
        ] {
            assert!(l[key].is_number(), "{key} in {l}");
        }
    }
    assert_eq!(lines[2]["val_loss"].as_f64().unwrap(), val);
    assert!(out.join("best.safetensors").is_file());
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()),
        960,
        "width"
    );
}

/// N steps, stop, resume to N+M: bit-identical to N+M steps in one run, across an epoch
/// boundary, with Adam (two state vectors) and a step schedule. (A cosine schedule spans the
/// configured number of steps, so extending a run with --steps changes it by design.)
#[test]
fn resume_is_bit_identical_to_an_uninterrupted_run() {
    for cell in [
        &[][..],
        &["--cell", "gru", "--layers", "2"][..],
        &["--cell", "lstm", "--layers", "2"][..],
    ] {
        resume_in_two_legs(cell);
    }
}

fn resume_in_two_legs(cell: &[&str]) {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let (one, two) = (d.path().join("one"), d.path().join("two"));
    let (c, one_s, two_s) = (
        c.to_str().unwrap(),
        one.to_str().unwrap(),
        two.to_str().unwrap(),
    );
    // 27,000 training symbols / 8 streams / 16 = 210 steps per epoch.
    let common = [
        "--optimizer",
        "adam",
        "--schedule",
        "step",
        "--decay-every",
        "100",
        "--dropout",
        "0.2",
        "--weight-drop",
        "0.2",
        "--threads",
        "2",
    ];
    let mut a = vec!["train", c, "--steps", "250", "--out", one_s];
    a.extend(cell);
    a.extend(common);
    a.extend(SMALL);
    a.push("50");
    ok(&a);
    let mut b = vec!["train", c, "--steps", "120", "--out", two_s];
    b.extend(cell);
    b.extend(common);
    b.extend(SMALL);
    b.push("50");
    ok(&b);
    ok(&[
        "train",
        "--resume",
        two_s,
        "--steps",
        "250",
        "--quiet",
        "--threads",
        "1",
    ]);
    let (x, y) = (
        tensors(&one.join("model.safetensors")),
        tensors(&two.join("model.safetensors")),
    );
    assert!(
        x.iter().any(|(n, _)| n == "optim.v.layers.0.W_hh"),
        "Adam's second vector is saved"
    );
    assert_eq!(x.len(), y.len());
    for ((nx, bx), (ny, by)) in x.iter().zip(&y) {
        assert_eq!(nx, ny);
        // Not assert_eq!: printing two tensors' bytes drowns the message.
        assert!(
            bx == by,
            "{cell:?}: tensor {nx} differs between the resumed and the uninterrupted run"
        );
    }
    let steps = |dir: &Path| -> Vec<u64> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(steps(&one), [50, 100, 150, 200, 250]);
    // The first leg's end (step 120) is logged too; the resumed run appends after it.
    assert_eq!(steps(&two), [50, 100, 120, 150, 200, 250]);
}

#[test]
fn resuming_refuses_other_data_and_run_defining_flags() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let out = d.path().join("run");
    let (c_s, out_s) = (c.to_str().unwrap(), out.to_str().unwrap());
    let mut args = vec!["train", c_s, "--steps", "5", "--out", out_s];
    args.extend(SMALL);
    args.push("5");
    ok(&args);
    let o = run(&["train", "--resume", out_s, "--hidden", "32"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--hidden cannot change when resuming"));
    // Same vocabulary, other text: the fingerprint differs.
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(&c, text.chars().rev().collect::<String>()).unwrap();
    let o = run(&["train", "--resume", out_s, "--steps", "10"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("training data differs"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A new run into a directory that holds a model is refused without --force.
    let mut again = vec!["train", c_s, "--steps", "5", "--out", out_s];
    again.extend(SMALL);
    again.push("5");
    let o = run(&again);
    assert!(String::from_utf8_lossy(&o.stderr).contains("already holds a model"));
    again.push("--force");
    ok(&again);
}

/// Starts a long run that saves every 5 steps; returns once its first save exists.
fn start_long_run(dir: &Path, c: &str) -> std::process::Child {
    let out = dir.join("run");
    let mut args = vec![
        "train",
        c,
        "--steps",
        "1000000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    args.push("5");
    let child = Command::new(BIN)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !out.join("model.safetensors").exists() {
        assert!(t.elapsed() < Duration::from_secs(60), "the run never saved");
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// The last line of `run_dir`'s metrics.
fn last_metrics(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("metrics.jsonl")).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we own.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn sigint_and_sigterm_save_and_exit_130_or_143() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let d = tempfile::tempdir().unwrap();
        let c = corpus(d.path());
        let child = start_long_run(d.path(), c.to_str().unwrap());
        signal(&child, sig);
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains("interrupted") && stderr.contains("--resume"),
            "{stderr}"
        );
        let run_dir = d.path().join("run");
        let model = run_dir.join("model.safetensors");
        let ck = charrnn::checkpoint::load(&model).unwrap();
        assert!(ck.progress.step > 0 && ck.params.iter().all(|x| x.is_finite()));
        // The saved step is the last metrics line, and the run resumes from it.
        let last = last_metrics(&run_dir);
        assert_eq!(last["step"].as_u64().unwrap(), ck.progress.step);
        let target = (ck.progress.step + 3).to_string();
        ok(&[
            "train",
            "--resume",
            run_dir.to_str().unwrap(),
            "--steps",
            &target,
            "--quiet",
        ]);
    }
}

#[test]
fn a_second_sigint_exits_at_once_leaving_a_loadable_model() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let child = start_long_run(d.path(), c.to_str().unwrap());
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    charrnn::checkpoint::load(&d.path().join("run").join("model.safetensors")).unwrap();
}

/// A corpus of 2,050,000 symbols: held out with `--val-chars 2000000`, one evaluation at
/// H = 512 on one thread takes seconds (about 8 s on a 2-vCPU Xeon).
fn long_eval_corpus(dir: &Path) -> PathBuf {
    markov(dir, "long.txt", 2_050_000, 5)
}

/// Sends `sig` to `child` and returns its exit status, the rest of its stderr (read by
/// `rest`) and the seconds it took to exit.
fn time_to_exit(
    mut child: std::process::Child,
    sig: i32,
    rest: std::thread::JoinHandle<String>,
) -> (std::process::ExitStatus, String, f64) {
    let t = Instant::now();
    signal(&child, sig);
    let status = child.wait().unwrap();
    let secs = t.elapsed().as_secs_f64();
    (status, rest.join().unwrap(), secs)
}

/// The time a signal may take to be acted on: 1 s, with slack for a loaded machine.
const PROMPT: f64 = 2.0;

#[test]
fn sigterm_in_a_long_evaluation_abandons_it_saves_the_step_and_exits_at_once() {
    use std::io::BufRead;
    let d = tempfile::tempdir().unwrap();
    let c = long_eval_corpus(d.path());
    let run_dir = d.path().join("run");
    let mut child = Command::new(BIN)
        .args([
            "train",
            c.to_str().unwrap(),
            "--hidden",
            "512",
            "--batch",
            "8",
        ])
        .args(["--seq-len", "16", "--steps", "2", "--val-chars", "2000000"])
        .args(["--threads", "1", "--out", run_dir.to_str().unwrap()])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // The progress line of the last step comes right before the end-of-run evaluation.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    let rest = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap();
            let _ = tx.send(line.clone());
            all += &line;
            all.push('\n');
        }
        all
    });
    let mut before = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no step 2 after 60 s: {before}"));
        before += &line;
        before.push('\n');
        if line.starts_with("step") && line.contains(" 2/2 ") {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stderr, secs) = time_to_exit(child, libc::SIGTERM, rest);
    eprintln!("SIGTERM 0.3 s into the evaluation: exited in {secs:.3} s");
    assert_eq!(status.code(), Some(143), "{before}{stderr}");
    assert!(
        stderr.contains("validation abandoned")
            && stderr.contains("interrupted (SIGTERM) at step 2"),
        "{before}{stderr}"
    );
    assert!(secs < PROMPT, "SIGTERM took {secs:.3} s to end the run");
    // The model of step 2 is saved, without the abandoned validation.
    let ck = charrnn::checkpoint::load(&run_dir.join("model.safetensors")).unwrap();
    assert_eq!((ck.progress.step, ck.progress.best_val), (2, None));
    assert!(!run_dir.join("best.safetensors").exists());
    let last = last_metrics(&run_dir);
    assert_eq!(
        (last["step"].as_u64(), last["val_loss"].is_null()),
        (Some(2), true)
    );
    // It resumes (a step, without the evaluation at the end of a run).
    let mut more =
        charrnn::session::Session::resume(&run_dir, None, Some(charrnn::train::Stop::Steps(3)))
            .unwrap();
    more.trainer.step(&more.data.train.ids).unwrap();
    assert_eq!(more.trainer.progress.step, 3);
    drop(more);

    // `eval` of the long text stops as promptly, with either signal.
    for (sig, code, name) in [
        (libc::SIGTERM, 143, "SIGTERM"),
        (libc::SIGINT, 130, "SIGINT"),
    ] {
        let mut child = Command::new(BIN)
            .args([
                "eval",
                "--model",
                run_dir.join("model.safetensors").to_str().unwrap(),
            ])
            .args([c.to_str().unwrap(), "--threads", "1"])
            .stderr(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let rest = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap());
        // Reading and encoding the text takes a few hundredths of a second.
        std::thread::sleep(Duration::from_secs(1));
        let (status, stderr, secs) = time_to_exit(child, sig, rest);
        eprintln!("{name} 1 s into `eval`: exited in {secs:.3} s");
        assert_eq!(status.code(), Some(code), "{stderr}");
        assert!(
            stderr.contains(&format!("interrupted ({name})")),
            "{stderr}"
        );
        assert!(secs < PROMPT, "{name} took {secs:.3} s to end `eval`");
    }
}

#[test]
fn divergence_stops_with_advice_and_keeps_the_last_good_model() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let out = d.path().join("run");
    let (c_s, out_s) = (c.to_str().unwrap(), out.to_str().unwrap());
    // Ten sane steps (two saves), then a step schedule multiplies the rate by 1e30.
    let mut args = vec![
        "train",
        c_s,
        "--steps",
        "200",
        "--out",
        out_s,
        "--optimizer",
        "sgd",
        "--momentum",
        "0",
        "--lr",
        "0.01",
        "--schedule",
        "step",
        "--decay-every",
        "10",
        "--gamma",
        "1e30",
    ];
    args.extend(SMALL);
    args.push("5");
    let o = run(&args);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("diverged") && stderr.contains("lower the learning rate"),
        "{stderr}"
    );
    assert!(stderr.contains("is kept"), "{stderr}");
    let ck = charrnn::checkpoint::load(&out.join("model.safetensors")).unwrap();
    assert!(
        ck.params.iter().all(|x| x.is_finite()),
        "the kept model is the last good one"
    );
}

#[test]
fn inspect_reports_size_progress_and_recurrence_health() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let out = d.path().join("run");
    let mut args = vec![
        "train",
        c.to_str().unwrap(),
        "--steps",
        "20",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(SMALL);
    args.push("10");
    ok(&args);
    let model = out.join("best.safetensors");
    let o = ok(&["inspect", "--model", model.to_str().unwrap(), "--json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "spectral radius of W_hh",
        "best val",
        "parameters",
        "vocabulary   20",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let j: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        j["parameters"].as_u64().unwrap(),
        2 * 20 * 24 + 24 * 24 + 24 + 20
    );
    assert!(j["spectral_radius_w_hh"][0][0].as_f64().unwrap() > 0.0);
    assert!(j["norms"]["layers.0.W_hh"].as_f64().unwrap() > 0.0);

    // A stacked GRU: one line per layer, a radius per gate block.
    let gru = d.path().join("gru");
    let mut args = vec![
        "train",
        c.to_str().unwrap(),
        "--cell",
        "gru",
        "--layers",
        "2",
    ];
    args.extend(["--steps", "5", "--out", gru.to_str().unwrap()]);
    args.extend(SMALL);
    args.push("5");
    ok(&args);
    let model = gru.join("model.safetensors");
    let o = ok(&["inspect", "--model", model.to_str().unwrap(), "--json"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "2 layer(s) of GRU",
        "layer 1: spectral radius of W_hh r ",
        "|layers.1.b_hn|",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let j: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(j["spectral_radius_w_hh"][1].as_array().unwrap().len(), 3);
    assert_eq!(j["cell"], "gru");
}

#[test]
fn the_seed_preset_prints_a_sample_after_every_epoch_as_the_tutorial_does() {
    let d = tempfile::tempdir().unwrap();
    let c = corpus(d.path());
    let c = c.to_str().unwrap();
    let run_dir = |name: &str| d.path().join(name).to_str().unwrap().to_string();
    let headers = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("--- sample after step"))
            .count()
    };
    // 2,000 characters of T = 20 and B = 1: 99 steps per epoch, 3 epochs.
    let seed_run = |out: &str, extra: &[&str]| {
        let mut args = vec!["train", c, "--preset", "seed", "--max-chars", "2000"];
        args.extend(["--epochs", "3", "--out", out]);
        args.extend(extra);
        ok(&args)
    };
    let seed = run_dir("seed");
    let o = seed_run(&seed, &[]);
    assert_eq!(headers(&o), 3, "{}", String::from_utf8_lossy(&o.stdout));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("--- sample after step 99 ---"), "{stdout}");
    let recorded = std::fs::read_to_string(Path::new(&seed).join("samples.jsonl")).unwrap();
    assert_eq!(recorded.lines().count(), 3, "{recorded}");
    // --sample-every 0 turns them off, and the weights are the same bits.
    let off = run_dir("off");
    let o = seed_run(&off, &["--sample-every", "0"]);
    assert_eq!(headers(&o), 0);
    assert!(!Path::new(&off).join("samples.jsonl").exists());
    assert_eq!(
        tensors(&Path::new(&seed).join("model.safetensors")),
        tensors(&Path::new(&off).join("model.safetensors"))
    );
    // A sample setting without samples is refused, not ignored.
    let o = run(&[
        "train",
        c,
        "--steps",
        "2",
        "--sample-len",
        "80",
        "--out",
        &run_dir("x"),
    ]);
    assert_ne!(o.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("--sample-len applies only with --sample-every"),
        "{stderr}"
    );
    // Sampling may be asked for when resuming.
    let o = ok(&[
        "train",
        "--resume",
        &off,
        "--epochs",
        "4",
        "--sample-every",
        "50",
        "--sample-len",
        "20",
        "--quiet",
    ]);
    assert_eq!(headers(&o), 0, "--quiet prints no samples");
    let recorded = std::fs::read_to_string(Path::new(&off).join("samples.jsonl")).unwrap();
    let steps: Vec<u64> = recorded
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, [300, 350]);
}
