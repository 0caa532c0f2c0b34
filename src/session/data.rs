//! A session's data: where the text comes from ([`Source`]), and its training and held-out
//! parts ([`TrainData`]).

use std::path::PathBuf;

use crate::checkpoint::CorpusInfo;
use crate::config::{TrainSamples, VAL_CAP};
use crate::data::{Corpus, Split, StreamOrder, SymbolKind, ValLayout, VAL_BLOCK};
use crate::error::Result;
use crate::synth;
use crate::train::{Stop, TrainConfig};

/// Where the training text comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A text file.
    File(PathBuf),
    /// The built-in synthetic corpus ([`synth::builtin_corpus`]).
    Builtin,
    /// Text in memory, with the name the model file records for it.
    Text {
        /// Shown in messages and recorded as the run's source.
        name: String,
        /// The text (UTF-8, or any bytes for a byte-level run).
        bytes: Vec<u8>,
    },
}

impl Source {
    /// The kind of symbols to read this source as: a prepared data directory's own (it knows
    /// whether it holds characters or bytes; `asked`, when given, must agree), else `asked`,
    /// else characters.
    pub fn symbols(&self, asked: Option<SymbolKind>) -> Result<SymbolKind> {
        let Source::File(dir) = self else {
            return Ok(asked.unwrap_or(SymbolKind::Chars));
        };
        if !dir.is_dir() {
            return Ok(asked.unwrap_or(SymbolKind::Chars));
        }
        let kind = crate::data::tokens::open(dir)?.vocab.kind;
        match asked {
            Some(asked) if asked != kind => Err(crate::data::other_kind(dir, asked, kind)),
            _ => Ok(kind),
        }
    }

    /// The name a model file records for this source (`<built-in>` for the built-in corpus).
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Builtin => "<built-in>".into(),
            Source::Text { name, .. } => name.clone(),
        }
    }
}

/// Prepared corpora above this many symbols that a run reads only part of get a validation
/// part spread over them by default ([`ValLayout::Auto`]): ten times [`VAL_CAP`], where the
/// bound starts to apply. Smaller ones (tinyshakespeare's 1.1M) keep their end.
pub const SPREAD_ABOVE: usize = 10 * VAL_CAP;

/// Validation parts above this many symbols get a note about their cost.
const LARGE_VALIDATION: usize = 5_000_000;

/// A run's data: the training part, the held-out validation part, and what identifies them.
pub struct TrainData {
    /// The training symbols.
    pub train: Corpus,
    /// The validation symbols, when the run holds some out.
    pub val: Option<Corpus>,
    /// Where they lie: the configuration's layout, decided if it was `Auto`.
    pub layout: ValLayout,
    /// How the streams move through the training part: the configuration's order, decided
    /// if it was `Auto`.
    pub order: StreamOrder,
    /// The source's name and the training part's fingerprint.
    pub info: CorpusInfo,
    /// Things worth telling the user about the data (e.g. a validation part too small to use).
    pub notes: Vec<String>,
}

