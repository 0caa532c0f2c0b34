//! What every recurrent cell provides: what it is made of ([`CellSpec`]) and its recurrence
//! ([`Cell`]), and the buffers and products the recurrences share. This file knows no cell;
//! the model chooses among them ([`super::CellKind`]).
//!
//! A cell maps the input-side pre-activations of a chunk (x_t·W_ih + b for all T·B rows,
//! computed by the layer around it as one gather or one gemm) and a carried state to the
//! hidden states h_1..h_T, keeping what its backward needs. Its backward turns ∂L/∂h_t into
//! ∂L/∂(input-side pre-activations), accumulating its own recurrent gradients on the way.
//! Everything that is not on the recurrence (the input product, dW_ih, the gradient to the
//! layer below) belongs to the layer ([`super::CharLm`]), so each cell's file holds only its
//! recurrence and its [`CellSpec`].
//!
//! Shapes: B streams, T steps, H hidden, g gate blocks; chunks are time-major, so the rows of
//! step t are `t·B .. (t+1)·B`.

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use crate::linalg::bf16::BfPacked;
use crate::linalg::packed::Packed;
use crate::linalg::{gemm, rows, Float, Precision, Products};

/// The recurrent weights a cell reads.
pub struct Recurrent<'a, F> {
    /// (H, g·H) recurrent weights, gate blocks side by side.
    pub w_hh: ArrayView2<'a, F>,
    /// (H) GRU's b_hn (empty for other cells).
    pub b_hn: ArrayView1<'a, F>,
    /// The weight of this pass's per-step products, W_hh (forward) or W_hhᵀ (backward),
    /// already packed for bf16 products (an entry of [`super::WeightPacks`]); `None`: the
    /// pass packs it itself.
    pub packed: Option<&'a BfPacked>,
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
    /// W_hh (forward) or W_hhᵀ (backward), packed once per pass for the per-step products.
    pub weight: StepWeight<F>,
    /// The chunk-wide products of the cell (∂L/∂W_hh) at the run's precision.
    pub products: Products,
}

/// The weight of the per-step products, W_hh (forward) or W_hhᵀ (backward), in the form the
/// pass multiplies by: packed in f32 ([`crate::linalg::packed`]), packed in bf16
/// ([`crate::linalg::bf16`]) here or by the caller ([`Recurrent::packed`]), or as it is, for
/// BLAS: an f32 pass of a single step (sampling, T = B = 1) does not pack a weight it would
/// use once.
pub struct StepWeight<F> {
    /// The precision of the products.
    pub precision: Precision,
    form: Form,
    f32: Packed<F>,
    bf16: BfPacked,
}

/// Which form a [`StepWeight`] holds the current pass's weight in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Blas,
    F32,
    Bf16,
    /// bf16, on the caller's packing.
    Shared,
}

impl<F: Float> StepWeight<F> {
    fn new(precision: Precision) -> Self {
        StepWeight {
            precision,
            form: Form::Blas,
            f32: Packed::new(),
            bf16: BfPacked::default(),
        }
    }

    /// Takes `w` (K, N) as the weight of a pass of `steps` steps; `shared`: the caller has it
    /// packed for bf16 products.
    fn pack(&mut self, w: &ArrayView2<F>, steps: usize, shared: bool) {
        self.form = match self.precision {
            Precision::Bf16 if shared => Form::Shared,
            Precision::Bf16 => {
                F::pack_bf16(w, &mut self.bf16);
                Form::Bf16
            }
            Precision::F32 if steps > 1 => {
                self.f32.pack(w);
                Form::F32
            }
            Precision::F32 => Form::Blas,
        };
    }

