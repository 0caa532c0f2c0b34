//! The training session as a library: run, interrupt (between steps or in an evaluation) and
//! resume without the binary, bit for bit, with an observer seeing the progress; resuming on
//! other data is refused.

use std::cell::Cell;

use charrnn::config::ValScreen;
use charrnn::error::Error;
use charrnn::session::{Observer, Outcome, Report, Session, Silent, Source, TrainData};
use charrnn::train::{EvalStats, Progress, Stop, TrainConfig};

mod common;

fn text(seed: u64) -> Source {
    let text = charrnn::synth::MarkovSource::builtin().generate(12_000, seed);
    Source::Text {
        name: format!("markov-{seed}"),
        bytes: text.into_bytes(),
    }
}

fn config(steps: u64) -> TrainConfig {
    common::session_config(steps)
}

/// Counts what the session reports.
#[derive(Default)]
struct Count {
    started: usize,
    steps: u64,
    evals: Vec<(u64, bool)>,
    finished: usize,
}

impl Observer for Count {
    fn started(&mut self, _: &Session) {
        self.started += 1;
    }
    fn stepped(&mut self, p: &Progress, total: u64, rate: f64, _: bool) {
        assert!(p.step <= total && rate > 0.0);
        self.steps += 1;
    }
    fn evaluated(&mut self, step: u64, s: &EvalStats, best: bool) {
        assert!(s.loss.is_finite());
        self.evals.push((step, best));
    }
    fn finished(&mut self) {
        self.finished += 1;
    }
}

/// Records the last step taken and counts the interrupt's polls since, for an interrupt that
/// asks at a given point (the first poll after a step is before the next step, or the first
/// of the evaluation that follows it).
struct LastStep<'a>(&'a Cell<(u64, u64)>);

impl Observer for LastStep<'_> {
    fn stepped(&mut self, p: &Progress, _: u64, _: f64, _: bool) {
        self.0.set((p.step, 0));
    }
}

