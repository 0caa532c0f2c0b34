//! The character language model: input gather → recurrent cell → output layer → softmax.
//!
//! The parameters live in ONE flat buffer (`&[F]`) laid out by [`CharRnn::layout`]; the
//! optimizer, clipping, gradient reduction and model files all work on flat buffers and names,
//! so a new cell (GRU, LSTM) or a second layer only adds entries to the layout and a file
//! beside [`rnn`]. Shapes use fixed letters: B streams, T steps, V vocabulary, H hidden.

pub mod rnn;

use ndarray::{s, Array2, ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2, Axis};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::linalg::{gemm, rows, softmax_xent_grad, xent, Float};

/// How the weights are initialised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// The tutorial's: W_xh, W_hy ~ 0.01·N(0, 1), W_hh = 0.01·I, biases 0.
    Seed,
    /// W_hh a random orthogonal matrix (QR of a Gaussian matrix), the rest as `Seed`.
    Orthogonal,
    /// Glorot/Xavier uniform: U(±√(6/(fan_in+fan_out))) for every weight matrix, biases 0.
    Xavier,
    /// U(±1/√H) for every weight and bias (PyTorch's default for `nn.RNN`, and for an
    /// `nn.Linear` output layer over H inputs).
    Uniform,
}

/// One named parameter tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Name in model files (`W_xh`, `W_hh`, `b_h`, `W_hy`, `b_y`).
    pub name: &'static str,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Offset of the first element in the flat buffer.
    pub offset: usize,
}

impl ParamSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A vanilla tanh RNN language model over V symbols with H hidden units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharRnn {
    /// V, the vocabulary size.
    pub vocab: usize,
    /// H, the hidden size.
    pub hidden: usize,
}

/// Read-only views of the parameters (or of their gradients) inside a flat buffer.
pub struct Weights<'a, F> {
    /// (V, H) input weights: row x is the input projection of symbol x.
    pub w_xh: ArrayView2<'a, F>,
    /// (H, H) recurrent weights.
    pub w_hh: ArrayView2<'a, F>,
    /// (H) hidden bias.
    pub b_h: ArrayView1<'a, F>,
    /// (H, V) output weights.
    pub w_hy: ArrayView2<'a, F>,
    /// (V) output bias.
    pub b_y: ArrayView1<'a, F>,
}

/// Mutable views of the parameters (or of their gradients) inside a flat buffer.
pub struct WeightsMut<'a, F> {
    /// (V, H)
    pub w_xh: ArrayViewMut2<'a, F>,
    /// (H, H)
    pub w_hh: ArrayViewMut2<'a, F>,
    /// (H)
    pub b_h: ArrayViewMut1<'a, F>,
    /// (H, V)
    pub w_hy: ArrayViewMut2<'a, F>,
    /// (V)
    pub b_y: ArrayViewMut1<'a, F>,
}

/// Reusable buffers for one chunk of T steps × B streams: the forward cache and the backward
/// scratch. Allocated once; the step loop allocates nothing.
pub struct Workspace<F> {
    /// (T·B) input ids, time-major.
    pub xs: Vec<u32>,
    /// (T·B) target ids, time-major.
    pub ys: Vec<u32>,
    /// ((T+1)·B, H) hidden states h_0..h_T.
    pub hs: Array2<F>,
    /// (T·B, V) logits; after [`CharRnn::loss_grad`], ∂L/∂logits.
    pub z: Array2<F>,
    /// (T·B, H) ∂L/∂h_t, then ∂L/∂a_t during the cell's backward.
    pub dhs: Array2<F>,
    /// B, streams in this chunk.
    pub batch: usize,
    /// (T·B, H) output-dropout mask, each element 0 or 1/(1−p), or `None` without dropout.
    /// Filled by the caller before [`CharRnn::forward`] (see [`Workspace::draw_dropout`]).
    pub mask: Option<Array2<F>>,
}

