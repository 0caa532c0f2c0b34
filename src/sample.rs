//! Generating text one character at a time: temperature, a prime text, a seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::Vocab;
use crate::error::{Error, Result};
use crate::linalg::{softmax_into, Float};
use crate::model::{CharLm, Workspace};

/// How to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Number of symbols to generate (after the prime text).
    pub len: usize,
    /// Softmax temperature; 0 means always take the most likely symbol (argmax).
    pub temperature: f64,
    /// Text fed through the model first (warming the hidden state) and echoed to the output.
    pub prime: String,
    /// Seed of the sampling generator: the same seed gives the same text.
    pub seed: u64,
    /// Sample only among the k most likely symbols (None: all).
    pub top_k: Option<usize>,
    /// Sample only among the most likely symbols whose probabilities add up to at least p
    /// (nucleus sampling; None: all).
    pub top_p: Option<f64>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            len: 500,
            temperature: 1.0,
            prime: String::new(),
            seed: 42,
            top_k: None,
            top_p: None,
        }
    }
}

/// Index of the largest probability (the first one on ties).
pub fn argmax(p: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > p[best] {
            best = i;
        }
    }
    best
}

/// Keeps the `top_k` most likely entries of `p` and then the smallest set of most likely
/// entries whose mass reaches `top_p`, zeroes the rest and renormalises. `order` is scratch of
/// p's length. Ties keep the lower index first, so the result is deterministic.
pub fn truncate(p: &mut [f64], top_k: Option<usize>, top_p: Option<f64>, order: &mut [usize]) {
    if top_k.is_none() && top_p.is_none() {
        return;
    }
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    let mut keep = top_k.unwrap_or(p.len()).clamp(1, p.len());
    if let Some(top_p) = top_p {
        let mut mass = 0.0;
        for (n, &i) in order[..keep].iter().enumerate() {
            mass += p[i];
            if mass >= top_p {
                keep = n + 1;
                break;
            }
        }
    }
    for &i in &order[keep..] {
        p[i] = 0.0;
    }
    let total: f64 = p.iter().sum();
    for v in p.iter_mut() {
        *v /= total;
    }
}

/// Draws an index from the distribution `p` (summing to 1) with one uniform number.
pub fn draw<R: Rng>(p: &[f64], rng: &mut R) -> usize {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    let mut last = 0;
    for (i, &v) in p.iter().enumerate() {
        if v > 0.0 {
            acc += v;
            last = i;
            if u < acc {
                return i;
            }
        }
    }
    // Rounding can leave the cumulative sum just below u; the last possible symbol takes it.
    last
}

/// Generates text from `params`, handing each chunk of UTF-8 (or raw bytes) to `emit` as soon
/// as it is produced. Without a prime text, generation starts from a newline (or, when the
/// vocabulary has none, from a space, else from its first symbol) and a zero hidden state.
pub fn sample<F: Float>(
    model: &CharLm,
    params: &[F],
    vocab: &Vocab,
    opts: &SampleOptions,
    mut emit: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<()> {
    if opts.top_k == Some(0) {
        return Err(Error::config("--top-k", 0, "keep at least 1 symbol"));
    }
    if let Some(tp) = opts.top_p {
        if !(tp > 0.0 && tp <= 1.0) {
            return Err(Error::config(
                "--top-p",
                tp,
                "use a probability mass in (0, 1]",
            ));
        }
    }
    if !(opts.temperature.is_finite() && opts.temperature >= 0.0) {
        return Err(Error::config(
            "--temperature",
            opts.temperature,
            "use a finite number ≥ 0 (0 = argmax)",
        ));
    }
    let io = |e| Error::io("cannot write sample to", "stdout", e);
    let prime = vocab.encode_str(&opts.prime, "prime text")?;
    let start = if prime.is_empty() {
        let fallback = ['\n', ' ']
            .iter()
            .find_map(|&c| vocab.id(c as u32))
            .unwrap_or(0);
        vec![fallback]
    } else {
        prime
    };
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut stepper = Stepper::new(model);
    let mut p = vec![0.0; model.vocab];
    let mut order = vec![0usize; model.vocab];
    let mut out = Vec::with_capacity(8);
    if !opts.prime.is_empty() {
        emit(opts.prime.as_bytes()).map_err(io)?;
    }
    for &x in &start {
        stepper.step(params, x);
    }
    for _ in 0..opts.len {
        let logits = stepper.logits();
        let next = if opts.temperature == 0.0 {
            softmax_into(logits, 1.0, &mut p);
            argmax(&p)
        } else {
            softmax_into(logits, opts.temperature, &mut p);
            truncate(&mut p, opts.top_k, opts.top_p, &mut order);
            draw(&p, &mut rng)
        };
        out.clear();
        vocab.decode_into(next, &mut out);
        emit(&out).map_err(io)?;
        stepper.step(params, next as u32);
    }
    Ok(())
}

/// One stream fed one symbol at a time through the model's own chunk forward with T = B = 1:
/// there is no second copy of the cell math for generation.
pub struct Stepper<F> {
    model: CharLm,
    /// (L, 1, S) the carried state of every layer.
    state: ndarray::Array3<F>,
    ws: Workspace<F>,
}

impl<F: Float> Stepper<F> {
    /// A stream of `model` starting from a zero state.
    pub fn new(model: &CharLm) -> Self {
        Stepper {
            model: *model,
            state: model.zero_state(1),
            ws: Workspace::new(model, 1, 1),
        }
    }

    /// Feeds symbol `x`: advances the state and computes the logits of the next symbol.
    pub fn step(&mut self, params: &[F], x: u32) {
        self.ws.xs[0] = x;
        self.model.forward(params, &self.state.view(), &mut self.ws);
        self.ws.last_state(&mut self.state.view_mut());
    }

    /// (V) logits after the last [`Stepper::step`].
    pub fn logits(&self) -> &[F] {
        self.ws.z.as_slice().expect("contiguous logits")
    }
}
