//! A training run in memory ([`Trainer`]: one optimizer step at a time). The configuration it
//! runs is [`crate::config`]'s, and evaluation [`crate::evaluate`]'s, re-exported here.

use ndarray::Array3;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use crate::config::{PathKind, Stop, TrainConfig};

use crate::data::{Corpus, Cursor, Ids, Order, Streams};
use crate::error::{Error, Result};
use crate::linalg::{Float, Precision};
use crate::model::{CharLm, Tensor, WeightPacks};
use crate::naive;
use crate::optim::{Matrix, OptState};
use crate::parallel::group::{agree_signal, gather_to_root, Team};
use crate::parallel::{
    for_each_shard, gather_state, partition, reduce_grads, scatter_state, ChunkFn, Group, Shard,
    CHUNK,
};

pub use crate::evaluate::{evaluate, evaluate_in, EvalStats, Evaluation, EVAL_SHARD};

impl PathKind {
    /// The function that runs one chunk of a shard's streams on this path.
    pub fn chunk_fn<F: Float>(self) -> ChunkFn<F> {
        match self {
            PathKind::Blas => CharLm::forward_backward,
            PathKind::Naive => naive::forward_backward_chunk,
        }
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
    /// Flat parameters (layout: [`CharLm::layout`]): the weights the optimizer moves.
    pub params: Vec<F>,
    /// The exponential moving average of `params` when the run keeps one
    /// ([`OptimConfig::ema`](crate::config::OptimConfig::ema)): then it is the model.
    pub average: Option<Vec<F>>,
    /// The optimizer and its state.
    pub opt: OptState<F>,
    /// Where the run stands.
    pub progress: Progress,
    /// The run's random number generator (its state is saved with the model).
    pub rng: ChaCha8Rng,
    /// The layout of the corpus into streams (of the current step's chunk length).
    pub streams: Streams,
    /// Symbols in the training corpus (all ranks'), which `streams` lays out.
    corpus_len: usize,
    /// Steps in one epoch at the run's T (a warm-up's shorter chunks make more).
    epoch_steps: usize,
    shards: Vec<Shard<F>>,
    /// The weights packed for the bf16 products once per step, for every shard (made at the
    /// first bf16 step).
    packs: Option<WeightPacks>,
    pool: Option<rayon::ThreadPool>,
    team: Option<Team<F>>,
}

impl<F: Float> Trainer<F> {
    /// A fresh run over `corpus` with freshly initialised weights.
    pub fn new(mut config: TrainConfig, corpus: &Corpus) -> Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(config.run.seed);
        config.validate()?;
        // The partition is part of the run: record it, so a resumed run keeps it even if a
        // later release picks another default.
        config.run.shards = Some(config.shard_count());
        config.check_memory(corpus.vocab.len(), crate::os::available_memory())?;
        let model = config.model(corpus.vocab.len());
        let mut params = model.init(config.model.init, &mut rng);
        if let Some(std) = config.model.embed_std {
            model.init_embedding(&mut params, std, &mut rng);
        }
        if let Some(bias) = config.model.forget_bias {
            model.set_forget_bias(&mut params, bias);
        }
        if let Some(factor) = config.model.head_scale {
            model.scale_head(&mut params, factor);
        }
        let progress = Progress {
            smooth_loss: (model.vocab as f64).ln() * config.data.seq_len as f64,
            ..Progress::default()
        };
        Self::from_parts(
            config,
            corpus.ids.len(),
            model,
            params,
            None,
            None,
            None,
            progress,
            rng,
        )
    }

