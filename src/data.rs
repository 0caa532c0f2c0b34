//! Vocabulary, corpus encoding, and the B contiguous streams that truncated BPTT walks through.
//!
//! The encoded corpus is compact: one byte per symbol when the vocabulary has at most 256
//! symbols, two when it has at most 65,536, four otherwise. No `Vec<char>` and no `String` per
//! chunk is ever built, so corpora of several gigabytes fit in memory next to their raw bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Whether the model reads Unicode characters or raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SymbolKind {
    /// Unicode scalar values (the corpus must be valid UTF-8).
    Chars,
    /// Raw bytes (any file).
    Bytes,
}

/// The model's alphabet: distinct symbols sorted by code point (or byte value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab {
    /// Characters or bytes.
    pub kind: SymbolKind,
    /// Code points (or byte values) in increasing order; the id of a symbol is its index.
    pub symbols: Vec<u32>,
}

impl Vocab {
    /// Number of symbols, V.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    /// True when the vocabulary holds no symbol.
    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// The id of a symbol, if it is in the vocabulary.
    pub fn id(&self, symbol: u32) -> Option<u32> {
        self.symbols.binary_search(&symbol).ok().map(|i| i as u32)
    }

    /// Encodes symbols (code points or byte values); unknown ones are an error naming each of
    /// them once, in order of first appearance.
    pub fn encode(
        &self,
        symbols: impl Iterator<Item = u32>,
        what: &'static str,
    ) -> Result<Vec<u32>> {
        let mut unknown: Vec<String> = Vec::new();
        let mut ids = Vec::with_capacity(symbols.size_hint().0);
        for s in symbols {
            match self.id(s) {
                Some(id) => ids.push(id),
                None => {
                    let shown = self.show(s);
                    if !unknown.contains(&shown) {
                        unknown.push(shown);
                    }
                }
            }
        }
        if unknown.is_empty() {
            Ok(ids)
        } else {
            Err(Error::UnknownSymbols {
                what,
                symbols: unknown,
            })
        }
    }

    /// `text` without the symbols outside the vocabulary (in byte mode, without the
    /// characters that hold such a byte), and those symbols, shown once each.
    pub fn keep_known(&self, text: &str) -> (String, Vec<String>) {
        let mut unknown: Vec<String> = Vec::new();
        let mut kept = String::with_capacity(text.len());
        let mut buf = [0u8; 4];
        for c in text.chars() {
            let syms: Vec<u32> = match self.kind {
                SymbolKind::Chars => vec![u32::from(c)],
                SymbolKind::Bytes => c.encode_utf8(&mut buf).bytes().map(u32::from).collect(),
            };
            let missing: Vec<u32> = syms.into_iter().filter(|&s| self.id(s).is_none()).collect();
            if missing.is_empty() {
                kept.push(c);
            }
            for s in missing {
                if !unknown.contains(&self.show(s)) {
                    unknown.push(self.show(s));
                }
            }
        }
        (kept, unknown)
    }

    /// Encodes a text given as a string, in this vocabulary's kind of symbols.
    pub fn encode_str(&self, text: &str, what: &'static str) -> Result<Vec<u32>> {
        match self.kind {
            SymbolKind::Chars => self.encode(text.chars().map(u32::from), what),
            SymbolKind::Bytes => self.encode(text.bytes().map(u32::from), what),
        }
    }

    /// A quoted, escaped rendering of one symbol for messages (`'a'`, `'\n'`, `0xff`).
    pub fn show(&self, symbol: u32) -> String {
        match (self.kind, char::from_u32(symbol)) {
            (SymbolKind::Chars, Some(c)) => format!("{:?}", c),
            _ => format!("0x{symbol:02x}"),
        }
    }

    /// Appends the bytes of symbol `id` to `out` (UTF-8 for characters, the raw byte otherwise).
    pub fn decode_into(&self, id: usize, out: &mut Vec<u8>) {
        let s = self.symbols[id];
        match self.kind {
            SymbolKind::Chars => {
                let c = char::from_u32(s).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            SymbolKind::Bytes => out.push(s as u8),
        }
    }
}

/// Symbol ids in the narrowest integer type that holds the vocabulary.
#[derive(Clone, Debug)]
pub enum Ids {
    /// V ≤ 256.
    U8(Vec<u8>),
    /// V ≤ 65,536.
    U16(Vec<u16>),
    /// Larger vocabularies.
    U32(Vec<u32>),
}

impl Ids {
    /// Number of symbols.
    pub fn len(&self) -> usize {
        match self {
            Ids::U8(v) => v.len(),
            Ids::U16(v) => v.len(),
            Ids::U32(v) => v.len(),
        }
    }

