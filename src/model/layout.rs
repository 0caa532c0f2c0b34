//! The ONE parameter layout of a model: which tensors there are, their shapes, and where they
//! lie in the flat buffer. The optimizer, clipping, gradient reduction, model files, `inspect`
//! and the FLOP model all read it from here.
//!
//! Order: with an explicit embedding ([`CharLm::embed`] = E), first its table (V, E); then for
//! each layer l, W_ih (I, g·H) with I = V for layer 0 without an embedding (a table gathered by
//! symbol: the embedding folded into the layer), I = E with one, and I = H above, W_hh (H, g·H), b (g·H), and for a cell
//! with a hidden-side bias ([`super::CellSpec::hidden_bias`], the GRU's) b_hn (H); then the head W_hy (H, V) and b_y (V). Gate blocks sit side by side in the
//! columns, in PyTorch's order (GRU r, z, n; LSTM i, f, g, o).

use ndarray::{ArrayView1, ArrayView2, ArrayViewMut1, ArrayViewMut2};

use super::CharLm;

/// One tensor of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tensor {
    /// The explicit embedding table (V, E), one row per symbol (`nn.Embedding`'s weight).
    Embed,
    /// Layer l's input weights (I, g·H).
    WIh(usize),
    /// Layer l's recurrent weights (H, g·H).
    WHh(usize),
    /// Layer l's bias (g·H).
    B(usize),
    /// Layer l's hidden-side bias of the GRU's n gate (H).
    BHn(usize),
    /// The output weights (H, V).
    WHy,
    /// The output bias (V).
    BY,
}

impl Tensor {
    /// The name in model files: `embed`, `layers.<l>.W_ih`, `layers.<l>.W_hh`, `layers.<l>.b`,
    /// `layers.<l>.b_hn`, `W_hy`, `b_y`.
    pub fn name(&self) -> String {
        match self {
            Tensor::Embed => "embed".into(),
            Tensor::WIh(l) => format!("layers.{l}.W_ih"),
            Tensor::WHh(l) => format!("layers.{l}.W_hh"),
            Tensor::B(l) => format!("layers.{l}.b"),
            Tensor::BHn(l) => format!("layers.{l}.b_hn"),
            Tensor::WHy => "W_hy".into(),
            Tensor::BY => "b_y".into(),
        }
    }

    /// The name a version-1 model file (one vanilla layer) gave this tensor.
    pub fn v1_name(&self) -> Option<&'static str> {
        match self {
            Tensor::WIh(0) => Some("W_xh"),
            Tensor::WHh(0) => Some("W_hh"),
            Tensor::B(0) => Some("b_h"),
            Tensor::WHy => Some("W_hy"),
            Tensor::BY => Some("b_y"),
            _ => None,
        }
    }
}

/// One named tensor inside the flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Which tensor.
    pub tensor: Tensor,
    /// Name in model files (see [`Tensor::name`]).
    pub name: String,
    /// Shape, row-major: `[rows, cols]` for matrices, `[len]` for biases.
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

    /// Where the tensor lies in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

impl CharLm {
    /// I, the width of layer l's input: V for layer 0 (the folded embedding, gathered by
    /// symbol), E with an explicit embedding, H above.
    pub fn input_width(&self, l: usize) -> usize {
        match (l, self.embed) {
            (0, Some(e)) => e,
            (0, None) => self.vocab,
            _ => self.hidden,
        }
    }

