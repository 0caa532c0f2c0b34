//! The train flags mapped onto the library's configuration: applied to a preset's or a
//! cell's defaults for a new run, or to the saved configuration for a resumed one, and
//! refused where they would be ignored.

use charrnn::config::{PathKind, SampleEvery, Stop, TrainConfig, TrainSamples, ValScreen};
use charrnn::data::{StreamOrder, SymbolKind, ValLayout, SEGMENT_CHUNKS, VAL_BLOCK};
use charrnn::model::{CellKind, Init};
use charrnn::optim::{ClipMode, Optimizer, Schedule};

use crate::args::{
    CellArg, ClipModeArg, InitArg, OptimizerArg, PathArg, Preset, ScheduleArg, StreamOrderArg,
    TrainArgs, ValLayoutArg,
};

/// The configuration the flags start from: the preset's, else the defaults of --cell.
fn base_config(a: &TrainArgs) -> TrainConfig {
    match a.preset {
        Some(Preset::Seed) => TrainConfig::seed_preset(),
        Some(Preset::ShakespeareSpeed) => TrainConfig::shakespeare_speed_preset(),
        None => TrainConfig::for_cell(a.cell.map_or(CellKind::default(), |cell| match cell {
            CellArg::Rnn => CellKind::Rnn,
            CellArg::Gru => CellKind::Gru,
            CellArg::Lstm => CellKind::Lstm,
        })),
    }
}

/// The configuration of a new run: the flags applied to the preset's or the cell's defaults.
pub(crate) fn config_from(a: &TrainArgs) -> TrainConfig {
    apply_flags(a, base_config(a))
}

