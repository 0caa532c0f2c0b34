//! The naive per-character loop and the BLAS-batched path agree, for every cell at L = 1 and 2
//! (and a 3-layer case), with the embedding folded into layer 0 and with an explicit one: the
//! same loss, gradients and final state of every layer on the same
//! seeded data (f64 to 1e−10, f32 to 1e−4), and the same parameters after the first steps of a
//! training run.

mod common;

use charrnn::data::{Corpus, SymbolKind};
use charrnn::linalg::Float;
use charrnn::model::{CellKind, Workspace};
use charrnn::naive;
use charrnn::train::{PathKind, Stop, Trainer};
use common::{cells_and_depths, model, random_ids, random_params, random_state, rel_err, rng};

/// Runs both paths on one chunk of `b` streams; returns the worst relative error over loss,
/// gradients and final states.
/// (V, H, T, B).
type Shape = (usize, usize, usize, usize);
/// (cell, L, E): the model's kind, depth and explicit embedding width (None: folded).
type Kind = (CellKind, usize, Option<usize>);

fn compare<F: Float>(
    (cell, layers, embed): Kind,
    (v, h, t, b): Shape,
    seed: u64,
    scale_p: f64,
) -> f64 {
    let model = charrnn::model::CharLm {
        embed,
        ..model(cell, layers, v, h)
    };
    let mut r = rng(seed);
    let p: Vec<F> = random_params(&model, scale_p, &mut r);
    let h0 = random_state::<F>(&model, b, &mut r);
    let mut ws = Workspace::<F>::new(&model, t, b);
    ws.xs = random_ids(t * b, v, &mut r);
    ws.ys = random_ids(t * b, v, &mut r);
    let scale = F::one() / F::c(b as f64);

    let mut g_fast = vec![F::zero(); p.len()];
    let mut h_fast = h0.clone();
    let loss_fast = model.forward_backward(
        &p,
        None,
        &mut g_fast,
        &mut h_fast.view_mut(),
        &mut ws,
        scale,
    );

    let mut g_naive = vec![F::zero(); p.len()];
    let mut h_naive = h0.clone();
    let loss_naive = naive::forward_backward_chunk(
        &model,
        &p,
        None,
        &mut g_naive,
        &mut h_naive.view_mut(),
        &mut ws,
        scale,
    );

    let f = |x: F| x.to_f64().unwrap();
    let mut worst = rel_err(f(loss_fast), f(loss_naive), 1e-3);
    for (a, n) in g_fast
        .iter()
        .zip(&g_naive)
        .chain(h_fast.iter().zip(h_naive.iter()))
    {
        worst = worst.max(rel_err(f(*a), f(*n), 1e-3));
    }
    worst
}

const SHAPES: [Shape; 5] = [
    (5, 4, 3, 1),
    (9, 16, 7, 1),
    (9, 16, 7, 3),
    (65, 75, 20, 1),
    (30, 40, 12, 5),
];

/// The vanilla cell over every shape; the gated cells and depths over the smaller ones (the
/// naive loop multiplies the one-hot input out in full, so large shapes are slow); an
/// explicit embedding (E = 6) for every cell and depth on two shapes.
fn cases() -> Vec<(Kind, Shape)> {
    let mut cases: Vec<_> = SHAPES
        .iter()
        .map(|&s| ((CellKind::Rnn, 1, None), s))
        .collect();
    for (cell, layers) in cells_and_depths() {
        for &s in &SHAPES[..3] {
            cases.push(((cell, layers, None), s));
        }
        cases.push(((cell, layers, None), SHAPES[4]));
        for s in [SHAPES[2], SHAPES[4]] {
            cases.push(((cell, layers, Some(6)), s));
        }
    }
    for cell in CellKind::ALL {
        cases.push(((cell, 3, None), (9, 8, 5, 2)));
    }
    cases
}

#[test]
fn naive_and_batched_agree_in_f64() {
    for (i, (what, shape)) in cases().into_iter().enumerate() {
        let e = compare::<f64>(what, shape, i as u64, 0.3);
        let (cell, layers, embed) = what;
        assert!(
            e < 1e-10,
            "{layers}×{cell} embed {embed:?} (V, H, T, B) = {shape:?}: worst relative difference {e:e}"
        );
    }
}

#[test]
fn naive_and_batched_agree_in_f32() {
    for (i, (what, shape)) in cases().into_iter().enumerate() {
        // Weights at 0.1 (10× the tutorial's init): at 0.3, saturated units let f32 rounding over
        // 20 steps reach ~1e-3 on the smallest gradients, which the f64 test covers instead.
        let e = compare::<f32>(what, shape, 50 + i as u64, 0.1);
        let (cell, layers, embed) = what;
        assert!(
            e < 1e-4,
            "{layers}×{cell} embed {embed:?} (V, H, T, B) = {shape:?}: worst relative difference {e:e}"
        );
    }
}

/// Whole training steps (clip + AdaGrad, carried state, epoch wrap) through both paths.
#[test]
fn naive_and_batched_training_runs_agree() {
    let text = charrnn::synth::MarkovSource::builtin().generate(3_000, 5);
    let corpus = Corpus::from_bytes(text.as_bytes(), SymbolKind::Chars, None, "synthetic").unwrap();
    let runs = [
        (CellKind::Rnn, 1, 1),
        (CellKind::Rnn, 1, 4),
        (CellKind::Gru, 2, 3),
        (CellKind::Lstm, 2, 3),
    ];
    for (cell, layers, batch) in runs {
        let config = |path| {
            let mut c = common::train_config(24, 10, batch, Stop::Steps(8));
            c.model.cell = cell;
            c.model.layers = layers;
            c.optim.lr = 0.05;
            c.run.path = path;
            c
        };
        let mut fast = Trainer::<f64>::new(config(PathKind::Blas), &corpus).unwrap();
        let mut slow = Trainer::<f64>::new(config(PathKind::Naive), &corpus).unwrap();
        while !fast.done() {
            let (a, b) = (
                fast.step(&corpus.ids).unwrap(),
                slow.step(&corpus.ids).unwrap(),
            );
            assert!(
                rel_err(a, b, 1e-3) < 1e-10,
                "{layers}×{cell} B={batch} step {}: loss {a} vs {b}",
                fast.progress.step
            );
        }
        let worst = fast
            .params
            .iter()
            .zip(&slow.params)
            .map(|(a, b)| rel_err(*a, *b, 1e-3))
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-10,
            "{layers}×{cell} B={batch}: parameters differ by {worst:e} after 8 AdaGrad steps"
        );
        assert_eq!(
            (fast.progress.step, fast.progress.chars_seen),
            (slow.progress.step, slow.progress.chars_seen)
        );
    }
}