/// An interrupt that asks for SIGTERM (15) at the `poll`-th poll after step `step` (or
/// later) is taken, with `last` recorded by a [`LastStep`].
fn stop_at(last: &Cell<(u64, u64)>, step: u64, poll: u64) -> impl Fn() -> Option<i32> + '_ {
    move || {
        let (s, polls) = last.get();
        last.set((s, polls + 1));
        (s > step || (s == step && polls + 1 >= poll)).then_some(15)
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn run_interrupt_and_resume_without_the_binary() {
    let d = tempfile::tempdir().unwrap();
    let (one, two) = (d.path().join("one"), d.path().join("two"));

    let data = TrainData::load(&text(1), &config(40)).unwrap();
    let mut straight = Session::start(config(40), data, &one, false).unwrap();
    let mut seen = Count::default();
    let report = straight.run(&mut seen, &|| None).unwrap();
    assert_eq!(report.outcome, Outcome::Finished);
    assert_eq!((seen.started, seen.steps, seen.finished), (1, 40, 1));
    assert_eq!(
        seen.evals.iter().map(|e| e.0).collect::<Vec<_>>(),
        [10, 20, 30, 40]
    );
    assert!(seen.evals[0].1, "the first validation is the best so far");

    // The second run is interrupted before its 16th step, then resumed twice: to 25 steps,
    // then to the end.
    let data = TrainData::load(&text(1), &config(40)).unwrap();
    let mut first = Session::start(config(40), data, &two, false).unwrap();
    let last = Cell::new((0, 0));
    let report = first
        .run(&mut LastStep(&last), &stop_at(&last, 15, 1))
        .unwrap();
    assert_eq!(report.outcome, Outcome::Interrupted(15));
    assert_eq!(first.trainer.progress.step, 15);
    // A live session holds its directory: the interrupted process has ended.
    drop(first);
    let mut second = Session::resume(&two, Some(text(1)), Some(Stop::Steps(25))).unwrap();
    assert!(second.resumed);
    assert_eq!(
        second.trainer.progress.step, 15,
        "the interrupt saved its step"
    );
    second.run(&mut Silent, &|| None).unwrap();
    drop(second);
    let mut third = Session::resume(&two, Some(text(1)), Some(Stop::Steps(40))).unwrap();
    third.run(&mut Silent, &|| None).unwrap();

    assert_eq!(bits(&third.trainer.params), bits(&straight.trainer.params));
    assert_eq!(bits(&third.trainer.opt.m), bits(&straight.trainer.opt.m));
    assert_eq!(third.trainer.state(), straight.trainer.state());
    assert_eq!(third.trainer.progress, straight.trainer.progress);
    let steps = |s: &Session| -> Vec<u64> {
        s.run
            .read_metrics(u64::MAX)
            .unwrap()
            .0
            .iter()
            .map(|m| m.step)
            .collect()
    };
    assert_eq!(steps(&straight), [10, 20, 30, 40]);
    // The interrupt logged its step (15); the legs' ends (25) are evaluation steps.
    assert_eq!(steps(&third), [10, 15, 20, 25, 30, 40]);
}

#[test]
fn an_interrupt_in_an_evaluation_abandons_it_and_saves_the_step() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    let data = TrainData::load(&text(1), &config(40)).unwrap();
    let mut straight = Session::start(config(40), data, &one, false).unwrap();
    straight.run(&mut Silent, &|| None).unwrap();
    // On one thread the evaluation polls before each chunk; on a pool, before its shards
    // start and then while they run. Either way the second poll after step 20 is in it.
    for threads in [1, 2] {
        let dir = d.path().join(format!("threads{threads}"));
        let data = TrainData::load(&text(1), &config(40)).unwrap();
        let mut first = Session::start(config(40), data, &dir, false).unwrap();
        first.trainer.set_threads(threads).unwrap();
        let last = Cell::new((0, 0));
        let report = first
            .run(&mut LastStep(&last), &stop_at(&last, 20, 2))
            .unwrap();
        assert_eq!(report.outcome, Outcome::Interrupted(15));
        assert_eq!(first.trainer.progress.step, 20);
        drop(first);
        // The model of step 20, without the abandoned validation (best stays step 10's).
        let saved = charrnn::checkpoint::load(&dir.join("model.safetensors")).unwrap();
        assert_eq!(saved.progress.step, 20);
        assert_eq!(saved.progress.best_val.map(|b| b.1), Some(10));
        let best = charrnn::checkpoint::load(&dir.join("best.safetensors")).unwrap();
        assert_eq!(best.progress.step, 10);
        let lines = charrnn::run::RunDir::new(&dir)
            .read_metrics(u64::MAX)
            .unwrap()
            .0;
        let logged: Vec<(u64, bool)> = lines
            .iter()
            .map(|m| (m.step, m.val_loss.is_some()))
            .collect();
        assert_eq!(logged, [(10, true), (20, false)]);
        // Resumed, it trains the bits of a run never stopped.
        let mut more = Session::resume(&dir, Some(text(1)), None).unwrap();
        more.run(&mut Silent, &|| None).unwrap();
        assert_eq!(bits(&more.trainer.params), bits(&straight.trainer.params));
        assert_eq!(bits(&more.trainer.opt.m), bits(&straight.trainer.opt.m));
        assert_eq!(more.trainer.state(), straight.trainer.state());
    }
}

#[test]
fn resuming_on_other_data_or_into_an_occupied_directory_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let data = TrainData::load(&text(1), &config(5)).unwrap();
    Session::start(config(5), data, &dir, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    // Same generator, other seed: the same vocabulary, other text.
    match Session::resume(&dir, Some(text(2)), Some(Stop::Steps(10))) {
        Err(Error::DataChanged { corpus, now, saved }) => {
            assert_eq!(corpus, "markov-2");
            assert_ne!(now, saved, "the two fingerprints");
        }
        other => panic!("expected DataChanged, got {:?}", other.err()),
    }
    let data = TrainData::load(&text(1), &config(5)).unwrap();
    assert!(matches!(
        Session::start(config(5), data, &dir, false),
        Err(Error::RunExists { .. })
    ));
    match Session::resume(&d.path().join("nothing"), None, None) {
        Err(e @ Error::Resume { .. }) => assert!(e.to_string().contains("cannot resume from")),
        other => panic!("expected Resume, got {:?}", other.err()),
    }
}

