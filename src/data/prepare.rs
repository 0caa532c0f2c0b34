//! `charrnn prepare`: inputs (files, directory trees, standard input) → a prepared data
//! directory ([`super::tokens`]), streaming, in bounded memory.
//!
//! Two passes over the inputs, in blocks of 8 MiB: the first checks UTF-8 and counts every
//! symbol (the vocabulary), the second encodes. Each block is cut at character boundaries
//! into one piece per thread, the pieces are counted or encoded in parallel, and the results
//! are merged (or written) in order, so the output does not depend on the number of threads.
//! Memory is a few blocks and two code-point tables, whatever the inputs' size.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::tokens::{self, Manifest, SourceEntry, TokenWriter, VocabFile, FORMAT_VERSION};
use super::vocab::{SymbolKind, Vocab, UNKNOWN};
use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Bytes read per block.
const BLOCK: usize = 8 << 20;
/// Size of a table indexed by code point.
const CODE_POINTS: usize = char::MAX as usize + 1;

/// What to prepare and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Files, directories (walked recursively), or `-` for standard input, in this order.
    pub inputs: Vec<PathBuf>,
    /// Globs a file found in a directory must match (any of them), e.g. `*.c`; none: all.
    /// A glob with a `/` is matched against the path below the directory, else the file name.
    pub include: Vec<String>,
    /// Globs that drop a file found in a directory.
    pub exclude: Vec<String>,
    /// Text put between consecutive inputs.
    pub separator: Option<String>,
    /// Characters (the inputs must be UTF-8) or raw bytes.
    pub kind: SymbolKind,
    /// Symbols seen fewer times map to the unknown id.
    pub min_count: u64,
    /// At most this many ids, the unknown one included: the rarest symbols map to it.
    pub max_vocab: Option<usize>,
    /// The data directory to write.
    pub out: PathBuf,
    /// Replace prepared data already in `out`.
    pub force: bool,
}

/// What `prepare` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Input files read.
    pub files: usize,
    /// Input bytes.
    pub bytes: u64,
    /// Tokens written (separators included).
    pub tokens: u64,
    /// Vocabulary size V (the unknown id included).
    pub vocab: usize,
    /// Bytes per id in the token file.
    pub width: usize,
    /// Distinct symbols mapped to the unknown id.
    pub unknown_symbols: usize,
    /// Occurrences mapped to the unknown id.
    pub unknown_mapped: u64,
    /// Wall time, seconds.
    pub secs: f64,
}

/// One input file.
struct Input {
    path: PathBuf,
    /// As recorded in the manifest.
    shown: String,
    bytes: u64,
}

