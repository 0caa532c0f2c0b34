//! Configuration as data: what defines a training run, as plain serialisable structs with
//! documented defaults, grouped by concern ([`ModelConfig`], [`DataConfig`], [`OptimConfig`],
//! [`RunConfig`]) and stored in every model file as one flat JSON object ([`TrainConfig`], the
//! groups flattened: files written before the split read unchanged). The command line maps
//! its flags onto these; the library takes them as they are.

use serde::{Deserialize, Serialize};

use crate::data::{StreamOrder, SymbolKind, ValLayout};
use crate::error::{Error, Result};
use crate::linalg::Precision;
use crate::model::{CellKind, CharLm, Init};
use crate::optim::{ClipMode, Optimizer, Schedule};
use crate::parallel::Noise;

mod presets;
mod resume;
mod samples;
mod validate;

pub use crate::error::ConfigChange;
pub use samples::{SampleEvery, TrainSamples};

/// Which implementation runs the forward and backward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// The BLAS-batched fast path ([`crate::model`]).
    Blas,
    /// The per-character reference loop ([`crate::naive`]), one stream after another.
    Naive,
}

/// When training stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// After this many passes over the corpus.
    Epochs(u64),
    /// After this many optimizer steps.
    Steps(u64),
    /// After this many characters of training (T·B per step; the last step may overshoot).
    Chars(u64),
}

/// The model: its cell, depth, width and initialisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The recurrent cell (default `rnn`, the tutorial's).
    #[serde(default)]
    pub cell: CellKind,
    /// L, stacked recurrent layers (default 1).
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// H, hidden units of every layer (default 128).
    pub hidden: usize,
    /// Weight initialisation (default `seed`, the tutorial's).
    pub init: Init,
    /// When set, the character embeddings (the explicit table with `embed`, else layer 0's
    /// W_ih) are drawn from N(0, σ²) with this σ instead of by `init` (see
    /// [`CharLm::init_embedding`]).
    #[serde(default)]
    pub embed_std: Option<f64>,
    /// E: when set, an explicit embedding table (V, E) in front of layer 0 ([`CharLm::embed`]);
    /// else (the default) the embedding is folded into layer 0's W_ih.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed: Option<usize>,
    /// When set, the initial bias of a cell's forget gate (the LSTM's f) instead of 1
    /// (see [`CharLm::set_forget_bias`]); an error for cells without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forget_bias: Option<f64>,
    /// When set, the output layer's initial weights W_hy are `init`'s draw times this
    /// (see [`CharLm::scale_head`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_scale: Option<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            cell: CellKind::Rnn,
            layers: 1,
            hidden: 128,
            init: Init::Seed,
            embed_std: None,
            embed: None,
            forget_bias: None,
            head_scale: None,
        }
    }
}

/// The most symbols `val_frac` holds out for validation by default: every evaluation reads
/// them all, and at H = 512 a million take seconds (docs/data.md, "How much is held out").
pub const VAL_CAP: usize = 1_000_000;

/// The data: how the corpus is read, split and cut into chunks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataConfig {
    /// T, characters per chunk of truncated BPTT (default 32).
    pub seq_len: usize,
    /// B, independent streams per step (default 32).
    pub batch: usize,
    /// Train on the first N symbols of the corpus only (default: all).
    pub max_chars: Option<usize>,
    /// Characters (default) or raw bytes.
    pub symbols: SymbolKind,
    /// Fraction of the corpus (its end) held out for validation (default 0.1; 0 disables).
    #[serde(default)]
    pub val_frac: f64,
    /// Hold out exactly the corpus's last N symbols instead of `val_frac` of it: a bounded
    /// evaluation for large corpora (default: use `val_frac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_chars: Option<usize>,
    /// The most symbols `val_frac` holds out (default [`VAL_CAP`]), so that an evaluation's
    /// cost does not grow with the corpus; `val_chars` is not bounded by it. None (no bound)
    /// in model files saved before it existed, whose runs resume on the split they had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_cap: Option<usize>,
    /// Where the validation part lies: decided when the run starts by default
    /// ([`ValLayout::Auto`]); the end of the corpus in model files saved before it existed.
    #[serde(default)]
    pub val_layout: ValLayout,
    /// How the streams move through the training part: decided when the run starts by
    /// default ([`StreamOrder::Auto`]); contiguous in model files saved before it existed.
    #[serde(default)]
    pub stream_order: StreamOrder,
    /// When set, the run's first steps read shorter chunks (sequence-length warm-up): more
    /// steps for the characters while the model is far from any optimum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq_len_warmup: Option<SeqLenWarmup>,
}

