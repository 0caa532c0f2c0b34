//! Optimizers, learning-rate schedules and gradient clipping, over flat parameter buffers.
//!
//! Every update but Muon's matrices ([`orthogonalize`]) is element-wise, so running it in parallel
//! chunks gives the same bits as running it in one pass. The one reduction, the gradient norm, is summed per fixed chunk
//! and then over chunks in order, so it too is the same whatever the thread count.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::linalg::{multiversion, Float};
use crate::parallel::CHUNK;

mod muon;
mod schedule;

pub use muon::{orthogonalize, Matrix};
pub use schedule::Schedule;

/// The update rule. ε = 1e−8 (the tutorial's) for AdaGrad and RMSProp; Adam's is a setting
/// with that default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Optimizer {
    /// The tutorial's: m += g², p −= lr·g/(√m + ε).
    #[default]
    Adagrad,
    /// SGD with momentum μ: v = μ·v + g, p −= lr·v.
    Sgd {
        /// μ (0 = plain SGD).
        momentum: f64,
    },
    /// RMSProp: m = ρ·m + (1−ρ)·g², p −= lr·g/(√m + ε).
    Rmsprop {
        /// ρ, the decay of the squared-gradient average.
        decay: f64,
    },
    /// Adam: m = β₁m + (1−β₁)g, v = β₂v + (1−β₂)g², p −= lr·(m̂/(√v̂ + ε) + λ·p) with bias
    /// correction; λ > 0 is AdamW's decoupled weight decay.
    Adam {
        /// β₁.
        beta1: f64,
        /// β₂.
        beta2: f64,
        /// λ, decoupled weight decay (0: plain Adam).
        #[serde(default)]
        weight_decay: f64,
        /// ε, added to √v̂ (default 1e−8; left out of model files at the default).
        #[serde(default = "default_eps", skip_serializing_if = "is_default_eps")]
        eps: f64,
    },
    /// Muon ([`orthogonalize`]) for the weight matrices that map hidden states (every layer's W_hh,
    /// and W_ih above layer 0): their gradient's Nesterov momentum, orthogonalised per gate
    /// block, at `matrix_lr`·lr; Adam (β₁, β₂) for the rest (the embedding, biases, head).
    Muon {
        /// μ, the matrices' Nesterov momentum.
        momentum: f64,
        /// The matrices' learning rate as a multiple of lr (Adam's, for the rest).
        matrix_lr: f64,
        /// Adam's β₁ for the rest.
        beta1: f64,
        /// Adam's β₂ for the rest.
        beta2: f64,
        /// Adam's ε for the rest (default 1e−8; left out of model files at the default).
        #[serde(default = "default_eps", skip_serializing_if = "is_default_eps")]
        eps: f64,
    },
}

/// Adam's ε when none is given: 1e−8, the tutorial's (and PyTorch's).
pub const DEFAULT_EPS: f64 = 1e-8;

fn default_eps() -> f64 {
    DEFAULT_EPS
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_default_eps(eps: &f64) -> bool {
    *eps == DEFAULT_EPS
}

impl Optimizer {
    /// Adam with its usual β₁ = 0.9, β₂ = 0.999 and no weight decay.
    pub fn adam() -> Self {
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: DEFAULT_EPS,
        }
    }

    /// Muon with its usual momentum μ = 0.95, the matrices at 5·lr (0.02 at the gated cells'
    /// 4e-3), and Adam's usual β₁ = 0.9, β₂ = 0.999 for the rest.
    pub fn muon() -> Self {
        Optimizer::Muon {
            momentum: 0.95,
            matrix_lr: 5.0,
            beta1: 0.9,
            beta2: 0.999,
            eps: DEFAULT_EPS,
        }
    }

    /// SGD with the usual momentum μ = 0.9.
    pub fn sgd() -> Self {
        Optimizer::Sgd { momentum: 0.9 }
    }

    /// RMSProp with the usual decay ρ = 0.95.
    pub fn rmsprop() -> Self {
        Optimizer::Rmsprop { decay: 0.95 }
    }

    /// The learning rate used when none is given: 0.05 for AdaGrad and SGD, 2e−3 for RMSProp
    /// and Adam.
    pub fn default_lr(&self) -> f64 {
        match self {
            Optimizer::Adagrad | Optimizer::Sgd { .. } => 0.05,
            Optimizer::Rmsprop { .. } | Optimizer::Adam { .. } | Optimizer::Muon { .. } => 2e-3,
        }
    }

    /// The rule's name on the command line (`adagrad`, `sgd`, `rmsprop`, `adam`).
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Adagrad => "adagrad",
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Rmsprop { .. } => "rmsprop",
            Optimizer::Adam { .. } => "adam",
            Optimizer::Muon { .. } => "muon",
        }
    }

    /// How many state vectors (of one value per parameter) the rule keeps: 1 or 2.
    pub fn state_vectors(&self) -> usize {
        match self {
            Optimizer::Adam { .. } | Optimizer::Muon { .. } => 2,
            _ => 1,
        }
    }
}