impl<F: Float> Workspace<F> {
    /// Buffers for `seq_len` steps of `batch` streams of `model`.
    pub fn new(model: &CharRnn, seq_len: usize, batch: usize) -> Self {
        let n = seq_len * batch;
        Workspace {
            xs: vec![0; n],
            ys: vec![0; n],
            hs: Array2::zeros(((seq_len + 1) * batch, model.hidden)),
            z: Array2::zeros((n, model.vocab)),
            dhs: Array2::zeros((n, model.hidden)),
            batch,
            mask: None,
        }
    }

    /// Buffers as [`Workspace::new`], plus the output-dropout mask when `dropout` > 0.
    pub fn with_dropout(model: &CharRnn, seq_len: usize, batch: usize, dropout: f64) -> Self {
        let mut ws = Self::new(model, seq_len, batch);
        if dropout > 0.0 {
            ws.mask = Some(Array2::zeros((seq_len * batch, model.hidden)));
        }
        ws
    }

    /// Draws a fresh output-dropout mask: each element is 0 with probability `p` and 1/(1−p)
    /// otherwise (inverted dropout, so evaluation and sampling use the weights as they are).
    /// The draw depends only on `rng`. Does nothing without a mask.
    pub fn draw_dropout<R: Rng>(&mut self, p: f64, rng: &mut R) {
        if let Some(mask) = self.mask.as_mut() {
            draw_mask(mask.as_slice_mut().expect("standard layout"), p, rng);
        }
    }

    /// (B, H) view of h_T, the state to carry into the next chunk.
    pub fn last_hidden(&self) -> ArrayView2<'_, F> {
        let n = self.xs.len();
        self.hs.slice(s![n.., ..])
    }
}

/// Fills `mask` with an inverted-dropout mask: each element 0 with probability `p` and 1/(1−p)
/// otherwise, so that the mask's expectation is 1. The draw depends only on `rng`.
pub fn draw_mask<F: Float, R: Rng>(mask: &mut [F], p: f64, rng: &mut R) {
    // Keep when a uniform u32 is at or above p·2³²; p < 1, so the threshold fits in u64.
    // The words are drawn a block at a time (the same words, in the same order, as one
    // `next_u32` per element) so that the comparison loop vectorises.
    let threshold = (p * 4_294_967_296.0) as u64;
    let keep = F::c(1.0 / (1.0 - p));
    let mut words = [0u32; 256];
    for chunk in mask.chunks_mut(words.len()) {
        let words = &mut words[..chunk.len()];
        rng.fill(words);
        for (m, &u) in chunk.iter_mut().zip(words.iter()) {
            *m = if u64::from(u) >= threshold {
                keep
            } else {
                F::zero()
            };
        }
    }
}