    /// y (rows, N) = x (rows, K) · the weight, plus y's values when `accumulate`; `w` is the
    /// weight as it is (read by the BLAS form only), `shared` the caller's packing of it (read
    /// when the pass took it).
    pub fn mul(
        &self,
        x: &[F],
        y: &mut [F],
        accumulate: bool,
        w: &ArrayView2<F>,
        shared: Option<&BfPacked>,
    ) {
        let (k, n) = w.dim();
        let rows = x.len() / k;
        let x = ArrayView2::from_shape((rows, k), x).expect("(rows, K)");
        let mut y = ArrayViewMut2::from_shape((rows, n), y).expect("(rows, N)");
        match self.form {
            Form::F32 => self.f32.mul(
                x.as_slice().expect("standard layout"),
                y.as_slice_mut().expect("standard layout"),
                accumulate,
            ),
            Form::Bf16 => F::gemm_bf16(&x, &self.bf16, accumulate, &mut y),
            Form::Shared => {
                let packed = shared.expect("the packing the pass was started with");
                debug_assert_eq!(packed.dim(), (k, n), "the shared packing's shape");
                F::gemm_bf16(&x, packed, accumulate, &mut y)
            }
            Form::Blas => {
                let beta = if accumulate { F::one() } else { F::zero() };
                gemm(F::one(), &x, w, beta, &mut y);
            }
        }
    }
}

impl<F: Float> CellBuffers<F> {
    /// Buffers for the cell `spec` with H = `hidden`, T = `steps`, B = `batch`, products in
    /// f32.
    pub fn new(spec: &dyn CellSpec, hidden: usize, steps: usize, batch: usize) -> Self {
        let (n, g) = (steps * batch, spec.gates());
        // A state wider than h is (h, c): the cell states get their own rows.
        let cell_state = spec.state_width(hidden) > hidden;
        let zeros = |len: usize| vec![F::zero(); len];
        CellBuffers {
            batch,
            hidden,
            gates: zeros(n * g * hidden),
            hs: zeros((n + batch) * hidden),
            cs: zeros(if cell_state { (n + batch) * hidden } else { 0 }),
            aux: zeros(n * spec.cache_width(hidden)),
            step: zeros(batch * g * hidden),
            dgh: zeros(if spec.hidden_side_grads() {
                n * g * hidden
            } else {
                0
            }),
            dhs: zeros(n * hidden),
            weight: StepWeight::new(Precision::F32),
            products: Products::new(Precision::F32),
        }
    }

    /// Runs this layer's products at `precision` from the next pass on.
    pub fn set_precision(&mut self, precision: Precision) {
        self.weight.precision = precision;
        self.products.precision = precision;
    }

    /// Starts a forward pass: packs W_hh once for its per-step products (unless `w` brings it
    /// packed).
    pub fn pack_forward(&mut self, w: &Recurrent<F>) {
        let steps = self.steps();
        self.weight.pack(&w.w_hh, steps, w.packed.is_some());
    }

    /// Starts a backward pass: packs W_hhᵀ once for its per-step products (unless `w` brings
    /// it packed), and starts staging ∂L/∂W_hh's right operand ([`step_grad`]).
    pub fn pack_backward(&mut self, w: &Recurrent<F>) {
        let steps = self.steps();
        self.weight.pack(&w.w_hh.t(), steps, w.packed.is_some());
        self.products.stage(steps * self.batch, w.w_hh.ncols());
    }

