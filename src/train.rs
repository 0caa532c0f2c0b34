//! Training configuration, the training loop, and evaluation.

use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::{Corpus, Ids, Streams, SymbolKind};
use crate::error::{Error, Result};
use crate::linalg::Float;
use crate::model::{CellKind, CharLm, Init, Workspace};
use crate::naive;
use crate::optim::{ClipMode, OptState, Optimizer, Schedule};
use crate::parallel::{
    for_each_shard, gather_state, partition, reduce_grads, scatter_state, ChunkFn, Noise, Shard,
};

/// Which implementation runs the forward and backward passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// The BLAS-batched fast path ([`crate::model`]).
    Blas,
    /// The per-character reference loop ([`crate::naive`]), one stream after another.
    Naive,
}

impl PathKind {
    /// The function that runs one chunk of a shard's streams on this path.
    pub fn chunk_fn<F: Float>(self) -> ChunkFn<F> {
        match self {
            PathKind::Blas => CharLm::forward_backward,
            PathKind::Naive => naive::forward_backward_chunk,
        }
    }
}

/// When training stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stop {
    /// After this many passes over the corpus.
    Epochs(u64),
    /// After this many optimizer steps.
    Steps(u64),
}

/// Everything that defines a training run. Stored in every model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The recurrent cell (default `rnn`, the tutorial's).
    #[serde(default)]
    pub cell: CellKind,
    /// L, stacked recurrent layers (default 1).
    #[serde(default = "default_layers")]
    pub layers: usize,
    /// H, hidden units of every layer (default 128).
    pub hidden: usize,
    /// T, characters per chunk of truncated BPTT (default 32).
    pub seq_len: usize,
    /// B, independent streams per step (default 32).
    pub batch: usize,
    /// Base learning rate (default 0.05, AdaGrad's).
    pub lr: f64,
    /// Gradient clipping bound (default 5, the tutorial's).
    pub clip: f64,
    /// Element-wise clipping (default, the tutorial's) or by global norm.
    #[serde(default)]
    pub clip_mode: ClipMode,
    /// The update rule (default AdaGrad, the tutorial's).
    #[serde(default)]
    pub optimizer: Optimizer,
    /// The learning rate as a function of the step (default constant).
    #[serde(default)]
    pub schedule: Schedule,
    /// When to stop (default 10 epochs).
    pub stop: Stop,
    /// Train on the first N symbols of the corpus only (default: all).
    pub max_chars: Option<usize>,
    /// Seed of the weight initialisation (default 42).
    pub seed: u64,
    /// Weight initialisation (default `seed`, the tutorial's).
    pub init: Init,
    /// When set, W_xh (the character embeddings) is drawn from N(0, σ²) with this σ instead
    /// of by `init` (see [`CharLm::init_embedding`]).
    #[serde(default)]
    pub embed_std: Option<f64>,
    /// Fast path or reference loop (default `blas`).
    pub path: PathKind,
    /// Characters (default) or raw bytes.
    pub symbols: SymbolKind,
    /// Fraction of the corpus (its end) held out for validation by `charrnn train`
    /// (default 0.1; 0 disables).
    #[serde(default)]
    pub val_frac: f64,
    /// Steps between validations, model saves and metric lines of `charrnn train` (default
    /// 500; the end of the run always gets one).
    #[serde(default = "default_eval_every")]
    pub eval_every: u64,
    /// S, groups of streams computed in parallel (default: [`TrainConfig::auto_shards`]).
    /// Part of the config, not of the machine: the same S gives the same bits on any number of
    /// threads.
    #[serde(default)]
    pub shards: Option<usize>,
    /// Dropout between layers and before the head: the probability that an element of a
    /// layer's output is left out of what the layer above (or the head) reads (default 0; the
    /// recurrence is never masked; char-rnn's and `nn.LSTM`'s dropout). The fast path only.
    #[serde(default)]
    pub dropout: f64,
    /// DropConnect on the recurrence: the probability that an element of a layer's W_hh is
    /// left out of a step (one mask per layer, step and shard, shared by its streams and time
    /// steps; default 0).
    #[serde(default)]
    pub weight_drop: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            cell: CellKind::Rnn,
            layers: 1,
            hidden: 128,
            seq_len: 32,
            batch: 32,
            lr: 0.05,
            clip: 5.0,
            clip_mode: ClipMode::Elementwise,
            optimizer: Optimizer::Adagrad,
            schedule: Schedule::Constant,
            stop: Stop::Epochs(10),
            max_chars: None,
            seed: 42,
            init: Init::Seed,
            embed_std: None,
            path: PathKind::Blas,
            symbols: SymbolKind::Chars,
            shards: None,
            val_frac: 0.1,
            eval_every: default_eval_every(),
            dropout: 0.0,
            weight_drop: 0.0,
        }
    }
}