#[test]
fn a_crash_leaves_a_directory_that_resumes() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let data = TrainData::load(&text(1), &config(20)).unwrap();
    Session::start(config(20), data, &dir, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    // A crash in the middle of appending a metrics line, and temporary files of a save and a
    // plot whose process died (no process has pid 0x7ffffffe... on Linux, pid_max ≤ 2^22).
    let metrics = dir.join("metrics.jsonl");
    let mut log = std::fs::read_to_string(&metrics).unwrap();
    log.push_str("{\"step\":30,\"epoch\":0,\"chars_se");
    std::fs::write(&metrics, &log).unwrap();
    let stale = [".model.safetensors.tmp.4194999", ".loss.4194999.tmp.png"];
    for name in stale {
        std::fs::write(dir.join(name), b"partial").unwrap();
    }
    let mut resumed = Session::resume(&dir, Some(text(1)), Some(Stop::Steps(30))).unwrap();
    let notes = resumed.data.notes.join("\n");
    assert!(notes.contains("dropped the last line"), "{notes}");
    assert!(notes.contains(".loss.4194999.tmp.png"), "{notes}");
    for name in stale {
        assert!(!dir.join(name).exists(), "{name} left behind");
    }
    resumed.run(&mut Silent, &|| None).unwrap();
    let (lines, note) = resumed.run.read_metrics(u64::MAX).unwrap();
    assert_eq!(note, None);
    assert_eq!(
        lines.iter().map(|m| m.step).collect::<Vec<_>>(),
        [10, 20, 30]
    );

    // A damaged line that is not the last is an error naming the file and line.
    drop(resumed);
    let mut log = std::fs::read_to_string(&metrics).unwrap();
    log.insert_str(0, "garbage\n");
    std::fs::write(&metrics, &log).unwrap();
    match Session::resume(&dir, Some(text(1)), Some(Stop::Steps(40))) {
        Err(e @ Error::BadLog { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("metrics.jsonl") && msg.contains("line 1"),
                "{msg}"
            );
        }
        other => panic!("expected BadLog, got {:?}", other.err()),
    }
}

#[test]
fn a_corpus_of_one_symbol_is_flagged() {
    let source = Source::Text {
        name: "zzz".into(),
        bytes: vec![b'z'; 5000],
    };
    let data = TrainData::load(&source, &config(5)).unwrap();
    assert!(
        data.notes
            .iter()
            .any(|n| n.contains("single distinct symbol")),
        "{:?}",
        data.notes
    );
}

/// `n` symbols of a fixed 8-letter pattern (a cheap large corpus).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b"abcdefgh"[(i * 5 + i / 8) % 8]).collect()
}

fn sized(n: usize) -> Source {
    Source::Text {
        name: format!("pattern-{n}"),
        bytes: pattern(n),
    }
}

/// Symbols held out from `source` by `config`, and whether a note names `--val-chars`.
fn held_out(source: &Source, config: &TrainConfig) -> (usize, bool) {
    let data = TrainData::load(source, config).unwrap();
    let noted = data.notes.iter().any(|n| n.contains("--val-chars"));
    (data.val.map_or(0, |v| v.ids.len()), noted)
}

/// The layout and stream order `config` gets on `source` by default, and whether notes say
/// the held-out part is spread and the streams shuffled.
fn layout(
    source: &Source,
    config: &TrainConfig,
) -> (charrnn::data::ValLayout, charrnn::data::StreamOrder, bool) {
    let data = TrainData::load(source, config).unwrap();
    let noted = |what| data.notes.iter().any(|n| n.contains(what));
    let both = noted("spread over the whole corpus") && noted("--stream-order shuffled");
    assert!(
        both || !noted("--stream-order shuffled"),
        "{:?}",
        data.notes
    );
    (data.layout, data.order, both)
}

