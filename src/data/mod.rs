//! The data behind one narrow reader: vocabulary, encoded corpora in memory or in prepared
//! token files, and the B contiguous streams that truncated BPTT walks through.
//!
//! Ids are compact: one byte per symbol when the vocabulary has at most 256 symbols, two
//! when it has at most 65,536, four otherwise. No `Vec<char>` and no `String` per chunk is
//! ever built. A corpus prepared with `charrnn prepare` ([`prepare`]) is read from its token
//! file ([`tokens`]) a step at a time, so its size does not bound the memory a run needs.

mod fnv;
mod ids;
pub mod prepare;
mod streams;
pub mod tokens;
mod vocab;

pub use ids::{id_width, Ids};
pub use streams::{Cursor, Order, Streams};
pub use vocab::{SymbolKind, Vocab, UNKNOWN};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Symbols per block of a spread validation part ([`ValLayout::Blocks`]).
pub const VAL_BLOCK: usize = 4096;

/// Where the validation part lies in the corpus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValLayout {
    /// Decided when a run's data is loaded (`session::TrainData::load`): `Blocks` for a
    /// prepared data directory of more than 10M symbols that is larger than the run's budget
    /// of characters (when that holds out two blocks or more), `End` otherwise.
    /// A session records the decision, so a run resumes on the same split.
    Auto,
    /// The corpus's last symbols: the tutorial's split, and what model files saved before
    /// the layout was recorded hold.
    #[default]
    End,
    /// Blocks of `block` symbols spread evenly over the whole corpus (the last of every k
    /// blocks), which training skips.
    Blocks {
        /// Symbols per block ([`VAL_BLOCK`]).
        block: usize,
    },
}

/// Chunks per segment of a shuffled order ([`StreamOrder::Shuffled`]) by default: one, so
/// every step reads each stream's chunk from a new place, from a zero state. On the Linux
/// sources, a 2-layer GRU of 512 reached 1.20 nats/char after 1,000 steps so, against 1.26 with
/// segments of 4 chunks, 1.41 with 16, 1.53 with 64 and 1.63 with 256 (docs/data.md).
pub const SEGMENT_CHUNKS: usize = 1;

/// How a run's streams move through its training part (see [`Streams`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamOrder {
    /// Decided when a run's data is loaded (`session::TrainData::load`): `Shuffled` where the
    /// validation part is spread ([`ValLayout::Auto`]: a prepared data directory of more than
    /// 10M symbols that is larger than the run's budget), `Contiguous` otherwise. A session
    /// records the decision, so a run resumes in the same order. A [`crate::train::Trainer`]
    /// given `Auto` reads contiguously.
    Auto,
    /// Each stream reads its own 1/B of the training part from the start: the tutorial's
    /// order, and what model files saved before the order was recorded hold.
    #[default]
    Contiguous,
    /// Every stream reads `chunks` chunks from one place, then jumps to a segment the seed
    /// chose; an epoch reads every segment once ([`streams::Order::Shuffled`]).
    Shuffled {
        /// K, chunks per segment.
        chunks: usize,
    },
}

impl StreamOrder {
    /// `n` symbols as `batch` streams of chunks of `seq_len` in this order (`seed` draws a
    /// shuffled order's segments).
    pub fn streams(self, n: usize, batch: usize, seq_len: usize, seed: u64) -> Result<Streams> {
        match self {
            StreamOrder::Auto | StreamOrder::Contiguous => Streams::new(n, batch, seq_len),
            StreamOrder::Shuffled { chunks } => Streams::shuffled(n, batch, seq_len, chunks, seed),
        }
    }
}

/// An encoded corpus: its vocabulary and its symbols as ids.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The distinct symbols, sorted.
    pub vocab: Vocab,
    /// The corpus as symbol ids.
    pub ids: Ids,
}