/// A dropout-like probability must lie in [0, 1): 1 would drop everything.
fn probability(flag: &'static str, p: f64, example: &str) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(
            flag,
            p,
            format!("use a probability in [0, 1) ({example})"),
        ))
    }
}

fn default_layers() -> usize {
    1
}

fn default_eval_every() -> u64 {
    500
}

impl TrainConfig {
    /// The tutorial's run: H 75, T 20, clip 5, lr 1e-2, 50 epochs, batch 1, the first 20,000
    /// characters, the tutorial's initialisation.
    pub fn seed_preset() -> Self {
        TrainConfig {
            hidden: 75,
            seq_len: 20,
            batch: 1,
            lr: 1e-2,
            clip: 5.0,
            stop: Stop::Epochs(50),
            max_chars: Some(20_000),
            init: Init::Seed,
            // The tutorial trains on all 20,000 characters.
            val_frac: 0.0,
            // Ten epochs between saves: the run is seconds long, its I/O should not be.
            eval_every: 9990,
            ..TrainConfig::default()
        }
    }

    /// The shard count used when none is given: one shard per 16 streams (at most 16
    /// shards), so that B = 256 fills 16 threads while each shard's per-step gemm keeps 16+
    /// rows.
    pub fn auto_shards(batch: usize) -> usize {
        batch.div_ceil(16).clamp(1, 16)
    }

    /// The model in a few characters: `H=128` for the tutorial's one vanilla layer, else
    /// `<L>×<cell> H=<H>` (e.g. `2×gru H=512`).
    pub fn describe_model(&self) -> String {
        if self.cell == CellKind::Rnn && self.layers == 1 {
            format!("H={}", self.hidden)
        } else {
            format!("{}×{} H={}", self.layers, self.cell, self.hidden)
        }
    }

    /// One line of the hyperparameters that shape each step, for summaries:
    /// `T=.. B=.. <optimizer> lr=.. (<schedule>), clip .. (<mode>), dropout .., weight drop ..`.
    pub fn describe_step(&self) -> String {
        format!(
            "T={} B={} {:?} lr={} ({:?}), clip {} ({:?}), dropout {}, weight drop {}",
            self.seq_len,
            self.batch,
            self.optimizer,
            self.lr,
            self.schedule,
            self.clip,
            self.clip_mode,
            self.dropout,
            self.weight_drop
        )
    }

    /// The model this config trains over a vocabulary of `vocab` symbols.
    pub fn model(&self, vocab: usize) -> CharLm {
        CharLm {
            vocab,
            hidden: self.hidden,
            cell: self.cell,
            layers: self.layers,
        }
    }

    /// The random masks of step `step` of this run.
    pub fn noise(&self, step: u64) -> Noise {
        Noise {
            dropout: self.dropout,
            weight_drop: self.weight_drop,
            seed: self.seed,
            step,
        }
    }

    /// S, the number of shards of this run.
    pub fn shard_count(&self) -> usize {
        self.shards.unwrap_or_else(|| Self::auto_shards(self.batch))
    }

