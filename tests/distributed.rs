//! Data parallelism across processes, with threads standing in for MPI ranks
//! ([`LocalGroup`]): N ranks train the bits one process trains with the same shards, resume
//! with another N, stop together when one is interrupted (between steps or in an
//! evaluation), and fail together instead of hanging. (tests/mpi.rs runs the same over real MPI when built with `--features mpi`.)

use std::cell::Cell;
use std::path::Path;
use std::time::Duration;

use charrnn::checkpoint::{self, Checkpoint};
use charrnn::error::Error;
use charrnn::parallel::{Group, LocalGroup};
use charrnn::session::{Observer, Outcome, Session, Silent, Source, TrainData};
use charrnn::train::{Progress, Stop, TrainConfig};

mod common;

fn text() -> Source {
    let text = charrnn::synth::MarkovSource::builtin().generate(20_000, 3);
    Source::Text {
        name: "markov-3".into(),
        bytes: text.into_bytes(),
    }
}

/// A 2-layer GRU over 12 streams in 6 shards, with dropout and weight drop (their masks are
/// keyed by shard, so they must not depend on the number of ranks).
fn config(steps: u64) -> TrainConfig {
    let mut c = common::session_config(steps);
    c.data.batch = 12;
    c.run.shards = Some(6);
    c.optim.weight_drop = 0.2;
    c
}

/// How each rank's session ends: its interrupt (None: never), given the last step taken and
/// the number of polls since (the first is before the next step, or the evaluation's first).
type Interrupt = Option<Box<dyn Fn(u64, u64) -> Option<i32> + Send>>;

/// Records the last step taken, for the interrupt.
struct LastStep<'a>(&'a Cell<(u64, u64)>);

impl Observer for LastStep<'_> {
    fn stepped(&mut self, p: &Progress, _: u64, _: f64, _: bool) {
        self.0.set((p.step, 0));
    }
}

/// How a rank's run ended (its outcome and step) and the parameters it holds, or its error.
type RankResult = Result<(Outcome, u64, Vec<u32>), Error>;

/// Runs `ranks` threads as one run in `dir`: started fresh, or resumed to `resume`.
/// Returns each rank's outcome (the step it ended at) or error.
fn run_ranks(
    ranks: usize,
    dir: &Path,
    steps: u64,
    resume: bool,
    interrupts: Vec<Interrupt>,
) -> Vec<RankResult> {
    run_ranks_on(ranks, dir, steps, resume, interrupts, 1, config)
}