/// Without --val-chars, at most VAL_CAP symbols are held out, from a text or a prepared
/// directory alike, so an evaluation reads as many symbols of a corpus of 12M as of one of
/// 24M; a tinyshakespeare-sized corpus keeps its 10% (111,539).
#[test]
fn the_held_out_part_is_capped_so_evaluation_does_not_grow_with_the_corpus() {
    use charrnn::config::VAL_CAP;
    use charrnn::data::{StreamOrder, ValLayout, VAL_BLOCK};
    let c = config(1);
    assert_eq!(held_out(&sized(1_115_394), &c), (111_539, false));
    assert_eq!(held_out(&sized(12_000_000), &c), (VAL_CAP, true));
    let mut asked = config(1);
    asked.data.val_chars = Some(2_000_000);
    assert_eq!(held_out(&sized(12_000_000), &asked), (2_000_000, false));

    let d = tempfile::tempdir().unwrap();
    let (text, dir) = (d.path().join("12m.txt"), d.path().join("12m"));
    std::fs::write(&text, pattern(12_000_000)).unwrap();
    let s = |p: &std::path::Path| p.display().to_string();
    common::bin::succeeds(&["prepare", &s(&text), "--out", &s(&dir), "--quiet"]);
    let mut end = config(1);
    end.data.val_layout = ValLayout::End;
    assert_eq!(held_out(&Source::File(dir.clone()), &end), (VAL_CAP, true));
    // Spread in blocks (the default for a directory of over 10M symbols larger than the run
    // reads): the whole blocks nearest the cap.
    let blocks = VAL_CAP / VAL_BLOCK * VAL_BLOCK;
    let dir = Source::File(dir);
    assert_eq!(held_out(&dir, &c), (blocks, true));
    let spread = ValLayout::Blocks { block: VAL_BLOCK };
    // The streams read from the whole corpus too: a chunk from a new place at every step.
    let shuffled = StreamOrder::Shuffled { chunks: 1 };
    assert_eq!(layout(&dir, &c), (spread, shuffled, true));
    // Not for a text file, a run that reads the whole corpus, or a smaller directory.
    let (end, contiguous) = (ValLayout::End, StreamOrder::Contiguous);
    assert_eq!(layout(&sized(12_000_000), &c), (end, contiguous, false));
    let mut epochs = config(1);
    epochs.run.stop = Stop::Epochs(1);
    assert_eq!(layout(&dir, &epochs), (end, contiguous, false));
    let (small_text, small) = (d.path().join("small.txt"), d.path().join("small"));
    std::fs::write(&small_text, pattern(1_115_394)).unwrap();
    common::bin::succeeds(&["prepare", &s(&small_text), "--out", &s(&small), "--quiet"]);
    assert_eq!(held_out(&Source::File(small.clone()), &c), (111_539, false));
    assert_eq!(layout(&Source::File(small), &c), (end, contiguous, false));

    // The symbols an evaluation reads (and so its cost) are the same at 12M and 24M.
    let evaluated = |n: usize| {
        let data = TrainData::load(&sized(n), &c).unwrap();
        let mut t = charrnn::train::Trainer::<f32>::new(c.clone(), &data.train).unwrap();
        match t
            .evaluate(
                &data.val.unwrap().ids,
                16,
                (64, charrnn::train::EVAL_SHARD),
                &|| None,
            )
            .unwrap()
        {
            charrnn::train::Evaluation::Done(stats) => stats.chars,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(evaluated(12_000_000), evaluated(24_000_000));
}

/// A run saved before the cap (its configuration has none, as old model files read) keeps
/// the held-out part it was trained with, so it resumes on the same data.
#[test]
fn a_run_saved_before_the_cap_resumes_on_its_uncapped_split() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let mut old = config(1);
    old.data.val_cap = None;
    assert_eq!(held_out(&sized(12_000_000), &old), (1_200_000, false));
    let data = TrainData::load(&sized(12_000_000), &old).unwrap();
    Session::start(old, data, &dir, false)
        .unwrap()
        .run(&mut Silent, &|| None)
        .unwrap();
    let saved = charrnn::checkpoint::load(&dir.join("model.safetensors")).unwrap();
    assert_eq!(saved.config.data.val_cap, None);
    let more = Session::resume(&dir, Some(sized(12_000_000)), Some(Stop::Steps(2))).unwrap();
    assert_eq!(more.data.val.map(|v| v.ids.len()), Some(1_200_000));
}

/// The validation losses a run of `config` measures, by step.
fn val_curve(config: TrainConfig, dir: &std::path::Path) -> (Vec<(u64, f64)>, Report) {
    let data = TrainData::load(&text(2), &config).unwrap();
    let mut s = Session::start(config, data, dir, true).unwrap();
    let report = s.run(&mut Silent, &|| None).unwrap();
    let curve = s
        .run
        .read_metrics(u64::MAX)
        .unwrap()
        .0
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.step, v)))
        .collect();
    (curve, report)
}

