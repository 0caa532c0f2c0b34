//! Symbol ids in the narrowest integer width that holds the vocabulary, in memory or in a
//! prepared token file.
//!
//! [`Ids`] is a view: a range of a shared store. Slicing (the validation split, `--max-chars`)
//! never copies. A store is either bytes in memory or a token file read on demand with
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
    start: usize,
    len: usize,
}

impl fmt::Debug for Ids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match &*self.store {
            Store::Heap(_) => "memory".to_string(),
            Store::File { path, .. } => path.display().to_string(),
        };
        write!(
            f,
            "Ids({} × u{} at {}..{} in {place})",
            self.len,
            self.width * 8,
            self.start,
            self.start + self.len
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
        }
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
                    "t1:{content:016x}:{}:{}:{h:016x}",
                    self.start, self.len
                ))
            }
        }
    }

    /// Reads ids `at .. at + out.len()` of this view into `out`.
    pub fn read(&self, at: usize, out: &mut [u32]) -> Result<()> {
        assert!(at + out.len() <= self.len, "read in range");
        let w = self.width;
        let first = (self.start + at) * w;
        match &*self.store {
            Store::Heap(bytes) => {
                widen(&bytes[first..first + out.len() * w], w, out);
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
                    let pos = offset + (first + k * per * w) as u64;
                    file.read_exact_at(bytes, pos)
                        .map_err(|e| Error::io("cannot read token file", path, e))?;
                    widen(bytes, w, chunk);
                    if let Some(i) = chunk.iter().position(|&id| id >= *vocab_len) {
                        return Err(Error::BadData {
                            path: path.clone(),
                            reason: format!(
                                "id {} at token {} is outside its vocabulary of {vocab_len} symbols (the file is damaged)",
                                chunk[i],
                                self.start + at + k * per + i
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
