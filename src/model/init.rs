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
                    let input = if l == 0 { v } else { h };
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

    /// Redraws layer 0's W_ih, the character embedding table (one row per character: the
    /// one-hot product is a row gather), from N(0, σ²) with σ = `std`. `nn.Embedding` draws
    /// its table from N(0, 1); a strong input drive (σ ≈ 1–2 instead of the 0.01–0.04 of the
    /// recurrent inits) makes each character move the state from the first step on.
    pub fn init_embedding<F: Float, R: Rng>(&self, p: &mut [F], std: f64, rng: &mut R) {
        self.weights_mut(p).layers[0].w_ih.mapv_inplace(|_| {
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
    use crate::model::CellKind;

    /// --forget-bias moves exactly the f block of every layer's b, and nothing else.
    #[test]
    fn set_forget_bias_moves_only_the_forget_gates() {
        let lstm = CharLm {
            vocab: 5,
            hidden: 6,
            cell: CellKind::Lstm,
            layers: 2,
        };
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
}
