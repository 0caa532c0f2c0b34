//! The model's alphabet: which symbols it reads, their ids, and how to show and decode them.

use serde::{Deserialize, Serialize};

use super::fnv;
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

/// The symbol value that stands for "any symbol outside the vocabulary".
///
/// A vocabulary capped by `charrnn prepare --max-vocab` / `--min-count` maps its rare symbols
/// to one reserved id; that id's symbol is this value, which is neither a Unicode scalar
/// value nor a byte, and sorts last, so the reserved id is always the last one.
pub const UNKNOWN: u32 = u32::MAX;

/// The model's alphabet: distinct symbols sorted by code point (or byte value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab {
    /// Characters or bytes.
    pub kind: SymbolKind,
    /// Code points (or byte values) in increasing order; the id of a symbol is its index.
    /// A capped vocabulary ends with [`UNKNOWN`].
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

    /// The reserved id that rare symbols map to, when the vocabulary was capped.
    pub fn unknown_id(&self) -> Option<u32> {
        (self.symbols.last() == Some(&UNKNOWN)).then(|| self.symbols.len() as u32 - 1)
    }

    /// The id of a symbol, if it is in the vocabulary (or it maps to the unknown id).
    pub fn id(&self, symbol: u32) -> Option<u32> {
        self.symbols
            .binary_search(&symbol)
            .ok()
            .map(|i| i as u32)
            .or_else(|| self.unknown_id())
    }

    /// FNV-1a (64 bit) of the kind and the symbols: identifies a vocabulary in a token file.
    pub fn hash(&self) -> u64 {
        let kind: u8 = match self.kind {
            SymbolKind::Chars => 1,
            SymbolKind::Bytes => 2,
        };
        let bytes = std::iter::once(kind).chain(self.symbols.iter().flat_map(|s| s.to_le_bytes()));
        fnv::bytes(fnv::OFFSET, bytes)
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

    /// A quoted, escaped rendering of one symbol for messages (`'a'`, `'\n'`, `0xff`, `<unk>`).
    pub fn show(&self, symbol: u32) -> String {
        match (self.kind, char::from_u32(symbol)) {
            _ if symbol == UNKNOWN => "<unk>".into(),
            (SymbolKind::Chars, Some(c)) => format!("{:?}", c),
            _ => format!("0x{symbol:02x}"),
        }
    }

    /// Appends the bytes of symbol `id` to `out` (UTF-8 for characters, the raw byte otherwise;
    /// the unknown symbol decodes as U+FFFD).
    pub fn decode_into(&self, id: usize, out: &mut Vec<u8>) {
        let s = self.symbols[id];
        match self.kind {
            SymbolKind::Bytes if s <= 0xff => out.push(s as u8),
            _ => {
                let c = char::from_u32(s).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}