    /// True when there is no symbol.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the ids in `range`.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Ids {
        match self {
            Ids::U8(v) => Ids::U8(v[range].to_vec()),
            Ids::U16(v) => Ids::U16(v[range].to_vec()),
            Ids::U32(v) => Ids::U32(v[range].to_vec()),
        }
    }

    /// FNV-1a (64 bit) of the ids, with their count: tells a resumed run it has the same data.
    pub fn fingerprint(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for i in 0..self.len() {
            h = (h ^ u64::from(self.get(i))).wrapping_mul(0x0000_0100_0000_01b3);
        }
        format!("{}:{h:016x}", self.len())
    }

    /// The id at position `i`.
    pub fn get(&self, i: usize) -> u32 {
        match self {
            Ids::U8(v) => v[i] as u32,
            Ids::U16(v) => v[i] as u32,
            Ids::U32(v) => v[i],
        }
    }

    /// Copies ids `start .. start + out.len()` into `out` at a stride: `out[k·stride]`.
    ///
    /// The stride lets a stream's chunk land in one column of a time-major (T, B) buffer.
    pub fn copy_strided(
        &self,
        start: usize,
        out: &mut [u32],
        offset: usize,
        stride: usize,
        n: usize,
    ) {
        fn go<T: Copy + Into<u32>>(src: &[T], out: &mut [u32], offset: usize, stride: usize) {
            for (k, &v) in src.iter().enumerate() {
                out[offset + k * stride] = v.into();
            }
        }
        match self {
            Ids::U8(v) => go(&v[start..start + n], out, offset, stride),
            Ids::U16(v) => go(&v[start..start + n], out, offset, stride),
            Ids::U32(v) => go(&v[start..start + n], out, offset, stride),
        }
    }

    fn from_u32(ids: Vec<u32>, vocab_len: usize) -> Ids {
        if vocab_len <= 1 << 8 {
            Ids::U8(ids.into_iter().map(|i| i as u8).collect())
        } else if vocab_len <= 1 << 16 {
            Ids::U16(ids.into_iter().map(|i| i as u16).collect())
        } else {
            Ids::U32(ids)
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
                                offset: e.valid_up_to(),
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
    /// vocabulary), then encode straight into the narrowest id type. Peak memory is the raw
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
        let ids = match vocab.len() {
            v if v <= 1 << 8 => Ids::U8(symbols.map(|s| table[s as usize] as u8).collect()),
            v if v <= 1 << 16 => Ids::U16(symbols.map(|s| table[s as usize] as u16).collect()),
            _ => Ids::U32(symbols.map(|s| table[s as usize]).collect()),
        };
        Ok(Corpus { vocab, ids })
    }

    /// Reads and encodes a corpus file.
    pub fn load(
        path: &std::path::Path,
        kind: SymbolKind,
        max_symbols: Option<usize>,
    ) -> Result<Corpus> {
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
                    offset: e.valid_up_to(),
                    hint: "or evaluate a model trained with --bytes",
                })?;
                vocab.encode(text.chars().map(u32::from), what)?
            }
            SymbolKind::Bytes => vocab.encode(text.iter().map(|&b| u32::from(b)), what)?,
        };
        Corpus::checked(vocab, ids, name)
    }

    fn checked(vocab: &Vocab, ids: Vec<u32>, name: &str) -> Result<Corpus> {
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
}

impl Corpus {
    /// Splits off the last `val_frac` of the symbols as a validation text (None when
    /// `val_frac` is 0); both keep the whole corpus's vocabulary.
    pub fn split_validation(&self, val_frac: f64) -> Result<(Corpus, Option<Corpus>)> {
        if !(0.0..1.0).contains(&val_frac) {
            return Err(Error::config(
                "--val-frac",
                val_frac,
                "use a fraction in [0, 1) (0 disables validation)",
            ));
        }
        let n = self.ids.len();
        let n_val = (n as f64 * val_frac).round() as usize;
        if n_val == 0 {
            return Ok((self.clone(), None));
        }
        let part = |r: std::ops::Range<usize>| Corpus {
            vocab: self.vocab.clone(),
            ids: self.ids.slice(r),
        };
        Ok((part(0..n - n_val), Some(part(n - n_val..n))))
    }
}