/// How gradients are clipped before the update.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClipMode {
    /// Every element to ±clip (the tutorial's `np.clip`).
    #[default]
    Elementwise,
    /// The whole gradient scaled down to norm ≤ clip when it is longer.
    Norm,
}

/// An optimizer with its state, one value (or two, for Adam) per parameter.
#[derive(Clone, Debug)]
pub struct OptState<F> {
    /// The rule.
    pub rule: Optimizer,
    /// First state vector: AdaGrad's Σg², SGD's velocity, RMSProp's mean g², Adam's m.
    pub m: Vec<F>,
    /// Second state vector: Adam's v (kept, zero and unsaved, for the others, so every rule
    /// runs through the same chunked loop).
    pub v: Vec<F>,
    /// Σg² of each chunk of the last step.
    norms: Vec<f64>,
    /// The matrices [`Optimizer::Muon`] updates (none for the other rules).
    matrices: Vec<Matrix>,
    /// Ranges updated at a multiple of the learning rate (sorted, disjoint, outside Muon's
    /// matrices), with their multiple.
    scaled: Vec<(std::ops::Range<usize>, f64)>,
}

impl<F: Float> OptState<F> {
    /// Fresh state for `n` parameters.
    pub fn new(rule: Optimizer, n: usize) -> Self {
        OptState {
            rule,
            m: vec![F::zero(); n],
            v: vec![F::zero(); n],
            norms: vec![0.0; n.div_ceil(CHUNK)],
            matrices: Vec::new(),
            scaled: Vec::new(),
        }
    }

    /// Updates `ranges` at `mult` × the learning rate, with the rule's own update otherwise
    /// unchanged; adds them to the ranges of earlier calls. All must be disjoint and outside
    /// the matrices of [`OptState::with_matrices`].
    pub fn with_scaled_lr(mut self, ranges: Vec<std::ops::Range<usize>>, mult: f64) -> Self {
        self.scaled.extend(ranges.into_iter().map(|r| (r, mult)));
        self.scaled.sort_by_key(|(r, _)| r.start);
        self
    }

    /// The matrices Muon updates (the other rules ignore them); the rest of the buffer gets
    /// Adam. They must lie inside the buffer and not overlap.
    pub fn with_matrices(mut self, mut matrices: Vec<Matrix>) -> Self {
        matrices.sort_by_key(|m| m.offset);
        self.matrices = matrices;
        self
    }

    /// One update of `p` with gradient `g` at learning rate `lr`; `t` is the 1-based step
    /// (Adam's bias correction). Returns the norm of `g` before clipping.
    ///
    /// Inside a rayon pool the update runs in parallel chunks; the result is the same bits
    /// (the norm is summed per chunk, then over chunks in order, in both cases).
    pub fn step(
        &mut self,
        p: &mut [F],
        g: &[F],
        lr: f64,
        clip: f64,
        mode: ClipMode,
        t: u64,
    ) -> f64 {
        let par = rayon::current_thread_index().is_some() && p.len() > 2 * CHUNK;
        if par {
            g.par_chunks(CHUNK)
                .zip(self.norms.par_iter_mut())
                .for_each(|(g, n)| *n = sum_sq(g));
        } else {
            g.chunks(CHUNK)
                .zip(self.norms.iter_mut())
                .for_each(|(g, n)| *n = sum_sq(g));
        }
        let norm = self.norms.iter().sum::<f64>().sqrt();
        let rule = Rule::new(self.rule, lr, t);
        match mode {
            ClipMode::Elementwise => {
                let c = F::c(clip);
                self.update_all(par, p, g, rule, |g| g.max(-c).min(c));
            }
            ClipMode::Norm => {
                let k = if norm > clip {
                    F::c(clip / norm)
                } else {
                    F::one()
                };
                self.update_all(par, p, g, rule, |g| g * k);
            }
        }
        norm
    }

