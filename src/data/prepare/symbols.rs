//! Counting symbols, choosing the vocabulary, and encoding text into ids.

use super::Options;
use crate::data::vocab::{SymbolKind, Vocab, UNKNOWN};
use crate::error::{Error, Result};

/// Size of a table indexed by code point.
const CODE_POINTS: usize = char::MAX as usize + 1;

/// Occurrences of every symbol.
pub(super) struct Counts {
    low: [u64; 256],
    /// Code points ≥ 128 (character mode only), allocated on first use.
    high: Vec<u64>,
    kind: SymbolKind,
}

impl Counts {
    pub(super) fn new(kind: SymbolKind) -> Counts {
        Counts {
            low: [0; 256],
            high: Vec::new(),
            kind,
        }
    }

    /// Adds the symbols of `piece` (valid UTF-8 in character mode).
    pub(super) fn count(&mut self, piece: &[u8]) {
        let c = self;
        match c.kind {
            SymbolKind::Bytes => piece.iter().for_each(|&b| c.low[b as usize] += 1),
            SymbolKind::Chars => {
                let mut i = 0;
                while i < piece.len() {
                    let b = piece[i];
                    if b < 0x80 {
                        c.low[b as usize] += 1;
                        i += 1;
                    } else {
                        let (cp, len) = decode_at(piece, i);
                        c.high_mut()[cp as usize] += 1;
                        i += len;
                    }
                }
            }
        }
    }

    fn high_mut(&mut self) -> &mut Vec<u64> {
        if self.high.is_empty() {
            self.high = vec![0; CODE_POINTS];
        }
        &mut self.high
    }

    pub(super) fn add(&mut self, other: &Counts) {
        self.low
            .iter_mut()
            .zip(&other.low)
            .for_each(|(a, b)| *a += b);
        if !other.high.is_empty() {
            let high = self.high_mut();
            high.iter_mut().zip(&other.high).for_each(|(a, b)| *a += b);
        }
    }

    /// (symbol, count) of every symbol seen, sorted by symbol.
    pub(super) fn present(&self) -> Vec<(u32, u64)> {
        let low = self.low.iter().enumerate().map(|(s, &n)| (s as u32, n));
        let high = self
            .high
            .iter()
            .enumerate()
            .skip(0x80)
            .map(|(s, &n)| (s as u32, n));
        let limit = if self.kind == SymbolKind::Chars {
            0x80
        } else {
            0x100
        };
        low.take(limit)
            .chain(high)
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// The code point starting at `b[i]` (valid UTF-8) and its length in bytes.
fn decode_at(b: &[u8], i: usize) -> (u32, usize) {
    let lead = b[i] as u32;
    let cont = |k: usize| (b[i + k] & 0x3f) as u32;
    match lead {
        0xf0.. => (
            ((lead & 0x07) << 18) | (cont(1) << 12) | (cont(2) << 6) | cont(3),
            4,
        ),
        0xe0.. => (((lead & 0x0f) << 12) | (cont(1) << 6) | cont(2), 3),
        _ => (((lead & 0x1f) << 6) | cont(1), 2),
    }
}

/// The vocabulary after the caps, the symbol → id table, each id's count, and how many
/// distinct symbols were mapped to the unknown id.
pub(super) fn build_vocab(
    present: &[(u32, u64)],
    opts: &Options,
) -> Result<(Vocab, Vec<u32>, Vec<u64>, usize)> {
    let mut keep: Vec<(u32, u64)> = present
        .iter()
        .copied()
        .filter(|&(_, n)| n >= opts.min_count)
        .collect();
    if let Some(m) = opts.max_vocab {
        if keep.len() > m {
            // The m − 1 most frequent (ties: the smaller symbol) and the unknown id.
            keep.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            keep.truncate(m - 1);
            keep.sort();
        }
    }
    if keep.is_empty() {
        return Err(Error::config(
            "--min-count",
            opts.min_count,
            format!(
                "no symbol occurs that often (the commonest occurs {} times)",
                present.iter().map(|p| p.1).max().unwrap_or(0)
            ),
        ));
    }
    let dropped = present.len() - keep.len();
    let size = if opts.kind == SymbolKind::Chars {
        CODE_POINTS
    } else {
        256
    };
    let unknown = if dropped > 0 {
        keep.len() as u32
    } else {
        MISSING
    };
    let mut table = vec![unknown; size];
    let mut symbols = Vec::with_capacity(keep.len() + 1);
    let mut counts = Vec::with_capacity(keep.len() + 1);
    for (id, &(s, n)) in keep.iter().enumerate() {
        table[s as usize] = id as u32;
        symbols.push(s);
        counts.push(n);
    }
    if dropped > 0 {
        let total: u64 = present.iter().map(|p| p.1).sum();
        symbols.push(UNKNOWN);
        counts.push(total - counts.iter().sum::<u64>());
    }
    let vocab = Vocab {
        kind: opts.kind,
        symbols,
    };
    Ok((vocab, table, counts, dropped))
}

/// The table value of a symbol that is not in the vocabulary (no unknown id to map it to).
pub(super) const MISSING: u32 = u32::MAX;

/// Writes the ids of `piece`'s symbols into `out` (replacing its contents), `width` bytes
/// each, little-endian. False when a symbol has no id (it was not counted: the input changed
/// between the passes).
pub(super) fn encode(
    piece: &[u8],
    kind: SymbolKind,
    table: &[u32],
    width: usize,
    out: &mut Vec<u8>,
) -> bool {
    match width {
        1 => encode_as::<1>(piece, kind, table, out),
        2 => encode_as::<2>(piece, kind, table, out),
        _ => encode_as::<4>(piece, kind, table, out),
    }
}

fn encode_as<const W: usize>(
    piece: &[u8],
    kind: SymbolKind,
    table: &[u32],
    out: &mut Vec<u8>,
) -> bool {
    // At most one symbol per byte.
    out.clear();
    out.resize(piece.len() * W, 0);
    let (mut n, mut missing) = (0, false);
    let mut put = |id: u32| {
        missing |= id == MISSING;
        out[n..n + W].copy_from_slice(&id.to_le_bytes()[..W]);
        n += W;
    };
    match kind {
        SymbolKind::Bytes => piece.iter().for_each(|&b| put(table[b as usize])),
        SymbolKind::Chars => {
            let mut i = 0;
            while i < piece.len() {
                let b = piece[i];
                if b < 0x80 {
                    put(table[b as usize]);
                    i += 1;
                } else {
                    let (cp, len) = decode_at(piece, i);
                    put(table[cp as usize]);
                    i += len;
                }
            }
        }
    }
    out.truncate(n);
    !missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoding_agrees_with_std() {
        let s = "aé€😀\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}";
        let b = s.as_bytes();
        let mut i = 0;
        for c in s.chars() {
            if (c as u32) < 0x80 {
                i += 1;
                continue;
            }
            let (cp, len) = decode_at(b, i);
            assert_eq!((cp, len), (c as u32, c.len_utf8()));
            i += len;
        }
    }
}