/// The corpus cut into B contiguous streams, each walked in chunks of T (truncated BPTT).
///
/// Stream b covers symbols `[b·S, (b+1)·S)` with S = ⌊N/B⌋ (karpathy/char-rnn's layout); a
/// step takes inputs `[p, p+T)` and targets `[p+1, p+T+1)` of every stream, so an epoch has
/// ⌊(S−1)/T⌋ steps and the last few symbols of a stream that do not fill a chunk are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    /// B, the number of streams.
    pub batch: usize,
    /// T, steps per chunk.
    pub seq_len: usize,
    /// S, symbols per stream.
    pub stream_len: usize,
}

impl Streams {
    /// Lays out `n` symbols as `batch` streams of chunks of `seq_len`.
    pub fn new(n: usize, batch: usize, seq_len: usize) -> Result<Streams> {
        if batch == 0 {
            return Err(Error::config(
                "--batch",
                batch,
                "the number of streams must be at least 1",
            ));
        }
        if seq_len == 0 {
            return Err(Error::config(
                "--seq-len",
                seq_len,
                "the sequence length must be at least 1",
            ));
        }
        let stream_len = n / batch;
        if stream_len < seq_len + 1 {
            return Err(Error::CorpusTooShort {
                chars: n,
                batch,
                per_stream: stream_len,
                needed: seq_len + 1,
            });
        }
        Ok(Streams {
            batch,
            seq_len,
            stream_len,
        })
    }

    /// Steps (chunks of T per stream) in one epoch.
    pub fn steps_per_epoch(&self) -> usize {
        (self.stream_len - 1) / self.seq_len
    }

    /// Symbols predicted per step, T·B.
    pub fn chars_per_step(&self) -> usize {
        self.seq_len * self.batch
    }

    /// Fills `xs` and `ys`, both (T', B') time-major, with the symbols of streams
    /// `b0 .. b0+B'` from position `pos` on (T' = `xs.len() / nb`, usually T).
    ///
    /// `xs[t·nb + j]` is the input at time t of stream b0+j; `ys` holds the next symbols.
    pub fn fill(
        &self,
        ids: &Ids,
        pos: usize,
        b0: usize,
        nb: usize,
        xs: &mut [u32],
        ys: &mut [u32],
    ) {
        let t = xs.len() / nb;
        debug_assert!(xs.len() == t * nb && ys.len() == t * nb && pos + t < self.stream_len);
        for j in 0..nb {
            let start = (b0 + j) * self.stream_len + pos;
            ids.copy_strided(start, xs, j, nb, t);
            ids.copy_strided(start + 1, ys, j, nb, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_use_the_narrowest_type_and_vocab_is_sorted() {
        let c = Corpus::from_bytes("banana".as_bytes(), SymbolKind::Chars, None, "t").unwrap();
        assert_eq!(c.vocab.symbols, vec!['a' as u32, 'b' as u32, 'n' as u32]);
        assert!(matches!(c.ids, Ids::U8(_)));
        let wide: String = (0..300u32)
            .map(|i| char::from_u32(0x4e00 + i).unwrap())
            .collect();
        let c = Corpus::from_bytes(wide.as_bytes(), SymbolKind::Chars, None, "t").unwrap();
        assert_eq!(c.vocab.len(), 300);
        assert!(matches!(c.ids, Ids::U16(_)));
        assert_eq!(c.ids.get(299), 299);
    }

    #[test]
    fn streams_are_contiguous_and_targets_are_the_next_symbols() {
        let ids = Ids::U8((0..=40).collect());
        let s = Streams::new(41, 2, 4).unwrap(); // S = 20: streams [0, 20) and [20, 40)
        assert_eq!(s.steps_per_epoch(), 4);
        let (mut xs, mut ys) = (vec![0; 8], vec![0; 8]);
        s.fill(&ids, 4, 0, 2, &mut xs, &mut ys);
        assert_eq!(xs, vec![4, 24, 5, 25, 6, 26, 7, 27]); // (T, B) time-major
        assert_eq!(ys, vec![5, 25, 6, 26, 7, 27, 8, 28]);
        assert!(matches!(
            Streams::new(9, 2, 4),
            Err(Error::CorpusTooShort {
                per_stream: 4,
                needed: 5,
                ..
            })
        ));
    }
}
