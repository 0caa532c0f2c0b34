//! Symbol ids in the narrowest integer width that holds the vocabulary, in memory or in a
//! prepared token file.
//!
//! [`Ids`] is a view: a range of a shared store, or of the blocks of it that a spread
//! validation split keeps or holds out ([`Ids::spread`]). Slicing (the validation split,
//! `--max-chars`) never copies. A store is either bytes in memory or a token file read on demand with
//! positioned reads, so training from a file of any size holds only the T·B ids of a step in
//! memory. (Reads, rather than a memory map: resident pages of a map count towards the
//! process's memory and a file truncated under a map kills the process with SIGBUS, where a
//! read returns an error.)

use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::fnv;
use crate::error::{Error, Result};

/// Where the ids live: little-endian, `width` bytes each.
enum Store {
    /// In memory.
    Heap(Vec<u8>),
    /// In a token file, from byte `offset` on.
    File {
        file: File,
        path: PathBuf,
        offset: u64,
        /// The content hash recorded in the file's header.
        content: u64,
        /// The vocabulary size: every id read is checked to be below it.
        vocab_len: u32,
    },
}

/// Symbol ids: a range of an in-memory or on-disk store of 1-, 2- or 4-byte ids.
#[derive(Clone)]
pub struct Ids {
    store: Arc<Store>,
    width: usize,
    /// The view's first position, in the positions of `map`.
    start: usize,
    len: usize,
    map: Map,
}

/// Which of a store's ids a view's positions stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Map {
    /// Position i is the store's id i.
    Direct,
    /// Those of the blocks a spread validation split keeps or holds out.
    Blocks(Spread),
}

/// The store's ids from `origin` on, cut into blocks of `block`, of which the last of each of
/// the first `held` runs of `period` blocks is held out: positions are those of the other
/// blocks in order (`kept`) or of the held-out ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Spread {
    origin: usize,
    block: usize,
    period: usize,
    held: usize,
    kept: bool,
}

impl Map {
    /// The store's id at position `i`, and how many ids from there on follow it in the store
    /// as they do in the view.
    fn locate(&self, i: usize) -> (usize, usize) {
        let Map::Blocks(s) = self else {
            return (i, usize::MAX);
        };
        let (b, r) = (i / s.block, i % s.block);
        let stored = if !s.kept {
            b * s.period + s.period - 1
        } else if b < s.held * (s.period - 1) {
            b / (s.period - 1) * s.period + b % (s.period - 1)
        } else {
            b + s.held
        };
        (s.origin + stored * s.block + r, s.block - r)
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = if self.kept { "kept" } else { "held" };
        let Spread {
            origin,
            block,
            period,
            held,
            ..
        } = self;
        write!(f, "{side}{origin}+{block}x{period}x{held}")
    }
}

impl fmt::Debug for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &*self.store {
            Store::Heap(_) => "memory".to_string(),
            Store::File { path, .. } => path.display().to_string(),
        };
        write!(
            f,
            "Ids({} × u{} at {}..{} of {:?} in {place})",
            self.len,
            self.width * 8,
            self.start,
            self.start + self.len,
            self.map
        )
    }
}

/// The id width in bytes for a vocabulary of `vocab_len` symbols: 1, 2 or 4.
pub fn id_width(vocab_len: usize) -> usize {
    if vocab_len <= 1 << 8 {
        1
    } else if vocab_len <= 1 << 16 {
        2
    } else {
        4
    }
}

impl Ids {
    /// Ids in memory, stored in the narrowest width for `vocab_len` symbols (every id must be
    /// below `vocab_len`).
    pub fn from_u32(ids: impl IntoIterator<Item = u32>, vocab_len: usize) -> Ids {
        let width = id_width(vocab_len);
        let bytes: Vec<u8> = match width {
            1 => ids.into_iter().map(|i| i as u8).collect(),
            2 => ids
                .into_iter()
                .flat_map(|i| (i as u16).to_le_bytes())
                .collect(),
            _ => ids.into_iter().flat_map(u32::to_le_bytes).collect(),
        };
        Ids::from_le_bytes(bytes, width)
    }

    /// Ids in memory from their little-endian bytes, `width` (1, 2 or 4) bytes each.
    pub(crate) fn from_le_bytes(bytes: Vec<u8>, width: usize) -> Ids {
        let len = bytes.len() / width;
        Ids {
            store: Arc::new(Store::Heap(bytes)),
            width,
            start: 0,
            len,
            map: Map::Direct,
        }
    }