/// A sequence-length warm-up: the first `steps` steps read chunks of `seq_len` (shorter than
/// the run's T), the rest chunks of T. Each stream then goes on from where it stands,
/// rounded up to the next whole chunk of T (the next segment in a shuffled order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqLenWarmup {
    /// T₀, characters per chunk during the warm-up (1 ≤ T₀ < T).
    pub seq_len: usize,
    /// Steps on chunks of T₀, from the run's first step.
    pub steps: u64,
}

impl DataConfig {
    /// The chunk length of step `step` (counted from 0): T₀ during the warm-up, else T.
    pub fn seq_len_at(&self, step: u64) -> usize {
        match self.seq_len_warmup {
            Some(w) if step < w.steps => w.seq_len,
            _ => self.seq_len,
        }
    }

    /// Steps that train on `chars` characters, with each warm-up step B·T₀ of them.
    pub fn steps_for_chars(&self, chars: u64) -> u64 {
        let (t, b) = (self.seq_len as u64, self.batch as u64);
        match self.seq_len_warmup {
            Some(w) if chars > w.steps * w.seq_len as u64 * b => {
                w.steps + (chars - w.steps * w.seq_len as u64 * b).div_ceil(t * b)
            }
            Some(w) => chars.div_ceil(w.seq_len as u64 * b),
            None => chars.div_ceil(t * b),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            seq_len: 32,
            batch: 32,
            max_chars: None,
            symbols: SymbolKind::Chars,
            val_frac: 0.1,
            val_chars: None,
            val_cap: Some(VAL_CAP),
            val_layout: ValLayout::Auto,
            stream_order: StreamOrder::Auto,
            seq_len_warmup: None,
        }
    }
}

/// How each step updates the weights: the rule, its rate and schedule, clipping, and the
/// training-time noise (dropout, DropConnect).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    /// The update rule (default AdaGrad, the tutorial's).
    #[serde(default)]
    pub optimizer: Optimizer,
    /// Base learning rate (default 0.05, AdaGrad's).
    pub lr: f64,
    /// The learning rate as a function of the step (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// Gradient clipping bound (default 5, the tutorial's).
    pub clip: f64,
    /// Element-wise clipping (default, the tutorial's) or by global norm.
    #[serde(default)]
    pub clip_mode: ClipMode,
    /// Dropout between layers and before the head: the probability that an element of a
    /// layer's output is left out of what the layer above (or the head) reads (default 0; the
    /// recurrence is never masked; char-rnn's and `nn.LSTM`'s dropout). The fast path only.
    #[serde(default)]
    pub dropout: f64,
    /// DropConnect on the recurrence: the probability that an element of a layer's W_hh is
    /// left out of a step (one mask per layer and step, shared by every shard, stream and
    /// time step of the batch; default 0).
    #[serde(default)]
    pub weight_drop: f64,
    /// When set, the recurrent layers' biases (b, and the GRU's b_hn) learn at this multiple
    /// of the learning rate. Under Adam, 2 is what PyTorch's two biases per gate (b_ih and
    /// b_hh, which get the same gradient and so the same step) do to their sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bias_lr_mult: Option<f64>,
    /// When set, the input table learns at this multiple of the learning rate: the table the
    /// input symbols select rows of (the explicit embedding with `--embed`, else layer 0's
    /// W_ih). Under Adam a row moves only at the steps whose chunk holds its symbol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embed_lr_mult: Option<f64>,
    /// When set, the decay D of an exponential moving average of the weights: it starts as
    /// the initial weights and after every step becomes D·average + (1 − D)·weights. The
    /// average is the run's model (evaluated, sampled, saved as the model's tensors); the
    /// weights the optimizer moves are saved beside it, to resume from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            optimizer: Optimizer::Adagrad,
            lr: 0.05,
            schedule: Schedule::Constant,
            clip: 5.0,
            clip_mode: ClipMode::Elementwise,
            dropout: 0.0,
            weight_drop: 0.0,
            bias_lr_mult: None,
            embed_lr_mult: None,
            ema: None,
        }
    }
}