/// Standard input copied to a temporary file in the data directory (two passes need to read
/// it twice); removed when dropped.
struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Prepares `opts.inputs` into `opts.out`; `progress(done, total)` is called with bytes
/// processed over both passes.
pub fn prepare(opts: &Options, progress: &mut dyn FnMut(u64, u64)) -> Result<Report> {
    let start = Instant::now();
    check_out(opts)?;
    if opts.min_count == 0 {
        return Err(Error::config(
            "--min-count",
            0,
            "use 1 (keep every symbol) or more",
        ));
    }
    if let Some(m) = opts.max_vocab.filter(|&m| m < 2) {
        return Err(Error::config(
            "--max-vocab",
            m,
            "keep at least 2 ids (one symbol and the unknown id)",
        ));
    }
    let mut spool = None;
    let inputs = collect(opts, &mut spool)?;
    let bytes: u64 = inputs.iter().map(|i| i.bytes).sum();
    let sep = opts.separator.as_deref().unwrap_or("").as_bytes();
    let total = 2 * bytes;
    let mut done = 0u64;

    // Pass 1: the symbols and their counts.
    let mut counts = Counts::new(opts.kind);
    for (k, input) in inputs.iter().enumerate() {
        if k > 0 {
            counts.add(&Counts::of(sep, opts.kind));
        }
        for_each_block(input, opts.kind, &mut |piece, _| {
            let parts: Vec<Counts> = split(piece, opts.kind)
                .par_iter()
                .map(|p| Counts::of(p, opts.kind))
                .collect();
            parts.iter().for_each(|c| counts.add(c));
            done += piece.len() as u64;
            progress(done, total);
            Ok(())
        })?;
    }
    let present = counts.present();
    let n_tokens: u64 = present.iter().map(|&(_, n)| n).sum();
    if n_tokens == 0 {
        return Err(Error::Input {
            what: describe_inputs(opts),
            hint: "the inputs hold no text (every file is empty)".into(),
        });
    }
    let (vocab, table, vocab_counts, unknown_symbols) = build_vocab(&present, opts)?;

    // Pass 2: encode.
    let (vocab_path, token_path, manifest_path) = tokens::paths(&opts.out);
    let mut writer = TokenWriter::create(&token_path, &vocab, n_tokens)?;
    let width = writer.width();
    let mut sep_ids = Vec::new();
    encode(sep, opts.kind, &table, width, &mut sep_ids);
    let mut outs: Vec<Vec<u8>> = Vec::new();
    for (k, input) in inputs.iter().enumerate() {
        if k > 0 {
            writer.write(&sep_ids)?;
        }
        for_each_block(input, opts.kind, &mut |piece, _| {
            let parts = split(piece, opts.kind);
            outs.resize_with(parts.len().max(outs.len()), Vec::new);
            parts
                .par_iter()
                .zip(outs.par_iter_mut())
                .for_each(|(p, out)| encode(p, opts.kind, &table, width, out));
            for out in &outs[..parts.len()] {
                writer.write(out)?;
            }
            done += piece.len() as u64;
            progress(done, total);
            Ok(())
        })?;
    }
    writer.commit(&token_path)?;
    let unknown_mapped = match vocab.unknown_id() {
        Some(u) => vocab_counts[u as usize],
        None => 0,
    };
    let vf = VocabFile {
        format: FORMAT_VERSION,
        vocab: vocab.clone(),
        counts: vocab_counts,
        unknown_mapped,
    };
    let manifest = Manifest {
        format: FORMAT_VERSION,
        sources: inputs
            .iter()
            .map(|i| SourceEntry {
                path: i.shown.clone(),
                bytes: i.bytes,
            })
            .collect(),
        separator: opts.separator.clone(),
        bytes,
        tokens: n_tokens,
    };
    write_atomic(&manifest_path, pretty(&manifest).as_bytes())?;
    write_atomic(&vocab_path, pretty(&vf).as_bytes())?;
    drop(spool);
    Ok(Report {
        files: inputs.len(),
        bytes,
        tokens: n_tokens,
        vocab: vocab.len(),
        width,
        unknown_symbols,
        unknown_mapped,
        secs: start.elapsed().as_secs_f64(),
    })
}

/// Pretty JSON, newline-terminated.
fn pretty<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("plain data serialises") + "\n"
}

/// Refuses an output that is a file, or a directory that already holds prepared data
/// (unless `force`).
fn check_out(opts: &Options) -> Result<()> {
    let out = &opts.out;
    if out.exists() && !out.is_dir() {
        return Err(Error::Input {
            what: out.display().to_string(),
            hint: "--out names a file; give a directory (it is created if missing)".into(),
        });
    }
    let (v, t, _) = tokens::paths(out);
    if (v.exists() || t.exists()) && !opts.force {
        return Err(Error::Input {
            what: out.display().to_string(),
            hint: "it already holds prepared data: pass --force to replace it, or choose another --out".into(),
        });
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io("cannot create directory", out, e))
}

fn describe_inputs(opts: &Options) -> String {
    let names: Vec<String> = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.join(" ")
}