impl CharRnn {
    /// The flat parameter layout: W_xh (V, H), W_hh (H, H), b_h (H), W_hy (H, V), b_y (V).
    pub fn layout(&self) -> Vec<ParamSpec> {
        let (v, h) = (self.vocab, self.hidden);
        let shapes: [(&'static str, Vec<usize>); 5] = [
            ("W_xh", vec![v, h]),
            ("W_hh", vec![h, h]),
            ("b_h", vec![h]),
            ("W_hy", vec![h, v]),
            ("b_y", vec![v]),
        ];
        let mut offset = 0;
        shapes
            .into_iter()
            .map(|(name, shape)| {
                let spec = ParamSpec {
                    name,
                    shape,
                    offset,
                };
                offset += spec.len();
                spec
            })
            .collect()
    }

    /// Where W_hh lies in the flat buffer (from [`CharRnn::layout`]).
    pub fn w_hh_range(&self) -> std::ops::Range<usize> {
        let spec = self
            .layout()
            .into_iter()
            .find(|s| s.name == "W_hh")
            .expect("W_hh is in the layout");
        spec.offset..spec.offset + spec.len()
    }

    /// Total number of parameters: V·H + H·H + H + H·V + V.
    pub fn num_params(&self) -> usize {
        let (v, h) = (self.vocab, self.hidden);
        2 * v * h + h * h + h + v
    }

    /// Views of the named tensors inside the flat buffer `p` (len = [`Self::num_params`]).
    pub fn weights<'a, F>(&self, p: &'a [F]) -> Weights<'a, F> {
        let (v, h) = (self.vocab, self.hidden);
        let (w_xh, rest) = p.split_at(v * h);
        let (w_hh, rest) = rest.split_at(h * h);
        let (b_h, rest) = rest.split_at(h);
        let (w_hy, b_y) = rest.split_at(h * v);
        Weights {
            w_xh: ArrayView2::from_shape((v, h), w_xh).expect("layout"),
            w_hh: ArrayView2::from_shape((h, h), w_hh).expect("layout"),
            b_h: ArrayView1::from(b_h),
            w_hy: ArrayView2::from_shape((h, v), w_hy).expect("layout"),
            b_y: ArrayView1::from(b_y),
        }
    }

    /// Mutable views of the named tensors inside the flat buffer `p`.
    pub fn weights_mut<'a, F>(&self, p: &'a mut [F]) -> WeightsMut<'a, F> {
        let (v, h) = (self.vocab, self.hidden);
        let (w_xh, rest) = p.split_at_mut(v * h);
        let (w_hh, rest) = rest.split_at_mut(h * h);
        let (b_h, rest) = rest.split_at_mut(h);
        let (w_hy, b_y) = rest.split_at_mut(h * v);
        WeightsMut {
            w_xh: ArrayViewMut2::from_shape((v, h), w_xh).expect("layout"),
            w_hh: ArrayViewMut2::from_shape((h, h), w_hh).expect("layout"),
            b_h: ArrayViewMut1::from(b_h),
            w_hy: ArrayViewMut2::from_shape((h, v), w_hy).expect("layout"),
            b_y: ArrayViewMut1::from(b_y),
        }
    }

    /// Fresh parameters drawn with `init` from `rng`.
    pub fn init<F: Float, R: Rng>(&self, init: Init, rng: &mut R) -> Vec<F> {
        let (v, h) = (self.vocab, self.hidden);
        let mut p = vec![F::zero(); self.num_params()];
        let mut w = self.weights_mut(&mut p);
        let mut gauss = |a: &mut ArrayViewMut2<F>, std: f64| {
            a.mapv_inplace(|_| {
                let x: f64 = StandardNormal.sample(rng);
                F::c(std * x)
            });
        };
        match init {
            Init::Seed | Init::Orthogonal => {
                gauss(&mut w.w_xh, 0.01);
                gauss(&mut w.w_hy, 0.01);
            }
            Init::Xavier | Init::Uniform => {}
        }
        match init {
            Init::Seed => w.w_hh.diag_mut().fill(F::c(0.01)),
            Init::Orthogonal => w.w_hh.assign(&orthogonal(h, rng).mapv(F::c)),
            Init::Xavier => {
                for (a, fan) in [
                    (&mut w.w_xh, v + h),
                    (&mut w.w_hh, 2 * h),
                    (&mut w.w_hy, h + v),
                ] {
                    let bound = (6.0 / fan as f64).sqrt();
                    a.mapv_inplace(|_| F::c(rng.random_range(-bound..bound)));
                }
            }
            Init::Uniform => {
                let bound = 1.0 / (h as f64).sqrt();
                for x in p.iter_mut() {
                    *x = F::c(rng.random_range(-bound..bound));
                }
            }
        }
        p
    }

    /// Redraws W_xh, the character embedding table (one row per character: the one-hot
    /// product is a row gather), from N(0, σ²) with σ = `std`. `nn.Embedding` draws its table
    /// from N(0, 1); a strong input drive (σ ≈ 1–2 instead of the 0.01–0.04 of the recurrent
    /// inits) makes each character move the state from the first step on.
    pub fn init_embedding<F: Float, R: Rng>(&self, p: &mut [F], std: f64, rng: &mut R) {
        self.weights_mut(p).w_xh.mapv_inplace(|_| {
            let x: f64 = StandardNormal.sample(rng);
            F::c(std * x)
        });
    }

    /// Forward over one chunk: fills `ws.hs` (h_0 = `h0`, (B, H)) and the logits `ws.z`.
    ///
    /// The recurrence is one (B, H)·(H, H) gemm per step; the logits of all T·B rows are ONE
    /// (T·B, H)·(H, V) gemm onto rows pre-filled with b_y. With a dropout mask in `ws`, the
    /// logits read the masked states D = Hs ⊙ M (kept in `ws.dhs` until the backward); the
    /// recurrence itself is never masked.
    pub fn forward<F: Float>(&self, p: &[F], h0: &ArrayView2<F>, ws: &mut Workspace<F>) {
        let w = self.weights(p);
        let (b, n) = (ws.batch, ws.xs.len());
        ws.hs.slice_mut(s![..b, ..]).assign(h0);
        let hs = ws.hs.as_slice_mut().expect("standard layout");
        rnn::forward(&w.w_xh, &w.w_hh, &w.b_h, &ws.xs, hs, b);
        for mut row in ws.z.outer_iter_mut() {
            row.assign(&w.b_y);
        }
        let hs_out = rows(hs, self.hidden, b, b + n);
        match &ws.mask {
            None => gemm(F::one(), &hs_out, &w.w_hy, F::one(), &mut ws.z.view_mut()),
            Some(mask) => {
                ndarray::Zip::from(&mut ws.dhs)
                    .and(&hs_out)
                    .and(mask)
                    .for_each(|d, &h, &m| *d = h * m);
                gemm(
                    F::one(),
                    &ws.dhs.view(),
                    &w.w_hy,
                    F::one(),
                    &mut ws.z.view_mut(),
                );
            }
        }
    }

    /// Summed cross-entropy (nats) of the chunk, turning `ws.z` into ∂(scale·loss)/∂logits.
    pub fn loss_grad<F: Float>(&self, ws: &mut Workspace<F>, scale: F) -> F {
        let mut loss = F::zero();
        for (mut row, &y) in ws.z.outer_iter_mut().zip(&ws.ys) {
            let row = row.as_slice_mut().expect("contiguous logits row");
            loss += softmax_xent_grad(row, y as usize, scale);
        }
        loss
    }

    /// Summed cross-entropy (nats) of the chunk, forward-only (`ws.z` untouched).
    pub fn loss<F: Float>(&self, ws: &Workspace<F>) -> F {
        ws.z.outer_iter()
            .zip(&ws.ys)
            .map(|(row, &y)| xent(row.as_slice().expect("contiguous logits row"), y as usize))
            .sum()
    }

    /// Backward over one chunk after [`Self::forward`] and [`Self::loss_grad`]; gradients are
    /// ADDED into the flat buffer `g`.
    ///
    /// dW_hy = Hsᵀ·dZ and dHs = dZ·W_hyᵀ are one gemm each over all T·B rows; then the cell.
    /// With dropout, dW_hy = Dᵀ·dZ and dHs = (dZ·W_hyᵀ) ⊙ M.
    pub fn backward<F: Float>(&self, p: &[F], g: &mut [F], ws: &mut Workspace<F>) {
        let w = self.weights(p);
        let mut gw = self.weights_mut(g);
        let (b, n) = (ws.batch, ws.xs.len());
        let hs = ws.hs.as_slice().expect("standard layout");
        let hs_out = rows(hs, self.hidden, b, b + n);
        let h_read = if ws.mask.is_some() {
            ws.dhs.view()
        } else {
            hs_out
        };
        gemm(F::one(), &h_read.t(), &ws.z.view(), F::one(), &mut gw.w_hy);
        for row in ws.z.outer_iter() {
            gw.b_y.zip_mut_with(&row, |g, &d| *g += d);
        }
        gemm(
            F::one(),
            &ws.z.view(),
            &w.w_hy.t(),
            F::zero(),
            &mut ws.dhs.view_mut(),
        );
        if let Some(mask) = &ws.mask {
            ws.dhs.zip_mut_with(mask, |d, &m| *d *= m);
        }
        let mut cell = rnn::CellGrads {
            w_xh: gw.w_xh,
            w_hh: gw.w_hh,
            b_h: gw.b_h,
        };
        let dhs = ws.dhs.as_slice_mut().expect("standard layout");
        rnn::backward(&w.w_hh, &ws.xs, hs, dhs, &mut cell, b);
    }

    /// Forward, loss and backward of one chunk; returns the summed loss (nats) and adds
    /// ∂(scale·loss)/∂p into `g`. `h`: (B, H) state, h_0 on entry, h_T on return.
    pub fn forward_backward<F: Float>(
        &self,
        p: &[F],
        g: &mut [F],
        h: &mut ArrayViewMut2<F>,
        ws: &mut Workspace<F>,
        scale: F,
    ) -> F {
        self.forward(p, &h.view(), ws);
        h.assign(&ws.last_hidden());
        let loss = self.loss_grad(ws, scale);
        self.backward(p, g, ws);
        loss
    }

    /// One step of one stream for generation: h ← tanh(W_xh[x] + h·W_hh + b_h), then the
    /// logits z = h·W_hy + b_y. `h`: (1, H), `tmp`: (1, H) scratch, `z`: (1, V).
    pub fn step<F: Float>(
        &self,
        p: &[F],
        x: usize,
        h: &mut Array2<F>,
        tmp: &mut Array2<F>,
        z: &mut Array2<F>,
    ) {
        let w = self.weights(p);
        tmp.row_mut(0).assign(&w.w_xh.row(x));
        tmp.row_mut(0).zip_mut_with(&w.b_h, |t, &b| *t += b);
        gemm(F::one(), &h.view(), &w.w_hh, F::one(), &mut tmp.view_mut());
        h.zip_mut_with(tmp, |h, &a| *h = a.tanh_m());
        z.row_mut(0).assign(&w.b_y);
        gemm(F::one(), &h.view(), &w.w_hy, F::one(), &mut z.view_mut());
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
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn initialisations_have_the_documented_form() {
        let model = CharRnn {
            vocab: 7,
            hidden: 24,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let p: Vec<f64> = model.init(Init::Seed, &mut rng);
        let w = model.weights(&p);
        assert_eq!(w.w_hh, Array2::<f64>::eye(24) * 0.01);
        assert!(w.b_h.iter().chain(w.b_y.iter()).all(|&b| b == 0.0));
        let std = (w.w_xh.iter().map(|x| x * x).sum::<f64>() / w.w_xh.len() as f64).sqrt();
        assert!(
            (0.007..0.013).contains(&std),
            "W_xh std {std}, expected ≈ 0.01"
        );

        let p: Vec<f64> = model.init(Init::Orthogonal, &mut rng);
        let w_hh = model.weights(&p).w_hh.to_owned();
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

        // The embedding redraw: W_xh ~ N(0, 2²), everything else as it was.
        let mut q = p.clone();
        model.init_embedding(&mut q, 2.0, &mut rng);
        let (wp, wq) = (model.weights(&p), model.weights(&q));
        let std = (wq.w_xh.iter().map(|x| x * x).sum::<f64>() / wq.w_xh.len() as f64).sqrt();
        assert!((1.7..2.3).contains(&std), "W_xh std {std}, expected ≈ 2");
        let rest = model.w_hh_range().start;
        assert_eq!(p[rest..], q[rest..], "only W_xh is redrawn");
        assert_ne!(wp.w_xh, wq.w_xh);

        let p: Vec<f64> = model.init(Init::Xavier, &mut rng);
        let w = model.weights(&p);
        let bound = (6.0 / 31.0f64).sqrt();
        assert!(
            w.w_xh.iter().all(|x| x.abs() <= bound) && w.w_xh.iter().any(|x| x.abs() > bound / 2.0)
        );
    }
}