    /// (tensor, rows, cols) in layout order; biases have rows = 0 (a vector of `cols`).
    fn entries(&self) -> impl Iterator<Item = (Tensor, usize, usize)> + '_ {
        let (v, h, g) = (self.vocab, self.hidden, self.cell.gates());
        let hn = self.cell.hidden_bias(h);
        let embed = self.embed.map(|e| (Tensor::Embed, v, e));
        embed
            .into_iter()
            .chain((0..self.layers).flat_map(move |l| {
                let input = self.input_width(l);
                [
                    Some((Tensor::WIh(l), input, g * h)),
                    Some((Tensor::WHh(l), h, g * h)),
                    Some((Tensor::B(l), 0, g * h)),
                    (hn > 0).then_some((Tensor::BHn(l), 0, hn)),
                ]
                .into_iter()
                .flatten()
            }))
            .chain([(Tensor::WHy, h, v), (Tensor::BY, 0, v)])
    }

    /// The flat parameter layout (see the module documentation).
    pub fn layout(&self) -> Vec<ParamSpec> {
        let mut offset = 0;
        self.entries()
            .map(|(tensor, r, c)| {
                let shape = if r == 0 { vec![c] } else { vec![r, c] };
                let spec = ParamSpec {
                    tensor,
                    name: tensor.name(),
                    shape,
                    offset,
                };
                offset += spec.len();
                spec
            })
            .collect()
    }

    /// Where `tensor` lies in the flat buffer.
    pub fn range_of(&self, tensor: Tensor) -> std::ops::Range<usize> {
        let mut offset = 0;
        for (t, r, c) in self.entries() {
            let len = r.max(1) * c;
            if t == tensor {
                return offset..offset + len;
            }
            offset += len;
        }
        panic!("{tensor:?} is not a tensor of this model")
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.entries().map(|(_, r, c)| r.max(1) * c).sum()
    }

    /// Views of the named tensors inside the flat buffer `p` (len = [`Self::num_params`]).
    pub fn weights<'a, F>(&self, mut p: &'a [F]) -> Weights<'a, F> {
        let mut layers = Vec::with_capacity(self.layers);
        let mut take = |len: usize| {
            let (a, rest) = p.split_at(len);
            p = rest;
            a
        };
        let (v, h, g) = (self.vocab, self.hidden, self.cell.gates());
        let hn = self.cell.hidden_bias(h);
        let e = self.embed.unwrap_or(0);
        let embed = ArrayView2::from_shape((v, e), take(v * e)).expect("layout");
        for l in 0..self.layers {
            let input = self.input_width(l);
            layers.push(LayerWeights {
                w_ih: ArrayView2::from_shape((input, g * h), take(input * g * h)).expect("layout"),
                w_hh: ArrayView2::from_shape((h, g * h), take(h * g * h)).expect("layout"),
                b: ArrayView1::from(take(g * h)),
                b_hn: ArrayView1::from(take(hn)),
            });
        }
        Weights {
            embed,
            layers,
            w_hy: ArrayView2::from_shape((h, v), take(h * v)).expect("layout"),
            b_y: ArrayView1::from(take(v)),
        }
    }

    /// Mutable views of the named tensors inside the flat buffer `p`.
    pub fn weights_mut<'a, F>(&self, mut p: &'a mut [F]) -> WeightsMut<'a, F> {
        let mut layers = Vec::with_capacity(self.layers);
        let mut take = |len: usize| {
            let (a, rest) = std::mem::take(&mut p).split_at_mut(len);
            p = rest;
            a
        };
        let (v, h, g) = (self.vocab, self.hidden, self.cell.gates());
        let hn = self.cell.hidden_bias(h);
        let e = self.embed.unwrap_or(0);
        let embed = ArrayViewMut2::from_shape((v, e), take(v * e)).expect("layout");
        for l in 0..self.layers {
            let input = self.input_width(l);
            layers.push(LayerWeightsMut {
                w_ih: ArrayViewMut2::from_shape((input, g * h), take(input * g * h))
                    .expect("layout"),
                w_hh: ArrayViewMut2::from_shape((h, g * h), take(h * g * h)).expect("layout"),
                b: ArrayViewMut1::from(take(g * h)),
                b_hn: ArrayViewMut1::from(take(hn)),
            });
        }
        WeightsMut {
            embed,
            layers,
            w_hy: ArrayViewMut2::from_shape((h, v), take(h * v)).expect("layout"),
            b_y: ArrayViewMut1::from(take(v)),
        }
    }
}

/// Read-only views of one layer's parameters (or gradients).
pub struct LayerWeights<'a, F> {
    /// (I, g·H) input weights; for layer 0 without an explicit embedding, row x is symbol x's
    /// input projection.
    pub w_ih: ArrayView2<'a, F>,
    /// (H, g·H) recurrent weights.
    pub w_hh: ArrayView2<'a, F>,
    /// (g·H) bias.
    pub b: ArrayView1<'a, F>,
    /// (H) the GRU's hidden-side n bias (empty for other cells).
    pub b_hn: ArrayView1<'a, F>,
}

/// Read-only views of all parameters (or gradients) inside a flat buffer.
pub struct Weights<'a, F> {
    /// (V, E) the explicit embedding table; (V, 0) without one.
    pub embed: ArrayView2<'a, F>,
    /// The recurrent layers, bottom first.
    pub layers: Vec<LayerWeights<'a, F>>,
    /// (H, V) output weights.
    pub w_hy: ArrayView2<'a, F>,
    /// (V) output bias.
    pub b_y: ArrayView1<'a, F>,
}

/// Mutable views of one layer's parameters (or gradients).
pub struct LayerWeightsMut<'a, F> {
    /// (I, g·H)
    pub w_ih: ArrayViewMut2<'a, F>,
    /// (H, g·H)
    pub w_hh: ArrayViewMut2<'a, F>,
    /// (g·H)
    pub b: ArrayViewMut1<'a, F>,
    /// (H) or empty
    pub b_hn: ArrayViewMut1<'a, F>,
}

/// Mutable views of all parameters (or gradients) inside a flat buffer.
pub struct WeightsMut<'a, F> {
    /// (V, E), or (V, 0) without an explicit embedding
    pub embed: ArrayViewMut2<'a, F>,
    /// The recurrent layers, bottom first.
    pub layers: Vec<LayerWeightsMut<'a, F>>,
    /// (H, V)
    pub w_hy: ArrayViewMut2<'a, F>,
    /// (V)
    pub b_y: ArrayViewMut1<'a, F>,
}
