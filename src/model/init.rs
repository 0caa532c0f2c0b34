//! Weight initialisation.
//!
//! The draws happen in a fixed order so that a one-layer vanilla model gets exactly the
//! weights earlier releases drew from the same seed.

use ndarray::{s, Array2, ArrayViewMut2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::CharLm;
use crate::linalg::Float;

/// How the weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The tutorial's: W_ih, W_hy ~ 0.01·N(0, 1), every H×H gate block of W_hh = 0.01·I,
    /// biases 0.
    Seed,
    /// Every H×H gate block of W_hh a random orthogonal matrix (QR of a Gaussian matrix),
    /// the rest as `Seed`.
    Orthogonal,
    /// Glorot/Xavier uniform: U(±√(6/(fan_in+fan_out))) for every gate block of every weight
    /// matrix, biases 0.
    Xavier,
    /// U(±1/√H) for every weight and bias (PyTorch's default for `nn.RNN`, `nn.GRU`,
    /// `nn.LSTM`, and for an `nn.Linear` output layer over H inputs).
    Uniform,
}

impl CharLm {
    /// Fresh parameters drawn with `init` from `rng`. A forget gate's bias (the LSTM's,
    /// [`super::CellSpec::forget_gate`]) is then set to 1 whatever the scheme (char-rnn's
    /// choice: the cell remembers from the start).
    pub fn init<F: Float, R: Rng>(&self, init: Init, rng: &mut R) -> Vec<F> {
        let (v, h, g) = (self.vocab, self.hidden, self.cell.gates());
        let mut p = vec![F::zero(); self.num_params()];
        let mut w = self.weights_mut(&mut p);
        let mut gauss = |a: &mut ArrayViewMut2<F>, std: f64| {
            a.mapv_inplace(|_| {
                let x: f64 = StandardNormal.sample(rng);
                F::c(std * x)
            });
        };
        if matches!(init, Init::Seed | Init::Orthogonal) {
            for layer in &mut w.layers {
                gauss(&mut layer.w_ih, 0.01);
            }
            gauss(&mut w.w_hy, 0.01);
        }
        match init {
            Init::Seed => {
                for layer in &mut w.layers {
                    for k in 0..g {
                        let mut block = layer.w_hh.slice_mut(s![.., k * h..(k + 1) * h]);
                        block.diag_mut().fill(F::c(0.01));
                    }
                }
            }
            Init::Orthogonal => {
                for layer in &mut w.layers {
                    for k in 0..g {
                        let q = orthogonal(h, rng).mapv(F::c);
                        layer.w_hh.slice_mut(s![.., k * h..(k + 1) * h]).assign(&q);
                    }
                }
            }
            Init::Xavier => {
                let mut xavier = |a: &mut ArrayViewMut2<F>, fan: usize| {
                    let bound = (6.0 / fan as f64).sqrt();
                    a.mapv_inplace(|_| F::c(rng.random_range(-bound..bound)));
                };
                for (l, layer) in w.layers.iter_mut().enumerate() {
                    let input = self.input_width(l);
                    xavier(&mut layer.w_ih, input + h);
                    xavier(&mut layer.w_hh, 2 * h);
                }
                xavier(&mut w.w_hy, h + v);
            }
            Init::Uniform => {
                let bound = 1.0 / (h as f64).sqrt();
                for x in p.iter_mut() {
                    *x = F::c(rng.random_range(-bound..bound));
                }
            }
        }
        self.set_forget_bias(&mut p, 1.0);
        if self.embed.is_some() {
            // `nn.Embedding`'s N(0, 1), whatever the scheme.
            self.init_embedding(&mut p, 1.0, rng);
        }
        p
    }

    /// Sets every layer's forget-gate bias ([`super::CellSpec::forget_gate`]) to `bias`; does
    /// nothing for a cell without a forget gate.
    pub fn set_forget_bias<F: Float>(&self, p: &mut [F], bias: f64) {
        if let Some(k) = self.cell.spec().forget_gate() {
            let h = self.hidden;
            for layer in &mut self.weights_mut(p).layers {
                layer.b.slice_mut(s![k * h..(k + 1) * h]).fill(F::c(bias));
            }
        }
    }

    /// Multiplies the output layer's weights W_hy by `factor` (the bias b_y is left as
    /// drawn). An LSTM whose head is drawn several times larger than U(±1/√H) learns faster
    /// in its first hundreds of steps (measured: `docs/recipes.md`).
    pub fn scale_head<F: Float>(&self, p: &mut [F], factor: f64) {
        let factor = F::c(factor);
        self.weights_mut(p).w_hy.mapv_inplace(|x| x * factor);
    }

