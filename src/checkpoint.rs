//! Self-describing model files in the safetensors format.
//!
//! Tensors: the parameters under their layout names (`layers.<l>.W_ih`, `layers.<l>.W_hh`,
//! `layers.<l>.b`, a GRU's `layers.<l>.b_hn`, `W_hy`, `b_y`; see [`crate::model::layout`]),
//! the optimizer state as `optim.m.<name>` (and `optim.v.<name>` for Adam), and the carried
//! state of every layer and stream as `state` (L, B, S) with S = H, or 2H for an LSTM (h then
//! c), all f32 little-endian. A run that keeps an average of its weights (`--ema`) saves the
//! average under the layout names, as the model, and the weights the optimizer moves as
//! `optim.w.<name>`. Metadata (strings): `format` = `charrnn`, `format_version`,
//! `config`, `model` (vocabulary size, hidden size, cell, layers), `vocab`, `progress` (step,
//! epoch, stream position, smoothed loss), `rng` and `corpus`, all but the first two as JSON.
//! Any safetensors reader can load the weights; charrnn restores a run from it bit for bit.
//! Files are written atomically.
//!
//! Version 1 files (one vanilla layer: `W_xh`, `W_hh`, `b_h`, `W_hy`, `b_y`, `state.h` (B, H))
//! still load, as the same model.

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Array3;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::atomic::AtomicFile;
use crate::data::{Corpus, Vocab};
use crate::error::{Error, Result};
use crate::model::CharLm;
use crate::train::{Progress, TrainConfig, Trainer};

/// The model file format version this build writes (it reads this one and version 1).
pub const FORMAT_VERSION: u32 = 2;
const FORMAT: &str = "charrnn";

/// The serialisable state of a ChaCha8 generator: seed, stream and position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct RngState {
    seed: String,
    stream: u64,
    word_pos: String,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        let seed = rng.get_seed().iter().map(|b| format!("{b:02x}")).collect();
        RngState {
            seed,
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Option<ChaCha8Rng> {
        use rand::SeedableRng;
        if self.seed.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(self.seed.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// Which data a run trains on: where it came from, and a fingerprint of the training ids
/// (see [`crate::data::Ids::fingerprint`]) so that a resumed run can check it has the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorpusInfo {
    /// The corpus file as given, or `<built-in>`.
    pub source: String,
    /// Fingerprint of the training part (after --max-chars and the validation split).
    pub fingerprint: String,
}

/// Everything a model file holds.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The training configuration.
    pub config: TrainConfig,
    /// Model dimensions.
    pub model: CharLm,
    /// The vocabulary, in id order.
    pub vocab: Vocab,
    /// The model's flat parameters, layout [`CharLm::layout`] (the average of the weights in
    /// a run that keeps one).
    pub params: Vec<f32>,
    /// The weights the optimizer moves, when they are not `params` (a run that keeps an
    /// average: `optim.w.<name>`).
    pub weights: Option<Vec<f32>>,
    /// The optimizer's state vectors, same layout: the first, and Adam's second.
    pub moments: (Vec<f32>, Option<Vec<f32>>),
    /// (L, B, S) carried state of every layer and stream.
    pub state: Array3<f32>,
    /// Step, epoch, stream position, smoothed loss.
    pub progress: Progress,
    /// The run's random generator.
    pub rng: ChaCha8Rng,
    /// The training data, when the file records it.
    pub corpus: Option<CorpusInfo>,
}

/// Saves a run to `path` (atomically).
pub fn save(path: &Path, trainer: &Trainer<f32>, vocab: &Vocab, corpus: &CorpusInfo) -> Result<()> {
    save_with_state(path, trainer, &trainer.state(), vocab, corpus)
}

/// Saves a run to `path` (atomically) with the (L, B, S) carried state of all its streams
/// (from [`Trainer::full_state`] when the run is distributed).
pub fn save_with_state(
    path: &Path,
    trainer: &Trainer<f32>,
    state: &Array3<f32>,
    vocab: &Vocab,
    corpus: &CorpusInfo,
) -> Result<()> {
    let model = trainer.model;
    let mut tensors: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
    for spec in model.layout() {
        let range = spec.range();
        tensors.push((
            spec.name.clone(),
            spec.shape.clone(),
            &trainer.model_params()[range.clone()],
        ));
        if trainer.average.is_some() {
            tensors.push((
                format!("optim.w.{}", spec.name),
                spec.shape.clone(),
                &trainer.params[range.clone()],
            ));
        }
        tensors.push((
            format!("optim.m.{}", spec.name),
            spec.shape.clone(),
            &trainer.opt.m[range.clone()],
        ));
        if trainer.opt.rule.state_vectors() == 2 {
            tensors.push((
                format!("optim.v.{}", spec.name),
                spec.shape.clone(),
                &trainer.opt.v[range],
            ));
        }
    }
    let state = state.as_standard_layout();
    tensors.push((
        "state".into(),
        state.shape().to_vec(),
        state.as_slice().expect("standard layout"),
    ));
    let json = |v: serde_json::Result<String>| v.expect("plain data serialises to JSON");
    let meta: BTreeMap<&str, String> = [
        ("format", FORMAT.to_string()),
        ("format_version", FORMAT_VERSION.to_string()),
        ("config", json(serde_json::to_string(&trainer.config))),
        ("model", json(serde_json::to_string(&model))),
        ("vocab", json(serde_json::to_string(vocab))),
        ("progress", json(serde_json::to_string(&trainer.progress))),
        (
            "rng",
            json(serde_json::to_string(&RngState::of(&trainer.rng))),
        ),
        ("corpus", json(serde_json::to_string(corpus))),
    ]
    .into_iter()
    .collect();
    write_safetensors(path, &meta, &tensors)
}

/// Writes a safetensors file of f32 tensors (name, shape, values) and string metadata to
/// `path`, atomically: the 8-byte little-endian length of a JSON header (padded with spaces
/// to a multiple of 8), the header — `__metadata__`, then each tensor's dtype, shape and
/// byte range, keys sorted — and the tensors' little-endian bytes, one after the other in
/// the order given. The same tensors and metadata give the same bytes (the `safetensors`
/// crate's writer orders metadata by a randomly seeded hash), and the values are written
/// from the slices in blocks, never copied whole.
fn write_safetensors(
    path: &Path,
    meta: &BTreeMap<&str, String>,
    tensors: &[(String, Vec<usize>, &[f32])],
) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0;
    for (name, shape, data) in tensors {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len(), "{name}");
        let end = offset + 4 * data.len();
        let entry =
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]});
        header.insert(name.clone(), entry);
        offset = end;
    }
    let mut header = serde_json::to_vec(&header).expect("plain data serialises to JSON");
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut file = AtomicFile::create(path)?;
    file.write(&(header.len() as u64).to_le_bytes())?;
    file.write(&header)?;
    let mut block = Vec::with_capacity(4 * WRITE_BLOCK);
    for (_, _, data) in tensors {
        for values in data.chunks(WRITE_BLOCK) {
            block.clear();
            block.extend(values.iter().flat_map(|x| x.to_le_bytes()));
            file.write(&block)?;
        }
    }
    file.commit()
}