    /// The rule's update of the whole buffer: for Muon, its matrices by Muon and the ranges
    /// between them by Adam; for the others, everything by the rule.
    fn update_all(
        &mut self,
        par: bool,
        p: &mut [F],
        g: &[F],
        rule: Rule<F>,
        clip: impl Fn(F) -> F + Sync,
    ) {
        let Optimizer::Muon {
            momentum,
            matrix_lr,
            ..
        } = self.rule
        else {
            return self.apply(par, 0..p.len(), p, g, rule, clip);
        };
        let mut from = 0;
        for mat in self.matrices.clone() {
            self.apply(par, from..mat.offset, p, g, rule, &clip);
            from = mat.range().end;
        }
        self.apply(par, from..p.len(), p, g, rule, &clip);
        let lr = rule.lr.to_f64().unwrap_or(f64::NAN) * matrix_lr;
        muon::update(&self.matrices, p, g, &mut self.m, momentum, lr, &clip);
    }

    /// Runs `rule` over every chunk of `range` with gradients transformed by `clip`: at the
    /// scaled learning rate inside the ranges of [`OptState::with_scaled_lr`], at the rule's
    /// elsewhere.
    fn apply(
        &mut self,
        par: bool,
        range: std::ops::Range<usize>,
        p: &mut [F],
        g: &[F],
        rule: Rule<F>,
        clip: impl Fn(F) -> F + Sync,
    ) {
        let (m, v) = (&mut self.m, &mut self.v);
        let mut run = |r: std::ops::Range<usize>, rule: Rule<F>| {
            run_chunks(
                par,
                (&mut p[r.clone()], &g[r.clone()]),
                (&mut m[r.clone()], &mut v[r]),
                rule,
                &clip,
            )
        };
        let mut from = range.start;
        for (r, mult) in &self.scaled {
            let (start, end) = (r.start.max(from), r.end.min(range.end));
            if start >= end {
                continue;
            }
            run(from..start, rule);
            let lr = rule.lr * F::c(*mult);
            run(start..end, Rule { lr, ..rule });
            from = end;
        }
        run(from..range.end, rule);
    }
}

/// `rule` over the chunks of one range of (parameters, gradients) and (m, v), in parallel
/// when `par`: the same bits either way (the update is element-wise).
fn run_chunks<F: Float>(
    par: bool,
    (p, g): (&mut [F], &[F]),
    (m, v): (&mut [F], &mut [F]),
    rule: Rule<F>,
    clip: &(impl Fn(F) -> F + Sync),
) {
    type Chunk<'a, F> = (((&'a mut [F], &'a [F]), &'a mut [F]), &'a mut [F]);
    let chunk = |(((p, g), m), v): Chunk<'_, F>| rule.update(p, g, m, v, clip);
    if par {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(chunk);
    } else {
        p.chunks_mut(CHUNK)
            .zip(g.chunks(CHUNK))
            .zip(m.chunks_mut(CHUNK))
            .zip(v.chunks_mut(CHUNK))
            .for_each(chunk);
    }
}

/// Σg² in eight independent lanes (a single running sum would keep the loop scalar), in f64.
fn sum_sq<F: Float>(g: &[F]) -> f64 {
    let mut acc = [F::zero(); 8];
    let chunks = g.chunks_exact(8);
    let tail: F = chunks.remainder().iter().map(|&x| x * x).sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x * x;
        }
    }
    (acc.iter().copied().sum::<F>() + tail)
        .to_f64()
        .unwrap_or(f64::NAN)
}

/// A rule with its per-step constants resolved in F.
#[derive(Clone, Copy)]
struct Rule<F> {
    rule: Optimizer,
    lr: F,
    a: F,
    b: F,
    /// Adam's bias corrections 1/(1−β₁ᵗ), 1/(1−β₂ᵗ).
    c1: F,
    c2: F,
    /// AdamW's decoupled weight decay λ.
    wd: F,
    /// ε.
    eps: F,
}

