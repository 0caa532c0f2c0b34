//! The prepared data format: what `charrnn prepare` writes and `charrnn train DATA_DIR` reads.
//!
//! A prepared data directory holds three files:
//!
//! - `vocab.json`: `{"format": 2, "kind": "chars"|"bytes", "symbols": [...], "counts": [...],
//!   "unknown_mapped": n}`: the sorted code points (or byte values) whose index is the id,
//!   how often each occurs, and how many input symbols were mapped to the reserved unknown
//!   id ([`UNKNOWN`], always last) when the vocabulary was capped.
//! - `tokens.bin`: a 64-byte header, then the ids, little-endian, `width` bytes each:
//!
//!   | bytes | field |
//!   |---|---|
//!   | 0..8 | magic `CHRNNTOK` |
//!   | 8..12 | format version (u32, 2; 1 is still read) |
//!   | 12..16 | id width in bytes (u32: 1 for V ≤ 256, 2 for V ≤ 65,536, else 4) |
//!   | 16..24 | token count N (u64) |
//!   | 24..32 | vocabulary hash (u64, [`Vocab::hash`]) |
//!   | 32..40 | content hash (u64: xxh3-64 of the id bytes; in version 1, FNV-1a over the id bytes taken as little-endian u64 words, the last one zero-padded) |
//!   | 40..64 | zero |
//!
//!   All integers are little-endian; the file is exactly 64 + N·width bytes.
//!
//!   Version 1 differs only in its content hash, whose flaw made version 2: a flip of a
//!   word's top bit reached only the hash's top bit, so two such flips cancelled and data
//!   prepared again with both changed kept its hash. A version-1 file is still read: its
//!   recorded hash is taken as it is (readers never recompute it), so a run trained on it
//!   resumes against it as before ([`crate::data::Ids::fingerprint`]).
//! - `manifest.json`: the sources in the order they were concatenated (path and size), the
//!   separator, and the totals.
//!
//! Every file is written to a temporary name and renamed into place; the vocabulary hash in
//! the header ties the token file to its `vocab.json`, so a half-replaced directory is
//! refused rather than misread.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use super::ids::{id_width, Ids};
use super::vocab::{Vocab, UNKNOWN};
use super::Corpus;
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// The token file's first eight bytes.
pub const MAGIC: &[u8; 8] = b"CHRNNTOK";
/// The prepared data format this build writes (in all three files).
pub const FORMAT_VERSION: u32 = 2;
/// The oldest prepared data format this build still reads (see the module documentation).
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Bytes before the first id.
pub const HEADER_LEN: u64 = 64;

/// `vocab.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VocabFile {
    /// The prepared data format version.
    pub format: u32,
    /// The vocabulary (kind and sorted symbols).
    #[serde(flatten)]
    pub vocab: Vocab,
    /// Occurrences of each symbol in the token file (the unknown id's: the mapped symbols).
    pub counts: Vec<u64>,
    /// Input symbols mapped to the unknown id.
    pub unknown_mapped: u64,
}

/// One input of `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SourceEntry {
    /// The file as found (`-` for standard input).
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// `manifest.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The prepared data format version.
    pub format: u32,
    /// The inputs, in the order they were concatenated.
    pub sources: Vec<SourceEntry>,
    /// What was put between consecutive inputs.
    pub separator: Option<String>,
    /// Input bytes in all.
    pub bytes: u64,
    /// Tokens written (separators included).
    pub tokens: u64,
}

/// The token file's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// Bytes per id.
    pub width: u32,
    /// Number of ids, N.
    pub tokens: u64,
    /// [`Vocab::hash`] of the vocabulary the ids index.
    pub vocab_hash: u64,
    /// Hash of the ids (see the module documentation).
    pub content_hash: u64,
}