/// The run: when it stops, its seed, the implementation, its cadence and its partition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// When to stop (default 10 epochs).
    pub stop: Stop,
    /// Seed of the weight initialisation and of every mask (default 42).
    pub seed: u64,
    /// Fast path or reference loop (default `blas`).
    pub path: PathKind,
    /// Steps between validations, model saves and metric lines (default 500; the end of the
    /// run always gets one).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// S, groups of streams computed in parallel (default: [`TrainConfig::auto_shards`]).
    /// Part of the config, not of the machine: the same S gives the same bits on any number of
    /// threads.
    #[serde(default)]
    pub shards: Option<usize>,
    /// Stop at the first evaluation whose validation loss (nats/char) is at or below this,
    /// before the configured end (default: none). Needs a validation part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_loss: Option<f64>,
    /// Screen the evaluations of a run with a target loss on a few of the validation streams
    /// (default: none, every evaluation reads the whole validation part).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_screen: Option<ValScreen>,
    /// The precision of every matrix product (default f32; bf16 runs them on the CPU's bf16
    /// units with f32 sums, weights and optimizer state staying f32). The fast path only.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// Text sampled from the model while it trains, printed and recorded in the run
    /// directory (default: none). It never changes training: it has its own generator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<TrainSamples>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            stop: Stop::Epochs(10),
            seed: 42,
            path: PathKind::Blas,
            eval_every: default_eval_every(),
            shards: None,
            target_loss: None,
            val_screen: None,
            precision: Precision::F32,
            samples: None,
        }
    }
}

/// The streams (at most) an evaluation during training reads the validation part in, each
/// from a zero state.
pub const VAL_STREAMS: usize = 64;

/// How a run with a target loss screens its evaluations (`--val-screen K`): at every
/// evaluation but the first and the last, it reads K of the validation part's streams (spread
/// evenly over it) and reads the whole part only when their loss, corrected by the gap
/// between the two at the last whole evaluation, comes within `margin` of the target. The
/// target counts only when the whole part confirms it; training is the same either way.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValScreen {
    /// K, the streams a screen reads (fewer than the whole evaluation's).
    pub streams: usize,
    /// Nats/char above the target at which a screen's estimate asks for the whole part.
    pub margin: f64,
}

impl ValScreen {
    /// The margin when none is given: wider than the gap between a screen of 16 of 64
    /// streams and the whole tinyshakespeare held-out part moves near a target
    /// (docs/speedrun.md).
    pub const DEFAULT_MARGIN: f64 = 0.05;
}

/// Everything that defines a training run. Stored in every model file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The model.
    #[serde(flatten)]
    pub model: ModelConfig,
    /// The data.
    #[serde(flatten)]
    pub data: DataConfig,
    /// The update.
    #[serde(flatten)]
    pub optim: OptimConfig,
    /// The run.
    #[serde(flatten)]
    pub run: RunConfig,
}

fn default_layers() -> usize {
    1
}

fn default_eval_every() -> u64 {
    500
}

impl TrainConfig {
    /// The shard count used when none is given: one shard per H/16 streams (at least 8, at
    /// most 32 streams per shard; at most 16 shards). Every shard's per-step gemms repack
    /// W_hh, a cost that grows with H² against work that grows with its rows·H², so wide
    /// models get fewer, taller shards (H = 512, B = 64: 2 shards of 32 rows) and narrow
    /// ones more (H = 128, B = 32: 4 shards of 8). Depends on the configuration only, so a
    /// run's bits never depend on the machine.
    pub fn auto_shards(batch: usize, hidden: usize) -> usize {
        let rows = (hidden / 16).clamp(8, 32);
        batch.div_ceil(rows).clamp(1, 16)
    }

    /// The model in a few characters: `H=128` for the tutorial's one vanilla layer, else
    /// `<L>×<cell> H=<H>` (e.g. `2×gru H=512`).
    pub fn describe_model(&self) -> String {
        if self.model.cell == CellKind::Rnn && self.model.layers == 1 {
            format!("H={}", self.model.hidden)
        } else {
            format!(
                "{}×{} H={}",
                self.model.layers, self.model.cell, self.model.hidden
            )
        }
    }

