//! The character language model: embed → L recurrent cells → head → softmax.
//!
//! ```text
//! layer 0:  a_t = W_ih[x_t] + b + h⁰_{t−1}·W_hh …     (a row gather: the one-hot product)
//!   or, with an explicit embedding E (V, E):
//!           a_t = E[x_t]·W_ih + b + h⁰_{t−1}·W_hh …
//! layer l:  a_t = hˡ⁻¹_t·W_ih + b + hˡ_{t−1}·W_hh …    (the layer below's output as input)
//! head:     p_t = softmax(hᴸ⁻¹_t·W_hy + b_y)
//! ```
//!
//! The parameters live in ONE flat buffer laid out by [`CharLm::layout`] ([`layout`]); a cell
//! is one file ([`rnn`], [`gru`], [`lstm`]) behind the [`Cell`] trait ([`cell`]), chosen here
//! ([`CellKind`], the one place that names every cell). Per layer
//! and chunk, everything off the recurrence is one big operation over all T·B rows: the input
//! projection (a gather for layer 0, one gemm above), and in backward dW_ih, the bias
//! gradient and the gradient to the layer below. Shapes use fixed letters: B streams, T
//! steps, V vocabulary, H hidden, g gate blocks, L layers, S state width (H, or 2H for an
//! LSTM's (h, c)).

pub mod cell;
pub mod gru;
pub mod health;
mod init;
pub mod layout;
pub mod lstm;
mod packs;
pub mod rnn;

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, ArrayViewMut3, Axis};
use rand::Rng;
use serde::{Deserialize, Serialize};

pub use cell::{Cell, CellBuffers, CellSpec, Recurrent, RecurrentGrads};
pub use health::Health;
pub use init::Init;
pub use layout::{LayerWeights, LayerWeightsMut, ParamSpec, Tensor, Weights, WeightsMut};
pub use packs::WeightPacks;

use crate::linalg::{
    add_rows, gather_rows_plus, scatter_add_rows, softmax_xent_rows, xent_rows, Float, Precision,
    Products,
};

/// Which recurrent cell a model uses (PyTorch's formulations and gate orders). Adding one to
/// the model is its file (its [`CellSpec`] and [`Cell`]), its variant here and its line in
/// [`CellKind::ALL`] and [`CellKind::cell`]; the reference loop ([`crate::naive`]) has a
/// dispatch of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// The tutorial's vanilla cell: h = tanh(x·W_ih + h·W_hh + b) ([`rnn`]).
    #[default]
    Rnn,
    /// Gated recurrent unit, gates r, z, n (`nn.GRU`, [`gru`]).
    Gru,
    /// Long short-term memory, gates i, f, g, o, with a carried cell state (`nn.LSTM`,
    /// [`lstm`]).
    Lstm,
}

impl CellKind {
    /// Every cell kind, in CLI order.
    pub const ALL: [CellKind; 3] = [CellKind::Rnn, CellKind::Gru, CellKind::Lstm];