#[test]
fn a_target_loss_stops_the_run_at_the_first_evaluation_that_reaches_it() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(120);
    c.optim = TrainConfig::for_cell(c.model.cell).optim;
    let (curve, full) = val_curve(c.clone(), &d.path().join("full"));
    assert_eq!(full.outcome, Outcome::Finished);
    // The target: the first new low after at least two evaluations, so that the run must
    // pass over earlier evaluations that do not reach it.
    let k = (2..curve.len())
        .find(|&k| curve[..k].iter().all(|e| e.1 > curve[k].1))
        .expect("the loss falls to a new low after the second evaluation");
    let (step, loss) = curve[k];

    c.run.target_loss = Some(loss);
    let (raced, report) = val_curve(c.clone(), &d.path().join("race"));
    assert_eq!(report.outcome, Outcome::TargetReached);
    assert_eq!(
        raced,
        curve[..=k],
        "the run stops at step {step}, the first evaluation at or below {loss}"
    );
    assert_eq!(report.last_val.map(|v| v.loss), Some(loss));
    assert!(report.train_secs > 0.0 && report.train_secs <= report.seconds);
    // The model saved is the one that reached the target, and it resumes from there.
    let resumed = Session::resume(&d.path().join("race"), Some(text(2)), None).unwrap();
    assert_eq!(resumed.trainer.progress.step, step);
    assert_eq!(resumed.trainer.config.run.target_loss, Some(loss));

    // A target no evaluation reaches lets the run finish.
    c.run.target_loss = Some(0.01);
    let (_, report) = val_curve(c.clone(), &d.path().join("miss"));
    assert_eq!(report.outcome, Outcome::Finished);

    // Without a validation part the target could never be checked: refused.
    c.data.val_frac = 0.0;
    let e = TrainData::load(&text(2), &c)
        .and_then(|data| Session::start(c.clone(), data, &d.path().join("none"), true))
        .err()
        .expect("a target without validation is refused");
    assert!(e.to_string().contains("--target-loss"), "{e}");
}

/// The metrics lines of the run in `dir`: (step, validation loss, screen loss).
fn evaluations(dir: &std::path::Path) -> Vec<(u64, Option<f64>, Option<f64>)> {
    charrnn::run::RunDir::new(dir)
        .read_metrics(u64::MAX)
        .unwrap()
        .0
        .iter()
        .map(|m| (m.step, m.val_loss, m.screen_loss))
        .collect()
}

#[test]
fn a_screen_reads_the_whole_validation_part_only_near_the_target() {
    let d = tempfile::tempdir().unwrap();
    let mut c = config(120);
    c.optim = TrainConfig::for_cell(c.model.cell).optim;
    let (curve, _) = val_curve(c.clone(), &d.path().join("full"));
    let target = curve[curve.len() / 2].1;
    // The first evaluation at or below it.
    let step = curve.iter().find(|e| e.1 <= target).unwrap().0;
    c.run.target_loss = Some(target);
    let (raced, _) = val_curve(c.clone(), &d.path().join("race"));

    // A margin no estimate exceeds: every evaluation reads the whole part, and the run is
    // the unscreened race, screen losses beside.
    c.run.val_screen = Some(ValScreen {
        streams: 2,
        margin: 100.0,
    });
    let (wide, report) = val_curve(c.clone(), &d.path().join("wide"));
    assert_eq!(wide, raced);
    assert_eq!(report.outcome, Outcome::TargetReached);
    let lines = evaluations(&d.path().join("wide"));
    assert!(
        lines.iter().all(|l| l.1.is_some() && l.2.is_some()),
        "{lines:?}"
    );

    // No margin: the first evaluation reads both (the gap), then the whole part is read only
    // where the screen's loss plus the last gap is at or below the target, and the target
    // counts only where the whole part reaches it.
    c.run.val_screen = Some(ValScreen {
        streams: 2,
        margin: 0.0,
    });
    let (_, report) = val_curve(c.clone(), &d.path().join("tight"));
    let lines = evaluations(&d.path().join("tight"));
    let mut gap = None;
    for &(at, whole, screen) in &lines {
        let screen = screen.expect("every evaluation of a race reads the screen");
        match (whole, gap) {
            (Some(w), _) => {
                assert!(
                    gap.is_none_or(|g| screen + g <= target),
                    "step {at}: {lines:?}"
                );
                assert_eq!(curve.iter().find(|e| e.0 == at).map(|e| e.1), Some(w));
                gap = Some(w - screen);
            }
            (None, Some(g)) => assert!(screen + g > target, "step {at}: {lines:?}"),
            (None, None) => panic!("the first evaluation reads the whole part: {lines:?}"),
        }
    }
    assert!(
        lines.iter().any(|l| l.1.is_none()),
        "some screens skip: {lines:?}"
    );
    match report.outcome {
        Outcome::TargetReached => {
            let last = lines.last().unwrap();
            assert!(
                last.0 >= step && last.1.is_some_and(|w| w <= target),
                "{lines:?}"
            );
        }
        o => panic!("{o:?}: the whole part reaches {target} at step {step}"),
    }

    // A screen as wide as the evaluation, or without a target, is refused.
    c.run.val_screen = Some(ValScreen {
        streams: 64,
        margin: 0.0,
    });
    let e = TrainData::load(&text(2), &c)
        .and_then(|data| Session::start(c.clone(), data, &d.path().join("all"), true))
        .err()
        .expect("a screen of every stream is refused");
    assert!(e.to_string().contains("--val-screen"), "{e}");
    c.run.target_loss = None;
    c.run.val_screen = Some(ValScreen {
        streams: 2,
        margin: 0.0,
    });
    let e = c.validate().expect_err("a screen needs a target");
    assert!(e.to_string().contains("--target-loss"), "{e}");
}