    /// One line of the hyperparameters that shape each step, for summaries:
    /// `T=.. B=.. <optimizer> lr=.. (<schedule>), clip .. (<mode>), dropout .., weight drop ..`
    /// (a sequence-length warm-up after T).
    pub fn describe_step(&self) -> String {
        format!(
            "T={}{} B={} {:?} lr={} ({:?}), clip {} ({:?}), dropout {}, weight drop {}{}",
            self.data.seq_len,
            self.data
                .seq_len_warmup
                .map(|w| format!(" (T={} for the first {} steps)", w.seq_len, w.steps))
                .unwrap_or_default(),
            self.data.batch,
            self.optim.optimizer,
            self.optim.lr,
            self.optim.schedule,
            self.optim.clip,
            self.optim.clip_mode,
            self.optim.dropout,
            self.optim.weight_drop,
            self.optim
                .ema
                .map(|d| format!(", the model an average of the weights (EMA {d})"))
                .unwrap_or_default()
        )
    }

    /// The model this config trains over a vocabulary of `vocab` symbols.
    pub fn model(&self, vocab: usize) -> CharLm {
        CharLm {
            vocab,
            hidden: self.model.hidden,
            cell: self.model.cell,
            layers: self.model.layers,
            embed: self.model.embed,
        }
    }

    /// The random masks of step `step` of this run.
    pub fn noise(&self, step: u64) -> Noise {
        Noise {
            dropout: self.optim.dropout,
            weight_drop: self.optim.weight_drop,
            seed: self.run.seed,
            step,
        }
    }

    /// S, the number of shards of this run.
    pub fn shard_count(&self) -> usize {
        self.run
            .shards
            .unwrap_or_else(|| Self::auto_shards(self.data.batch, self.model.hidden))
    }

    /// About how many bytes a run of this configuration over a vocabulary of `vocab`
    /// symbols allocates: parameters, optimizer state, one gradient per shard, the per-layer
    /// activations and gradients of a chunk, and the output layer's probabilities.
    pub fn memory_estimate(&self, vocab: usize) -> u128 {
        let (h, t, b, v) = (
            self.model.hidden as u128,
            self.data.seq_len as u128,
            self.data.batch as u128,
            vocab as u128,
        );
        let (l, g) = (self.model.layers as u128, self.model.cell.gates() as u128);
        let params = g * h * (v + h + 2) + l.saturating_sub(1) * g * h * (2 * h + 2) + h * v + v;
        let copies = self.optim.optimizer.state_vectors() as u128 + self.shard_count() as u128 + 1;
        let floats =
            params * copies + l * (2 * g * h * h + 2 * (t + 1) * b * h * (g + 3)) + 2 * t * b * v;
        floats * 4
    }

    /// Refuses a run that needs more memory than `available` bytes (what the process can still
    /// get: [`crate::os::available_memory`]), before anything large is allocated, naming the
    /// flags that shrink it. Does nothing when `available` is None (it could not be read).
    pub fn check_memory(&self, vocab: usize, available: Option<u64>) -> Result<()> {
        let need = self.memory_estimate(vocab);
        match available {
            Some(avail) if need > u128::from(avail) => Err(Error::config(
                "--hidden/--seq-len/--batch/--layers",
                format!(
                    "{}/{}/{}/{}",
                    self.model.hidden, self.data.seq_len, self.data.batch, self.model.layers
                ),
                format!(
                    "this run needs about {:.1} GB of memory (V = {vocab}, {} shard(s)) and {:.1} GB is \
                     available; lower --hidden, --batch, --seq-len or --layers",
                    need as f64 / 1e9,
                    self.shard_count(),
                    avail as f64 / 1e9
                ),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check is a function of the memory available: refused below the estimate, with the
    /// need, what is available and the flags; allowed at or above it, and when unknown.
    #[test]
    fn check_memory_refuses_only_below_the_estimate() {
        let mut c = TrainConfig::default();
        c.model.hidden = 8192;
        let need = u64::try_from(c.memory_estimate(65)).unwrap();
        assert!((1_000_000_000..100_000_000_000).contains(&need), "{need}");
        for avail in [Some(need), Some(u64::MAX), None] {
            assert!(c.check_memory(65, avail).is_ok(), "{avail:?}");
        }
        let err = c.check_memory(65, Some(need - 1)).unwrap_err().to_string();
        assert!(err.contains("GB is available; lower --hidden"), "{err}");
        let err = c
            .check_memory(65, Some(500_000_000))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!(
                "invalid --hidden/--seq-len/--batch/--layers = 8192/32/32/1: this run needs about \
                 {:.1} GB of memory (V = 65, {} shard(s)) and 0.5 GB is available; lower \
                 --hidden, --batch, --seq-len or --layers",
                need as f64 / 1e9,
                c.shard_count()
            )
        );
    }
}