/// `base` with every flag given applied (a flag left out keeps `base`'s setting).
pub(crate) fn apply_flags(a: &TrainArgs, base: TrainConfig) -> TrainConfig {
    let mut c = base;
    if let Some(cell) = a.cell {
        c.model.cell = match cell {
            CellArg::Rnn => CellKind::Rnn,
            CellArg::Gru => CellKind::Gru,
            CellArg::Lstm => CellKind::Lstm,
        };
    }
    c.model.layers = a.layers.unwrap_or(c.model.layers);
    c.model.hidden = a.hidden.unwrap_or(c.model.hidden);
    c.data.seq_len = a.seq_len.unwrap_or(c.data.seq_len);
    c.data.batch = a.batch.unwrap_or(c.data.batch);
    if let Some(w) = a.seq_len_warmup {
        c.data.seq_len_warmup = w.0;
    }
    if let Some(o) = effective_optimizer(a, &c) {
        // The base config's own rule keeps its settings unless given; another takes the
        // library's defaults for it.
        let base = c.optim.optimizer;
        let rule = match o {
            OptimizerArg::Adagrad => Optimizer::Adagrad,
            OptimizerArg::Sgd => Optimizer::sgd(),
            OptimizerArg::Rmsprop => Optimizer::rmsprop(),
            OptimizerArg::Adam => Optimizer::adam(),
            OptimizerArg::Muon => Optimizer::muon(),
        };
        let rule = if same_kind(&rule, &base) { base } else { rule };
        c.optim.optimizer = match rule {
            Optimizer::Adagrad => Optimizer::Adagrad,
            Optimizer::Sgd { momentum } => Optimizer::Sgd {
                momentum: a.momentum.unwrap_or(momentum),
            },
            Optimizer::Rmsprop { decay } => Optimizer::Rmsprop {
                decay: a.rms_decay.unwrap_or(decay),
            },
            Optimizer::Adam {
                beta1,
                beta2,
                weight_decay,
                eps,
            } => Optimizer::Adam {
                beta1: a.beta1.unwrap_or(beta1),
                beta2: a.beta2.unwrap_or(beta2),
                weight_decay: a.weight_decay.unwrap_or(weight_decay),
                eps: a.eps.unwrap_or(eps),
            },
            Optimizer::Muon {
                momentum,
                matrix_lr,
                beta1,
                beta2,
                eps,
            } => Optimizer::Muon {
                momentum: a.momentum.unwrap_or(momentum),
                matrix_lr: a.matrix_lr.unwrap_or(matrix_lr),
                beta1: a.beta1.unwrap_or(beta1),
                beta2: a.beta2.unwrap_or(beta2),
                eps: a.eps.unwrap_or(eps),
            },
        };
        if !same_kind(&rule, &base) {
            c.optim.lr = TrainConfig::default_lr(c.optim.optimizer, c.model.cell);
        }
    }
    c.optim.lr = a.lr.unwrap_or(c.optim.lr);
    c.optim.clip = a.clip.unwrap_or(c.optim.clip);
    if let Some(m) = a.clip_mode {
        c.optim.clip_mode = match m {
            ClipModeArg::Elementwise => ClipMode::Elementwise,
            ClipModeArg::Norm => ClipMode::Norm,
        };
    }
    if let Some(sch) = effective_schedule(a, &c) {
        // As for the rule: the base config's own schedule keeps its settings unless given.
        let chosen = match sch {
            ScheduleArg::Constant => Schedule::Constant,
            ScheduleArg::Step => Schedule::step(),
            ScheduleArg::Cosine => Schedule::cosine(),
        };
        let chosen = if same_kind(&chosen, &c.optim.schedule) {
            c.optim.schedule
        } else {
            chosen
        };
        c.optim.schedule = match chosen {
            Schedule::Constant => Schedule::Constant,
            Schedule::Step { every, gamma } => Schedule::Step {
                every: a.decay_every.unwrap_or(every),
                gamma: a.gamma.unwrap_or(gamma),
            },
            Schedule::Cosine { warmup, min_frac } => Schedule::Cosine {
                warmup: a.warmup.unwrap_or(warmup),
                min_frac: a.min_lr_frac.unwrap_or(min_frac),
            },
        };
    }
    if let Some(e) = a.epochs {
        c.run.stop = Stop::Epochs(e);
    }
    if let Some(s) = a.steps {
        c.run.stop = Stop::Steps(s);
    }
    if let Some(n) = a.chars {
        c.run.stop = Stop::Chars(n);
    }
    c.data.max_chars = a.max_chars.or(c.data.max_chars);
    c.run.seed = a.seed.unwrap_or(c.run.seed);
    if let Some(i) = a.init {
        c.model.init = match i {
            InitArg::Seed => Init::Seed,
            InitArg::Orthogonal => Init::Orthogonal,
            InitArg::Xavier => Init::Xavier,
            InitArg::Uniform => Init::Uniform,
        };
    }
    c.model.embed_std = a.embed_std.or(c.model.embed_std);
    c.model.embed = a.embed.or(c.model.embed);
    c.optim.bias_lr_mult = a.bias_lr_mult.or(c.optim.bias_lr_mult);
    c.optim.embed_lr_mult = a.embed_lr_mult.or(c.optim.embed_lr_mult);
    if let Some(d) = a.ema {
        c.optim.ema = (d != 0.0).then_some(d);
    }
    c.model.forget_bias = a.forget_bias.or(c.model.forget_bias);
    c.model.head_scale = a.head_scale.or(c.model.head_scale);
    if let Some(p) = a.path {
        c.run.path = match p {
            PathArg::Blas => PathKind::Blas,
            PathArg::Naive => PathKind::Naive,
        };
    }
    c.data.val_frac = a.val_frac.unwrap_or(c.data.val_frac);
    c.data.val_chars = a.val_chars.or(c.data.val_chars);
    if let Some(l) = a.val_layout {
        c.data.val_layout = match l {
            ValLayoutArg::Auto => ValLayout::Auto,
            ValLayoutArg::End => ValLayout::End,
            ValLayoutArg::Blocks => ValLayout::Blocks { block: VAL_BLOCK },
        };
    }
    if a.stream_order.is_some() || a.segment.is_some() {
        let chunks = match (a.segment, c.data.stream_order) {
            (Some(k), _) => k,
            (None, StreamOrder::Shuffled { chunks }) => chunks,
            (None, _) => SEGMENT_CHUNKS,
        };
        c.data.stream_order = match a.stream_order {
            Some(StreamOrderArg::Auto) => StreamOrder::Auto,
            Some(StreamOrderArg::Contiguous) => StreamOrder::Contiguous,
            Some(StreamOrderArg::Shuffled) | None => StreamOrder::Shuffled { chunks },
        };
    }
    c.optim.dropout = a.dropout.unwrap_or(c.optim.dropout);
    c.optim.weight_drop = a.weight_drop.unwrap_or(c.optim.weight_drop);
    c.run.eval_every = a.eval_every.unwrap_or(c.run.eval_every);
    c.run.target_loss = a.target_loss.or(c.run.target_loss);
    if let Some(streams) = a.val_screen {
        c.run.val_screen = Some(ValScreen {
            streams,
            margin: a.screen_margin.unwrap_or(ValScreen::DEFAULT_MARGIN),
        });
    }
    c.run.precision = a.precision.unwrap_or(c.run.precision);
    if a.blas_threads.is_some() {
        c.run.shards = Some(1);
    } else if a.shards.is_some() {
        c.run.shards = a.shards;
    }
    if a.bytes {
        c.data.symbols = SymbolKind::Bytes;
    }
    c.run.samples = samples_from(a, c.run.samples);
    c
}

/// What to sample during training: `base` (the preset's, or the resumed run's) with the
/// --sample-* flags applied; `--sample-every 0` turns sampling off.
pub(crate) fn samples_from(a: &TrainArgs, base: Option<TrainSamples>) -> Option<TrainSamples> {
    let mut s = match (a.sample_every, base) {
        (Some(0), _) => return None,
        (Some(n), Some(base)) => TrainSamples {
            every: SampleEvery::Steps(n),
            ..base
        },
        (Some(n), None) => TrainSamples::every(n),
        (None, base) => base?,
    };
    s.len = a.sample_len.unwrap_or(s.len);
    s.temperature = a.sample_temperature.unwrap_or(s.temperature);
    if let Some(prime) = &a.sample_prime {
        s.prime = prime.clone();
    }
    Some(s)
}