/// The input files in order: each argument as given, a directory's files sorted by path.
fn collect(opts: &Options, spool: &mut Option<Spool>) -> Result<Vec<Input>> {
    if opts.inputs.is_empty() {
        return Err(Error::Input {
            what: "nothing".into(),
            hint: "name at least one file, directory, or - for standard input".into(),
        });
    }
    let include = split_globs(&opts.include);
    let exclude = split_globs(&opts.exclude);
    let mut inputs = Vec::new();
    for arg in &opts.inputs {
        if arg.as_os_str() == "-" {
            if spool.is_some() {
                return Err(Error::Input {
                    what: "-".into(),
                    hint: "standard input can be read only once; give - once".into(),
                });
            }
            let path = opts.out.join(format!(".stdin.tmp.{}", std::process::id()));
            let s = spool.insert(Spool(path.clone()));
            let bytes = copy_stdin(&s.0)?;
            inputs.push(Input {
                path,
                shown: "-".into(),
                bytes,
            });
            continue;
        }
        let meta = std::fs::metadata(arg).map_err(|e| Error::io("cannot read", arg, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(arg, Path::new(""), &include, &exclude, &mut found)?;
            if found.is_empty() {
                let filter = if include.is_empty() && exclude.is_empty() {
                    String::new()
                } else {
                    format!(
                        " matching --include {} --exclude {}",
                        if include.is_empty() {
                            "*".into()
                        } else {
                            include.join(",")
                        },
                        if exclude.is_empty() {
                            "(none)".into()
                        } else {
                            exclude.join(",")
                        }
                    )
                };
                return Err(Error::Input {
                    what: arg.display().to_string(),
                    hint: format!("the directory holds no files{filter}"),
                });
            }
            inputs.extend(found);
        } else {
            inputs.push(Input {
                path: arg.clone(),
                shown: arg.display().to_string(),
                bytes: meta.len(),
            });
        }
    }
    Ok(inputs)
}

/// `--include '*.c,*.h'` and repeated flags alike: one glob per comma-separated item.
fn split_globs(globs: &[String]) -> Vec<String> {
    globs
        .iter()
        .flat_map(|g| g.split(','))
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(String::from)
        .collect()
}

/// Appends the files under `root/rel` that pass the globs, sorted by name at every level.
/// Symbolic links to files are followed; links to directories are not (no cycles).
fn walk(
    root: &Path,
    rel: &Path,
    include: &[String],
    exclude: &[String],
    found: &mut Vec<Input>,
) -> Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io("cannot read directory", &dir, e))?
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io("cannot read directory", &dir, e))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = rel.join(e.file_name());
        let kind = e
            .file_type()
            .map_err(|err| Error::io("cannot read", &path, err))?;
        if kind.is_dir() {
            walk(root, &rel, include, exclude, found)?;
            continue;
        }
        let meta = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(err) if kind.is_symlink() => {
                return Err(Error::io("cannot follow the link", &path, err))
            }
            Err(err) => return Err(Error::io("cannot read", &path, err)),
        };
        let name = e.file_name().to_string_lossy().into_owned();
        let rel_str = rel.to_string_lossy().into_owned();
        let hit = |g: &String| glob(g, if g.contains('/') { &rel_str } else { &name });
        if (!include.is_empty() && !include.iter().any(hit)) || exclude.iter().any(hit) {
            continue;
        }
        found.push(Input {
            shown: path.display().to_string(),
            path,
            bytes: meta.len(),
        });
    }
    Ok(())
}

/// Shell-style match: `*` any run of characters, `?` one character, anything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // The classic greedy match with one backtrack point (the last `*`).
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Copies standard input to `path`; returns its size.
fn copy_stdin(path: &Path) -> Result<u64> {
    let mut out = File::create(path).map_err(|e| Error::io("cannot create", path, e))?;
    std::io::copy(&mut std::io::stdin().lock(), &mut out)
        .map_err(|e| Error::io("cannot copy standard input to", path, e))
}

/// Reads `input` in blocks and calls `f(piece, offset)` with each run of whole symbols
/// (checked UTF-8 in character mode: an error names the file and byte offset).
fn for_each_block(
    input: &Input,
    kind: SymbolKind,
    f: &mut dyn FnMut(&[u8], u64) -> Result<()>,
) -> Result<()> {
    let mut file = File::open(&input.path).map_err(|e| Error::io("cannot read", &input.path, e))?;
    let mut buf = vec![0u8; BLOCK];
    let (mut carry, mut offset) = (0usize, 0u64);
    loop {
        let mut filled = carry;
        // Fill the block (a read may return less than asked).
        while filled < BLOCK {
            match file.read(&mut buf[filled..BLOCK]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("cannot read", &input.path, e)),
            }
        }
        let eof = filled < BLOCK;
        let cut = match kind {
            SymbolKind::Bytes => filled,
            SymbolKind::Chars if eof => filled,
            SymbolKind::Chars => char_cut(&buf[..filled]),
        };
        let piece = &buf[..cut];
        if kind == SymbolKind::Chars {
            if let Err(e) = std::str::from_utf8(piece) {
                return Err(Error::InvalidUtf8 {
                    path: input.shown.clone(),
                    offset: offset + e.valid_up_to() as u64,
                    hint: "or prepare with --bytes to train on raw bytes",
                });
            }
        }
        if !piece.is_empty() {
            f(piece, offset)?;
        }
        offset += cut as u64;
        buf.copy_within(cut..filled, 0);
        carry = filled - cut;
        if eof {
            return Ok(());
        }
    }
}