    /// Reassembles a run from saved parts (see [`crate::checkpoint`]). A run that keeps an
    /// average of its weights and has none saved (a fresh one) starts it as `params`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        config: TrainConfig,
        corpus_len: usize,
        model: CharLm,
        params: Vec<F>,
        average: Option<Vec<F>>,
        moments: Option<(Vec<F>, Option<Vec<F>>)>,
        state: Option<Array3<F>>,
        progress: Progress,
        rng: ChaCha8Rng,
    ) -> Result<Self> {
        config.validate()?;
        config.check_memory(model.vocab, crate::os::available_memory())?;
        let d = &config.data;
        // The chunk length of the last step taken, in whose chunks `progress` counts the
        // position: the next step moves on to its own (`set_chunk_len`).
        let t = d.seq_len_at(progress.step.saturating_sub(1));
        let streams = d
            .stream_order
            .streams(corpus_len, d.batch, t, config.run.seed)?;
        // A warm-up starts on shorter chunks; a corpus too short for the run's own T is
        // refused now, not when the warm-up ends.
        let epoch_steps = d
            .stream_order
            .streams(corpus_len, d.batch, d.seq_len, config.run.seed)?
            .steps_per_epoch();
        let n = model.num_params();
        let mut opt = OptState::new(config.optim.optimizer, n).with_matrices(hidden_maps(&model));
        if let Some(mult) = config.optim.bias_lr_mult {
            opt = opt.with_scaled_lr(layer_biases(&model), mult);
        }
        if let Some(mult) = config.optim.embed_lr_mult {
            opt = opt.with_scaled_lr(vec![input_table(&model)], mult);
        }
        if let Some((m, v)) = moments {
            opt.m = m;
            if let Some(v) = v {
                opt.v = v;
            }
        }
        let mut shards: Vec<Shard<F>> = partition(config.data.batch, config.shard_count())
            .into_iter()
            .map(|(b0, nb)| Shard::new(&model, t, b0, nb, &config.noise(0)))
            .collect();
        for shard in &mut shards {
            shard.ws.set_precision(config.run.precision);
        }
        if let Some(state) = state {
            let want = (model.layers, config.data.batch, model.state_width());
            if state.dim() != want {
                return Err(Error::config(
                    "state",
                    format!("{:?}", state.dim()),
                    format!("the carried state must be (layers, batch, state width) = {want:?}"),
                ));
            }
            scatter_state(&mut shards, &state);
        }
        let average = config
            .optim
            .ema
            .map(|_| average.unwrap_or_else(|| params.clone()));
        Ok(Trainer {
            config,
            model,
            params,
            average,
            opt,
            progress,
            rng,
            streams,
            corpus_len,
            epoch_steps,
            shards,
            packs: None,
            pool: None,
            team: None,
        })
    }

    /// Makes this trainer one rank of a run trained by `group`: it keeps only its own shards
    /// (rank r of N owns shards `[r·S/N, (r+1)·S/N)`) and from now on sums gradients with the
    /// other ranks, so that every rank takes the step one process would. S must divide by N.
    pub fn distribute(&mut self, group: Box<dyn Group>) -> Result<()> {
        let (rank, size, total) = (group.rank(), group.size(), self.shards.len());
        if total % size != 0 {
            return Err(Error::config(
                "--shards",
                total,
                format!(
                    "the run's {total} shard(s) cannot be divided among {size} processes: start the run \
                     with --shards a multiple of {size} (e.g. {}), or run it on a number of processes \
                     that divides {total}",
                    size * total.div_ceil(size)
                ),
            ));
        }
        let per = total / size;
        self.shards = self.shards.drain(..).skip(rank * per).take(per).collect();
        self.team = Some(Team {
            group,
            scratch: Vec::new(),
            seconds: 0.0,
        });
        Ok(())
    }

    /// Runs every product at `precision` from the next step on (and records it in the
    /// config); refuses bf16 where [`TrainConfig::validate`] does.
    pub fn set_precision(&mut self, precision: Precision) -> Result<()> {
        let mut config = self.config.clone();
        config.run.precision = precision;
        config.validate()?;
        self.config = config;
        for shard in &mut self.shards {
            shard.ws.set_precision(precision);
        }
        Ok(())
    }

    /// This process's rank among those training the run (0 when it trains alone).
    pub fn rank(&self) -> usize {
        self.team.as_ref().map_or(0, |t| t.group.rank())
    }

    /// Processes training the run (1 when it trains alone).
    pub fn ranks(&self) -> usize {
        self.team.as_ref().map_or(1, |t| t.group.size())
    }

    /// Wall-clock seconds this process has spent summing gradients with the other processes
    /// of the run (the wait for the slowest included; 0 when it trains alone).
    pub fn reduce_seconds(&self) -> f64 {
        self.team.as_ref().map_or(0.0, |t| t.seconds)
    }

    /// The group of processes training the run, if any.
    pub fn group(&mut self) -> Option<&mut dyn Group> {
        match &mut self.team {
            Some(t) => Some(t.group.as_mut()),
            None => None,
        }
    }

    /// The signal any process of the run was asked to stop with (`local`, alone).
    pub fn agree_signal(&mut self, local: Option<i32>) -> Result<Option<i32>> {
        match self.group() {
            Some(g) => agree_signal(g, local),
            None => Ok(local),
        }
    }

    /// (L, B, S) carried state of all streams of the run, for a model file: gathered from
    /// every rank at rank 0 when the run is distributed (every rank must call it; the others
    /// get None).
    pub fn full_state(&mut self) -> Result<Option<Array3<F>>> {
        let local = self.state();
        let Some(group) = self.group() else {
            return Ok(Some(local));
        };
        let (l, s) = (local.dim().0, local.dim().2);
        // Sent streams-first, so that the ranks' blocks follow each other.
        let by_stream = local
            .permuted_axes([1, 0, 2])
            .as_standard_layout()
            .into_owned();
        let all = gather_to_root(group, by_stream.as_slice().expect("standard layout"))?;
        Ok(all.map(|v| {
            let b = v.len() / (l * s).max(1);
            Array3::from_shape_vec((b, l, s), v)
                .expect("every rank holds whole streams")
                .permuted_axes([1, 0, 2])
                .as_standard_layout()
                .into_owned()
        }))
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

    /// [`evaluate`] of the current parameters on `ids`, in at most `cut.0` streams and shards
    /// of up to `cut.1`, on the run's threads, shared among
    /// the processes of a distributed run (each computes a part; all get the result), and
    /// abandoned between two chunks when `interrupt` asks on any of them (see [`evaluate_in`]).
    pub fn evaluate(
        &mut self,
        ids: &Ids,
        seq_len: usize,
        (max_batch, per_shard): (usize, usize),
        interrupt: &dyn Fn() -> Option<i32>,
    ) -> Result<Evaluation> {
        let params = self.average.as_deref().unwrap_or(&self.params);
        let (model, pool) = (&self.model, self.pool.as_ref());
        let precision = self.config.run.precision;
        let group: Option<&mut dyn Group> = match &mut self.team {
            Some(t) => Some(t.group.as_mut()),
            None => None,
        };
        evaluate_in(
            model, params, ids, seq_len, max_batch, per_shard, precision, pool, group, interrupt,
        )
    }

    /// The model's parameters: the average of the weights when the run keeps one
    /// (`--ema`), else the weights themselves. What is evaluated, sampled and saved as the
    /// model.
    pub fn model_params(&self) -> &[F] {
        self.average.as_deref().unwrap_or(&self.params)
    }

    /// Threads the shards run on.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or(1, |p| p.current_num_threads())
    }

    /// Number of shards this process runs (S, or S/N of a distributed run).
    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// (L, B, S) state of every layer carried from chunk to chunk of every stream of this
    /// process (of its own B/N streams in a distributed run: see [`Trainer::full_state`]).
    pub fn state(&self) -> Array3<F> {
        gather_state(&self.shards)
    }

    /// Steps in one epoch at the run's T, after any sequence-length warm-up (whose steps
    /// read shorter chunks: [`Trainer::streams`] counts those while it lasts).
    pub fn steps_per_epoch(&self) -> usize {
        self.epoch_steps
    }

    /// The step at which training stops.
    pub fn total_steps(&self) -> u64 {
        match self.config.run.stop {
            Stop::Steps(n) => n,
            Stop::Epochs(e) => e * self.epoch_steps as u64,
            Stop::Chars(c) => self.config.data.steps_for_chars(c),
        }
    }

    /// True once the configured number of steps or epochs is done.
    pub fn done(&self) -> bool {
        self.progress.step >= self.total_steps()
    }

    /// One optimizer step on the next chunk of every stream: forward, backward, clip, update.
    ///
    /// Where the streams jump (every epoch's start; every segment of a shuffled order) the
    /// carried state is zeroed first.
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

    /// Lays the streams out in chunks of `t` from this step on (a sequence-length warm-up's
    /// end): each stream goes on from the characters it has read in this epoch, rounded up
    /// to a whole chunk of `t` (in a shuffled order, to the next segment, from a zero state).
    fn set_chunk_len(&mut self, t: usize) -> Result<()> {
        let d = &self.config.data;
        let read = self.progress.step_in_epoch as usize * self.streams.seq_len;
        self.streams = d
            .stream_order
            .streams(self.corpus_len, d.batch, t, self.config.run.seed)?;
        let mut chunk = read.div_ceil(t);
        if let Order::Shuffled { chunks, .. } = self.streams.order {
            chunk = chunk.next_multiple_of(chunks);
        }
        self.progress.step_in_epoch = chunk as u64;
        let noise = self.config.noise(self.progress.step);
        for s in &mut self.shards {
            s.set_chunk_len(&self.model, t, &noise);
        }
        Ok(())
    }

    fn step_inner(&mut self, ids: &Ids) -> Result<f64> {
        let t = self.config.data.seq_len_at(self.progress.step);
        if t != self.streams.seq_len {
            self.set_chunk_len(t)?;
        }
        if self.progress.step_in_epoch as usize >= self.streams.steps_per_epoch() {
            self.progress.epoch += 1;
            self.progress.step_in_epoch = 0;
        }
        let at = Cursor {
            epoch: self.progress.epoch,
            chunk: self.progress.step_in_epoch as usize,
        };
        if self.streams.jumps_at(at) {
            for s in &mut self.shards {
                s.state.fill(F::zero());
            }
        }
        let b = self.config.data.batch;
        // Sum over time (the tutorial's loss), mean over streams: B = 1 is the tutorial exactly.
        let scale = F::one() / F::c(b as f64);
        let (model, params, chunk, streams) = (
            &self.model,
            &self.params[..],
            self.config.run.path.chunk_fn::<F>(),
            &self.streams,
        );
        let noise = self.config.noise(self.progress.step);
        // bf16 products multiply by the weights packed; pack them once here for all shards,
        // not once in each (DropConnect's shards multiply by their masked copies instead).
        let run = &self.config.run;
        let packs = if run.precision == Precision::Bf16
            && run.path == PathKind::Blas
            && noise.weight_drop == 0.0
        {
            let packs = self.packs.get_or_insert_with(|| WeightPacks::new(model));
            packs.pack(model, params);
            Some(&*packs)
        } else {
            None
        };
        for_each_shard(&mut self.shards, |s| {
            s.run(model, params, packs, chunk, streams, ids, at, scale, &noise)
        })?;
        let loss = match &mut self.team {
            Some(team) => team.reduce(&mut self.shards)?,
            None => {
                reduce_grads(&mut self.shards);
                self.shards.iter().fold(F::zero(), |acc, s| acc + s.loss)
            }
        };
        let loss = loss.to_f64().unwrap_or(f64::NAN);
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: self.progress.step,
                what: "loss",
                value: loss,
            });
        }
        let c = &self.config;
        let lr = c
            .optim
            .schedule
            .lr(c.optim.lr, self.progress.step, self.total_steps());
        let step = self.progress.step + 1;
        let norm = self.opt.step(
            &mut self.params,
            &self.shards[0].grads,
            lr,
            c.optim.clip,
            c.optim.clip_mode,
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

        if let (Some(average), Some(d)) = (&mut self.average, c.optim.ema) {
            blend(average, &self.params, F::c(d));
        }
        let p = &mut self.progress;
        p.step += 1;
        p.step_in_epoch += 1;
        p.chars_seen += (t * b) as u64;
        p.last_loss = loss / (t * b) as f64;
        // The tutorial's smoothed loss is of a chunk of T: a warm-up's shorter chunks count
        // as their share of one.
        let chunk_loss = loss / b as f64 * (self.config.data.seq_len as f64 / t as f64);
        p.smooth_loss = p.smooth_loss * 0.999 + chunk_loss * 0.001;
        p.grad_norm = norm;
        p.lr = lr;
        Ok(p.last_loss)
    }
}

