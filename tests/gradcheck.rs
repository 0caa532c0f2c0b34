//! Central-difference gradient checks in f64 of the BLAS-batched path, for every parameter of
//! every cell (rnn, gru, lstm) at L = 1 and 2, with the embedding folded and explicit (E = 3), over several (V, H, T, B) including B > 1,
//! B = 1 (the gemv path) and a carried state, without and with dropout masks between layers
//! and before the head; and of a shard's step with DropConnect on every W_hh, on both paths.

mod common;

use charrnn::data::{Cursor, Ids, Streams};
use charrnn::model::{CharLm, Tensor, Workspace};
use charrnn::parallel::{Noise, Shard};
use charrnn::train::PathKind;
use common::{cells_and_depths, model, random_ids, random_params, random_state, rel_err, rng};
use ndarray::Array3;

/// Loss of the chunk as the trainer defines it: summed over time, averaged over streams.
fn loss(model: &CharLm, p: &[f64], s0: &Array3<f64>, ws: &mut Workspace<f64>) -> f64 {
    model.forward(p, &s0.view(), ws);
    model.loss(ws) / ws.batch as f64
}

const CASES: [(usize, usize, usize, usize); 3] = [(5, 4, 3, 2), (7, 5, 4, 1), (6, 3, 5, 3)];

#[test]
fn batched_gradients_match_central_differences() {
    check_all(0.0);
}

/// With dropout the loss is a function of the parameters for FIXED masks; the check holds
/// the masks drawn once and perturbs the parameters.
#[test]
fn gradients_with_dropout_masks_match_central_differences() {
    check_all(0.4);
}

fn noise(dropout: f64, weight_drop: f64) -> Noise {
    Noise {
        dropout,
        weight_drop,
        seed: 5,
        step: 11,
    }
}

fn check_all(dropout: f64) {
    let with_embed = cells_and_depths()
        .into_iter()
        .flat_map(|(cell, layers)| [(cell, layers, None), (cell, layers, Some(3))]);
    for (cell, layers, embed) in with_embed {
        for (case, &(v, h, t, b)) in CASES.iter().enumerate() {
            let model = CharLm {
                embed,
                ..model(cell, layers, v, h)
            };
            let mut r = rng(100 + case as u64);
            let mut p: Vec<f64> = random_params(&model, 0.5, &mut r);
            let s0 = random_state::<f64>(&model, b, &mut r);
            let mut ws = Workspace::with_dropout(&model, t, b, dropout);
            let nz = noise(dropout, 0.0);
            ws.draw_dropout(dropout, |key| nz.rng(0, key));
            for d in ws.dropout.iter().flatten() {
                let dropped = d.mask.iter().filter(|&&m| m == 0.0).count();
                assert!(
                    dropped > 0 && dropped < d.mask.len(),
                    "the mask drops some units and keeps others"
                );
            }
            assert_eq!(
                ws.dropout.iter().flatten().count(),
                if dropout > 0.0 { layers } else { 0 }
            );
            ws.xs = random_ids(t * b, v, &mut r);
            ws.ys = random_ids(t * b, v, &mut r);

            let mut g = vec![0.0; p.len()];
            let mut carry = s0.clone();
            model.forward_backward(
                &p,
                None,
                &mut g,
                &mut carry.view_mut(),
                &mut ws,
                1.0 / b as f64,
            );

            let ctx = format!(
                "{layers}×{cell} embed {embed:?} V={v} H={h} T={t} B={b} dropout {dropout}"
            );
            let worst =
                check_every_parameter(&model, &mut p, &g, &ctx, |p| loss(&model, p, &s0, &mut ws));
            println!(
                "{ctx}: worst rel err {:e} at {}[{}]",
                worst.0, worst.1, worst.2
            );
        }
    }
}