    /// The implementation of this kind: the dispatch, one line a cell.
    pub fn cell<F: Float>(self) -> &'static dyn Cell<F> {
        match self {
            CellKind::Rnn => &rnn::Rnn,
            CellKind::Gru => &gru::Gru,
            CellKind::Lstm => &lstm::Lstm,
        }
    }

    /// What this kind of cell is made of (its file's [`CellSpec`]).
    pub fn spec(self) -> &'static dyn CellSpec {
        self.cell::<f32>()
    }

    /// The cell's name on the command line and in model files ([`CellSpec::name`]).
    pub fn name(self) -> &'static str {
        self.spec().name()
    }

    /// A reader's name for the cell ([`CellSpec::long_name`]).
    pub fn long_name(self) -> &'static str {
        self.spec().long_name()
    }

    /// The names of the gate blocks, in order ([`CellSpec::gate_names`]).
    pub fn gate_names(self) -> &'static [&'static str] {
        self.spec().gate_names()
    }

    /// g, the gate blocks of width H in W_ih, W_hh and b ([`CellSpec::gates`]).
    pub fn gates(self) -> usize {
        self.spec().gates()
    }

    /// S, the carried state of one stream ([`CellSpec::state_width`]).
    pub fn state_width(self, hidden: usize) -> usize {
        self.spec().state_width(hidden)
    }

    /// Length of the hidden-side bias ([`CellSpec::hidden_bias`]).
    pub fn hidden_bias(self, hidden: usize) -> usize {
        self.spec().hidden_bias(hidden)
    }

    /// Training FLOPs per character of one layer ([`CellSpec::flops_per_char`]).
    pub fn flops_per_char(self, input: usize, hidden: usize) -> f64 {
        self.spec().flops_per_char(input, hidden)
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A character language model: V symbols, L layers of a recurrent cell with H units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharLm {
    /// V, the vocabulary size.
    pub vocab: usize,
    /// H, the hidden size of every layer.
    pub hidden: usize,
    /// The recurrent cell (default the tutorial's vanilla cell).
    #[serde(default)]
    pub cell: CellKind,
    /// L, stacked layers (default 1).
    #[serde(default = "one")]
    pub layers: usize,
    /// E, the width of an explicit embedding table (V, E) in front of layer 0, whose W_ih is
    /// then (E, g·H) (`nn.Embedding` then `nn.LSTM`, torch-rnn's `wordvec_size`); `None` (the
    /// default) folds the embedding into layer 0's W_ih (V, g·H), gathered by symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<usize>,
}

fn one() -> usize {
    1
}

/// Output dropout of one layer: a mask and the masked outputs that the next layer (or the
/// head) reads instead of the outputs themselves.
pub struct Dropout<F> {
    /// (T·B, H) each element 0 or 1/(1−p).
    pub mask: Array2<F>,
    /// (T·B, H) outputs ⊙ mask.
    pub out: Array2<F>,
}

/// Reusable buffers for one chunk of T steps × B streams: every layer's forward cache and
/// backward scratch, and the logits. Allocated once; the step loop allocates nothing.
pub struct Workspace<F> {
    /// (T·B) input ids, time-major.
    pub xs: Vec<u32>,
    /// (T·B) target ids, time-major.
    pub ys: Vec<u32>,
    /// B, streams in this chunk.
    pub batch: usize,
    /// One per layer, bottom first.
    pub layers: Vec<CellBuffers<F>>,
    /// (T·B, V) logits; after [`CharLm::loss_grad`], ∂L/∂logits.
    pub z: Array2<F>,
    /// (T·B, E) the embedded inputs of layer 0 (the rows of the explicit embedding table
    /// gathered by id); in backward, their gradient. (T·B, 0) without an explicit embedding.
    pub embedded: Array2<F>,
    /// Per layer: dropout on its output (into the layer above, or the head for the last
    /// layer), or `None`. Masks are filled by the caller before [`CharLm::forward`].
    pub dropout: Vec<Option<Dropout<F>>>,
    /// The products off the recurrence (input projections, head, their gradients), at the
    /// workspace's precision (default f32; [`Workspace::set_precision`]).
    pub products: Products,
}

impl<F: Float> Workspace<F> {
    /// Buffers for `seq_len` steps of `batch` streams of `model`.
    pub fn new(model: &CharLm, seq_len: usize, batch: usize) -> Self {
        Self::with_dropout(model, seq_len, batch, 0.0)
    }

    /// Buffers as [`Workspace::new`], plus a dropout mask after every layer when `dropout` > 0.
    pub fn with_dropout(model: &CharLm, seq_len: usize, batch: usize, dropout: f64) -> Self {
        let n = seq_len * batch;
        let h = model.hidden;
        Workspace {
            xs: vec![0; n],
            ys: vec![0; n],
            batch,
            layers: (0..model.layers)
                .map(|_| CellBuffers::new(model.cell.spec(), h, seq_len, batch))
                .collect(),
            z: Array2::zeros((n, model.vocab)),
            embedded: Array2::zeros((n, model.embed.unwrap_or(0))),
            dropout: (0..model.layers)
                .map(|_| {
                    (dropout > 0.0).then(|| Dropout {
                        mask: Array2::zeros((n, h)),
                        out: Array2::zeros((n, h)),
                    })
                })
                .collect(),
            products: Products::new(Precision::F32),
        }
    }

    /// Runs every matrix product of the chunk at `precision` from the next pass on (the
    /// embedding gather, gate math, softmax and loss stay f32).
    pub fn set_precision(&mut self, precision: Precision) {
        self.products.precision = precision;
        for buf in &mut self.layers {
            buf.set_precision(precision);
        }
    }

    /// Draws fresh dropout masks: each element is 0 with probability `p` and 1/(1−p)
    /// otherwise (inverted dropout, so evaluation and sampling use the weights as they are).
    /// Layer l's mask is drawn from `rng_for(dropout_key(l, L))` alone. Does nothing without
    /// masks.
    pub fn draw_dropout<R: Rng>(&mut self, p: f64, mut rng_for: impl FnMut([u8; 8]) -> R) {
        let layers = self.layers.len();
        for (l, d) in self.dropout.iter_mut().enumerate() {
            if let Some(d) = d {
                let mask = d.mask.as_slice_mut().expect("standard layout");
                draw_mask(mask, p, &mut rng_for(dropout_key(l, layers)));
            }
        }
    }

    /// Copies the last state of every layer (h_T, and c_T for an LSTM) into `state` (L, B, S).
    pub fn last_state(&self, state: &mut ArrayViewMut3<F>) {
        for (buf, mut s) in self.layers.iter().zip(state.outer_iter_mut()) {
            buf.get_state(&mut s);
        }
    }
}

/// The key of layer l's dropout mask in a model of `layers` layers: the mask before the head
/// keeps the key it had when it was the only one (`dropout`), so earlier runs reproduce;
/// the masks between layers are `dropl<l>`.
pub fn dropout_key(l: usize, layers: usize) -> [u8; 8] {
    if l + 1 == layers {
        *b"dropout\0"
    } else {
        layer_key(*b"dropl", l)
    }
}

/// An 8-byte mask key: a 5-byte name, then layer l's number in two decimal digits (units
/// first) and a zero byte.
pub fn layer_key(name: [u8; 5], l: usize) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..5].copy_from_slice(&name);
    key[5] = b'0' + (l % 10) as u8;
    key[6] = b'0' + (l / 10 % 10) as u8;
    key
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