/// [`run_ranks`] with `threads` threads in each rank, and the configuration `config` makes
/// for a number of steps.
fn run_ranks_on(
    ranks: usize,
    dir: &Path,
    steps: u64,
    resume: bool,
    interrupts: Vec<Interrupt>,
    threads: usize,
    config: fn(u64) -> TrainConfig,
) -> Vec<RankResult> {
    let groups = LocalGroup::new(ranks, Duration::from_secs(60));
    let mut interrupts = interrupts;
    interrupts.resize_with(ranks, || None);
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .zip(interrupts)
            .map(|(g, interrupt)| {
                scope.spawn(move || {
                    let group: Option<Box<dyn Group>> = Some(Box::new(g));
                    let mut session = if resume {
                        Session::resume_in(dir, Some(text()), Some(Stop::Steps(steps)), group)?
                    } else {
                        let data = TrainData::load(&text(), &config(steps))?;
                        Session::start_in(config(steps), data, dir, false, group)?
                    };
                    session.trainer.set_threads(threads)?;
                    let last = Cell::new((session.trainer.progress.step, 0));
                    let poll = || {
                        let (step, polls) = last.get();
                        last.set((step, polls + 1));
                        interrupt.as_ref().and_then(|f| f(step, polls + 1))
                    };
                    let report = session.run(&mut LastStep(&last), &poll)?;
                    let t = &session.trainer;
                    Ok((report.outcome, t.progress.step, common::f32_bits(&t.params)))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("no rank panics"))
            .collect()
    })
}

/// One process, the same shards.
fn single(dir: &Path, steps: u64) -> Session {
    single_of(dir, steps, config)
}

/// [`single`] with the configuration `config` makes.
fn single_of(dir: &Path, steps: u64, config: fn(u64) -> TrainConfig) -> Session {
    let data = TrainData::load(&text(), &config(steps)).unwrap();
    let mut s = Session::start(config(steps), data, dir, false).unwrap();
    s.run(&mut Silent, &|| None).unwrap();
    s
}

/// The model file of `dir` (`name`), loaded.
fn saved(dir: &Path, name: &str) -> Checkpoint {
    checkpoint::load(&dir.join(name)).unwrap()
}

#[test]
fn n_ranks_train_the_bits_of_one_process() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    let straight = single(&one, 25);
    for ranks in [1, 2, 3, 6] {
        let dir = d.path().join(format!("ranks{ranks}"));
        let results = run_ranks(ranks, &dir, 25, false, Vec::new());
        for (rank, r) in results.into_iter().enumerate() {
            let (outcome, step, params) = r.unwrap();
            assert_eq!((outcome, step), (Outcome::Finished, 25));
            assert_eq!(
                params,
                common::f32_bits(&straight.trainer.params),
                "rank {rank} of {ranks} holds the parameters one process trains"
            );
        }
        for file in ["model.safetensors", "best.safetensors"] {
            common::assert_same_run(
                &saved(&dir, file),
                &saved(&one, file),
                &format!("{ranks} ranks, {file}"),
            );
        }
        let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
        let steps: Vec<u64> = metrics
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(
            steps,
            [10, 20, 25],
            "rank 0 alone logs, once per evaluation"
        );
    }
}

/// [`config`] holding out two blocks spread over the text (of its 4): the last of every
/// two.
fn spread(steps: u64) -> TrainConfig {
    let mut c = config(steps);
    c.data.val_chars = Some(2 * charrnn::data::VAL_BLOCK);
    c.data.val_layout = charrnn::data::ValLayout::Blocks {
        block: charrnn::data::VAL_BLOCK,
    };
    c
}

#[test]
fn ranks_hold_out_the_same_spread_blocks_and_train_the_bits_of_one_process() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    single_of(&one, 25, spread);
    for ranks in [2, 3] {
        let dir = d.path().join(format!("ranks{ranks}"));
        for r in run_ranks_on(ranks, &dir, 25, false, Vec::new(), 1, spread) {
            assert_eq!(r.unwrap().1, 25);
        }
        // The validation losses (in the progress of both files) are one process's: the
        // ranks evaluated the same blocks, and trained on the same others.
        for file in ["model.safetensors", "best.safetensors"] {
            common::assert_same_run(
                &saved(&dir, file),
                &saved(&one, file),
                &format!("{ranks} ranks, {file}"),
            );
        }
    }
}

/// [`spread`] with streams in a shuffled order of segments of 16 chunks: 46 segments of the
/// 11,808 symbols trained on, 3 rounds of 12 streams, so an epoch is 48 steps.
fn shuffled(steps: u64) -> TrainConfig {
    let mut c = spread(steps);
    c.data.stream_order = charrnn::data::StreamOrder::Shuffled { chunks: 16 };
    c
}