    /// Checks every hyperparameter that does not depend on the corpus.
    pub fn validate(&self) -> Result<()> {
        if self.layers == 0 || self.layers > 64 {
            return Err(Error::config(
                "--layers",
                self.layers,
                "use 1 to 64 stacked layers (e.g. 2)",
            ));
        }
        if self.hidden == 0 {
            return Err(Error::config(
                "--hidden",
                self.hidden,
                "the hidden size must be at least 1",
            ));
        }
        if self.seq_len == 0 {
            return Err(Error::config(
                "--seq-len",
                self.seq_len,
                "the sequence length must be at least 1",
            ));
        }
        if self.batch == 0 {
            return Err(Error::config(
                "--batch",
                self.batch,
                "the number of streams must be at least 1",
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config(
                "--lr",
                self.lr,
                "the learning rate must be a finite number > 0 (e.g. 0.1)",
            ));
        }
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(Error::config(
                "--clip",
                self.clip,
                "the clipping bound must be a finite number > 0 (e.g. 5)",
            ));
        }
        match self.stop {
            Stop::Epochs(0) => {
                return Err(Error::config("--epochs", 0, "train for at least 1 epoch"))
            }
            Stop::Steps(0) => return Err(Error::config("--steps", 0, "train for at least 1 step")),
            _ => {}
        }
        let unit = |name: &'static str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::config(name, v, "use a number in [0, 1)"))
            }
        };
        match self.optimizer {
            Optimizer::Adagrad => {}
            Optimizer::Sgd { momentum } => unit("--momentum", momentum)?,
            Optimizer::Rmsprop { decay } => unit("--rms-decay", decay)?,
            Optimizer::Adam {
                beta1,
                beta2,
                weight_decay,
            } => {
                unit("--beta1", beta1)?;
                unit("--beta2", beta2)?;
                if !(weight_decay.is_finite() && weight_decay >= 0.0) {
                    return Err(Error::config(
                        "--weight-decay",
                        weight_decay,
                        "use a number ≥ 0 (e.g. 0.1)",
                    ));
                }
            }
        }
        match self.schedule {
            Schedule::Constant => {}
            Schedule::Step { every, gamma } => {
                if every == 0 {
                    return Err(Error::config(
                        "--decay-every",
                        every,
                        "decay every 1 or more steps",
                    ));
                }
                if !(gamma.is_finite() && gamma > 0.0) {
                    return Err(Error::config(
                        "--gamma",
                        gamma,
                        "use a factor > 0 (e.g. 0.5)",
                    ));
                }
            }
            Schedule::Cosine { min_frac, .. } => {
                if !(0.0..=1.0).contains(&min_frac) {
                    return Err(Error::config(
                        "--min-lr-frac",
                        min_frac,
                        "use a fraction in [0, 1]",
                    ));
                }
            }
        }
        // Refuse sizes whose buffers could not be allocated, before anything allocates them:
        // an overflow or an abort on allocation failure is no way to say "too big".
        let (h, t, b) = (
            self.hidden as u128,
            self.seq_len as u128,
            self.batch as u128,
        );
        let (l, g) = (self.layers as u128, self.cell.gates() as u128);
        let floats = l * (2 * g * h * h + 2 * (t + 1) * b * h * (g + 3)) + t * b * 256;
        if floats * 4 > 1 << 40 {
            return Err(Error::config(
                "--hidden/--seq-len/--batch",
                format!("{}/{}/{}", self.hidden, self.seq_len, self.batch),
                "these sizes need over a terabyte of memory; lower them",
            ));
        }
        if let Some(sh) = self.shards {
            if sh == 0 || sh > self.batch {
                return Err(Error::config(
                    "--shards",
                    sh,
                    format!("use 1 to --batch ({}) shards", self.batch),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.val_frac) {
            return Err(Error::config(
                "--val-frac",
                self.val_frac,
                "use a fraction in [0, 1) (0 disables validation)",
            ));
        }
        probability("--dropout", self.dropout, "e.g. 0.25; 0 disables dropout")?;
        if let Some(std) = self.embed_std {
            if !(std.is_finite() && std > 0.0) {
                return Err(Error::config(
                    "--embed-std",
                    std,
                    "the embedding's initial standard deviation must be a finite number > 0 (e.g. 1)",
                ));
            }
        }
        probability(
            "--weight-drop",
            self.weight_drop,
            "e.g. 0.2; 0 disables DropConnect on W_hh",
        )?;
        if self.dropout > 0.0 && self.path == PathKind::Naive {
            return Err(Error::config(
                "--dropout",
                self.dropout,
                "the reference loop (--path naive) has no dropout; use the fast path or --dropout 0",
            ));
        }
        if self.eval_every == 0 {
            return Err(Error::config(
                "--eval-every",
                0,
                "evaluate every 1 or more steps",
            ));
        }
        if self.max_chars == Some(0) {
            return Err(Error::config(
                "--max-chars",
                0,
                "keep at least seq_len+1 characters",
            ));
        }
        Ok(())
    }
}

/// Where a run stands. Stored in model files so training resumes exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps taken.
    pub step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Steps taken in the current epoch (the chunk position of every stream).
    pub step_in_epoch: u64,
    /// Characters predicted so far (T·B per step).
    pub chars_seen: u64,
    /// The tutorial's smoothed loss: starts at ln(V)·T, then ·0.999 + (loss per stream)·0.001.
    pub smooth_loss: f64,
    /// Mean loss of the last step, nats/char.
    pub last_loss: f64,
    /// Norm of the last step's gradient, before clipping.
    #[serde(default)]
    pub grad_norm: f64,
    /// Learning rate of the last step.
    #[serde(default)]
    pub lr: f64,
    /// Best validation loss so far (nats/char), and the step it was measured at.
    #[serde(default)]
    pub best_val: Option<(f64, u64)>,
}