#[test]
fn training_seconds_leave_out_evaluation_and_add_up_over_legs() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let (_, first) = val_curve(config(20), &dir);
    let mut more = Session::resume(&dir, Some(text(2)), Some(Stop::Steps(40))).unwrap();
    let second = more.run(&mut Silent, &|| None).unwrap();
    let lines = more.run.read_metrics(u64::MAX).unwrap().0;
    let secs: Vec<f64> = lines.iter().map(|m| m.train_secs).collect();
    assert_eq!(secs.len(), 4);
    assert!(secs.windows(2).all(|w| w[1] > w[0]), "{secs:?}");
    assert_eq!(secs[1], first.train_secs);
    assert_eq!(secs[3], second.train_secs);
    assert!(second.train_secs > first.train_secs);
}

/// One writer per run directory: while a session holds it, starting (even with force) or
/// resuming it is refused with the holder's pid; once the holder is gone it resumes.
#[test]
fn a_run_directory_has_one_writer_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let data = TrainData::load(&text(1), &config(10)).unwrap();
    let mut first = Session::start(config(10), data, &dir, false).unwrap();
    first.run(&mut Silent, &|| None).unwrap();
    let pid = std::process::id().to_string();
    match Session::resume(&dir, Some(text(1)), Some(Stop::Steps(20))) {
        Err(e @ Error::RunBusy { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&pid) && msg.contains("wait for it"), "{msg}");
        }
        other => panic!("expected RunBusy, got {:?}", other.err()),
    }
    let data = TrainData::load(&text(1), &config(10)).unwrap();
    assert!(matches!(
        Session::start(config(10), data, &dir, true),
        Err(Error::RunBusy { .. })
    ));
    drop(first);
    let mut second = Session::resume(&dir, Some(text(1)), Some(Stop::Steps(20))).unwrap();
    second.run(&mut Silent, &|| None).unwrap();
    assert_eq!(second.trainer.progress.step, 20);
}

/// Collects the samples a session reports.
#[derive(Default)]
struct Samples(Vec<(u64, String)>);

impl Observer for Samples {
    fn sampled(&mut self, step: u64, text: &str) {
        self.0.push((step, text.to_string()));
    }
}