impl Header {
    /// The 64 bytes written at the start of a token file.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.width.to_le_bytes());
        b[16..24].copy_from_slice(&self.tokens.to_le_bytes());
        b[24..32].copy_from_slice(&self.vocab_hash.to_le_bytes());
        b[32..40].copy_from_slice(&self.content_hash.to_le_bytes());
        b
    }

    /// Reads a header, refusing anything that is not one this build can read.
    pub fn parse(b: &[u8], path: &Path) -> Result<Header> {
        let bad = |reason: String| Error::BadData {
            path: path.to_path_buf(),
            reason,
        };
        if b.len() < HEADER_LEN as usize {
            return Err(bad(format!(
                "the file is {} bytes, shorter than its {HEADER_LEN}-byte header",
                b.len()
            )));
        }
        if &b[0..8] != MAGIC {
            return Err(bad(
                "it does not start with CHRNNTOK: not a charrnn token file".into(),
            ));
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let h = Header {
            version: u32_at(8),
            width: u32_at(12),
            tokens: u64_at(16),
            vocab_hash: u64_at(24),
            content_hash: u64_at(32),
        };
        check_version(h.version).map_err(bad)?;
        if ![1, 2, 4].contains(&h.width) {
            return Err(bad(format!(
                "its id width is {} bytes (1, 2 or 4 expected)",
                h.width
            )));
        }
        Ok(h)
    }
}

/// A format version this build reads, or why not.
fn check_version(version: u32) -> std::result::Result<(), String> {
    if (OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Ok(());
    }
    Err(format!(
        "it has format version {version}, and this charrnn reads versions \
         {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
    ))
}

/// The content hash of the token files this build writes: xxh3-64 of the id bytes, fed in
/// pieces of any length (the result does not depend on how the bytes are cut).
#[derive(Clone, Default)]
pub struct ContentHash(Xxh3Default);

impl ContentHash {
    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything fed.
    pub fn finish(&self) -> u64 {
        self.0.digest()
    }
}

impl std::fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentHash({:016x})", self.finish())
    }
}

/// The three files' paths in a data directory.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("vocab.json"),
        dir.join("tokens.bin"),
        dir.join("manifest.json"),
    )
}

/// Opens a prepared data directory: its vocabulary, and its ids read from the token file
/// on demand. Checks the header, the file's size and the vocabulary hash (O(1) in the size).
pub fn open(dir: &Path) -> Result<Corpus> {
    let (vocab_path, token_path, _) = paths(dir);
    let bad = |path: &Path, reason: String| Error::BadData {
        path: path.to_path_buf(),
        reason,
    };
    if !vocab_path.exists() && !token_path.exists() {
        return Err(bad(dir, "it holds no vocab.json and no tokens.bin".into()));
    }
    let text = std::fs::read(&vocab_path).map_err(|e| Error::io("cannot read", &vocab_path, e))?;
    let vf: VocabFile = serde_json::from_slice(&text)
        .map_err(|e| bad(&vocab_path, format!("it is not a vocabulary file ({e})")))?;
    check_version(vf.format).map_err(|reason| bad(&vocab_path, reason))?;
    check_vocab(&vf.vocab).map_err(|reason| bad(&vocab_path, reason))?;
    let file = File::open(&token_path).map_err(|e| Error::io("cannot open", &token_path, e))?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("cannot read the size of", &token_path, e))?
        .len();
    let mut head = [0u8; HEADER_LEN as usize];
    let got =
        read_prefix(&file, &mut head).map_err(|e| Error::io("cannot read", &token_path, e))?;
    let h = Header::parse(&head[..got], &token_path)?;
    let want = u64::from(h.width)
        .checked_mul(h.tokens)
        .and_then(|b| b.checked_add(HEADER_LEN));
    if want != Some(size) {
        return Err(bad(
            &token_path,
            format!(
                "its header promises {} ids of {} byte(s) ({} bytes with the header), but the file has {size} bytes (truncated or overwritten?)",
                h.tokens,
                h.width,
                want.map_or("more than 2^64".to_string(), |w| w.to_string()),
            ),
        ));
    }
    if h.vocab_hash != vf.vocab.hash() {
        return Err(bad(
            &token_path,
            "its vocabulary hash does not match vocab.json (the two files come from different runs of prepare)".into(),
        ));
    }
    if h.width as usize != id_width(vf.vocab.len()) {
        return Err(bad(
            &token_path,
            format!(
                "its ids are {} byte(s) wide, but a vocabulary of {} symbols needs {}",
                h.width,
                vf.vocab.len(),
                id_width(vf.vocab.len())
            ),
        ));
    }
    if h.tokens == 0 {
        return Err(bad(&token_path, "it holds no tokens".into()));
    }
    let len = usize::try_from(h.tokens).map_err(|_| {
        bad(
            &token_path,
            "it holds more ids than this machine can address".into(),
        )
    })?;
    Ok(Corpus {
        ids: Ids::from_file(
            file,
            token_path,
            HEADER_LEN,
            (h.width as usize, len),
            h.content_hash,
            vf.vocab.len() as u32,
        ),
        vocab: vf.vocab,
    })
}