/// A training run in memory: model, parameters, optimizer, carried hidden state, position.
pub struct Trainer<F: Float> {
    /// The run's configuration.
    pub config: TrainConfig,
    /// Model dimensions.
    pub model: CharLm,
    /// Flat parameters (layout: [`CharLm::layout`]).
    pub params: Vec<F>,
    /// The optimizer and its state.
    pub opt: OptState<F>,
    /// Where the run stands.
    pub progress: Progress,
    /// The run's random number generator (its state is saved with the model).
    pub rng: ChaCha8Rng,
    /// The layout of the corpus into streams.
    pub streams: Streams,
    shards: Vec<Shard<F>>,
    pool: Option<rayon::ThreadPool>,
}

impl<F: Float> Trainer<F> {
    /// A fresh run over `corpus` with freshly initialised weights.
    pub fn new(config: TrainConfig, corpus: &Corpus) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        config.validate()?;
        let model = config.model(corpus.vocab.len());
        let mut params = model.init(config.init, &mut rng);
        if let Some(std) = config.embed_std {
            model.init_embedding(&mut params, std, &mut rng);
        }
        let progress = Progress {
            smooth_loss: (model.vocab as f64).ln() * config.seq_len as f64,
            ..Progress::default()
        };
        Self::from_parts(
            config,
            corpus.ids.len(),
            model,
            params,
            None,
            None,
            progress,
            rng,
        )
    }

    /// Reassembles a run from saved parts (see [`crate::checkpoint`]).
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        config: TrainConfig,
        corpus_len: usize,
        model: CharLm,
        params: Vec<F>,
        moments: Option<(Vec<F>, Option<Vec<F>>)>,
        state: Option<Array3<F>>,
        progress: Progress,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        config.validate()?;
        let streams = Streams::new(corpus_len, config.batch, config.seq_len)?;
        let n = model.num_params();
        let mut opt = OptState::new(config.optimizer, n);
        if let Some((m, v)) = moments {
            opt.m = m;
            if let Some(v) = v {
                opt.v = v;
            }
        }
        let mut shards: Vec<Shard<F>> = partition(config.batch, config.shard_count())
            .into_iter()
            .map(|(b0, nb)| Shard::new(&model, config.seq_len, b0, nb, &config.noise(0)))
            .collect();
        if let Some(state) = state {
            let want = (model.layers, config.batch, model.state_width());
            if state.dim() != want {
                return Err(Error::config(
                    "state",
                    format!("{:?}", state.dim()),
                    format!("the carried state must be (layers, batch, state width) = {want:?}"),
                ));
            }
            scatter_state(&mut shards, &state);
        }
        Ok(Trainer {
            config,
            model,
            params,
            opt,
            progress,
            rng,
            streams,
            shards,
            pool: None,
        })
    }

    /// Runs the shards on up to `threads` threads: never more than there are shards, and with
    /// one, no thread pool at all (handing each step to a pool thread costs more than a batch-1
    /// step of the tutorial's model). The results do not depend on it.
    pub fn set_threads(&mut self, threads: usize) -> Result<()> {
        let threads = threads.min(self.shards.len());
        self.pool = if threads <= 1 {
            None
        } else {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| {
                    Error::config(
                        "--threads",
                        threads,
                        format!("cannot start the threads: {e}"),
                    )
                })?;
            Some(pool)
        };
        Ok(())
    }

    /// Runs `f` on the run's thread pool (so that library calls inside it, such as
    /// [`evaluate`], run in parallel), or directly when there is none.
    pub fn in_pool<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Threads the shards run on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Number of shards S.
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// (L, B, S) state of every layer carried from chunk to chunk of every stream.
    pub fn state(&self) -> Array3<F> {
        gather_state(&self.shards)
    }

    /// The step at which training stops.
    pub fn total_steps(&self) -> u64 {
        match self.config.stop {
            Stop::Steps(n) => n,
            Stop::Epochs(e) => e * self.streams.steps_per_epoch() as u64,
        }
    }

    /// True once the configured number of steps or epochs is done.
    pub fn done(&self) -> bool {
        self.progress.step >= self.total_steps()
    }

    /// One optimizer step on the next chunk of every stream: forward, backward, clip, update.
    ///
    /// At an epoch boundary the streams restart at their beginning with a zero hidden state.
    /// Returns the mean loss of the step in nats/char.
    pub fn step(&mut self, ids: &Ids) -> Result<f64> {
        match self.pool.take() {
            Some(pool) => {
                let result = pool.install(|| self.step_inner(ids));
                self.pool = Some(pool);
                result
            }
            None => self.step_inner(ids),
        }
    }

    fn step_inner(&mut self, ids: &Ids) -> Result<f64> {
        if self.progress.step_in_epoch as usize >= self.streams.steps_per_epoch() {
            self.progress.epoch += 1;
            self.progress.step_in_epoch = 0;
            for s in &mut self.shards {
                s.state.fill(F::zero());
            }
        }
        let (t, b) = (self.config.seq_len, self.config.batch);
        let pos = self.progress.step_in_epoch as usize * t;
        // Sum over time (the tutorial's loss), mean over streams: B = 1 is the tutorial exactly.
        let scale = F::one() / F::c(b as f64);
        let (model, params, chunk, streams) = (
            &self.model,
            &self.params[..],
            self.config.path.chunk_fn::<F>(),
            &self.streams,
        );
        let noise = self.config.noise(self.progress.step);
        for_each_shard(&mut self.shards, |s| {
            s.run(model, params, chunk, streams, ids, pos, scale, &noise)
        });
        let loss = self.shards.iter().fold(F::zero(), |acc, s| acc + s.loss);
        let loss = loss.to_f64().unwrap_or(f64::NAN);
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: self.progress.step,
                what: "loss",
                value: loss,
            });
        }
        reduce_grads(&mut self.shards);
        let c = &self.config;
        let lr = c.schedule.lr(c.lr, self.progress.step, self.total_steps());
        let step = self.progress.step + 1;
        let norm = self.opt.step(
            &mut self.params,
            &self.shards[0].grads,
            lr,
            c.clip,
            c.clip_mode,
            step,
        );
        if !norm.is_finite() {
            // The parameters may already hold non-finite values: the caller must not save them.
            return Err(Error::Diverged {
                step: self.progress.step,
                what: "gradient norm",
                value: norm,
            });
        }

        let p = &mut self.progress;
        p.step += 1;
        p.step_in_epoch += 1;
        p.chars_seen += (t * b) as u64;
        p.last_loss = loss / (t * b) as f64;
        p.smooth_loss = p.smooth_loss * 0.999 + (loss / b as f64) * 0.001;
        p.grad_norm = norm;
        p.lr = lr;
        Ok(p.last_loss)
    }
}