    /// `len` ids of `width` bytes read on demand from `file` at byte `offset`; `content` is
    /// the hash the file's header records for them (see [`Ids::fingerprint`]); every id read
    /// must be below `vocab_len` (a damaged file is an error, not an out-of-range index).
    pub(crate) fn from_file(
        file: File,
        path: PathBuf,
        offset: u64,
        (width, len): (usize, usize),
        content: u64,
        vocab_len: u32,
    ) -> Ids {
        Ids {
            store: Arc::new(Store::File {
                file,
                path,
                offset,
                content,
                vocab_len,
            }),
            width,
            start: 0,
            len,
            map: Map::Direct,
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is no id.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes per id: 1, 2 or 4.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The ids in `range` (relative to this view), sharing this view's store: no copy.
    pub fn slice(&self, range: Range<usize>) -> Ids {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "slice in range"
        );
        Ids {
            store: Arc::clone(&self.store),
            width: self.width,
            start: self.start + range.start,
            len: range.len(),
            map: self.map,
        }
    }

    /// This view cut into blocks of `block` ids, `held` of them held out spread evenly over
    /// it (the last of each run of ⌊blocks / held⌋): the ids of the other blocks in order, and
    /// those of the held-out ones, sharing this view's store. None when fewer than two blocks
    /// per held-out one fit, or the view is already spread.
    pub fn spread(&self, block: usize, held: usize) -> Option<(Ids, Ids)> {
        let period = (self.len / block.max(1)).checked_div(held)?;
        if period < 2 || self.map != Map::Direct {
            return None;
        }
        let part = |kept: bool, len: usize| Ids {
            store: Arc::clone(&self.store),
            width: self.width,
            start: 0,
            len,
            map: Map::Blocks(Spread {
                origin: self.start,
                block,
                period,
                held,
                kept,
            }),
        };
        Some((
            part(true, self.len - held * block),
            part(false, held * block),
        ))
    }

    /// Identifies the ids, so a resumed run can check it has the same data.
    ///
    /// In memory: FNV-1a (64 bit) over every id, with the count (`N:hash`). From a token
    /// file: its recorded content hash, this view's range, and a hash of up to 64 blocks of
    /// 4,096 ids spread over the range (`t1:content:start:N:sampled`), so checking a 10 GB
    /// corpus costs a few hundred kilobytes of reads.
    pub fn fingerprint(&self) -> Result<String> {
        match &*self.store {
            Store::Heap(_) => {
                let mut h = fnv::OFFSET;
                let mut buf = vec![0u32; 4096];
                for at in (0..self.len).step_by(buf.len()) {
                    let n = buf.len().min(self.len - at);
                    self.read(at, &mut buf[..n])?;
                    h = buf[..n].iter().fold(h, |h, &id| fnv::step(h, id.into()));
                }
                Ok(format!("{}:{h:016x}", self.len))
            }
            Store::File { content, .. } => {
                let map = match self.map {
                    Map::Direct => String::new(),
                    Map::Blocks(spread) => format!("{spread}:"),
                };
                const BLOCK: usize = 4096;
                let blocks = self.len.div_ceil(BLOCK).min(64);
                let mut buf = vec![0u32; BLOCK];
                let mut h = fnv::OFFSET;
                for k in 0..blocks {
                    let at = if blocks < 2 {
                        0
                    } else {
                        k * (self.len - BLOCK.min(self.len)) / (blocks - 1)
                    };
                    let n = BLOCK.min(self.len - at);
                    self.read(at, &mut buf[..n])?;
                    h = fnv::bytes(h, buf[..n].iter().flat_map(|i| i.to_le_bytes()));
                }
                Ok(format!(
                    "t1:{content:016x}:{map}{}:{}:{h:016x}",
                    self.start, self.len
                ))
            }
        }
    }

    /// Reads ids `at .. at + out.len()` of this view into `out`.
    pub fn read(&self, at: usize, out: &mut [u32]) -> Result<()> {
        assert!(at + out.len() <= self.len, "read in range");
        let mut done = 0;
        while done < out.len() {
            let (stored, run) = self.map.locate(self.start + at + done);
            let n = run.min(out.len() - done);
            self.read_stored(stored, &mut out[done..done + n])?;
            done += n;
        }
        Ok(())
    }

    /// Reads the store's ids `first .. first + out.len()` into `out`.
    fn read_stored(&self, first: usize, out: &mut [u32]) -> Result<()> {
        let w = self.width;
        let at = first * w;
        match &*self.store {
            Store::Heap(bytes) => {
                widen(&bytes[at..at + out.len() * w], w, out);
                Ok(())
            }
            Store::File {
                file,
                path,
                offset,
                vocab_len,
                ..
            } => {
                let mut raw = [0u8; 4096];
                let per = raw.len() / w;
                for (k, chunk) in out.chunks_mut(per).enumerate() {
                    let bytes = &mut raw[..chunk.len() * w];
                    let pos = offset + (at + k * per * w) as u64;
                    file.read_exact_at(bytes, pos)
                        .map_err(|e| Error::io("cannot read token file", path, e))?;
                    widen(bytes, w, chunk);
                    if let Some(i) = chunk.iter().position(|&id| id >= *vocab_len) {
                        return Err(Error::BadData {
                            path: path.clone(),
                            reason: format!(
                                "id {} at token {} is outside its vocabulary of {vocab_len} symbols (the file is damaged)",
                                chunk[i],
                                first + k * per + i
                            ),
                        });
                    }
                }
                Ok(())
            }
        }
    }

    /// The id at position `i` (one read; use [`Ids::read`] for runs of ids).
    pub fn get(&self, i: usize) -> Result<u32> {
        let mut one = [0u32];
        self.read(i, &mut one)?;
        Ok(one[0])
    }
}

/// Little-endian ids of `w` bytes each in `bytes` → `out`.
fn widen(bytes: &[u8], w: usize, out: &mut [u32]) {
    match w {
        1 => out.iter_mut().zip(bytes).for_each(|(o, &b)| *o = b.into()),
        2 => out
            .iter_mut()
            .zip(bytes.chunks_exact(2))
            .for_each(|(o, b)| *o = u16::from_le_bytes([b[0], b[1]]).into()),
        _ => out
            .iter_mut()
            .zip(bytes.chunks_exact(4))
            .for_each(|(o, b)| *o = u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(ids: &Ids) -> Vec<u32> {
        let mut out = vec![0; ids.len()];
        ids.read(0, &mut out).unwrap();
        out
    }

    /// Ids that are their own positions: a view's ids say which stored ids it reads.
    #[test]
    fn a_spread_split_holds_out_whole_blocks_spread_evenly_and_keeps_the_rest_in_order() {
        let n = 25 * 8 + 3; // 25 blocks of 8, and 3 ids after them
        let ids = Ids::from_u32(0..n as u32, n);
        // 5 held out: the last of every 5 blocks.
        let (kept, held) = ids.spread(8, 5).unwrap();
        let held_at: Vec<u32> = [4, 9, 14, 19, 24]
            .iter()
            .flat_map(|b| b * 8..b * 8 + 8)
            .collect();
        assert_eq!(all(&held), held_at);
        let kept_at: Vec<u32> = (0..n as u32).filter(|p| !held_at.contains(p)).collect();
        assert_eq!(all(&kept), kept_at);
        // Any range reads what the whole view holds there, across blocks and gaps.
        for (at, len) in [(3, 20), (31, 9), (0, 1), (kept.len() - 5, 5)] {
            let mut out = vec![0; len];
            kept.read(at, &mut out).unwrap();
            assert_eq!(out, kept_at[at..at + len], "{at}+{len}");
        }
        assert_eq!(all(&kept.slice(10..50)), kept_at[10..50]);
        assert_eq!(all(&held.slice(6..12)), held_at[6..12]);
        // A view that starts later spreads over its own ids: 23 blocks, held every 11th.
        let (_, later) = ids.slice(16..n).spread(8, 2).unwrap();
        let want: Vec<u32> = [10, 21]
            .iter()
            .flat_map(|b| 16 + b * 8..24 + b * 8)
            .collect();
        assert_eq!(all(&later), want);
        // Too few blocks for two per held-out one, or a view already spread: none.
        assert!(ids.spread(8, 13).is_none() && ids.spread(8, 0).is_none());
        assert!(kept.spread(8, 1).is_none());
        // Kept and held-out views of the same ids are told apart.
        assert_ne!(kept.fingerprint().unwrap(), held.fingerprint().unwrap());
    }
}