impl Corpus {
    /// Builds the vocabulary from `bytes` and encodes them.
    ///
    /// `name` is used in error messages. In [`SymbolKind::Chars`] mode the bytes must be UTF-8;
    /// the error gives the offset of the first bad byte. `max_symbols` keeps only a prefix.
    pub fn from_bytes(
        bytes: &[u8],
        kind: SymbolKind,
        max_symbols: Option<usize>,
        name: &str,
    ) -> Result<Corpus> {
        let limit = max_symbols.unwrap_or(usize::MAX);
        match kind {
            SymbolKind::Bytes => {
                Corpus::build(bytes.iter().take(limit).map(|&b| u32::from(b)), kind, name)
            }
            SymbolKind::Chars => {
                let text = match std::str::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        // A prefix that ends before the bad byte is still usable with --max-chars.
                        let prefix = std::str::from_utf8(&bytes[..e.valid_up_to()])
                            .expect("valid up to here");
                        if prefix.chars().count() < limit {
                            return Err(Error::InvalidUtf8 {
                                path: name.to_string(),
                                offset: e.valid_up_to() as u64,
                                hint: "or pass --bytes to train on raw bytes instead of characters",
                            });
                        }
                        prefix
                    }
                };
                Corpus::build(text.chars().take(limit).map(u32::from), kind, name)
            }
        }
    }

    /// Two passes over the symbols, never materialising them: mark which occur (the sorted
    /// vocabulary), then encode straight into the narrowest id width. Peak memory is the raw
    /// text plus the ids plus a 4.4 MB code-point table, whatever the corpus size.
    fn build(
        symbols: impl Iterator<Item = u32> + Clone,
        kind: SymbolKind,
        name: &str,
    ) -> Result<Corpus> {
        let mut seen = vec![false; char::MAX as usize + 1];
        let mut n = 0usize;
        for s in symbols.clone() {
            seen[s as usize] = true;
            n += 1;
        }
        if n == 0 {
            return Err(Error::EmptyCorpus {
                path: name.to_string(),
            });
        }
        let mut table = vec![0u32; seen.len()];
        let mut vocab = Vocab {
            kind,
            symbols: Vec::new(),
        };
        for (s, _) in seen.iter().enumerate().filter(|(_, &on)| on) {
            table[s] = vocab.symbols.len() as u32;
            vocab.symbols.push(s as u32);
        }
        let ids = Ids::from_u32(symbols.map(|s| table[s as usize]), vocab.len());
        Ok(Corpus { vocab, ids })
    }

    /// Reads a corpus: a directory prepared by `charrnn prepare` (read from its token file,
    /// not loaded), or a text file (read and encoded in memory).
    pub fn load(
        path: &std::path::Path,
        kind: SymbolKind,
        max_symbols: Option<usize>,
    ) -> Result<Corpus> {
        if path.is_dir() {
            let corpus = tokens::open(path)?;
            if corpus.vocab.kind != kind {
                return Err(other_kind(path, kind, corpus.vocab.kind));
            }
            let n = max_symbols.map_or(corpus.ids.len(), |m| m.min(corpus.ids.len()));
            return Ok(Corpus {
                ids: corpus.ids.slice(0..n),
                vocab: corpus.vocab,
            });
        }
        check_fits(path, crate::os::available_memory())?;
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read corpus", path, e))?;
        Corpus::from_bytes(&bytes, kind, max_symbols, &path.display().to_string())
    }

    /// Encodes a text under an existing vocabulary (for evaluation); `what` and `name` are
    /// for messages.
    pub fn with_vocab(
        vocab: &Vocab,
        text: &[u8],
        what: &'static str,
        name: &str,
    ) -> Result<Corpus> {
        let ids = match vocab.kind {
            SymbolKind::Chars => {
                let text = std::str::from_utf8(text).map_err(|e| Error::InvalidUtf8 {
                    path: name.to_string(),
                    offset: e.valid_up_to() as u64,
                    hint: "or evaluate a model trained with --bytes",
                })?;
                vocab.encode(text.chars().map(u32::from), what)?
            }
            SymbolKind::Bytes => vocab.encode(text.iter().map(|&b| u32::from(b)), what)?,
        };
        if ids.is_empty() {
            return Err(Error::EmptyCorpus {
                path: name.to_string(),
            });
        }
        Ok(Corpus {
            vocab: vocab.clone(),
            ids: Ids::from_u32(ids, vocab.len()),
        })
    }

    /// The text at `path` to evaluate a model of vocabulary `vocab` on: a data directory
    /// prepared with that vocabulary (read from its token file, not loaded), or a text file
    /// encoded with it. With `skip_unknown`, the characters of a text that the vocabulary
    /// lacks are left out, and reported, instead of refused.
    pub fn for_evaluation(
        path: &std::path::Path,
        vocab: &Vocab,
        skip_unknown: bool,
    ) -> Result<(Corpus, Skipped)> {
        if path.is_dir() {
            let data = tokens::open(path)?;
            if data.vocab != *vocab {
                return Err(Error::OtherVocabulary {
                    dir: path.into(),
                    prepared: data.vocab.len(),
                    model: vocab.len(),
                });
            }
            return Ok((data, Skipped::default()));
        }
        check_fits(path, crate::os::available_memory())?;
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::io("cannot read corpus", path, e))?;
        if !skip_unknown {
            let corpus = Corpus::with_vocab(vocab, &bytes, "evaluation corpus", &name)?;
            return Ok((corpus, Skipped::default()));
        }
        let text = String::from_utf8_lossy(&bytes);
        let (kept, symbols) = vocab.keep_known(&text);
        let count = text.chars().count() - kept.chars().count();
        let corpus = Corpus::with_vocab(vocab, kept.as_bytes(), "evaluation corpus", &name)?;
        Ok((corpus, Skipped { count, symbols }))
    }

    /// Splits off a validation text: `val_chars` symbols when given, else `val_frac` of them
    /// (none when that is 0), at most `val_cap`; at the corpus's end (`layout` `End`, or
    /// `Auto`), or as whole blocks spread over it (`Blocks`: as many blocks as come nearest
    /// that number, at least one). Both parts keep the whole corpus's vocabulary and share its
    /// ids: nothing is copied.
    pub fn split_validation(
        &self,
        val_frac: f64,
        val_chars: Option<usize>,
        val_cap: Option<usize>,
        layout: ValLayout,
    ) -> Result<Split> {
        if !(0.0..1.0).contains(&val_frac) {
            return Err(Error::config(
                "--val-frac",
                val_frac,
                "use a fraction in [0, 1) (0 disables validation)",
            ));
        }
        let n = self.ids.len();
        let (n_val, capped_from) = match val_chars {
            Some(v) if v >= n => {
                return Err(Error::config(
                    "--val-chars",
                    v,
                    format!(
                        "the corpus holds {n} symbols: hold out fewer so some are left to train on"
                    ),
                ))
            }
            Some(v) => (v, None),
            None => {
                let frac = (n as f64 * val_frac).round() as usize;
                match val_cap {
                    Some(cap) if frac > cap => (cap, Some(frac)),
                    _ => (frac, None),
                }
            }
        };
        let part = |ids: Ids| Corpus {
            vocab: self.vocab.clone(),
            ids,
        };
        let (train, val) = match layout {
            _ if n_val == 0 => (self.ids.clone(), None),
            ValLayout::Blocks { block: 0 } => return Err(Error::config(
                "--val-layout",
                "blocks of 0 symbols",
                "a block holds at least one symbol (a model file that says otherwise is damaged)",
            )),
            ValLayout::Blocks { block } => {
                let held = ((n_val as f64 / block as f64).round() as usize).max(1);
                let (train, val) = self.ids.spread(block, held).ok_or_else(|| {
                    Error::config(
                        "--val-layout",
                        "blocks",
                        format!(
                            "the corpus holds {n} symbols: too few to hold out {held} block(s) of \
                             {block} with at least one block to train on beside each; use \
                             --val-layout end, or hold out fewer (--val-chars)"
                        ),
                    )
                })?;
                (train, Some(val))
            }
            ValLayout::End | ValLayout::Auto => {
                let val = self.ids.slice(n - n_val..n);
                (self.ids.slice(0..n - n_val), Some(val))
            }
        };
        Ok(Split {
            train: part(train),
            val: val.map(part),
            capped_from,
        })
    }
}

