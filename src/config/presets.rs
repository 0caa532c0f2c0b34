//! The configurations a run starts from: the tutorial's preset, the defaults of each cell,
//! and the speedrun's record recipe.

use super::{
    DataConfig, ModelConfig, OptimConfig, RunConfig, SeqLenWarmup, Stop, TrainConfig, TrainSamples,
};
use crate::model::{CellKind, Init};
use crate::optim::{ClipMode, Optimizer, Schedule, DEFAULT_EPS};

impl TrainConfig {
    /// The tutorial's run: H 75, T 20, clip 5, lr 1e-2, 50 epochs, batch 1, the first 20,000
    /// characters, the tutorial's initialisation; like the tutorial it prints 50 sampled
    /// characters after every epoch.
    pub fn seed_preset() -> Self {
        TrainConfig {
            model: ModelConfig {
                hidden: 75,
                init: Init::Seed,
                ..ModelConfig::default()
            },
            data: DataConfig {
                seq_len: 20,
                batch: 1,
                max_chars: Some(20_000),
                // The tutorial trains on all 20,000 characters.
                val_frac: 0.0,
                ..DataConfig::default()
            },
            optim: OptimConfig {
                lr: 1e-2,
                clip: 5.0,
                ..OptimConfig::default()
            },
            run: RunConfig {
                stop: Stop::Epochs(50),
                // Ten epochs between saves: the run is seconds long, its I/O should not be.
                eval_every: 9990,
                samples: Some(TrainSamples::tutorial()),
                ..RunConfig::default()
            },
        }
    }

    /// The defaults for a model of `cell`: for `rnn` the tutorial's ([`TrainConfig::default`]:
    /// its 0.01-scale init, AdaGrad, element-wise clipping); for the gated cells what learns
    /// fast per step (measured against PyTorch's defaults in `docs/recipes.md`):
    /// PyTorch's U(±1/√H) init with the embedding drawn from N(0, 1), Adam at
    /// [`TrainConfig::GATED_ADAM_LR`], and clipping of the gradient's global norm at 5; the
    /// LSTM's output layer drawn [`TrainConfig::LSTM_HEAD_SCALE`] times larger. A gated cell on
    /// the tutorial's 0.01-scale init barely moves its gates.
    pub fn for_cell(cell: CellKind) -> Self {
        let mut c = TrainConfig::default();
        c.model.cell = cell;
        if cell != CellKind::Rnn {
            c.model.init = Init::Uniform;
            c.model.embed_std = Some(1.0);
            c.optim.optimizer = Optimizer::adam();
            c.optim.lr = Self::GATED_ADAM_LR;
            c.optim.clip_mode = ClipMode::Norm;
        }
        if cell == CellKind::Lstm {
            c.model.head_scale = Some(Self::LSTM_HEAD_SCALE);
        }
        c
    }

    /// The LSTM's default `--head-scale`: its output layer drawn 7 times larger than
    /// U(±1/√H) learns much faster at first (2 × 128 at 500 steps: 1.706 nats/char against
    /// 1.790; 2 × 512 at 300: 1.555 against 1.595); the GRU's does not gain
    /// (`docs/recipes.md`).
    pub const LSTM_HEAD_SCALE: f64 = 7.0;

    /// Adam's default learning rate for the gated cells: twice PyTorch's customary 2e-3,
    /// because charrnn's loss sums over the T steps of a chunk, and its embedding is folded
    /// into W_ih (measured: `docs/recipes.md`).
    pub const GATED_ADAM_LR: f64 = 4e-3;

    /// The default learning rate of `optimizer` for a model of `cell`.
    pub fn default_lr(optimizer: Optimizer, cell: CellKind) -> f64 {
        match optimizer {
            Optimizer::Adam { .. } | Optimizer::Muon { .. } if cell != CellKind::Rnn => {
                Self::GATED_ADAM_LR
            }
            o => o.default_lr(),
        }
    }

    /// The speedrun's record recipe for tinyshakespeare-sized corpora (`docs/speedrun.md`): the
    /// gated defaults on a 2-layer LSTM of width 384, B = T = 64 in 2 shards of 32 streams
    /// (the first 200 steps on chunks of 16: a sequence-length warm-up),
    /// with the embedding drawn from N(0, 2²), the forget gates' bias at 0, Adam at 8e-3 with
    /// β₁ at 0.7, no dropout, the rate planned over 600 steps (a 50-step warm-up, then a
    /// cosine decay to a tenth), the model an exponential moving average of the weights with
    /// decay 0.95, the input table (layer 0's W_ih) at 10 times the rate, an evaluation every
    /// 50 steps. Add a target loss to race.
    ///
    /// Two shards, not the three [`TrainConfig::auto_shards`] gives a width of 384: the AMX
    /// kernel takes rows 32 at a time, so shards of 21 or 22 streams would pad a third of
    /// every per-step product, and three shards keep one of two threads waiting (the
    /// AVX512-BF16 kernel takes rows 8 at a time: there the threads are the cost).
    pub fn shakespeare_speed_preset() -> Self {
        let mut c = Self::for_cell(CellKind::Lstm);
        c.model.layers = 2;
        c.model.hidden = 384;
        c.model.embed_std = Some(2.0);
        c.model.forget_bias = Some(0.0);
        c.data.batch = 64;
        c.data.seq_len = 64;
        c.data.seq_len_warmup = Some(SeqLenWarmup {
            seq_len: 16,
            steps: 200,
        });
        c.optim.optimizer = Optimizer::Adam {
            beta1: 0.7,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: DEFAULT_EPS,
        };
        c.optim.lr = 8e-3;
        c.optim.dropout = 0.0;
        c.optim.ema = Some(0.95);
        c.optim.embed_lr_mult = Some(10.0);
        c.optim.schedule = Schedule::Cosine {
            warmup: 50,
            min_frac: 0.1,
        };
        c.run.stop = Stop::Steps(600);
        c.run.eval_every = 50;
        c.run.shards = Some(2);
        c
    }
}