/// Streams that jump to seed-chosen segments train the same bits on 2 and 3 ranks, with 2
/// threads, and resumed mid-segment on other numbers of ranks, across an epoch's end, as one
/// process straight through; and they read other places than the contiguous order.
#[test]
fn shuffled_streams_train_the_bits_of_one_process_on_any_ranks_and_across_resume() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    let straight = single_of(&one, 60, shuffled);
    assert_eq!(straight.trainer.streams.steps_per_epoch(), 48);
    assert_eq!(
        straight.trainer.progress.epoch, 1,
        "the run crossed an epoch's end"
    );
    let contiguous = single_of(&d.path().join("contiguous"), 60, spread);
    assert_ne!(
        common::f32_bits(&contiguous.trainer.params),
        common::f32_bits(&straight.trainer.params)
    );
    for (ranks, threads) in [(2, 1), (3, 2)] {
        let dir = d.path().join(format!("ranks{ranks}"));
        for r in run_ranks_on(ranks, &dir, 60, false, Vec::new(), threads, shuffled) {
            assert_eq!(r.unwrap().1, 60);
        }
        common::assert_same_run(
            &saved(&dir, "model.safetensors"),
            &saved(&one, "model.safetensors"),
            &format!("{ranks} ranks of {threads} thread(s)"),
        );
    }
    // 13 steps on 2 ranks, to 37 alone, to 60 on 3: both stops fall inside a segment.
    let dir = d.path().join("mixed");
    two_then_one_then_three(&dir, [13, 37, 60], shuffled);
    common::assert_same_run(
        &saved(&dir, "model.safetensors"),
        &saved(&one, "model.safetensors"),
        "shuffled: 2 ranks, then 1 process, then 3 ranks",
    );
}

/// A run of `config` in `dir` to `stops[0]` on 2 ranks, resumed to `stops[1]` by one process
/// (no group at all), then to `stops[2]` on 3 ranks.
fn two_then_one_then_three(dir: &Path, stops: [u64; 3], config: fn(u64) -> TrainConfig) {
    for r in run_ranks_on(2, dir, stops[0], false, Vec::new(), 1, config) {
        r.unwrap();
    }
    let mut alone = Session::resume(dir, Some(text()), Some(Stop::Steps(stops[1]))).unwrap();
    alone.run(&mut Silent, &|| None).unwrap();
    drop(alone);
    for r in run_ranks(3, dir, stops[2], true, Vec::new()) {
        assert_eq!(r.unwrap().1, stops[2]);
    }
}

#[test]
fn a_run_resumes_on_another_number_of_ranks() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    single(&one, 30);
    let dir = d.path().join("mixed");
    two_then_one_then_three(&dir, [12, 21, 30], config);
    common::assert_same_run(
        &saved(&dir, "model.safetensors"),
        &saved(&one, "model.safetensors"),
        "2 ranks, then 1 process, then 3 ranks",
    );
}

#[test]
fn an_interrupt_on_one_rank_stops_every_rank_before_the_same_step() {
    let d = tempfile::tempdir().unwrap();
    let (one, dir) = (d.path().join("one"), d.path().join("two"));
    single(&one, 25);
    // Rank 1 alone is asked to stop once step 12 is taken: before step 13.
    let on_rank1: Interrupt = Some(Box::new(|step, _| (step >= 12).then_some(15)));
    let results = run_ranks(2, &dir, 25, false, vec![None, on_rank1]);
    for r in results {
        let (outcome, step, _) = r.unwrap();
        assert_eq!((outcome, step), (Outcome::Interrupted(15), 12));
    }
    assert_eq!(saved(&dir, "model.safetensors").progress.step, 12);
    for r in run_ranks(2, &dir, 25, true, Vec::new()) {
        r.unwrap();
    }
    common::assert_same_run(
        &saved(&dir, "model.safetensors"),
        &saved(&one, "model.safetensors"),
        "interrupted at 12 and resumed",
    );
}

/// Every rank refuses the run with the same error, before anything is saved. (tests/mpi.rs
/// checks the same over real MPI: the job fails with the message on stderr.)
#[test]
fn an_interrupt_on_one_rank_mid_evaluation_stops_every_rank_saving_the_step_without_it() {
    let d = tempfile::tempdir().unwrap();
    let one = d.path().join("one");
    single(&one, 20);
    // On one thread a rank polls before each chunk of its shards; on a pool, before its
    // shards start and then while they run.
    for threads in [1, 2] {
        let dir = d.path().join(format!("threads{threads}"));
        interrupted_mid_evaluation(&dir, &one, threads);
    }
}