/// Values converted to bytes at a time by [`write_safetensors`].
const WRITE_BLOCK: usize = 16 * 1024;

/// Loads a model file, checking its format, version, and every tensor's name, type and shape.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read model file", path, e))?;
    parse(&bytes, path)
}

/// Reads a model file's bytes (as [`load`] does; `path` names it in errors).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Checkpoint> {
    let bad = |reason: String| Error::BadModel {
        path: path.into(),
        reason,
    };
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        bad(format!(
            "{e} (the file is truncated, corrupted, or not safetensors)"
        ))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let field = |k: &str| {
        meta.get(k)
            .ok_or_else(|| bad(format!("metadata has no `{k}` entry")))
    };
    if field("format")? != FORMAT {
        return Err(bad(format!(
            "metadata `format` is {:?}, expected {FORMAT:?}",
            field("format")?
        )));
    }
    let version = field("format_version")?;
    let v1 = match version.parse::<u32>() {
        Ok(1) => true,
        Ok(FORMAT_VERSION) => false,
        _ => {
            return Err(Error::ModelVersion {
                path: path.into(),
                found: version.clone(),
                expected: FORMAT_VERSION,
            })
        }
    };
    fn parse<T: serde::de::DeserializeOwned>(s: &str, k: &str) -> std::result::Result<T, String> {
        serde_json::from_str(s).map_err(|e| format!("metadata `{k}` is malformed: {e}"))
    }
    let config: TrainConfig = parse(field("config")?, "config").map_err(bad)?;
    let model: CharLm = parse(field("model")?, "model").map_err(bad)?;
    let vocab: Vocab = parse(field("vocab")?, "vocab").map_err(bad)?;
    let progress: Progress = parse(field("progress")?, "progress").map_err(bad)?;
    let rng_state: RngState = parse(field("rng")?, "rng").map_err(bad)?;
    let rng = rng_state
        .restore()
        .ok_or_else(|| bad("metadata `rng` is malformed".into()))?;
    if vocab.len() != model.vocab
        || model.hidden == 0
        || model.vocab == 0
        || model.layers == 0
        || model.embed == Some(0)
        || config.model.hidden != model.hidden
        || config.model.layers != model.layers
        || config.model.cell != model.cell
        || config.model.embed != model.embed
    {
        let e = |e: Option<usize>| e.map(|e| format!(" E={e}")).unwrap_or_default();
        return Err(bad(format!(
            "inconsistent sizes: vocabulary of {} symbols, model V={}{} H={} {}×{}, config{} H={} {}×{}",
            vocab.len(),
            model.vocab,
            e(model.embed),
            model.hidden,
            model.layers,
            model.cell,
            e(config.model.embed),
            config.model.hidden,
            config.model.layers,
            config.model.cell,
        )));
    }

    // The sizes are in range (layers, memory) before the layout is derived from them.
    config
        .validate()
        .map_err(|e| bad(format!("its configuration is out of range: {e}")))?;
    let tensor = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(format!("tensor `{name}` is missing")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` is {:?} {:?}, expected F32 {shape:?}",
                t.dtype(),
                t.shape()
            )));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let two = config.optim.optimizer.state_vectors() == 2;
    // No capacity from the metadata: the tensors, whose sizes the file itself bounds, grow them.
    let averaged = config.optim.ema.is_some();
    let (mut params, mut w, mut m, mut v) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for spec in model.layout() {
        let name = match (v1, spec.tensor.v1_name()) {
            (false, _) => spec.name.clone(),
            (true, Some(name)) => name.to_string(),
            (true, None) => {
                return Err(bad(format!(
                    "a version-1 file holds one vanilla layer, but its model is {} layers of {}",
                    model.layers, model.cell
                )))
            }
        };
        params.extend(tensor(&name, &spec.shape)?);
        if averaged {
            w.extend(tensor(&format!("optim.w.{name}"), &spec.shape)?);
        }
        m.extend(tensor(&format!("optim.m.{name}"), &spec.shape)?);
        if two {
            v.extend(tensor(&format!("optim.v.{name}"), &spec.shape)?);
        }
    }
    let moments = (m, two.then_some(v));
    let corpus = match meta.get("corpus") {
        Some(c) => Some(parse::<CorpusInfo>(c, "corpus").map_err(bad)?),
        None => None,
    };
    // Version 1 kept one layer's (B, H) state as `state.h`.
    let state_name = if v1 { "state.h" } else { "state" };
    let shape = st
        .tensor(state_name)
        .map(|t| t.shape().to_vec())
        .map_err(|_| bad(format!("tensor `{state_name}` is missing")))?;
    let (l, s) = (model.layers, model.state_width());
    let batch = match (v1, shape.as_slice()) {
        (true, &[b, w]) if w == s => b,
        (false, &[nl, b, w]) if nl == l && w == s => b,
        _ => {
            return Err(bad(format!(
                "tensor `{state_name}` has shape {shape:?}, expected [{}B, {s}]",
                if v1 { String::new() } else { format!("{l}, ") }
            )))
        }
    };
    let state =
        Array3::from_shape_vec((l, batch, s), tensor(state_name, &shape)?).expect("checked shape");
    Ok(Checkpoint {
        config,
        model,
        vocab,
        params,
        weights: averaged.then_some(w),
        moments,
        state,
        progress,
        rng,
        corpus,
    })
}

impl Checkpoint {
    /// Turns the file back into a run over `corpus`, which must have the same vocabulary.
    pub fn into_trainer(self, corpus: &Corpus) -> Result<Trainer<f32>> {
        if corpus.vocab != self.vocab {
            let syms: Vec<String> = corpus
                .vocab
                .symbols
                .iter()
                .filter(|s| self.vocab.id(**s).is_none())
                .map(|&s| corpus.vocab.show(s))
                .collect();
            return Err(Error::config(
                "corpus",
                format!("{} symbols", corpus.vocab.len()),
                format!(
                    "resuming needs the corpus the model was trained on (vocabulary of {} symbols; new symbols: {})",
                    self.vocab.len(),
                    if syms.is_empty() { "none, but some are missing".into() } else { syms.join(" ") }
                ),
            ));
        }
        // In a run that keeps an average, the model is the average and training moves the
        // weights saved beside it.
        let (weights, average) = match self.weights {
            Some(w) => (w, Some(self.params)),
            None => (self.params, None),
        };
        Trainer::from_parts(
            self.config,
            corpus.ids.len(),
            self.model,
            weights,
            average,
            Some(self.moments),
            Some(self.state),
            self.progress,
            self.rng,
        )
    }
}