/// average ← d·average + (1 − d)·w, element by element: one step of an exponential moving
/// average of the weights `w`. Over the pool's threads when called inside one (as the
/// optimizer's update is); the bits do not depend on it.
fn blend<F: Float>(average: &mut [F], w: &[F], d: F) {
    let e = F::one() - d;
    let chunk = |(a, w): (&mut [F], &[F])| {
        for (a, &w) in a.iter_mut().zip(w) {
            *a = d * *a + e * w;
        }
    };
    if rayon::current_thread_index().is_some() && w.len() > 2 * CHUNK {
        use rayon::prelude::*;
        average
            .par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK))
            .for_each(chunk);
    } else {
        average
            .chunks_mut(CHUNK)
            .zip(w.chunks(CHUNK))
            .for_each(chunk);
    }
}

/// Where the recurrent layers' biases (b, and the GRU's b_hn) lie in the flat buffer: what
/// `bias_lr_mult` scales.
pub fn layer_biases(model: &CharLm) -> Vec<std::ops::Range<usize>> {
    model
        .layout()
        .iter()
        .filter(|p| matches!(p.tensor, Tensor::B(_) | Tensor::BHn(_)))
        .map(|p| p.range())
        .collect()
}

/// Where the input table lies in the flat buffer: the explicit embedding, else layer 0's W_ih
/// (the one-hot inputs select its rows). What `embed_lr_mult` scales.
pub fn input_table(model: &CharLm) -> std::ops::Range<usize> {
    let table = match model.embed {
        Some(_) => Tensor::Embed,
        None => Tensor::WIh(0),
    };
    model.range_of(table)
}

/// The weight matrices that map hidden states (every layer's W_hh, and W_ih above layer 0),
/// each with its gate blocks side by side: what Muon orthogonalises. Not the embedding
/// (layer 0's W_ih, a table gathered by symbol) and not the head.
pub fn hidden_maps(model: &CharLm) -> Vec<Matrix> {
    model
        .layout()
        .iter()
        .filter(|p| matches!(p.tensor, Tensor::WHh(_) | Tensor::WIh(1..)))
        .map(|p| Matrix {
            offset: p.offset,
            rows: p.shape[0],
            cols: p.shape[1],
            blocks: model.cell.gates(),
        })
        .collect()
}