/// What the head reads: the last layer's outputs, masked when it has dropout.
fn top_outputs<'a, F: Float>(
    layers: &'a [CellBuffers<F>],
    dropout: &'a [Option<Dropout<F>>],
) -> ArrayView2<'a, F> {
    match dropout.last() {
        Some(Some(d)) => d.out.view(),
        _ => layers.last().expect("at least one layer").outputs(),
    }
}

impl CharLm {
    /// A one-layer vanilla model (the tutorial's).
    pub fn vanilla(vocab: usize, hidden: usize) -> Self {
        CharLm {
            vocab,
            hidden,
            cell: CellKind::Rnn,
            layers: 1,
            embed: None,
        }
    }

    /// S, the width of one stream's carried state in one layer.
    pub fn state_width(&self) -> usize {
        self.cell.state_width(self.hidden)
    }

    /// A zero carried state (L, B, S) for `batch` streams.
    pub fn zero_state<F: Float>(&self, batch: usize) -> Array3<F> {
        Array3::zeros((self.layers, batch, self.state_width()))
    }

    /// Training FLOPs per character: Σ over layers of 6·g·H·(I + H) (I = 0 for layer 0 without
    /// an explicit embedding, whose input product is a gather; E with one; H above) plus 6·H·V
    /// for the head.
    pub fn flops_per_char(&self) -> f64 {
        let h = self.hidden;
        let layers: f64 = (0..self.layers)
            .map(|l| {
                let input = match l {
                    0 => self.embed.unwrap_or(0),
                    _ => h,
                };
                self.cell.flops_per_char(input, h)
            })
            .sum();
        layers + 6.0 * (h * self.vocab) as f64
    }

    /// Forward over one chunk: every layer's states and caches in `ws`, and the logits
    /// `ws.z`. `state`: (L, B, S) the carried state at the chunk's start.
    ///
    /// Per layer: the input projection of all T·B rows (a row gather for layer 0, ONE gemm
    /// (T·B, H)·(H, g·H) above, whose sums start at b; with an explicit embedding, layer
    /// 0 gathers the table's rows and multiplies them by its W_ih in ONE gemm too), then the
    /// cell's recurrence.
    /// The logits are ONE (T·B, H)·(H, V) gemm whose sums start at b_y. With dropout,
    /// the layer above (or the head) reads the masked outputs; the recurrence itself is never
    /// masked.
    pub fn forward<F: Float>(&self, p: &[F], state: &ArrayView3<F>, ws: &mut Workspace<F>) {
        self.forward_packed(p, None, state, ws);
    }

