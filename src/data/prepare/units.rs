//! Cutting the inputs into units of work that can be read, checked and counted or encoded
//! independently, in parallel, with results put back in input order.
//!
//! A unit is a byte range `[start, end)` of one file, at most [`UNIT`] bytes; it owns the
//! symbols whose first byte lies in it. In character mode its real bounds move forward past
//! UTF-8 continuation bytes (at most 3), so a character is never split between units and
//! neighbouring units agree on where one ends and the next begins, without reading each
//! other. A stray continuation byte therefore falls in the unit before it, whose UTF-8 check
//! reports it.

use std::cell::RefCell;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use super::inputs::Input;
use crate::data::vocab::SymbolKind;
use crate::error::{Error, Result};

/// Bytes per unit (files larger than this are cut into several).
pub(super) const UNIT: u64 = 2 << 20;
/// Bytes of input processed in parallel before results are merged in order.
const BATCH: u64 = 16 << 20;

/// A byte range of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Unit {
    /// Index of the input.
    pub file: usize,
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

/// Every input cut into units, in order (empty inputs have none).
pub(super) fn units(inputs: &[Input]) -> Vec<Unit> {
    let mut out = Vec::new();
    for (file, input) in inputs.iter().enumerate() {
        let mut start = 0;
        while start < input.bytes {
            let end = (start + UNIT).min(input.bytes);
            out.push(Unit { file, start, end });
            start = end;
        }
    }
    out
}

/// Consecutive runs of units of at most [`BATCH`] bytes (or one unit).
pub(super) fn batches(units: &[Unit]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut first, mut bytes) = (0, 0);
    for (i, u) in units.iter().enumerate() {
        if i > first && bytes + (u.end - u.start) > BATCH {
            out.push(first..i);
            (first, bytes) = (i, 0);
        }
        bytes += u.end - u.start;
    }
    if first < units.len() {
        out.push(first..units.len());
    }
    out
}

thread_local! {
    /// Each thread's read buffer, reused from unit to unit.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads `unit` of `input` and calls `f` with its symbols' bytes (checked UTF-8 in character
/// mode: an error names the file and the byte offset of the first bad byte).
pub(super) fn with_unit<T>(
    input: &Input,
    unit: &Unit,
    kind: SymbolKind,
    f: impl FnOnce(&[u8]) -> T,
) -> Result<T> {
    let reach = if kind == SymbolKind::Chars { 3 } else { 0 };
    let read_end = (unit.end + reach).min(input.bytes);
    BUF.with_borrow_mut(|buf| {
        buf.resize((read_end - unit.start) as usize, 0);
        let file = File::open(&input.path).map_err(|e| Error::io("cannot read", &input.path, e))?;
        file.read_exact_at(buf, unit.start).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                changed(input)
            } else {
                Error::io("cannot read", &input.path, e)
            }
        })?;
        let (lo, hi) = match kind {
            SymbolKind::Bytes => (0, buf.len()),
            SymbolKind::Chars => {
                let lo = if unit.start == 0 { 0 } else { boundary(buf, 0) };
                let own = (unit.end - unit.start) as usize;
                let hi = if unit.end == input.bytes {
                    buf.len()
                } else {
                    boundary(buf, own)
                };
                (lo, hi)
            }
        };
        let piece = &buf[lo..hi.max(lo)];
        if kind == SymbolKind::Chars {
            if let Err(e) = std::str::from_utf8(piece) {
                return Err(Error::InvalidUtf8 {
                    path: input.shown.clone(),
                    offset: unit.start + (lo + e.valid_up_to()) as u64,
                    hint: "or prepare with --bytes to train on raw bytes",
                });
            }
        }
        Ok(f(piece))
    })
}

/// The error for an input whose size changed after it was found.
pub(super) fn changed(input: &Input) -> Error {
    Error::Input {
        what: input.shown.clone(),
        hint: "the file changed while it was being prepared; prepare again once it is stable"
            .into(),
    }
}

/// The first position at or after `at` (looking at most 3 bytes ahead, and not past the
/// buffer) whose byte is not a UTF-8 continuation byte: where the symbol owned by the unit
/// that starts at `at` begins.
fn boundary(buf: &[u8], at: usize) -> usize {
    let mut i = at;
    while i < buf.len() && i < at + 3 && buf[i] & 0xc0 == 0x80 {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_agree_on_boundaries_and_never_split_a_character() {
        let text = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        for at in 0..=text.len() {
            let b = boundary(text, at);
            assert!(std::str::from_utf8(&text[..b]).is_ok(), "at {at}: {b}");
            assert!(std::str::from_utf8(&text[b..]).is_ok(), "at {at}: {b}");
        }
    }

    #[test]
    fn batches_cover_every_unit_once_in_order() {
        let us: Vec<Unit> = (0..40)
            .map(|i| Unit {
                file: i,
                start: 0,
                end: UNIT,
            })
            .collect();
        let bs = batches(&us);
        assert_eq!(bs.first().unwrap().start, 0);
        assert_eq!(bs.last().unwrap().end, 40);
        assert!(bs.windows(2).all(|w| w[0].end == w[1].start));
        assert!(bs.iter().all(|b| (b.len() as u64) * UNIT <= BATCH));
    }
}
