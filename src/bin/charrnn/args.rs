//! The command line's flags (clap): every subcommand's, with their help. How the train flags
//! map onto the library's configuration is in `flags.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use charrnn::config::SeqLenWarmup;
use charrnn::linalg::Precision;

#[derive(Parser)]
#[command(
    name = "charrnn",
    version,
    about = "Train, sample and evaluate character-level RNNs, fast, on CPUs"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Train a model on a text file (or on the built-in corpus) and save it.
    Train(Box<TrainArgs>),
    /// Generate text from a saved model.
    Sample(SampleArgs),
    /// Report a saved model's loss (nats/char) and bits/char over a text.
    Eval(EvalArgs),
    /// Measure training throughput on this machine (and gate against a saved report).
    Bench(BenchArgs),
    /// Prepare a corpus once (files, directory trees, or standard input) into a data
    /// directory that `train`, `eval` and `bench --corpus` read without loading it.
    Prepare(crate::data::PrepareArgs),
    /// Write text drawn from the built-in Markov source, at any size (for tests and
    /// benchmarks of scale).
    Synth(crate::data::SynthArgs),
    /// Show a model file: configuration, vocabulary, size, progress, and the health of the
    /// recurrence (spectral radius of W_hh, weight norms).
    Inspect(InspectArgs),
}

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Fewer configurations and repetitions (well under a minute), for CI.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Measure only these configurations (comma-separated whole names as in the report, e.g.
    /// `H512_T64_B64`), or those whose name contains a part (e.g. `GRU2_H512,LSTM2_H512`).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
    /// Text to train on [default: the built-in corpus].
    #[arg(long)]
    pub(crate) corpus: Option<PathBuf>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Also write the report's Markdown table to this file.
    #[arg(long)]
    pub(crate) markdown: Option<PathBuf>,
    /// Append the report to this JSON-lines file and redraw FILE.png beside it: each case's
    /// efficiency and chars/s over every report, so a slow drift is visible.
    #[arg(long)]
    pub(crate) history: Option<PathBuf>,
    /// Compare against this saved report; exit 1 when any case's efficiency dropped by more
    /// than --threshold.
    #[arg(long)]
    pub(crate) compare: Option<PathBuf>,
    /// With --compare: use this saved report as the current one instead of measuring.
    #[arg(long, requires = "compare")]
    pub(crate) current: Option<PathBuf>,
    /// Only measure this process's single-thread sgemm rate and print it as JSON (used by
    /// bench itself to calibrate the CPU's own kernel family in a child process).
    #[arg(long, hide = true)]
    pub(crate) calibrate_only: bool,
    /// Tolerated relative drop in efficiency.
    #[arg(long, default_value_t = 0.10)]
    pub(crate) threshold: f64,
    /// bf16: measure every fast-path case in f32 and in bf16 (paths `blas_bf16`,
    /// `blas_rayon_bf16`, efficiency against a bf16 product calibrated in the same run);
    /// f32: in f32 only.
    #[arg(long, value_name = "f32|bf16", default_value = "f32")]
    pub(crate) precision: Precision,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Preset {
    /// The tutorial's run: hidden 75, seq-len 20, lr 1e-2, clip 5, 50 epochs, batch 1, the
    /// first 20,000 characters, init seed.
    Seed,
    /// The speedrun's record recipe (docs/speedrun.md): 2-layer LSTM 384, B = T = 64 in 2
    /// shards (the first 200 steps on chunks of 16), embedding N(0, 2²), --head-scale 7,
    /// forget bias 0, no dropout, Adam 8e-3 (β₁ 0.7) with a cosine over 600 steps, --ema
    /// 0.95, an evaluation every 50 steps; add --target-loss 1.5 to race.
    ShakespeareSpeed,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum InitArg {
    Seed,
    Orthogonal,
    Xavier,
    Uniform,
}

#[derive(Clone, Copy, PartialEq, ValueEnum)]
pub(crate) enum OptimizerArg {
    Adagrad,
    Sgd,
    Rmsprop,
    Adam,
    Muon,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ScheduleArg {
    Constant,
    Step,
    Cosine,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ClipModeArg {
    Elementwise,
    Norm,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CellArg {
    /// The tutorial's vanilla tanh RNN.
    Rnn,
    /// Gated recurrent unit (PyTorch's nn.GRU).
    Gru,
    /// Long short-term memory (PyTorch's nn.LSTM).
    Lstm,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ValLayoutArg {
    Auto,
    End,
    Blocks,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StreamOrderArg {
    Auto,
    Contiguous,
    Shuffled,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PathArg {
    Blas,
    Naive,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct TrainArgs {
    /// Text file (UTF-8; see --bytes), or a data directory written by `charrnn prepare`, to
    /// train on. Default: the built-in synthetic corpus.
    pub(crate) corpus: Option<PathBuf>,
    /// Start from a preset configuration; the other flags override it.
    #[arg(long, value_enum, conflicts_with = "resume")]
    pub(crate) preset: Option<Preset>,
    /// Recurrent cell [default: rnn, the tutorial's]. gru and lstm come with defaults of their
    /// own (without --preset): Adam at 4e-3, PyTorch's uniform init with an N(0, 1)
    /// embedding (and for lstm the output layer drawn 7 times larger: --head-scale),
    /// global-norm clipping at 5; every flag still overrides them.
    #[arg(long, value_enum)]
    pub(crate) cell: Option<CellArg>,
    /// Stacked recurrent layers L [default: 1].
    #[arg(long)]
    pub(crate) layers: Option<usize>,
    /// Hidden units H of every layer [default: 128].
    #[arg(long)]
    pub(crate) hidden: Option<usize>,
    /// Characters per chunk of truncated BPTT, T [default: 32].
    #[arg(long)]
    pub(crate) seq_len: Option<usize>,
    /// Sequence-length warm-up: the first STEPS steps read chunks of T0 < --seq-len
    /// characters, then every stream goes on at --seq-len (T0:STEPS; 0: none) [default: none;
    /// 16:200 for --preset shakespeare-speed].
    #[arg(long, value_name = "T0:STEPS", value_parser = parse_seq_len_warmup)]
    pub(crate) seq_len_warmup: Option<WarmupArg>,
    /// Independent streams per step, B [default: 32].
    #[arg(long)]
    pub(crate) batch: Option<usize>,
    /// Update rule [default: adagrad, the tutorial's; adam for --cell gru|lstm]. muon:
    /// orthogonalised momentum for the weight matrices that map hidden states, Adam for the
    /// rest.
    #[arg(long, value_enum)]
    pub(crate) optimizer: Option<OptimizerArg>,
    /// Learning rate [default: 0.05 for adagrad and sgd, 2e-3 for rmsprop and adam, 4e-3 for
    /// adam with --cell gru|lstm].
    #[arg(long)]
    pub(crate) lr: Option<f64>,
    /// Momentum μ: SGD's (with --optimizer sgd) [default: 0.9], or Muon's Nesterov
    /// momentum of the matrices (with --optimizer muon) [default: 0.95].
    #[arg(long)]
    pub(crate) momentum: Option<f64>,
    /// Muon's learning rate of the matrices (W_hh, and W_ih above layer 0) as a multiple of
    /// --lr, which the rest gets with Adam (with --optimizer muon) [default: 5].
    #[arg(long, value_name = "MULTIPLE")]
    pub(crate) matrix_lr: Option<f64>,
    /// RMSProp's decay of the squared-gradient average (with --optimizer rmsprop) [default: 0.95].
    #[arg(long)]
    pub(crate) rms_decay: Option<f64>,
    /// Adam's β₁ (with --optimizer adam or muon) [default: 0.9].
    #[arg(long)]
    pub(crate) beta1: Option<f64>,
    /// Adam's β₂ (with --optimizer adam or muon) [default: 0.999].
    #[arg(long)]
    pub(crate) beta2: Option<f64>,
    /// The recurrent layers' biases learn at this multiple of --lr (2 under Adam: what
    /// PyTorch's separate b_ih and b_hh do to their sum) [default: 1].
    #[arg(long)]
    pub(crate) bias_lr_mult: Option<f64>,
    /// The input table (the symbols' rows: layer 0's W_ih, or the embedding with --embed)
    /// learns at this multiple of --lr [default: 1].
    #[arg(long)]
    pub(crate) embed_lr_mult: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay per step (e.g. 0.95:
    /// over about 20 steps), and make it the model: evaluated, sampled and saved; 0 turns it
    /// off [default: off].
    #[arg(long, value_name = "DECAY")]
    pub(crate) ema: Option<f64>,
    /// Adam's ε, added to √v̂ (with --optimizer adam or muon) [default: 1e-8].
    #[arg(long)]
    pub(crate) eps: Option<f64>,
    /// Adam's decoupled weight decay λ (AdamW; with --optimizer adam) [default: 0, plain Adam].
    #[arg(long)]
    pub(crate) weight_decay: Option<f64>,
    /// Dropout between layers and before the output layer: the probability that an element
    /// of a layer's output is left out of what reads it (regularises large models; the
    /// recurrence is never masked) [default: 0].
    #[arg(long)]
    pub(crate) dropout: Option<f64>,
    /// DropConnect on the recurrence: the probability that an element of a layer's W_hh is
    /// left out of a step (one mask per layer and step for the whole batch; regularises large
    /// models)
    /// [default: 0].
    #[arg(long)]
    pub(crate) weight_drop: Option<f64>,
    /// Learning-rate schedule [default: constant].
    #[arg(long, value_enum)]
    pub(crate) schedule: Option<ScheduleArg>,
    /// Step schedule: decay every N steps [default: 1000].
    #[arg(long)]
    pub(crate) decay_every: Option<u64>,
    /// Step schedule: multiply the rate by this at each decay [default: 0.5].
    #[arg(long)]
    pub(crate) gamma: Option<f64>,
    /// Cosine schedule: linear warm-up steps [default: 100].
    #[arg(long)]
    pub(crate) warmup: Option<u64>,
    /// Cosine schedule: final rate as a fraction of --lr [default: 0.1].
    #[arg(long)]
    pub(crate) min_lr_frac: Option<f64>,
    /// Gradient clipping bound [default: 5].
    #[arg(long)]
    pub(crate) clip: Option<f64>,
    /// Clip every element to ±clip (the tutorial's) or the gradient's global norm to clip
    /// [default: elementwise; norm for --cell gru|lstm].
    #[arg(long, value_enum)]
    pub(crate) clip_mode: Option<ClipModeArg>,
    /// Passes over the corpus [default: 10].
    #[arg(long, conflicts_with_all = ["steps", "chars"])]
    pub(crate) epochs: Option<u64>,
    /// Optimizer steps (instead of --epochs).
    #[arg(long, conflicts_with = "chars")]
    pub(crate) steps: Option<u64>,
    /// Characters of training (instead of --epochs): a budget for large corpora, rounded up
    /// to whole steps of seq-len × batch characters.
    #[arg(long)]
    pub(crate) chars: Option<u64>,
    /// Stop at the first evaluation (see --eval-every) whose validation loss is at or below
    /// this many nats/char: time to a target loss. May be given or changed when resuming.
    #[arg(long, value_name = "NATS")]
    pub(crate) target_loss: Option<f64>,
    /// With --target-loss: evaluate K of the validation part's 64 streams at each evaluation,
    /// and the whole part only when their loss (corrected by the gap between the two at the
    /// last whole evaluation) comes within --screen-margin of the target; the first and last
    /// evaluations read the whole part. Saves most of the evaluation time of a race. May be
    /// given or changed when resuming.
    #[arg(long, value_name = "K")]
    pub(crate) val_screen: Option<usize>,
    /// Nats/char above the target at which a screen asks for the whole validation part
    /// [default: 0.05].
    #[arg(long, value_name = "NATS")]
    pub(crate) screen_margin: Option<f64>,
    /// Precision of the matrix products: f32, or bf16 (operands rounded to bfloat16 on the
    /// CPU's bf16 units, AMX or AVX512-BF16, sums, weights and optimizer state in f32)
    /// [default: f32]. Stored with the run; may be changed when resuming.
    #[arg(long, value_name = "f32|bf16")]
    pub(crate) precision: Option<Precision>,
    /// Train on the first N characters only.
    #[arg(long)]
    pub(crate) max_chars: Option<usize>,
    /// Seed of the weight initialisation [default: 42].
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Weight initialisation [default: seed, the tutorial's; uniform for --cell gru|lstm];
    /// `uniform` is PyTorch's U(±1/√H).
    #[arg(long, value_enum)]
    pub(crate) init: Option<InitArg>,
    /// Draw the character embedding table (layer 0's W_ih, the vanilla cell's W_xh; or the
    /// --embed table) from
    /// N(0, σ²) with this σ instead of by --init (e.g. 1, nn.Embedding's scale: a strong input
    /// drive learns much faster at large H) [default: --init's scale; 1 for --cell gru|lstm].
    #[arg(long)]
    pub(crate) embed_std: Option<f64>,
    /// An explicit embedding of this width E in front of layer 0 (nn.Embedding(V, E), then
    /// layer 0's W_ih of (E, g·H)); its table is drawn from N(0, 1), or --embed-std [default:
    /// none, the embedding folded into layer 0's W_ih (V, g·H)].
    #[arg(long, value_name = "E")]
    pub(crate) embed: Option<usize>,
    /// The LSTM forget gate's initial bias in every layer (char-rnn's 1; PyTorch draws it
    /// like the other biases) [default: 1].
    #[arg(long)]
    pub(crate) forget_bias: Option<f64>,
    /// Multiply the output layer's initial weights W_hy by this (a larger head learns faster
    /// at first: docs/recipes.md) [default: 7 for --cell lstm, else 1: --init's draw].
    #[arg(long, value_name = "FACTOR")]
    pub(crate) head_scale: Option<f64>,
    /// Threads running the shards in parallel [default: the available cores]. Results do not
    /// depend on it.
    #[arg(long, conflicts_with = "blas_threads")]
    pub(crate) threads: Option<usize>,
    /// Groups of streams computed in parallel [default: one per max(8, min(32, H/16))
    /// streams, at most 16]. Part of the run's config: the same value gives the same bits on
    /// any number of threads or MPI ranks (which must divide it).
    #[arg(long, conflicts_with = "blas_threads")]
    pub(crate) shards: Option<usize>,
    /// The other strategy, for comparison: one shard, one rayon thread, and N OpenBLAS threads
    /// inside every gemm.
    #[arg(long)]
    pub(crate) blas_threads: Option<usize>,
    /// Under `mpirun` (a build with `--features mpi`): seconds one exchange with the other
    /// ranks may wait before this process stops with an error, because a rank died or hangs
    /// [default: 120].
    #[arg(long, value_name = "SECS")]
    pub(crate) comm_timeout: Option<f64>,
    /// Implementation: the BLAS-batched fast path or the per-character reference loop
    /// [default: blas].
    #[arg(long, value_enum)]
    pub(crate) path: Option<PathArg>,
    /// Train on raw bytes instead of UTF-8 characters.
    #[arg(long)]
    pub(crate) bytes: bool,
    /// Fraction of the corpus (its end) held out for validation, at most 1,000,000 symbols
    /// (so an evaluation takes seconds); 0 disables [default: 0.1, 0 for --preset seed].
    #[arg(long)]
    pub(crate) val_frac: Option<f64>,
    /// Hold out exactly the corpus's last N symbols for validation, instead of --val-frac of
    /// it (not bounded).
    #[arg(long, conflicts_with = "val_frac")]
    pub(crate) val_chars: Option<usize>,
    /// Where the validation part lies: the corpus's end, or blocks of 4,096 symbols spread
    /// over the whole corpus and skipped by training [default: auto: blocks for a prepared
    /// data directory of over 10M symbols larger than the run's --chars or --steps, else the
    /// end].
    #[arg(long, value_enum)]
    pub(crate) val_layout: Option<ValLayoutArg>,
    /// How the streams move through the corpus: each reads its own 1/B of it from the start
    /// (contiguous), or every epoch deals segments of --segment chunks to the streams in an
    /// order drawn from --seed, zeroing their state at each jump (shuffled) [default: auto:
    /// shuffled where --val-layout auto spreads the validation part, else contiguous].
    #[arg(long, value_enum)]
    pub(crate) stream_order: Option<StreamOrderArg>,
    /// Chunks of --seq-len per segment of --stream-order shuffled (implies it): more carry the
    /// state further, fewer read from more places [default: 1, a new place every step].
    #[arg(long)]
    pub(crate) segment: Option<usize>,
    /// Steps between validations, saves of model.safetensors, metrics lines and plots
    /// [default: 500; the end of the run always gets one].
    #[arg(long)]
    pub(crate) eval_every: Option<u64>,
    /// Run directory: model.safetensors, best.safetensors, metrics.jsonl, loss.png.
    #[arg(long, default_value = "run", conflicts_with = "resume")]
    pub(crate) out: PathBuf,
    /// Replace a model already in --out instead of refusing to.
    #[arg(long)]
    pub(crate) force: bool,
    /// Continue the run saved in DIR exactly where it stopped (same corpus; --steps or
    /// --epochs may extend it).
    #[arg(long, value_name = "DIR")]
    pub(crate) resume: Option<PathBuf>,
    /// Print (to stdout, unless --quiet) and record (in DIR/samples.jsonl) text sampled from the model every
    /// N steps; 0: none [default: none; after every epoch for --preset seed, as the tutorial
    /// does]. Training is the same with samples or without. May be given when resuming.
    #[arg(long, value_name = "N")]
    pub(crate) sample_every: Option<u64>,
    /// Symbols per sample during training [default: 200; 50 for --preset seed].
    #[arg(long, value_name = "N")]
    pub(crate) sample_len: Option<usize>,
    /// Softmax temperature of the samples during training (0: the most likely symbol)
    /// [default: 1].
    #[arg(long, value_name = "T")]
    pub(crate) sample_temperature: Option<f64>,
    /// Text that starts every sample during training [default: a newline].
    #[arg(long, value_name = "TEXT")]
    pub(crate) sample_prime: Option<String>,
    /// Print a progress line every N steps when stderr is not a terminal (0: about once a
    /// second).
    #[arg(long, default_value_t = 0)]
    pub(crate) log_every: u64,
    /// No progress lines; only the summary.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// End stdout with one JSON object summarising the run.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
#[command(allow_negative_numbers = true)]
pub(crate) struct SampleArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Characters to generate.
    #[arg(long, default_value_t = 500)]
    pub(crate) len: usize,
    /// Softmax temperature: < 1 is more conservative, 0 always takes the most likely character.
    #[arg(long, default_value_t = 1.0)]
    pub(crate) temperature: f64,
    /// Text to start from (it warms the hidden state and is printed first).
    #[arg(long, default_value = "")]
    pub(crate) prime: String,
    /// Seed: the same seed gives the same text.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Sample only among the K most likely characters.
    #[arg(long)]
    pub(crate) top_k: Option<usize>,
    /// Sample only among the most likely characters that make up probability mass P.
    #[arg(long)]
    pub(crate) top_p: Option<f64>,
    /// Always take the most likely character (same as --temperature 0).
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    pub(crate) argmax: bool,
    /// Drop characters of --prime that the model does not know (with a note) instead of
    /// refusing.
    #[arg(long)]
    pub(crate) skip_unknown: bool,
}

#[derive(Args)]
pub(crate) struct InspectArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// End stdout with one JSON object of everything shown.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct EvalArgs {
    /// Model file written by `charrnn train`.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Text to evaluate on, or a data directory written by `charrnn prepare` with the
    /// model's vocabulary. It is cut into up to --batch streams of equal length, each read
    /// from a zero state (so the loss depends a little on --batch, never on --threads).
    pub(crate) corpus: PathBuf,
    /// Evaluate at most this many streams at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Threads [default: the available cores]; the result does not depend on it.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Skip (and count) the characters of the text that the model does not know, instead of
    /// refusing the text.
    #[arg(long)]
    pub(crate) skip_unknown: bool,
    /// End stdout with one JSON object {loss, bpc, chars, streams, skipped}.
    #[arg(long)]
    pub(crate) json: bool,
    /// Precision of the matrix products (f32 or bf16) [default: the one the model was
    /// trained with].
    #[arg(long, value_name = "f32|bf16")]
    pub(crate) precision: Option<Precision>,
}

/// `--seq-len-warmup`: `T0:STEPS`, or `0` / `none` for no warm-up. The ranges are checked
/// with the rest of the configuration.
fn parse_seq_len_warmup(v: &str) -> Result<WarmupArg, String> {
    if v == "0" || v == "none" {
        return Ok(WarmupArg(None));
    }
    let bad = || format!("'{v}' is not T0:STEPS (e.g. 32:100), 0 or none");
    let (t0, steps) = v.split_once(':').ok_or_else(bad)?;
    Ok(WarmupArg(Some(SeqLenWarmup {
        seq_len: t0.trim().parse().map_err(|_| bad())?,
        steps: steps.trim().parse().map_err(|_| bad())?,
    })))
}

/// A parsed `--seq-len-warmup`: a warm-up, or none.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WarmupArg(pub(crate) Option<SeqLenWarmup>);