/// A corpus split into the part trained on and the part held out for validation
/// ([`Corpus::split_validation`]).
#[derive(Clone, Debug)]
pub struct Split {
    /// The symbols trained on.
    pub train: Corpus,
    /// The symbols held out, if any.
    pub val: Option<Corpus>,
    /// When the cap bounded the held-out part: the number of symbols `val_frac` asked for.
    pub capped_from: Option<usize>,
}

/// What [`Corpus::for_evaluation`] left out of a text: how many characters, and which
/// distinct symbols (quoted, in order of first appearance).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Characters left out.
    pub count: usize,
    /// The distinct symbols among them.
    pub symbols: Vec<String>,
}

/// Refuses a text file that cannot be loaded into `available` bytes of memory (what the
/// process can still get: [`crate::os::available_memory`]; None when unknown, which refuses
/// nothing), before trying: an allocation failure would abort.
pub fn check_fits(path: &std::path::Path, available: Option<u64>) -> Result<()> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io("cannot read corpus", path, e))?
        .len();
    text_fits(path, size, available)
}

/// [`check_fits`] for a text file of `size` bytes: it needs its bytes and at least a byte of id
/// per symbol.
fn text_fits(path: &std::path::Path, size: u64, available: Option<u64>) -> Result<()> {
    match available {
        Some(avail) if size.saturating_mul(2) > avail => Err(Error::Input {
            what: path.display().to_string(),
            hint: format!(
                "it is {:.1} GB, and loading it as text needs at least twice that while {:.1} GB \
                 is available: prepare it once (`charrnn prepare {} --out DATA_DIR`) and use \
                 DATA_DIR, which is read a step at a time",
                size as f64 / 1e9,
                avail as f64 / 1e9,
                path.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// The error for reading the data directory `dir`, prepared as `prepared`, as `asked`.
pub fn other_kind(dir: &std::path::Path, asked: SymbolKind, prepared: SymbolKind) -> Error {
    Error::config(
        "--bytes",
        format!("{asked:?}").to_lowercase(),
        format!(
            "{} was prepared in {prepared:?} mode: drop or add --bytes to match it, or prepare it again",
            dir.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_the_narrowest_width_and_vocab_is_sorted() {
        let c = Corpus::from_bytes("banana".as_bytes(), SymbolKind::Chars, None, "t").unwrap();
        assert_eq!(c.vocab.symbols, vec!['a' as u32, 'b' as u32, 'n' as u32]);
        assert_eq!(c.ids.width(), 1);
        let wide: String = (0..300u32)
            .map(|i| char::from_u32(0x4e00 + i).unwrap())
            .collect();
        let c = Corpus::from_bytes(wide.as_bytes(), SymbolKind::Chars, None, "t").unwrap();
        assert_eq!(c.vocab.len(), 300);
        assert_eq!(c.ids.width(), 2);
        assert_eq!(c.ids.get(299).unwrap(), 299);
    }

    #[test]
    fn validation_split_shares_ids_and_val_chars_overrides_the_fraction() {
        let c = Corpus::from_bytes("abcdefghij".as_bytes(), SymbolKind::Chars, None, "t").unwrap();
        let s = c.split_validation(0.2, None, None, ValLayout::End).unwrap();
        assert_eq!((s.train.ids.len(), s.val.unwrap().ids.len()), (8, 2));
        let s = c
            .split_validation(0.2, Some(3), Some(1), ValLayout::End)
            .unwrap();
        let val = s.val.unwrap();
        assert_eq!(
            (s.train.ids.len(), val.ids.len(), s.capped_from),
            (7, 3, None)
        );
        assert_eq!(val.ids.get(0).unwrap(), 7);
        assert!(c
            .split_validation(0.1, Some(10), None, ValLayout::End)
            .is_err());
        // The cap bounds the fraction only.
        let s = c
            .split_validation(0.5, None, Some(2), ValLayout::End)
            .unwrap();
        assert_eq!((s.train.ids.len(), s.capped_from), (8, Some(5)));
        assert!(c
            .split_validation(0.2, None, None, ValLayout::Blocks { block: 0 })
            .is_err());
        assert!(c
            .split_validation(0.0, None, Some(2), ValLayout::Blocks { block: 2 })
            .unwrap()
            .val
            .is_none());
    }

    /// A text file fits when the memory available holds twice its bytes, or when that memory
    /// is unknown; else the refusal names the file, both sizes and `charrnn prepare`.
    #[test]
    fn a_text_fits_in_twice_its_size() {
        let path = std::path::Path::new("big.txt");
        let gb = 1_000_000_000;
        for avail in [Some(2 * gb), Some(u64::MAX), None] {
            assert!(text_fits(path, gb, avail).is_ok(), "{avail:?}");
        }
        let err = text_fits(path, gb, Some(2 * gb - 1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is available"), "{err}");
        let err = text_fits(path, 3 * gb, Some(gb / 2))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot prepare big.txt: it is 3.0 GB, and loading it as text needs at least twice \
             that while 0.5 GB is available: prepare it once (`charrnn prepare big.txt --out \
             DATA_DIR`) and use DATA_DIR, which is read a step at a time"
        );
        // check_fits reads the size of the file itself.
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.txt");
        std::fs::write(&small, "0123456789").unwrap();
        assert!(check_fits(&small, Some(20)).is_ok());
        assert!(check_fits(&small, Some(19)).is_err());
        assert!(check_fits(&dir.path().join("none.txt"), None).is_err());
    }
}