    /// Redraws the character embedding table from N(0, σ²) with σ = `std`: the explicit
    /// table ([`CharLm::embed`]) when the model has one, else layer 0's W_ih (one row per
    /// character: the one-hot product is a row gather). `nn.Embedding` draws its table from
    /// N(0, 1); a strong input drive (σ ≈ 1–2 instead of the 0.01–0.04 of the recurrent
    /// inits) makes each character move the state from the first step on.
    pub fn init_embedding<F: Float, R: Rng>(&self, p: &mut [F], std: f64, rng: &mut R) {
        let mut w = self.weights_mut(p);
        let table = match self.embed {
            Some(_) => &mut w.embed,
            None => &mut w.layers[0].w_ih,
        };
        table.mapv_inplace(|_| {
            let x: f64 = StandardNormal.sample(rng);
            F::c(std * x)
        });
    }
}

/// A random (n, n) orthogonal matrix: Q of the QR decomposition of a Gaussian matrix, with
/// column signs fixed by R's diagonal so the draw is uniform (Haar) over orthogonal matrices.
fn orthogonal<R: Rng>(n: usize, rng: &mut R) -> Array2<f64> {
    use ndarray_linalg::QR;
    let a = Array2::<f64>::from_shape_simple_fn((n, n), || StandardNormal.sample(rng));
    let (mut q, r) = a
        .qr()
        .expect("QR of a Gaussian matrix (full rank with probability 1)");
    for (mut col, &d) in q.axis_iter_mut(Axis(1)).zip(r.diag()) {
        if d < 0.0 {
            col.mapv_inplace(|x: f64| -x);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::model::{CellKind, Tensor};

    /// A 2-layer LSTM with V = 5, H = 6 and the embedding folded.
    fn small_lstm() -> CharLm {
        CharLm {
            vocab: 5,
            hidden: 6,
            cell: CellKind::Lstm,
            layers: 2,
            embed: None,
        }
    }

    /// --forget-bias moves exactly the f block of every layer's b, and nothing else.
    #[test]
    fn set_forget_bias_moves_only_the_forget_gates() {
        let lstm = small_lstm();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let p: Vec<f64> = lstm.init(Init::Uniform, &mut rng);
        let mut q = p.clone();
        lstm.set_forget_bias(&mut q, -2.5);
        let (set, drawn) = (lstm.weights(&q), lstm.weights(&p));
        for (l, (got, was)) in set.layers.iter().zip(&drawn.layers).enumerate() {
            for (i, (&g, &w)) in got.b.iter().zip(&was.b).enumerate() {
                let want = if (6..12).contains(&i) { -2.5 } else { w };
                assert_eq!(g, want, "layer {l}, b[{i}]");
            }
        }
        let changed = p.iter().zip(&q).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 2 * 6, "only the two forget-gate blocks change");
    }

    /// --head-scale multiplies exactly W_hy, and nothing else.
    #[test]
    fn scale_head_multiplies_only_the_output_weights() {
        let lstm = small_lstm();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let p: Vec<f64> = lstm.init(Init::Uniform, &mut rng);
        let mut q = p.clone();
        lstm.scale_head(&mut q, 3.5);
        let head = lstm.range_of(Tensor::WHy);
        for i in 0..p.len() {
            let want = if head.contains(&i) { p[i] * 3.5 } else { p[i] };
            assert_eq!(q[i], want, "parameter {i} (W_hy is {head:?})");
        }
        assert!(head.len() == 6 * 5 && p[head].iter().all(|&x| x != 0.0));
    }

    #[test]
    fn initialisations_have_the_documented_form() {
        let model = CharLm::vanilla(7, 24);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let p: Vec<f64> = model.init(Init::Seed, &mut rng);
        let w = model.weights(&p);
        assert_eq!(w.layers[0].w_hh, Array2::<f64>::eye(24) * 0.01);
        assert!(w.layers[0].b.iter().chain(w.b_y.iter()).all(|&b| b == 0.0));
        let w_xh = &w.layers[0].w_ih;
        let std = (w_xh.iter().map(|x| x * x).sum::<f64>() / w_xh.len() as f64).sqrt();
        assert!(
            (0.007..0.013).contains(&std),
            "W_xh std {std}, expected ≈ 0.01"
        );

        let p: Vec<f64> = model.init(Init::Orthogonal, &mut rng);
        let w_hh = model.weights(&p).layers[0].w_hh.to_owned();
        let err = (w_hh.t().dot(&w_hh) - Array2::<f64>::eye(24))
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(err < 1e-12, "W_hhᵀ·W_hh differs from I by {err:e}");

        let p: Vec<f64> = model.init(Init::Uniform, &mut rng);
        let bound = 1.0 / 24f64.sqrt();
        assert!(p.iter().all(|x| x.abs() <= bound) && p.iter().any(|x| x.abs() > bound / 2.0));
        assert!(
            model.weights(&p).b_y.iter().any(|&b| b != 0.0),
            "biases are drawn too"
        );

        // The embedding redraw: W_ih of layer 0 ~ N(0, 2²), everything else as it was.
        let mut q = p.clone();
        model.init_embedding(&mut q, 2.0, &mut rng);
        let (wp, wq) = (model.weights(&p), model.weights(&q));
        let e = &wq.layers[0].w_ih;
        let std = (e.iter().map(|x| x * x).sum::<f64>() / e.len() as f64).sqrt();
        assert!((1.7..2.3).contains(&std), "W_xh std {std}, expected ≈ 2");
        let rest = model.range_of(Tensor::WHh(0)).start;
        assert_eq!(p[rest..], q[rest..], "only W_xh is redrawn");
        assert_ne!(wp.layers[0].w_ih, wq.layers[0].w_ih);

        let p: Vec<f64> = model.init(Init::Xavier, &mut rng);
        let w = model.weights(&p);
        let bound = (6.0 / 31.0f64).sqrt();
        let e = &w.layers[0].w_ih;
        assert!(e.iter().all(|x| x.abs() <= bound) && e.iter().any(|x| x.abs() > bound / 2.0));
    }

    #[test]
    fn gated_layouts_and_inits() {
        let lstm = small_lstm();
        // Per layer W_ih (I, 4H), W_hh (H, 4H), b (4H); then W_hy, b_y.
        let expect = 5 * 24 + 6 * 24 + 24 + 6 * 24 + 6 * 24 + 24 + 6 * 5 + 5;
        assert_eq!(lstm.num_params(), expect);
        assert_eq!(lstm.layout().last().unwrap().range().end, expect);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for init in [Init::Seed, Init::Orthogonal, Init::Xavier, Init::Uniform] {
            let p: Vec<f64> = lstm.init(init, &mut rng);
            for layer in &lstm.weights(&p).layers {
                assert!(
                    layer.b.iter().skip(6).take(6).all(|&b| b == 1.0),
                    "{init:?}"
                );
            }
        }
        let p: Vec<f64> = lstm.init(Init::Orthogonal, &mut rng);
        let w_hh = lstm.weights(&p).layers[1].w_hh.to_owned();
        let block = w_hh.slice(ndarray::s![.., 12..18]).to_owned();
        let err = (block.t().dot(&block) - Array2::<f64>::eye(6))
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(err < 1e-12, "every gate block is orthogonal ({err:e})");

        let gru = CharLm {
            cell: CellKind::Gru,
            ..lstm
        };
        let names: Vec<String> = gru.layout().iter().map(|s| s.name.clone()).collect();
        assert_eq!(
            names,
            [
                "layers.0.W_ih",
                "layers.0.W_hh",
                "layers.0.b",
                "layers.0.b_hn",
                "layers.1.W_ih",
                "layers.1.W_hh",
                "layers.1.b",
                "layers.1.b_hn",
                "W_hy",
                "b_y"
            ]
        );
        // 6·[g·H·H + (L−1)·g·H·2H + H·V]
        assert_eq!(
            gru.flops_per_char(),
            6.0 * (18.0 * 6.0 + 18.0 * 12.0 + 30.0)
        );
    }

    /// An explicit embedding: its table (V, E) comes first, layer 0's W_ih is (E, g·H), the
    /// table is drawn from N(0, 1) whatever the scheme, and --embed-std redraws the table, not
    /// W_ih.
    #[test]
    fn an_explicit_embedding_is_a_table_in_front_of_layer_0() {
        let lstm = CharLm {
            vocab: 7,
            hidden: 6,
            cell: CellKind::Lstm,
            layers: 2,
            embed: Some(40),
        };
        let names: Vec<String> = lstm.layout().iter().map(|s| s.name.clone()).collect();
        assert_eq!(names[..2], ["embed", "layers.0.W_ih"]);
        assert_eq!(lstm.layout()[0].shape, [7, 40]);
        assert_eq!(lstm.layout()[1].shape, [40, 24]);
        let folded = CharLm {
            embed: None,
            ..lstm
        };
        assert_eq!(
            lstm.num_params(),
            folded.num_params() + 7 * 40 + (40 - 7) * 24
        );
        // 6·g·H·(E + H) for layer 0 instead of 6·g·H·H.
        let diff = lstm.flops_per_char() - folded.flops_per_char();
        assert_eq!(diff, 6.0 * 24.0 * 40.0);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for init in [Init::Seed, Init::Uniform] {
            let p: Vec<f64> = lstm.init(init, &mut rng);
            let w = lstm.weights(&p);
            let std = (w.embed.iter().map(|x| x * x).sum::<f64>() / 280.0).sqrt();
            assert!((0.85..1.15).contains(&std), "{init:?}: table std {std}");
            let mut q = p.clone();
            lstm.init_embedding(&mut q, 3.0, &mut rng);
            let table = lstm.range_of(Tensor::Embed);
            let std = (q[table.clone()].iter().map(|x| x * x).sum::<f64>() / 280.0).sqrt();
            assert!(
                (2.5..3.5).contains(&std),
                "{init:?}: redrawn table std {std}"
            );
            assert_eq!(p[table.end..], q[table.end..], "only the table is redrawn");
        }
    }
}