#[test]
fn samples_during_training_leave_training_bit_identical() {
    use charrnn::config::TrainSamples;
    let d = tempfile::tempdir().unwrap();
    let (quiet, talking) = (d.path().join("quiet"), d.path().join("talking"));
    let data = TrainData::load(&text(3), &config(24)).unwrap();
    let mut plain = Session::start(config(24), data, &quiet, false).unwrap();
    plain.run(&mut Silent, &|| None).unwrap();

    let mut with = config(24);
    with.run.samples = Some(TrainSamples {
        len: 30,
        prime: "the".into(),
        ..TrainSamples::every(5)
    });
    let data = TrainData::load(&text(3), &with).unwrap();
    let mut sampled = Session::start(with, data, &talking, false).unwrap();
    let mut seen = Samples::default();
    sampled.run(&mut seen, &|| None).unwrap();

    let load = |dir: &std::path::Path| charrnn::checkpoint::load(&dir.join("model.safetensors"));
    let (a, b) = (load(&quiet).unwrap(), load(&talking).unwrap());
    common::assert_same_run(&a, &b, "with samples every 5 steps and without");
    assert_eq!(
        common::f32_bits(&plain.trainer.params),
        common::f32_bits(&sampled.trainer.params)
    );
    assert_eq!(
        seen.0.iter().map(|s| s.0).collect::<Vec<_>>(),
        [5, 10, 15, 20]
    );
    for (step, text) in &seen.0 {
        assert!(text.starts_with("the"), "step {step}: {text:?}");
        assert_eq!(text.chars().count(), 3 + 30, "step {step}: {text:?}");
    }
    // Recorded with its step, and the same text on a replay (its seed is the run's and step's).
    let (lines, _) = sampled.run.read_samples(u64::MAX).unwrap();
    let recorded: Vec<_> = lines.iter().map(|l| (l.step, l.text.clone())).collect();
    assert_eq!(recorded, seen.0);
    let replay = d.path().join("replay");
    let data = TrainData::load(&text(3), &sampled.trainer.config).unwrap();
    let mut again = Session::start(sampled.trainer.config.clone(), data, &replay, false).unwrap();
    let mut seen_again = Samples::default();
    again.run(&mut seen_again, &|| None).unwrap();
    assert_eq!(seen_again.0, seen.0);

    // After every epoch, as the tutorial samples: the epochs end where the streams wrap.
    let mut per_epoch = config(0);
    per_epoch.run.stop = Stop::Epochs(2);
    per_epoch.run.samples = Some(TrainSamples::tutorial());
    let data = TrainData::load(&text(3), &per_epoch).unwrap();
    let mut epochs = Session::start(per_epoch, data, &d.path().join("epochs"), false).unwrap();
    let per = epochs.trainer.streams.steps_per_epoch() as u64;
    let mut seen = Samples::default();
    epochs.run(&mut seen, &|| None).unwrap();
    assert_eq!(
        seen.0.iter().map(|s| s.0).collect::<Vec<_>>(),
        [per, 2 * per]
    );
    assert!(seen.0.iter().all(|s| s.1.chars().count() == 50));

    // A prime the vocabulary lacks is refused before the run starts.
    let mut bad = config(4);
    bad.run.samples = Some(TrainSamples {
        prime: "Ω".into(),
        ..TrainSamples::every(2)
    });
    let data = TrainData::load(&text(3), &bad).unwrap();
    let err = Session::start(bad, data, &d.path().join("bad"), false)
        .err()
        .expect("an unknown prime is refused");
    assert!(
        matches!(
            err,
            Error::UnknownSymbols {
                what: "--sample-prime",
                ..
            }
        ),
        "{err}"
    );
    assert!(!d.path().join("bad").exists());
}

#[test]
fn a_resumed_run_keeps_only_the_samples_its_model_contains() {
    use charrnn::config::TrainSamples;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let mut c = config(40);
    c.run.samples = Some(TrainSamples {
        len: 10,
        ..TrainSamples::every(4)
    });
    let data = TrainData::load(&text(1), &c).unwrap();
    let mut first = Session::start(c, data, &dir, false).unwrap();
    // Interrupted before step 15: saved at 14, with samples at 4, 8 and 12 recorded.
    let last = Cell::new((0, 0));
    first
        .run(&mut LastStep(&last), &stop_at(&last, 14, 1))
        .unwrap();
    drop(first);
    let mut lines = charrnn::run::RunDir::new(&dir)
        .read_samples(u64::MAX)
        .unwrap()
        .0;
    assert_eq!(lines.iter().map(|l| l.step).collect::<Vec<_>>(), [4, 8, 12]);
    // A line of a step after the save (as a crash between a sample and the next save leaves).
    lines.push(charrnn::run::SampleLine {
        step: 16,
        epoch: 0,
        text: "from steps the model does not contain".into(),
    });
    charrnn::run::RunDir::new(&dir)
        .rewrite_samples(&lines)
        .unwrap();
    let mut more = Session::resume(&dir, Some(text(1)), None).unwrap();
    more.run(&mut Silent, &|| None).unwrap();
    let steps: Vec<u64> = more
        .run
        .read_samples(u64::MAX)
        .unwrap()
        .0
        .iter()
        .map(|l| l.step)
        .collect();
    assert_eq!(steps, (1..=10).map(|k| 4 * k).collect::<Vec<_>>());
}