/// Reads up to `buf.len()` bytes from the start of `file`; returns how many it got.
fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// A vocabulary must be non-empty, strictly increasing, and hold only symbols of its kind.
fn check_vocab(v: &Vocab) -> std::result::Result<(), String> {
    if v.is_empty() {
        return Err("its vocabulary is empty".into());
    }
    if v.symbols.windows(2).any(|w| w[0] >= w[1]) {
        return Err("its symbols are not strictly increasing".into());
    }
    let valid = |s: u32| {
        s == UNKNOWN
            || match v.kind {
                super::SymbolKind::Chars => char::from_u32(s).is_some(),
                super::SymbolKind::Bytes => s <= 0xff,
            }
    };
    match v.symbols.iter().find(|&&s| !valid(s)) {
        Some(s) => Err(format!("it holds {s}, which is not a {:?} symbol", v.kind)),
        None => Ok(()),
    }
}

/// Writes a token file: header first (its content hash filled in at the end), then ids.
pub struct TokenWriter {
    out: AtomicFile,
    header: Header,
    hash: ContentHash,
    written: u64,
}

impl TokenWriter {
    /// Starts `path` for `tokens` ids over `vocab`.
    pub fn create(path: &Path, vocab: &Vocab, tokens: u64) -> Result<TokenWriter> {
        let header = Header {
            version: FORMAT_VERSION,
            width: id_width(vocab.len()) as u32,
            tokens,
            vocab_hash: vocab.hash(),
            content_hash: 0,
        };
        let mut out = AtomicFile::create(path)?;
        out.write(&header.to_bytes())?;
        Ok(TokenWriter {
            out,
            header,
            hash: ContentHash::default(),
            written: 0,
        })
    }

    /// Bytes per id.
    pub fn width(&self) -> usize {
        self.header.width as usize
    }

    /// Appends ids already in little-endian bytes of [`TokenWriter::width`].
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hash.update(bytes);
        self.written += (bytes.len() / self.width()) as u64;
        self.out.write(bytes)
    }

    /// Ids written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Fills in the content hash and moves the file into place; refuses (removing the
    /// temporary file) when the ids written are not the count the header promises.
    pub fn commit(mut self, path: &Path) -> Result<()> {
        if self.written != self.header.tokens {
            return Err(Error::BadData {
                path: path.to_path_buf(),
                reason: format!(
                    "{} ids were written where the header promises {}",
                    self.written, self.header.tokens
                ),
            });
        }
        self.header.content_hash = self.hash.finish();
        let bytes = self.header.to_bytes();
        use std::os::unix::fs::FileExt;
        self.out
            .file()?
            .write_all_at(&bytes, 0)
            .map_err(|e| Error::io("cannot write", path, e))?;
        self.out.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_does_not_depend_on_how_the_bytes_are_cut() {
        // Past xxh3's 256-byte buffer and its 1,024-byte blocks, several times.
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let whole = xxhash_rust::xxh3::xxh3_64(&data);
        for cut in [1, 3, 8, 13, 64, 255, 256, 257, 1024, 1500, 4999, 5000] {
            let mut h = ContentHash::default();
            for piece in data.chunks(cut) {
                h.update(piece);
                h.update(&[]);
            }
            assert_eq!(h.finish(), whole, "pieces of {cut}");
        }
        // Uneven pieces: 0, 1, 2, ... bytes.
        let (mut h, mut at, mut n) = (ContentHash::default(), 0, 0);
        while at < data.len() {
            let end = (at + n).min(data.len());
            h.update(&data[at..end]);
            (at, n) = (end, n + 1);
        }
        assert_eq!(h.finish(), whole);
        let mut other = ContentHash::default();
        other.update(&data[1..]);
        assert_ne!(other.finish(), whole);
    }

    #[test]
    fn both_format_versions_are_read_and_no_other() {
        for v in [1, 2] {
            assert!(check_version(v).is_ok());
        }
        for v in [0, 3] {
            assert!(check_version(v).unwrap_err().contains("versions 1 to 2"));
        }
    }
}