impl<F: Float> Rule<F> {
    fn new(rule: Optimizer, lr: f64, t: u64) -> Self {
        let t = t.max(1) as i32;
        let (a, b, c1, c2, wd, eps) = match rule {
            Optimizer::Adagrad => (0.0, 0.0, 1.0, 1.0, 0.0, DEFAULT_EPS),
            Optimizer::Sgd { momentum } => (momentum, 0.0, 1.0, 1.0, 0.0, DEFAULT_EPS),
            Optimizer::Rmsprop { decay } => (decay, 0.0, 1.0, 1.0, 0.0, DEFAULT_EPS),
            Optimizer::Adam {
                beta1,
                beta2,
                weight_decay,
                eps,
            } => (
                beta1,
                beta2,
                1.0 / (1.0 - beta1.powi(t)),
                1.0 / (1.0 - beta2.powi(t)),
                weight_decay,
                eps,
            ),
            // The rest of a Muon model is Adam's.
            Optimizer::Muon {
                beta1, beta2, eps, ..
            } => (
                beta1,
                beta2,
                1.0 / (1.0 - beta1.powi(t)),
                1.0 / (1.0 - beta2.powi(t)),
                0.0,
                eps,
            ),
        };
        Rule {
            rule,
            lr: F::c(lr),
            a: F::c(a),
            b: F::c(b),
            c1: F::c(c1),
            c2: F::c(c2),
            wd: F::c(wd),
            eps: F::c(eps),
        }
    }

    /// Updates one chunk.
    #[inline]
    fn update(&self, p: &mut [F], g: &[F], m: &mut [F], v: &mut [F], clip: &impl Fn(F) -> F) {
        update_chunk(self, p, g, m, v, clip);
    }
}

