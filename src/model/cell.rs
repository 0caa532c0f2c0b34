//! What every recurrent cell provides, and the choice of cell.
//!
//! A cell maps the input-side pre-activations of a chunk (x_t·W_ih + b for all T·B rows,
//! computed by the layer around it as one gather or one gemm) and a carried state to the
//! hidden states h_1..h_T, keeping what its backward needs. Its backward turns ∂L/∂h_t into
//! ∂L/∂(input-side pre-activations), accumulating its own recurrent gradients on the way.
//! Everything that is not on the recurrence (the input product, dW_ih, the gradient to the
//! layer below) belongs to the layer ([`super::CharLm`]), so each cell file holds only its
//! recurrence: [`super::rnn`], [`super::gru`], [`super::lstm`].
//!
//! Shapes: B streams, T steps, H hidden, g gate blocks; chunks are time-major, so the rows of
//! step t are `t·B .. (t+1)·B`.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};
use serde::{Deserialize, Serialize};

use crate::linalg::Float;

/// Which recurrent cell a model uses (PyTorch's formulations and gate orders).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellKind {
    /// The tutorial's vanilla cell: h = tanh(x·W_ih + h·W_hh + b).
    #[default]
    Rnn,
    /// Gated recurrent unit, gates r, z, n (`nn.GRU`).
    Gru,
    /// Long short-term memory, gates i, f, g, o, with a carried cell state (`nn.LSTM`).
    Lstm,
}

impl CellKind {
    /// Every cell kind, in CLI order.
    pub const ALL: [CellKind; 3] = [CellKind::Rnn, CellKind::Gru, CellKind::Lstm];

    /// The cell's name on the command line and in model files.
    pub fn name(self) -> &'static str {
        match self {
            CellKind::Rnn => "rnn",
            CellKind::Gru => "gru",
            CellKind::Lstm => "lstm",
        }
    }

    /// The implementation of this kind.
    pub fn cell<F: Float>(self) -> &'static dyn Cell<F> {
        match self {
            CellKind::Rnn => &super::rnn::Rnn,
            CellKind::Gru => &super::gru::Gru,
            CellKind::Lstm => &super::lstm::Lstm,
        }
    }

    /// g, the gate blocks of width H in W_ih, W_hh and b: 1, 3 or 4.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Gru => 3,
            CellKind::Lstm => 4,
        }
    }

    /// Width of the carried state of one stream: H, or 2H for an LSTM's (h, c).
    pub fn state_width(self, hidden: usize) -> usize {
        match self {
            CellKind::Lstm => 2 * hidden,
            _ => hidden,
        }
    }

    /// Length of the hidden-side bias b_hn that sits inside the reset gate (GRU: H; else 0).
    pub fn hidden_bias(self, hidden: usize) -> usize {
        match self {
            CellKind::Gru => hidden,
            _ => 0,
        }
    }

    /// Training FLOPs per character of one layer with input width `input` (0 for a layer
    /// whose input product is a row gather): 6·g·H·(I + H), forward 2·g·H·(I + H) and twice
    /// that backward. The element-wise gate math is not counted.
    pub fn flops_per_char(self, input: usize, hidden: usize) -> f64 {
        6.0 * (self.gates() * hidden) as f64 * (input + hidden) as f64
    }
}

impl std::fmt::Display for CellKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The recurrent weights a cell reads.
pub struct Recurrent<'a, F> {
    /// (H, g·H) recurrent weights, gate blocks side by side.
    pub w_hh: ArrayView2<'a, F>,
    /// (H) GRU's b_hn (empty for other cells).
    pub b_hn: ArrayView1<'a, F>,
}

/// Where a cell accumulates its recurrent gradients.
pub struct RecurrentGrads<'a, F> {
    /// (H, g·H) ∂L/∂W_hh.
    pub w_hh: ArrayViewMut2<'a, F>,
    /// (H) ∂L/∂b_hn (empty for other cells).
    pub b_hn: ArrayViewMut1<'a, F>,
}

/// One layer's buffers for a chunk of T steps × B streams, allocated once and reused.
pub struct CellBuffers<F> {
    /// B, streams.
    pub batch: usize,
    /// H.
    pub hidden: usize,
    /// (T·B, g·H): on entry to forward the input-side pre-activations x_t·W_ih + b; forward
    /// leaves there what backward needs (gate activations); backward leaves ∂L/∂(input-side
    /// pre-activations).
    pub gates: Vec<F>,
    /// ((T+1)·B, H) hidden states h_0..h_T.
    pub hs: Vec<F>,
    /// ((T+1)·B, H) LSTM cell states c_0..c_T (empty for other cells).
    pub cs: Vec<F>,
    /// (T·B, H) cell-specific cache: GRU h_{t−1}·W_hn + b_hn, LSTM tanh(c_t) (else empty).
    pub aux: Vec<F>,
    /// (B, g·H) scratch: one step's recurrent product (forward) or its gradient carry.
    pub step: Vec<F>,
    /// (T·B, g·H) GRU's ∂L/∂(hidden-side pre-activations), which differ from the input side
    /// in the n block (empty for other cells).
    pub dgh: Vec<F>,
    /// (T·B, H) ∂L/∂h_t for t = 1..T from above (the head or the next layer); consumed.
    pub dhs: Vec<F>,
}

