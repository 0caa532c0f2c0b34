//! Central-difference gradient checks in f64 of the BLAS-batched path, for every parameter,
//! over several (V, H, T, B) including B > 1, B = 1 (the gemv path) and a carried hidden state,
//! without and with an output-dropout mask; and of a shard's step with DropConnect on W_hh,
//! on both paths.

mod common;

use charrnn::data::{Ids, Streams};
use charrnn::model::{CharRnn, Workspace};
use charrnn::shard::{Noise, Shard};
use charrnn::train::PathKind;
use common::{random_ids, random_params, random_state, rel_err, rng};

/// Loss of the chunk as the trainer defines it: summed over time, averaged over streams.
fn loss(model: &CharRnn, p: &[f64], h0: &ndarray::Array2<f64>, ws: &mut Workspace<f64>) -> f64 {
    model.forward(p, &h0.view(), ws);
    model.loss(ws) / ws.batch as f64
}

const CASES: [(usize, usize, usize, usize); 5] = [
    (5, 4, 3, 2),
    (7, 9, 5, 3),
    (11, 8, 6, 1),
    (6, 12, 4, 4),
    (13, 10, 9, 2),
];

#[test]
fn batched_gradients_match_central_differences() {
    check_all(0.0);
}

/// With dropout the loss is a function of the parameters for a FIXED mask; the check holds
/// the mask drawn once and perturbs the parameters.
#[test]
fn gradients_with_a_dropout_mask_match_central_differences() {
    check_all(0.4);
}

fn check_all(dropout: f64) {
    for (case, &(v, h, t, b)) in CASES.iter().enumerate() {
        let model = CharRnn {
            vocab: v,
            hidden: h,
        };
        let mut r = rng(100 + case as u64);
        let mut p: Vec<f64> = random_params(&model, 0.5, &mut r);
        let h0 = random_state::<f64>(b, h, &mut r);
        let mut ws = Workspace::with_dropout(&model, t, b, dropout);
        ws.draw_dropout(dropout, &mut r);
        if dropout > 0.0 {
            let mask = ws.mask.as_ref().expect("a mask");
            let dropped = mask.iter().filter(|&&m| m == 0.0).count();
            assert!(
                dropped > 0 && dropped < mask.len(),
                "the mask drops some units and keeps others"
            );
        }
        ws.xs = random_ids(t * b, v, &mut r);
        ws.ys = random_ids(t * b, v, &mut r);

        let mut g = vec![0.0; p.len()];
        let mut hcarry = h0.clone();
        model.forward_backward(&p, &mut g, &mut hcarry.view_mut(), &mut ws, 1.0 / b as f64);

        let ctx = format!("V={v} H={h} T={t} B={b}");
        let worst =
            check_every_parameter(&model, &mut p, &g, &ctx, |p| loss(&model, p, &h0, &mut ws));
        println!(
            "dropout {dropout}, V={v} H={h} T={t} B={b}: worst rel err {:e} at {}[{}]",
            worst.0, worst.1, worst.2
        );
    }
}

/// DropConnect: a shard's step is a function of the parameters for a FIXED W_hh mask (the
/// same noise redraws the same mask), and its W_hh gradient is the masked one: dropped
/// elements get exactly zero. Checked on the BLAS path and on the reference loop.
#[test]
fn shard_gradients_with_weight_drop_match_central_differences() {
    let (v, h, t, b) = (7, 9, 5, 3);
    let model = CharRnn {
        vocab: v,
        hidden: h,
    };
    let noise = Noise {
        dropout: 0.0,
        weight_drop: 0.3,
        seed: 5,
        step: 11,
    };
    let mut r = rng(7);
    let ids = Ids::U32(random_ids(b * (t + 1), v, &mut r));
    let streams = Streams::new(ids.len(), b, t).unwrap();
    let h0 = random_state::<f64>(b, h, &mut r);
    let scale = 1.0 / b as f64;
    for path in [PathKind::Blas, PathKind::Naive] {
        let mut p: Vec<f64> = random_params(&model, 0.5, &mut r);
        let mut shard = Shard::<f64>::new(&model, t, 0, b, &noise);
        let run = |p: &[f64], shard: &mut Shard<f64>| {
            shard.h.assign(&h0);
            shard.run(&model, p, path, &streams, &ids, 0, scale, &noise);
            shard.loss * scale
        };
        run(&p, &mut shard);
        let g = shard.grads.clone();
        let w_hh = model.w_hh_range();
        let dropped = g[w_hh.clone()].iter().filter(|&&d| d == 0.0).count();
        assert!(
            dropped > h * h / 10 && dropped < h * h / 2,
            "{path:?}: {dropped} of {} W_hh gradients are zero with weight drop 0.3",
            h * h
        );
        check_every_parameter(&model, &mut p, &g, &format!("{path:?}"), |p| {
            run(p, &mut shard)
        });
    }
}

/// Compares every element of the analytic gradient `g` with the central difference of `loss`
/// at `p` (restored after each probe); fails loudly on a relative error ≥ 1e-6 and returns the
/// worst (error, tensor, index).
fn check_every_parameter(
    model: &CharRnn,
    p: &mut [f64],
    g: &[f64],
    ctx: &str,
    mut loss: impl FnMut(&[f64]) -> f64,
) -> (f64, &'static str, usize) {
    let eps = 1e-5;
    let mut worst = (0.0, "", 0usize);
    for spec in model.layout() {
        for i in spec.offset..spec.offset + spec.len() {
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
                worst = (e, spec.name, i - spec.offset);
            }
        }
    }
    worst
}