multiversion! {
    /// One chunk of `rule`'s update (see [`crate::linalg::multiversion`]).
    fn update_chunk<F: Float>(
        rule: &Rule<F>,
        p: &mut [F],
        g: &[F],
        m: &mut [F],
        v: &mut [F],
        clip: &impl Fn(F) -> F,
    ) {
        let (lr, a, b, eps, one) = (rule.lr, rule.a, rule.b, rule.eps, F::one());
        match rule.rule {
            Optimizer::Adagrad => {
                for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                    let g = clip(g);
                    *m += g * g;
                    *p -= lr * g / (m.sqrt() + eps);
                }
            }
            Optimizer::Sgd { .. } => {
                for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                    *m = a * *m + clip(g);
                    *p -= lr * *m;
                }
            }
            Optimizer::Rmsprop { .. } => {
                for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                    let g = clip(g);
                    *m = a * *m + (one - a) * g * g;
                    *p -= lr * g / (m.sqrt() + eps);
                }
            }
            Optimizer::Adam { .. } | Optimizer::Muon { .. } => {
                let (c1, c2, wd) = (rule.c1, rule.c2, rule.wd);
                for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = clip(g);
                    *m = a * *m + (one - a) * g;
                    *v = b * *v + (one - b) * g * g;
                    *p -= lr * ((*m * c1) / ((*v * c2).sqrt() + eps) + wd * *p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each rule against its formula written out in f64 on a three-element example, over two
    /// steps (so the state matters).
    #[test]
    fn rules_follow_their_formulas() {
        let g1 = [0.5f64, -2.0, 8.0];
        let g2 = [-1.0f64, 0.25, 3.0];
        let clip = 5.0;
        let c = |x: f64| x.clamp(-clip, clip);
        let rules = [
            Optimizer::Adagrad,
            Optimizer::Sgd { momentum: 0.9 },
            Optimizer::Rmsprop { decay: 0.95 },
            Optimizer::adam(),
            // An ε large enough to move every update.
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.0,
                eps: 0.5,
            },
        ];
        for rule in rules {
            let mut st = OptState::<f64>::new(rule, 3);
            let mut p = [1.0f64, 1.0, 1.0];
            st.step(&mut p, &g1, 0.1, clip, ClipMode::Elementwise, 1);
            let norm = st.step(&mut p, &g2, 0.1, clip, ClipMode::Elementwise, 2);
            assert!((norm - g2.iter().map(|x| x * x).sum::<f64>().sqrt()).abs() < 1e-12);
            for i in 0..3 {
                let (a, b) = (c(g1[i]), c(g2[i]));
                let want = match rule {
                    Optimizer::Adagrad => {
                        let p1 = 1.0 - 0.1 * a / ((a * a).sqrt() + 1e-8);
                        p1 - 0.1 * b / ((a * a + b * b).sqrt() + 1e-8)
                    }
                    Optimizer::Sgd { .. } => 1.0 - 0.1 * a - 0.1 * (0.9 * a + b),
                    Optimizer::Rmsprop { .. } => {
                        let m1 = 0.05 * a * a;
                        let m2 = 0.95 * m1 + 0.05 * b * b;
                        1.0 - 0.1 * a / (m1.sqrt() + 1e-8) - 0.1 * b / (m2.sqrt() + 1e-8)
                    }
                    Optimizer::Adam { eps, .. } => {
                        let (m1, v1) = (0.1 * a, 0.001 * a * a);
                        let p1 = 1.0 - 0.1 * (m1 / 0.1) / ((v1 / 0.001).sqrt() + eps);
                        let (m2, v2) = (0.9 * m1 + 0.1 * b, 0.999 * v1 + 0.001 * b * b);
                        let (c1, c2) = (1.0 - 0.9f64.powi(2), 1.0 - 0.999f64.powi(2));
                        p1 - 0.1 * (m2 / c1) / ((v2 / c2).sqrt() + eps)
                    }
                    Optimizer::Muon { .. } => unreachable!("tested with its matrices in muon.rs"),
                };
                assert!(
                    (p[i] - want).abs() < 1e-12,
                    "{rule:?}[{i}]: {} vs {want}",
                    p[i]
                );
            }
        }
    }

    /// A scaled range takes the step of the same rule at mult × lr, bit for bit; the rest
    /// takes the plain rule's, also bit for bit (chunks are element-wise).
    #[test]
    fn scaled_ranges_step_at_their_multiple_of_the_rate() {
        let g = [0.3, -1.5, 2.0, 0.7, -0.2];
        for rule in [Optimizer::adam(), Optimizer::Adagrad] {
            let mut plain = OptState::<f64>::new(rule, 5);
            let mut double = OptState::<f64>::new(rule, 5);
            let mut scaled = OptState::<f64>::new(rule, 5).with_scaled_lr(vec![3..4, 1..2], 2.0);
            let (mut p1, mut p2, mut p3) = ([1.0; 5], [1.0; 5], [1.0; 5]);
            for t in 1..=3 {
                plain.step(&mut p1, &g, 0.01, 5.0, ClipMode::Norm, t);
                double.step(&mut p2, &g, 0.02, 5.0, ClipMode::Norm, t);
                scaled.step(&mut p3, &g, 0.01, 5.0, ClipMode::Norm, t);
            }
            assert_eq!(p3, [p1[0], p2[1], p1[2], p2[3], p1[4]], "{rule:?}");
            assert_ne!(p1[1], p2[1], "{rule:?}: the multiple moves the step");
        }
    }

    /// AdamW: with a zero gradient only the decay acts, p ← p − lr·λ·p.
    #[test]
    fn adamw_decays_weights_decoupled_from_the_gradient() {
        let mut st = OptState::<f64>::new(
            Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                weight_decay: 0.1,
                eps: DEFAULT_EPS,
            },
            2,
        );
        let mut p = [2.0, -4.0];
        st.step(&mut p, &[0.0, 0.0], 0.5, 5.0, ClipMode::Elementwise, 1);
        assert_eq!(p, [2.0 - 0.5 * 0.1 * 2.0, -4.0 + 0.5 * 0.1 * 4.0]);
    }

    #[test]
    fn norm_clipping_rescales_the_whole_gradient() {
        let mut st = OptState::<f64>::new(Optimizer::Sgd { momentum: 0.0 }, 2);
        let mut p = [0.0, 0.0];
        let norm = st.step(&mut p, &[3.0, 4.0], 1.0, 1.0, ClipMode::Norm, 1);
        assert_eq!(norm, 5.0);
        assert!(
            (p[0] + 0.6).abs() < 1e-12 && (p[1] + 0.8).abs() < 1e-12,
            "{p:?}"
        );
        let norm = st.step(&mut p, &[0.3, 0.4], 1.0, 1.0, ClipMode::Norm, 2);
        assert!((norm - 0.5).abs() < 1e-12);
        assert!(
            (p[0] + 0.9).abs() < 1e-12,
            "short gradients are not stretched: {p:?}"
        );
    }
}