#[test]
fn a_resume_takes_what_may_change_and_refuses_the_rest_before_touching_the_run() {
    use charrnn::config::TrainSamples;
    use charrnn::linalg::Precision;
    use charrnn::optim::Optimizer;
    let saved = config(10);
    // What a resumed run may change is taken, and is no change of the run.
    let mut asked = saved.clone();
    asked.run.stop = Stop::Epochs(3);
    asked.run.target_loss = Some(1.5);
    asked.run.precision = Precision::Bf16;
    asked.run.samples = Some(TrainSamples::every(7));
    asked.run.eval_every = 3;
    assert_eq!(saved.changes_on_resume(&asked), []);
    assert_eq!(saved.resumed_with(&asked), asked);
    // Anything else is a change, named by its flag, whatever its group.
    type Edit = fn(&mut TrainConfig);
    let edits: [(&str, Edit); 7] = [
        ("--hidden", |c| c.model.hidden += 1),
        ("--seq-len", |c| c.data.seq_len += 1),
        ("--bytes", |c| {
            c.data.symbols = charrnn::data::SymbolKind::Bytes
        }),
        ("--optimizer", |c| c.optim.optimizer = Optimizer::adam()),
        ("--dropout", |c| c.optim.dropout = 0.3),
        ("--shards", |c| c.run.shards = Some(4)),
        ("--seed", |c| c.run.seed += 1),
    ];
    for (flag, edit) in edits {
        let mut asked = saved.clone();
        edit(&mut asked);
        asked.run.stop = Stop::Steps(99);
        let changes = saved.changes_on_resume(&asked);
        let flags: Vec<String> = changes.iter().map(|c| c.flag()).collect();
        assert_eq!(flags, [flag], "{changes:?}");
    }

    // Through the session: refused before the run directory is touched.
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let data = TrainData::load(&text(1), &saved).unwrap();
    let mut first = Session::start(saved.clone(), data, &dir, false).unwrap();
    first.run(&mut Silent, &|| None).unwrap();
    drop(first);
    let metrics = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    std::fs::write(
        dir.join("metrics.jsonl"),
        [&metrics[..], b"{\"step\": 11"].concat(),
    )
    .unwrap();
    let wider = |c: &TrainConfig| {
        let mut c = c.clone();
        c.model.hidden = 32;
        c.run.stop = Stop::Steps(20);
        Ok(c)
    };
    let err = Session::resume_asking(&dir, Some(text(1)), wider, None)
        .err()
        .expect("a change of width is refused");
    assert!(
        matches!(&err, Error::ResumeChanges { changes, .. } if changes.len() == 1),
        "{err}"
    );
    assert!(
        err.to_string().contains("--hidden saved as 16, asked 32"),
        "{err}"
    );
    let torn = std::fs::read(dir.join("metrics.jsonl")).unwrap();
    assert!(
        torn.ends_with(b"{\"step\": 11"),
        "the metrics were left as they were"
    );
    // A caller's own refusal ends the resume too.
    let refuse = |_: &TrainConfig| Err(Error::Refused("no".into()));
    let err = Session::resume_asking(&dir, Some(text(1)), refuse, None)
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "no");
    // And what may change is taken.
    let longer = |c: &TrainConfig| {
        let mut c = c.clone();
        c.run.stop = Stop::Steps(14);
        c.run.eval_every = 2;
        Ok(c)
    };
    let mut more = Session::resume_asking(&dir, Some(text(1)), longer, None).unwrap();
    more.run(&mut Silent, &|| None).unwrap();
    let steps: Vec<u64> = more
        .run
        .read_metrics(u64::MAX)
        .unwrap()
        .0
        .iter()
        .map(|m| m.step)
        .collect();
    assert_eq!(steps, [10, 12, 14]);
}