/// The last position at or before the end of `b` that starts a character (a byte that is
/// not a UTF-8 continuation byte), looking back at most 3 bytes: cutting there never splits
/// a valid character.
fn char_cut(b: &[u8]) -> usize {
    let is_cont = |x: u8| x & 0xc0 == 0x80;
    let n = b.len();
    for back in 1..=4.min(n) {
        let i = n - back;
        if !is_cont(b[i]) {
            let need = match b[i] {
                x if x < 0x80 => 1,
                x if x >= 0xf0 => 4,
                x if x >= 0xe0 => 3,
                _ => 2,
            };
            return if back >= need { n } else { i };
        }
    }
    n // Four continuation bytes: invalid anyway, let validation report it.
}

/// `piece` cut into one part per thread, at character boundaries.
fn split(piece: &[u8], kind: SymbolKind) -> Vec<&[u8]> {
    let parts = rayon::current_num_threads().max(1);
    let mut out = Vec::with_capacity(parts);
    let mut rest = piece;
    for k in (1..=parts).rev() {
        let mut at = rest.len() / k;
        if kind == SymbolKind::Chars {
            while at < rest.len() && rest[at] & 0xc0 == 0x80 {
                at += 1;
            }
        }
        let (a, b) = rest.split_at(if k == 1 { rest.len() } else { at });
        out.push(a);
        rest = b;
    }
    out
}

/// Occurrences of every symbol.
struct Counts {
    low: [u64; 256],
    /// Code points ≥ 128 (character mode only), allocated on first use.
    high: Vec<u64>,
    kind: SymbolKind,
}

impl Counts {
    fn new(kind: SymbolKind) -> Counts {
        Counts {
            low: [0; 256],
            high: Vec::new(),
            kind,
        }
    }

    /// Counts the symbols of `piece` (valid UTF-8 in character mode).
    fn of(piece: &[u8], kind: SymbolKind) -> Counts {
        let mut c = Counts::new(kind);
        match kind {
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
        c
    }

    fn high_mut(&mut self) -> &mut Vec<u64> {
        if self.high.is_empty() {
            self.high = vec![0; CODE_POINTS];
        }
        &mut self.high
    }

    fn add(&mut self, other: &Counts) {
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
    fn present(&self) -> Vec<(u32, u64)> {
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
fn build_vocab(
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
    let unknown = keep.len() as u32;
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

/// Appends the ids of `piece`'s symbols to `out` (cleared first), `width` bytes each.
fn encode(piece: &[u8], kind: SymbolKind, table: &[u32], width: usize, out: &mut Vec<u8>) {
    out.clear();
    out.reserve(piece.len() * width);
    let mut push = |id: u32| match width {
        1 => out.push(id as u8),
        2 => out.extend_from_slice(&(id as u16).to_le_bytes()),
        _ => out.extend_from_slice(&id.to_le_bytes()),
    };
    match kind {
        SymbolKind::Bytes => piece.iter().for_each(|&b| push(table[b as usize])),
        SymbolKind::Chars => {
            let mut i = 0;
            while i < piece.len() {
                let b = piece[i];
                if b < 0x80 {
                    push(table[b as usize]);
                    i += 1;
                } else {
                    let (cp, len) = decode_at(piece, i);
                    push(table[cp as usize]);
                    i += len;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob("*.c", "main.c"));
        assert!(!glob("*.c", "main.cc"));
        assert!(glob("a?c*", "abcdef"));
        assert!(glob("*", ""));
        assert!(!glob("?", ""));
        assert!(glob("drivers/*/*.h", "drivers/net/x.h"));
    }

    #[test]
    fn cuts_never_split_a_character() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        for end in 0..=s.len() {
            let cut = char_cut(&s[..end]);
            assert!(
                std::str::from_utf8(&s[..cut]).is_ok(),
                "end {end} cut {cut}"
            );
            assert!(end - cut < 4);
        }
        let parts = split(s, SymbolKind::Chars);
        assert_eq!(parts.concat(), s);
        assert!(parts.iter().all(|p| std::str::from_utf8(p).is_ok()));
    }

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