    /// h_{t−1}·W_hh for the B streams at step t (t from 0), ONE product (B, H)·(H, g·H):
    /// into `step`, or added to the step's rows of `gates` with `into_gates`.
    pub fn recurrent_product(&mut self, t: usize, w: &Recurrent<F>, into_gates: bool) {
        let (b, h, gh) = (self.batch, self.hidden, w.w_hh.ncols());
        let out = if into_gates {
            &mut self.gates[t * b * gh..(t + 1) * b * gh]
        } else {
            &mut self.step[..b * gh]
        };
        let prev = &self.hs[t * b * h..(t + 1) * b * h];
        self.weight.mul(prev, out, into_gates, &w.w_hh, w.packed);
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

/// What a cell is made of, whatever the float type: its names, its gates, its state and cache
/// widths, its parameters, its cost. Each cell's file implements it beside its math, and
/// nothing outside that file special-cases a cell.
pub trait CellSpec: Sync {
    /// The cell's name on the command line and in model files (`gru`): the lowercase name of
    /// its [`super::CellKind`].
    fn name(&self) -> &'static str;

    /// A reader's name for the cell (`GRU`), for `charrnn inspect`.
    fn long_name(&self) -> &'static str;

    /// The names of the gate blocks, in their order in W_ih, W_hh and b (the GRU's `r z n`);
    /// `[""]` for a cell of one unnamed block.
    fn gate_names(&self) -> &'static [&'static str];

    /// g, the gate blocks of width H side by side in W_ih, W_hh and b: one per name.
    fn gates(&self) -> usize {
        self.gate_names().len()
    }

    /// The gate block of a forget gate, whose bias starts at 1 whatever the initialisation
    /// (char-rnn's choice: the cell remembers from the start); default none.
    fn forget_gate(&self) -> Option<usize> {
        None
    }

    /// Width of the carried state of one stream (default H; an LSTM's (h, c) is 2H).
    fn state_width(&self, hidden: usize) -> usize {
        hidden
    }

    /// Floats per row (stream and step) that forward keeps for backward in
    /// [`CellBuffers::aux`], besides the gate activations and the states (default 0).
    fn cache_width(&self, _hidden: usize) -> usize {
        0
    }

    /// True when the gradients of the hidden-side pre-activations differ from the input
    /// side's, so backward needs [`CellBuffers::dgh`] (the GRU's n gate); default false.
    fn hidden_side_grads(&self) -> bool {
        false
    }

    /// Length of a hidden-side bias the cell keeps apart from b (the GRU's b_hn: H; default
    /// 0). With it, a layer's parameters are W_ih (I, g·H), W_hh (H, g·H), b (g·H) and this
    /// bias ([`super::layout`]).
    fn hidden_bias(&self, _hidden: usize) -> usize {
        0
    }

    /// Training FLOPs per character of one layer with input width `input` (0 for a layer
    /// whose input product is a row gather): 6·g·H·(I + H), forward 2·g·H·(I + H) and twice
    /// that backward. The element-wise gate math is not counted.
    fn flops_per_char(&self, input: usize, hidden: usize) -> f64 {
        6.0 * (self.gates() * hidden) as f64 * (input + hidden) as f64
    }
}

/// A recurrent cell: its forward and backward over a whole chunk, side by side in one file.
pub trait Cell<F: Float>: CellSpec {
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

/// The end of backward step t, once `d` (B, g·H) holds the step's hidden-side pre-activation
/// gradients: stages them as rows t·B.. of ∂L/∂W_hh's right operand ([`accumulate_w_hh`])
/// while they are in cache, and for t > 0 carries them to h_{t−1}, dprev (B, H) += d·W_hhᵀ
/// (ONE product on the weight of [`CellBuffers::pack_backward`]).
pub fn step_grad<F: Float>(
    weight: &StepWeight<F>,
    products: &mut Products,
    w: &Recurrent<F>,
    t: usize,
    d: &[F],
    dprev: Option<&mut [F]>,
) {
    products.stage_rows(t * d.len() / w.w_hh.ncols(), d);
    if let Some(dprev) = dprev {
        weight.mul(d, dprev, true, &w.w_hh.t(), w.packed);
    }
}

/// ∂L/∂W_hh += Σ_t h_{t−1}ᵀ·d_t as ONE product over all n = T·B rows: `hs` ((T+1)·B, H)
/// holds h_0..h_T, `d` (T·B, g·H) the hidden-side pre-activation gradients, which
/// [`step_grad`] staged step by step.
pub fn accumulate_w_hh<F: Float>(
    products: &mut Products,
    hs: &[F],
    d: &[F],
    hidden: usize,
    n: usize,
    dw_hh: &mut ArrayViewMut2<F>,
) {
    let gh = dw_hh.ncols();
    products.mul_staged(&rows(hs, hidden, 0, n).t(), &rows(d, gh, 0, n), true, dw_hh);
}
