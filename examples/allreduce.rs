//! Times the gradient exchange of a distributed run alone: the chain sum of one model's
//! flat gradient across the ranks of an `mpirun` (what every step of `charrnn train` does
//! under mpirun), after a barrier, so that no rank's compute is counted.
//!
//! ```text
//! cargo build --release --features mpi --example allreduce
//! mpirun -n 2 target/release/examples/allreduce gru 2 512 65
//! ```
//! Arguments: cell (rnn, gru, lstm), layers, hidden width, vocabulary size.

use std::time::{Duration, Instant};

use charrnn::model::{CellKind, CharLm};
use charrnn::parallel::group::{agree_ok, reduce_chain};
use charrnn::parallel::mpi::MpiGroup;
use charrnn::parallel::Group;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: allreduce CELL LAYERS HIDDEN VOCAB (e.g. gru 2 512 65)";
    let cell = match args.first().map(String::as_str) {
        Some("rnn") => CellKind::Rnn,
        Some("gru") => CellKind::Gru,
        Some("lstm") => CellKind::Lstm,
        _ => panic!("{usage}"),
    };
    let num = |i: usize| -> usize { args.get(i).and_then(|a| a.parse().ok()).expect(usage) };
    let model = CharLm {
        vocab: num(3),
        hidden: num(2),
        cell,
        layers: num(1),
        embed: None,
    };
    let p = model.num_params();
    let (universe, threading) =
        mpi::initialize_with_threading(mpi::Threading::Serialized).expect("MPI starts");
    let mut group = MpiGroup::new(
        &universe,
        threading,
        Duration::from_secs(60),
        "(no run)".as_ref(),
    )
    .expect("serialized threading");
    let mut grads = vec![1.0f32; p];
    let mut scratch = Vec::new();
    let mut times = Vec::new();
    for rep in 0..40 {
        agree_ok(&mut group, true).unwrap();
        let start = Instant::now();
        reduce_chain(&mut group, &mut grads, &mut scratch, |_, _| {}).unwrap();
        if rep >= 5 {
            times.push(start.elapsed().as_secs_f64());
        }
        grads.fill(1.0);
    }
    times.sort_by(f64::total_cmp);
    if group.rank() == 0 {
        let median = times[times.len() / 2];
        println!(
            "{} ranks, {} x{} H={} V={}: P = {p} parameters ({:.1} MB); chain sum + broadcast: \
             median {:.2} ms, min {:.2} ms ({:.2} GB/s of gradient per rank)",
            group.size(),
            cell.name(),
            model.layers,
            model.hidden,
            model.vocab,
            4.0 * p as f64 / 1e6,
            median * 1e3,
            times[0] * 1e3,
            4.0 * p as f64 / median / 1e9
        );
    }
}