/// Mean loss of a model over a text.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalStats {
    /// Mean loss, nats/char.
    pub loss: f64,
    /// Mean loss, bits/char.
    pub bpc: f64,
    /// Characters predicted.
    pub chars: u64,
}

/// Forward-only loss of `params` over `ids`, cut into at most `max_batch` streams walked in
/// chunks of up to `seq_len`, each stream starting from a zero state and carrying it along.
///
/// Every symbol of a stream but its first is predicted; the at most B−1 symbols left over
/// when N is not a multiple of B are not. Streams are evaluated in shards of up to 16 (in
/// parallel inside a rayon pool), whose losses are summed in shard order: the result does not
/// depend on the number of threads.
pub fn evaluate<F: Float>(
    model: &CharLm,
    params: &[F],
    ids: &Ids,
    seq_len: usize,
    max_batch: usize,
) -> Result<EvalStats> {
    let n = ids.len();
    if n < 2 {
        return Err(Error::TooShortToEvaluate {
            path: "the evaluation text".into(),
            chars: n,
        });
    }
    let batch = (n / (seq_len + 1)).clamp(1, max_batch.max(1));
    let streams = Streams::new(n, batch, 1)?;
    let per_stream = streams.stream_len - 1;
    let t_full = seq_len.min(per_stream);
    // (first stream, streams, summed loss) of each shard.
    let mut shards: Vec<(usize, usize, f64)> = partition(batch, batch.div_ceil(16))
        .into_iter()
        .map(|(b0, nb)| (b0, nb, 0.0))
        .collect();
    for_each_shard(&mut shards, |(b0, nb, total)| {
        let mut ws_full = Workspace::new(model, t_full, *nb);
        let mut ws_tail = Workspace::new(model, (per_stream % t_full).max(1), *nb);
        let mut state = model.zero_state::<F>(*nb);
        let mut pos = 0;
        while pos < per_stream {
            let ws = if per_stream - pos >= t_full {
                &mut ws_full
            } else {
                &mut ws_tail
            };
            streams.fill(ids, pos, *b0, *nb, &mut ws.xs, &mut ws.ys);
            model.forward(params, &state.view(), ws);
            ws.last_state(&mut state.view_mut());
            *total += model.loss(ws).to_f64().unwrap_or(f64::NAN);
            pos += ws.xs.len() / *nb;
        }
    });
    let total: f64 = shards.iter().map(|s| s.2).sum();
    let chars = (per_stream * batch) as u64;
    let loss = total / chars as f64;
    Ok(EvalStats {
        loss,
        bpc: loss / std::f64::consts::LN_2,
        chars,
    })
}