/// DropConnect: a shard's step is a function of the parameters for FIXED W_hh masks (the
/// same noise redraws the same masks), and each layer's W_hh gradient is the masked one:
/// dropped elements get exactly zero. Checked on the BLAS path and on the reference loop.
#[test]
fn shard_gradients_with_weight_drop_match_central_differences() {
    let (v, h, t, b) = (6, 5, 4, 2);
    let noise = noise(0.0, 0.3);
    for (cell, layers) in cells_and_depths() {
        let model = model(cell, layers, v, h);
        let mut r = rng(7);
        let ids = Ids::from_u32(random_ids(b * (t + 1), v, &mut r), v);
        let streams = Streams::new(ids.len(), b, t).unwrap();
        let s0 = random_state::<f64>(&model, b, &mut r);
        let scale = 1.0 / b as f64;
        for path in [PathKind::Blas, PathKind::Naive] {
            let mut p: Vec<f64> = random_params(&model, 0.5, &mut r);
            let mut shard = Shard::<f64>::new(&model, t, 0, b, &noise);
            let run = |p: &[f64], shard: &mut Shard<f64>| {
                shard.state.assign(&s0);
                shard
                    .run(
                        &model,
                        p,
                        None,
                        path.chunk_fn(),
                        &streams,
                        &ids,
                        Cursor::default(),
                        scale,
                        &noise,
                    )
                    .unwrap();
                shard.loss * scale
            };
            run(&p, &mut shard);
            let g = shard.grads.clone();
            for l in 0..layers {
                let w_hh = model.range_of(Tensor::WHh(l));
                let n = w_hh.len();
                let dropped = g[w_hh].iter().filter(|&&d| d == 0.0).count();
                assert!(
                    dropped > n / 10 && dropped < n * 6 / 10,
                    "{layers}×{cell} {path:?}: {dropped} of {n} layer-{l} W_hh gradients are zero with weight drop 0.3"
                );
            }
            let ctx = format!("{layers}×{cell} {path:?}");
            check_every_parameter(&model, &mut p, &g, &ctx, |p| run(p, &mut shard));
        }
    }
}

/// DropConnect draws one W_hh mask per layer and step for the whole batch: shards of
/// different streams drop the same elements (their W_hh gradients are zero at the same
/// places), so the regularisation does not depend on the shard partition.
#[test]
fn every_shard_drops_the_same_w_hh_elements() {
    let (v, h, t, b) = (6, 8, 4, 2);
    let noise = noise(0.0, 0.3);
    let model = model(charrnn::model::CellKind::Lstm, 2, v, h);
    let mut r = rng(11);
    let ids = Ids::from_u32(random_ids(b * (t + 1), v, &mut r), v);
    let streams = Streams::new(ids.len(), b, t).unwrap();
    let p: Vec<f64> = random_params(&model, 0.5, &mut r);
    let zeros = |b0: usize| {
        let mut shard = Shard::<f64>::new(&model, t, b0, 1, &noise);
        shard
            .run(
                &model,
                &p,
                None,
                PathKind::Blas.chunk_fn(),
                &streams,
                &ids,
                Cursor::default(),
                1.0,
                &noise,
            )
            .unwrap();
        (0..model.layers)
            .map(|l| {
                let g = &shard.grads[model.range_of(Tensor::WHh(l))];
                g.iter().map(|&d| d == 0.0).collect::<Vec<bool>>()
            })
            .collect::<Vec<_>>()
    };
    let (first, second) = (zeros(0), zeros(1));
    for (l, (a, b)) in first.iter().zip(&second).enumerate() {
        let dropped = a.iter().filter(|&&z| z).count();
        assert!(dropped > a.len() / 10, "layer {l}: {dropped} dropped");
        assert_eq!(
            a, b,
            "layer {l}: the shards dropped different W_hh elements"
        );
    }
}

/// Compares every element of the analytic gradient `g` with the central difference of `loss`
/// at `p` (restored after each probe); fails loudly on a relative error ≥ 1e-6 and returns the
/// worst (error, tensor, index).
fn check_every_parameter(
    model: &CharLm,
    p: &mut [f64],
    g: &[f64],
    ctx: &str,
    mut loss: impl FnMut(&[f64]) -> f64,
) -> (f64, String, usize) {
    let eps = 1e-5;
    let mut worst = (0.0, String::new(), 0usize);
    for spec in model.layout() {
        for i in spec.range() {
            let orig = p[i];
            p[i] = orig + eps;
            let up = loss(p);
            p[i] = orig - eps;
            let down = loss(p);
            p[i] = orig;
            let numeric = (up - down) / (2.0 * eps);
            let e = rel_err(g[i], numeric, 1e-3);
            assert!(
                e < 1e-6,
                "{ctx}: {}[{}] analytic {:e} vs numeric {numeric:e} (rel err {e:e})",
                spec.name,
                i - spec.offset,
                g[i]
            );
            if e > worst.0 {
                worst = (e, spec.name.clone(), i - spec.offset);
            }
        }
    }
    worst
}