/// Whether two settings are the same variant (whatever its fields).
fn same_kind<T>(a: &T, b: &T) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The update rule whose flags (--beta1, --momentum, ...) apply: --optimizer's, else the
/// base config's (None: the base config's AdaGrad, which has none).
fn effective_optimizer(a: &TrainArgs, base: &TrainConfig) -> Option<OptimizerArg> {
    a.optimizer.or(match base.optim.optimizer {
        Optimizer::Adagrad => None,
        Optimizer::Sgd { .. } => Some(OptimizerArg::Sgd),
        Optimizer::Rmsprop { .. } => Some(OptimizerArg::Rmsprop),
        Optimizer::Adam { .. } => Some(OptimizerArg::Adam),
        Optimizer::Muon { .. } => Some(OptimizerArg::Muon),
    })
}

/// The schedule whose flags (--warmup, --gamma, ...) apply: --schedule's, else the base
/// config's (None: constant, which has none).
fn effective_schedule(a: &TrainArgs, base: &TrainConfig) -> Option<ScheduleArg> {
    a.schedule.or(match base.optim.schedule {
        Schedule::Constant => None,
        Schedule::Step { .. } => Some(ScheduleArg::Step),
        Schedule::Cosine { .. } => Some(ScheduleArg::Cosine),
    })
}

/// Refuses a setting of an optimizer, schedule or sampling the run does not use (it would
/// be ignored without a word): `--weight-decay` without `--optimizer adam`, `--warmup`
/// without `--schedule cosine`, and so on. `base` is the configuration the flags apply to
/// (None: a new run's, [`base_config`]).
pub(crate) fn check_flag_scope(a: &TrainArgs, base: Option<&TrainConfig>) -> Result<(), String> {
    use OptimizerArg::{Adam, Muon, Rmsprop, Sgd};
    use ScheduleArg::{Cosine, Step};
    let base = base.cloned().unwrap_or_else(|| base_config(a));
    let (opt, sch) = (effective_optimizer(a, &base), effective_schedule(a, &base));
    let scoped = [
        (
            "--momentum",
            a.momentum.is_some(),
            matches!(opt, Some(Sgd | Muon)),
            "--optimizer sgd or muon",
        ),
        (
            "--matrix-lr",
            a.matrix_lr.is_some(),
            matches!(opt, Some(Muon)),
            "--optimizer muon",
        ),
        (
            "--rms-decay",
            a.rms_decay.is_some(),
            matches!(opt, Some(Rmsprop)),
            "--optimizer rmsprop",
        ),
        (
            "--beta1",
            a.beta1.is_some(),
            matches!(opt, Some(Adam | Muon)),
            "--optimizer adam or muon",
        ),
        (
            "--beta2",
            a.beta2.is_some(),
            matches!(opt, Some(Adam | Muon)),
            "--optimizer adam or muon",
        ),
        (
            "--eps",
            a.eps.is_some(),
            matches!(opt, Some(Adam | Muon)),
            "--optimizer adam or muon",
        ),
        (
            "--weight-decay",
            a.weight_decay.is_some(),
            matches!(opt, Some(Adam)),
            "--optimizer adam",
        ),
        (
            "--decay-every",
            a.decay_every.is_some(),
            matches!(sch, Some(Step)),
            "--schedule step",
        ),
        (
            "--gamma",
            a.gamma.is_some(),
            matches!(sch, Some(Step)),
            "--schedule step",
        ),
        (
            "--warmup",
            a.warmup.is_some(),
            matches!(sch, Some(Cosine)),
            "--schedule cosine",
        ),
        (
            "--min-lr-frac",
            a.min_lr_frac.is_some(),
            matches!(sch, Some(Cosine)),
            "--schedule cosine",
        ),
    ];
    let sampling = samples_from(a, base.run.samples.clone()).is_some();
    let scoped = scoped.into_iter().chain([
        (
            "--screen-margin",
            a.screen_margin.is_some(),
            a.val_screen.is_some(),
            "--val-screen K",
        ),
        (
            "--segment",
            a.segment.is_some(),
            !matches!(
                a.stream_order,
                Some(StreamOrderArg::Auto | StreamOrderArg::Contiguous)
            ),
            "--stream-order shuffled",
        ),
        (
            "--sample-len",
            a.sample_len.is_some(),
            sampling,
            "--sample-every N",
        ),
        (
            "--sample-temperature",
            a.sample_temperature.is_some(),
            sampling,
            "--sample-every N",
        ),
        (
            "--sample-prime",
            a.sample_prime.is_some(),
            sampling,
            "--sample-every N",
        ),
    ]);
    for (flag, given, used, needs) in scoped {
        if given && !used {
            return Err(format!(
                "{flag} applies only with {needs}: add {needs}, or leave out {flag}"
            ));
        }
    }
    Ok(())
}