impl<F: Float> CellBuffers<F> {
    /// Buffers for `kind` with H = `hidden`, T = `steps`, B = `batch`.
    pub fn new(kind: CellKind, hidden: usize, steps: usize, batch: usize) -> Self {
        let (n, g) = (steps * batch, kind.gates());
        let lstm = kind == CellKind::Lstm;
        let gru = kind == CellKind::Gru;
        let zeros = |len: usize| vec![F::zero(); len];
        CellBuffers {
            batch,
            hidden,
            gates: zeros(n * g * hidden),
            hs: zeros((n + batch) * hidden),
            cs: zeros(if lstm { (n + batch) * hidden } else { 0 }),
            aux: zeros(if lstm || gru { n * hidden } else { 0 }),
            step: zeros(batch * g * hidden),
            dgh: zeros(if gru { n * g * hidden } else { 0 }),
            dhs: zeros(n * hidden),
        }
    }

    /// T, the steps of the chunk.
    pub fn steps(&self) -> usize {
        self.dhs.len() / (self.batch * self.hidden)
    }

    /// (T·B, H) view of the outputs h_1..h_T.
    pub fn outputs(&self) -> ArrayView2<'_, F> {
        let rows = self.steps() * self.batch;
        crate::linalg::rows(&self.hs, self.hidden, self.batch, self.batch + rows)
    }

    /// Copies the initial state of every stream in: (B, S) with S = H or 2H (h then c).
    pub fn set_state(&mut self, state: &ArrayView2<F>) {
        let (b, h) = (self.batch, self.hidden);
        for (j, row) in state.outer_iter().enumerate() {
            let row = row.to_slice().expect("contiguous state row");
            self.hs[j * h..(j + 1) * h].copy_from_slice(&row[..h]);
            if !self.cs.is_empty() {
                self.cs[j * h..(j + 1) * h].copy_from_slice(&row[h..2 * h]);
            }
        }
        debug_assert_eq!(state.nrows(), b);
    }

    /// Copies the last state (h_T, and c_T for an LSTM) of every stream out into (B, S).
    pub fn get_state(&self, state: &mut ArrayViewMut2<F>) {
        let (b, h) = (self.batch, self.hidden);
        let last = self.steps() * b;
        for (j, mut row) in state.outer_iter_mut().enumerate() {
            let row = row.as_slice_mut().expect("contiguous state row");
            let r = (last + j) * h;
            row[..h].copy_from_slice(&self.hs[r..r + h]);
            if !self.cs.is_empty() {
                row[h..2 * h].copy_from_slice(&self.cs[r..r + h]);
            }
        }
    }
}

/// A recurrent cell: its forward and backward over a whole chunk, side by side in one file.
pub trait Cell<F: Float>: Sync {
    /// Which cell this is.
    fn kind(&self) -> CellKind;

    /// The recurrence over the chunk. On entry `buf.gates` holds the input-side
    /// pre-activations and rows `0..B` of `buf.hs` (and `buf.cs`) the carried state; on return
    /// `buf.hs` (and `buf.cs`) hold h_1..h_T (c_1..c_T), and `buf.gates` / `buf.aux` what
    /// [`Cell::backward`] needs. Per step: ONE gemm (B, H)·(H, g·H), then the fused gate math.
    fn forward(&self, w: &Recurrent<F>, buf: &mut CellBuffers<F>);

    /// Backward over the chunk after [`Cell::forward`]: `buf.dhs` holds ∂L/∂h_t from above;
    /// on return `buf.gates` holds ∂L/∂(input-side pre-activations), and ∂L/∂W_hh (and
    /// ∂L/∂b_hn) have been ADDED into `g`. Per step ONE gemm carries the gradient to
    /// h_{t−1}; ∂L/∂W_hh is ONE (H, T·B)·(T·B, g·H) gemm afterwards. The gradient with
    /// respect to the chunk's initial state is dropped (truncated BPTT).
    fn backward(&self, w: &Recurrent<F>, g: &mut RecurrentGrads<F>, buf: &mut CellBuffers<F>);
}

/// σ(x) = 1 / (1 + e^−x), branch-free (e^−x is clamped inside `exp_m` for f32).
#[inline(always)]
pub fn sigmoid<F: Float>(x: F) -> F {
    F::one() / (F::one() + (-x).exp_m())
}

/// ∂L/∂W_hh += Σ_t h_{t−1}ᵀ·d_t as ONE gemm over all T·B rows: `hs` ((T+1)·B, H) holds
/// h_0..h_T, `d` (T·B, g·H) the hidden-side pre-activation gradients.
pub fn accumulate_w_hh<F: Float>(
    hs: &[F],
    d: &[F],
    hidden: usize,
    rows: usize,
    dw_hh: &mut ArrayViewMut2<F>,
) {
    use crate::linalg::{gemm, rows as view};
    let gh = dw_hh.ncols();
    gemm(
        F::one(),
        &view(hs, hidden, 0, rows).t(),
        &view(d, gh, 0, rows),
        F::one(),
        dw_hh,
    );
}