/// Rank 1 alone asked to stop in the evaluation after step 20 of a 2-rank run in `dir`
/// stops every rank; `one` holds the model of 20 steps.
fn interrupted_mid_evaluation(dir: &Path, one: &Path, threads: usize) {
    // The second poll after step 20 is in the evaluation that follows it (every rank reads
    // 2 of its 4 shards, in 2 chunks each).
    let on_rank1: Interrupt = Some(Box::new(|step, polls| {
        (step == 20 && polls == 2).then_some(15)
    }));
    for r in run_ranks_on(2, dir, 30, false, vec![None, on_rank1], threads, config) {
        let (outcome, step, _) = r.unwrap();
        assert_eq!((outcome, step), (Outcome::Interrupted(15), 20));
    }
    // The model of step 20 is saved; the abandoned validation is recorded nowhere.
    let model = saved(dir, "model.safetensors");
    assert_eq!(
        common::f32_bits(&model.params),
        common::f32_bits(&saved(one, "model.safetensors").params),
        "the parameters of step 20"
    );
    assert_eq!(model.progress.step, 20);
    assert_eq!(model.progress.best_val.map(|b| b.1), Some(10));
    assert_eq!(saved(dir, "best.safetensors").progress.step, 10);
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<(u64, bool)> = metrics
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["val_loss"].is_f64())
        })
        .collect();
    assert_eq!(lines, [(10, true), (20, false)]);
    for r in run_ranks_on(2, dir, 30, true, Vec::new(), threads, config) {
        assert_eq!(r.unwrap().1, 30);
    }
}

#[test]
fn shards_that_do_not_divide_among_the_ranks_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    for r in run_ranks(4, &dir, 5, false, Vec::new()) {
        match r.unwrap_err() {
            Error::InvalidConfig { name, value, hint } => {
                assert_eq!((name, value.as_str()), ("--shards", "6"));
                assert!(
                    hint.contains("6 shard(s) cannot be divided among 4 processes"),
                    "{hint}"
                );
            }
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }
    assert!(!dir.join("model.safetensors").exists());
}

#[test]
fn a_rank_that_fails_setup_stops_the_others() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    single(&dir, 3);
    // Rank 0 refuses the directory that holds a model; rank 1 learns that it failed.
    let results = run_ranks(2, &dir, 5, false, Vec::new());
    let msgs: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap_err().to_string())
        .collect();
    assert!(msgs[0].contains("already"), "{}", msgs[0]);
    assert!(
        msgs[1].contains("rank 1 of 2") && msgs[1].contains("another rank failed"),
        "{}",
        msgs[1]
    );
    assert_eq!(
        saved(&dir, "model.safetensors").progress.step,
        3,
        "the run is untouched"
    );
}

#[test]
fn a_rank_that_goes_away_mid_run_stops_the_others_with_the_saved_model_kept() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("run");
    let groups = LocalGroup::new(2, Duration::from_secs(60));
    let results: Vec<Result<u64, Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| {
                let dir = &dir;
                scope.spawn(move || {
                    let rank = g.rank();
                    let data = TrainData::load(&text(), &config(40))?;
                    let mut s = Session::start_in(config(40), data, dir, false, Some(Box::new(g)))?;
                    // Rank 1 goes away after 14 steps (its group is dropped, as a dead
                    // process's connections close).
                    let limit = if rank == 1 { 14 } else { 40 };
                    while s.trainer.progress.step < limit {
                        s.trainer.config.run.stop = Stop::Steps(s.trainer.progress.step + 1);
                        s.run(&mut Silent, &|| None)?;
                    }
                    Ok(s.trainer.progress.step)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(*results[1].as_ref().unwrap(), 14);
    let msg = results[0].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("rank 1 has gone")
            && msg.contains("model.safetensors")
            && msg.contains("kept"),
        "{msg}"
    );
    // Each one-step `run` saved at its end; the last save both took part in is step 14.
    assert_eq!(saved(&dir, "model.safetensors").progress.step, 14);
}