    /// [`Self::forward`], its bf16 products on the weights `packs` holds packed from `p` (when
    /// given), which they do not pack again: the same bits.
    pub fn forward_packed<F: Float>(
        &self,
        p: &[F],
        packs: Option<&WeightPacks>,
        state: &ArrayView3<F>,
        ws: &mut Workspace<F>,
    ) {
        let packed = |t: Tensor, transposed: bool| packs.map(|k| k.get(t, transposed));
        let w = self.weights(p);
        let cell = self.cell.cell::<F>();
        let gh = self.cell.gates() * self.hidden;
        for l in 0..self.layers {
            let lw = &w.layers[l];
            let (below, rest) = ws.layers.split_at_mut(l);
            let buf = &mut rest[0];
            buf.set_state(&state.index_axis(Axis(0), l));
            let b = lw.b.as_slice().expect("contiguous bias");
            if l == 0 && self.embed.is_none() {
                let table = lw.w_ih.as_slice().expect("contiguous W_ih");
                let n = ws.xs.len() * gh;
                gather_rows_plus(&mut buf.gates[..n], table, &ws.xs, b);
            } else {
                let input = if l == 0 {
                    for (mut row, &x) in ws.embedded.outer_iter_mut().zip(&ws.xs) {
                        row.assign(&w.embed.row(x as usize));
                    }
                    ws.embedded.view()
                } else {
                    match &ws.dropout[l - 1] {
                        Some(d) => d.out.view(),
                        None => below[l - 1].outputs(),
                    }
                };
                let rows = input.nrows();
                let mut a = crate::linalg::rows_mut(&mut buf.gates, gh, 0, rows);
                let w_ih = packed(Tensor::WIh(l), false);
                ws.products
                    .mul_packed_onto_row(&input, &lw.w_ih, w_ih, b, &mut a);
            }
            let rec = Recurrent {
                w_hh: lw.w_hh.view(),
                b_hn: lw.b_hn.view(),
                packed: packed(Tensor::WHh(l), false),
            };
            cell.forward(&rec, buf);
            if let Some(d) = &mut ws.dropout[l] {
                ndarray::Zip::from(&mut d.out)
                    .and(&buf.outputs())
                    .and(&d.mask)
                    .for_each(|o, &h, &m| *o = h * m);
            }
        }
        let top = top_outputs(&ws.layers, &ws.dropout);
        let w_hy = packed(Tensor::WHy, false);
        let b_y = w.b_y.as_slice().expect("contiguous b_y");
        ws.products
            .mul_packed_onto_row(&top, &w.w_hy, w_hy, b_y, &mut ws.z.view_mut());
    }

    /// Summed cross-entropy (nats) of the chunk, turning `ws.z` into ∂(scale·loss)/∂logits.
    pub fn loss_grad<F: Float>(&self, ws: &mut Workspace<F>, scale: F) -> F {
        let z = ws.z.as_slice_mut().expect("contiguous logits");
        softmax_xent_rows(z, self.vocab, &ws.ys, scale)
    }

    /// Summed cross-entropy (nats) of the chunk, forward-only (`ws.z` untouched).
    pub fn loss<F: Float>(&self, ws: &Workspace<F>) -> F {
        xent_rows(
            ws.z.as_slice().expect("contiguous logits"),
            self.vocab,
            &ws.ys,
        )
    }

    /// Backward over one chunk after [`Self::forward`] and [`Self::loss_grad`]; gradients are
    /// ADDED into the flat buffer `g`.
    ///
    /// The head: dW_hy = Hᵀ·dZ and dH = dZ·W_hyᵀ, one gemm each over all T·B rows. Then each
    /// layer from the top: its cell's backward, the bias gradient, dW_ih (a scatter-add of
    /// rows for layer 0, ONE gemm Xᵀ·dA above) and the gradient to the layer below (ONE gemm
    /// dA·W_ihᵀ). Dropout masks multiply the gradients that flow back through them. With an
    /// explicit embedding, layer 0 is as a layer above, and the gradient of its input is
    /// scatter-added into the table's rows.
    pub fn backward<F: Float>(&self, p: &[F], g: &mut [F], ws: &mut Workspace<F>) {
        self.backward_packed(p, None, g, ws);
    }