impl TrainData {
    /// Loads `source` as `config` reads it (symbols, `max_chars`) and holds out `val_chars`
    /// symbols, or `val_frac` of them up to `val_cap`, for validation, where `val_layout`
    /// says. `Auto` spreads them in blocks over a prepared data directory of more than
    /// [`SPREAD_ABOVE`] symbols that is larger than the run's budget of characters (`--chars`,
    /// or `--steps` × T·B; with `--epochs` it reads all of it), when that holds out two blocks
    /// or more, and takes the corpus's end otherwise. On the same corpora an `Auto` stream
    /// order is shuffled (segments of [`crate::data::SEGMENT_CHUNKS`] chunk), so that the run
    /// reads from the whole corpus, not from B places; contiguous elsewhere.
    pub fn load(source: &Source, config: &TrainConfig) -> Result<TrainData> {
        let (symbols, max) = (config.data.symbols, config.data.max_chars);
        let corpus = match source {
            Source::File(path) => Corpus::load(path, symbols, max)?,
            Source::Builtin => {
                let text = synth::builtin_corpus();
                Corpus::from_bytes(text.as_bytes(), symbols, max, "<built-in>")?
            }
            Source::Text { name, bytes } => Corpus::from_bytes(bytes, symbols, max, name)?,
        };
        let d = &config.data;
        let split = |layout| corpus.split_validation(d.val_frac, d.val_chars, d.val_cap, layout);
        let blocks = ValLayout::Blocks { block: VAL_BLOCK };
        let prepared = matches!(source, Source::File(p) if p.is_dir());
        let n = corpus.ids.len();
        let larger = n > SPREAD_ABOVE && budget_chars(config).is_some_and(|b| n as u64 > b);
        // Spread over at least two blocks, or not at all.
        let spread = |s: &Split| s.val.as_ref().is_some_and(|v| v.ids.len() >= 2 * VAL_BLOCK);
        let (layout, split) = match d.val_layout {
            ValLayout::Auto if prepared && larger => match split(blocks) {
                Ok(s) if spread(&s) => (blocks, s),
                _ => (ValLayout::End, split(ValLayout::End)?),
            },
            ValLayout::Auto => (ValLayout::End, split(ValLayout::End)?),
            layout => (layout, split(layout)?),
        };
        let (train, mut val) = (split.train, split.val);
        let mut notes = Vec::new();
        if let (ValLayout::Blocks { block }, Some(v), ValLayout::Auto) =
            (layout, &val, d.val_layout)
        {
            notes.push(format!(
                "note: the validation part is {} blocks of {block} symbols spread over the whole \
                 corpus, which training skips, since the run reads {} of its {} symbols \
                 (--val-layout end holds out its end instead)",
                v.ids.len() / block,
                budget_chars(config).unwrap_or(0),
                corpus.ids.len()
            ));
        }
        let chunks = crate::data::SEGMENT_CHUNKS;
        let shuffled = StreamOrder::Shuffled { chunks };
        let order = match d.stream_order {
            StreamOrder::Auto if prepared && larger => {
                let fits = shuffled
                    .streams(train.ids.len(), d.batch, d.seq_len, 0)
                    .is_ok();
                if fits {
                    notes.push(format!(
                        "note: every step reads each stream's chunk of {} symbols from a new place \
                         (--stream-order shuffled, each from a zero state), so that the run reads \
                         from the whole corpus; --stream-order contiguous has each of the {} \
                         streams read its own slice from its start",
                        d.seq_len, d.batch
                    ));
                    shuffled
                } else {
                    StreamOrder::Contiguous
                }
            }
            StreamOrder::Auto => StreamOrder::Contiguous,
            order => order,
        };
        if let (Some(asked), Some(v)) = (split.capped_from, &val) {
            notes.push(format!(
                "note: holding out {} symbols for validation, not --val-frac {} of the corpus \
                 ({asked} symbols), so that an evaluation takes seconds; --val-chars N holds \
                 out exactly N",
                v.ids.len(),
                d.val_frac
            ));
        }
        if val.as_ref().is_some_and(|v| v.ids.len() < 2) {
            notes.push(format!(
                "note: the validation part (--val-frac {}) holds under 2 symbols; training without validation",
                config.data.val_frac
            ));
            val = None;
        }
        if train.vocab.len() == 1 {
            notes.push(format!(
                "note: {} holds a single distinct symbol, so every next symbol is certain and the loss \
                 will fall to 0: there is nothing to learn",
                source.name()
            ));
        }
        // Only a run saved before the cap, or one that asked, holds out more.
        let unbounded = d.val_chars.is_none() && d.val_cap.is_none();
        if let Some(v) = val
            .as_ref()
            .filter(|v| unbounded && v.ids.len() > LARGE_VALIDATION)
        {
            notes.push(format!(
                "note: the validation part holds {} symbols (--val-frac {} of a run saved before \
                 held-out parts were capped), so each evaluation reads all of them; a new run \
                 holds out at most {} by default",
                v.ids.len(),
                d.val_frac,
                VAL_CAP
            ));
        }
        let info = CorpusInfo {
            source: source.name(),
            fingerprint: train.ids.fingerprint()?,
        };
        Ok(TrainData {
            train,
            val,
            layout,
            order,
            info,
            notes,
        })
    }
}

/// The characters a run of `config` trains on (None: whole epochs, all of its corpus).
fn budget_chars(config: &TrainConfig) -> Option<u64> {
    let step = (config.data.seq_len * config.data.batch) as u64;
    match config.run.stop {
        Stop::Chars(c) => Some(c),
        Stop::Steps(s) => Some(s.saturating_mul(step)),
        Stop::Epochs(_) => None,
    }
}

/// Refuses samples whose settings are out of range or whose prime text holds a symbol the
/// data's vocabulary lacks, before the run starts rather than at its first sample.
pub(super) fn check_samples(samples: Option<&TrainSamples>, data: &TrainData) -> Result<()> {
    let Some(spec) = samples else {
        return Ok(());
    };
    spec.validate()?;
    data.train.vocab.encode_str(&spec.prime, "--sample-prime")?;
    Ok(())
}