    /// [`Self::backward`] on the packings of [`Self::forward_packed`].
    pub fn backward_packed<F: Float>(
        &self,
        p: &[F],
        packs: Option<&WeightPacks>,
        g: &mut [F],
        ws: &mut Workspace<F>,
    ) {
        let packed = |t: Tensor, transposed: bool| packs.map(|k| k.get(t, transposed));
        let w = self.weights(p);
        let mut gw = self.weights_mut(g);
        let cell = self.cell.cell::<F>();
        let (h, gh) = (self.hidden, self.cell.gates() * self.hidden);
        let top = self.layers - 1;
        ws.products.mul(
            &top_outputs(&ws.layers, &ws.dropout).t(),
            &ws.z.view(),
            true,
            &mut gw.w_hy,
        );
        add_rows(
            gw.b_y.as_slice_mut().expect("contiguous b_y gradient"),
            ws.z.as_slice().expect("contiguous logits"),
        );
        {
            let rows = ws.z.nrows();
            let mut dhs = crate::linalg::rows_mut(&mut ws.layers[top].dhs, h, 0, rows);
            let w_hy = packed(Tensor::WHy, true);
            ws.products
                .mul_packed(&ws.z.view(), &w.w_hy.t(), w_hy, false, &mut dhs);
            if let Some(d) = &ws.dropout[top] {
                dhs.zip_mut_with(&d.mask, |g, &m| *g *= m);
            }
        }
        for l in (0..self.layers).rev() {
            let (below, rest) = ws.layers.split_at_mut(l);
            let buf = &mut rest[0];
            let lw = &w.layers[l];
            let gl = &mut gw.layers[l];
            let rec = Recurrent {
                w_hh: lw.w_hh.view(),
                b_hn: lw.b_hn.view(),
                packed: packed(Tensor::WHh(l), true),
            };
            let mut rec_grads = RecurrentGrads {
                w_hh: gl.w_hh.view_mut(),
                b_hn: gl.b_hn.view_mut(),
            };
            cell.backward(&rec, &mut rec_grads, buf);
            let db = gl.b.as_slice_mut().expect("contiguous bias gradient");
            add_rows(db, &buf.gates[..ws.xs.len() * gh]);
            let rows = ws.xs.len();
            let da = crate::linalg::rows(&buf.gates, gh, 0, rows);
            if l == 0 && self.embed.is_none() {
                // The transpose of the gather: a scatter-add of rows.
                let table = gl.w_ih.as_slice_mut().expect("contiguous W_ih gradient");
                scatter_add_rows(table, &buf.gates[..rows * gh], &ws.xs, gh);
                continue;
            }
            let input = if l == 0 {
                ws.embedded.view()
            } else {
                match &ws.dropout[l - 1] {
                    Some(d) => d.out.view(),
                    None => below[l - 1].outputs(),
                }
            };
            if self.cell.spec().hidden_side_grads() {
                ws.products.mul(&input.t(), &da, true, &mut gl.w_ih);
            } else {
                // dA is what the cell's dW_hh product just multiplied by.
                buf.products.mul_same_b(&input.t(), &da, true, &mut gl.w_ih);
            }
            if l == 0 {
                // The embedded inputs' gradient, then the transpose of their gather.
                let w_ih = packed(Tensor::WIh(l), true);
                ws.products
                    .mul_packed(&da, &lw.w_ih.t(), w_ih, false, &mut ws.embedded.view_mut());
                let e = ws.embedded.ncols();
                let table = gw
                    .embed
                    .as_slice_mut()
                    .expect("contiguous embedding gradient");
                let d = ws.embedded.as_slice().expect("contiguous embedded rows");
                scatter_add_rows(table, d, &ws.xs, e);
            } else {
                let below = &mut below[l - 1];
                let mut dx = crate::linalg::rows_mut(&mut below.dhs, h, 0, rows);
                let w_ih = packed(Tensor::WIh(l), true);
                ws.products
                    .mul_packed(&da, &lw.w_ih.t(), w_ih, false, &mut dx);
                if let Some(d) = &ws.dropout[l - 1] {
                    dx.zip_mut_with(&d.mask, |g, &m| *g *= m);
                }
            }
        }
    }

    /// Forward, loss and backward of one chunk; returns the summed loss (nats) and adds
    /// ∂(scale·loss)/∂p into `g`. `state`: (L, B, S), the carried state on entry and the
    /// chunk's last state on return. `packs`: the weights of `p` packed for the bf16 products
    /// ([`WeightPacks`]), or `None` to pack them here.
    pub fn forward_backward<F: Float>(
        &self,
        p: &[F],
        packs: Option<&WeightPacks>,
        g: &mut [F],
        state: &mut ArrayViewMut3<F>,
        ws: &mut Workspace<F>,
        scale: F,
    ) -> F {
        self.forward_packed(p, packs, &state.view(), ws);
        ws.last_state(state);
        let loss = self.loss_grad(ws, scale);
        self.backward_packed(p, packs, g, ws);
        loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cell's spec agrees with its kind: the name the model files store, a name per
    /// gate block, a forget gate among them.
    #[test]
    fn every_cell_spec_agrees_with_its_kind() {
        for kind in CellKind::ALL {
            let spec = kind.spec();
            let stored = serde_json::to_string(&kind).unwrap();
            assert_eq!(stored, format!("\"{}\"", spec.name()), "{kind:?}");
            assert_eq!(spec.gate_names().len(), spec.gates(), "{kind:?}");
            assert!(
                spec.forget_gate().is_none_or(|k| k < spec.gates()),
                "{kind:?}"
            );
            assert_eq!(spec.gates(), kind.cell::<f64>().gates(), "{kind:?}");
        }
        assert_eq!(CellKind::Lstm.spec().forget_gate(), Some(1));
        assert_eq!(CellKind::Gru.gate_names(), ["r", "z", "n"]);
    }
}
