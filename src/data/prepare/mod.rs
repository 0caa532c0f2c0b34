//! `charrnn prepare`: inputs (files, directory trees, standard input) → a prepared data
//! directory ([`super::tokens`]), streaming, in bounded memory.
//!
//! Two passes over the inputs: the first checks UTF-8 and counts every symbol (the
//! vocabulary), the second encodes. Both cut the inputs into units of at most 2 MiB
//! (`units.rs`) and process batches of units in parallel: counts are summed (the order does
//! not matter), encoded units are written in input order, so the output does not depend on
//! the number of threads. Memory is one batch (16 MiB of input and its ids) and two
//! code-point tables per thread, whatever the inputs' size.

mod inputs;
mod symbols;
mod units;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use super::tokens::{self, Manifest, SourceEntry, TokenWriter, VocabFile, FORMAT_VERSION};
use super::vocab::SymbolKind;
use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use inputs::collect;
use symbols::{build_vocab, encode, Counts};
use units::{batches, changed, with_unit, Unit};

/// What to prepare and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Files, directories (walked recursively), or `-` for standard input, in this order.
    pub inputs: Vec<PathBuf>,
    /// Globs a file found in a directory must match (any of them), e.g. `*.c`; none: all.
    /// Items may also be comma-separated. A glob with a `/` is matched against the path below
    /// the directory, else the file name; as in a shell, `*` and `?` never match a `/`, and
    /// `**` matches any number of directories (`drivers/*.c` takes `drivers/x.c`, not
    /// `drivers/net/x.c`; `drivers/**/*.c` takes both). An invalid glob is an error.
    pub include: Vec<String>,
    /// Globs (as for `include`) that drop a file found in a directory.
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

/// Input bytes of `units`.
fn batch_bytes(units: &[Unit]) -> u64 {
    units.iter().map(|u| u.end - u.start).sum()
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
    let units = units::units(&inputs);
    let batches = batches(&units);
    // Separators go between consecutive non-empty inputs.
    let nonempty = inputs.iter().filter(|i| i.bytes > 0).count();
    let first_units: Vec<bool> = units
        .iter()
        .enumerate()
        .map(|(k, u)| u.start == 0 && k > 0)
        .collect();

    // Pass 1: the symbols and their counts, one accumulator per thread.
    let accs: Vec<Mutex<Counts>> = (0..rayon::current_num_threads().max(1))
        .map(|_| Mutex::new(Counts::new(opts.kind)))
        .collect();
    for batch in &batches {
        let results: Vec<Result<()>> = units[batch.clone()]
            .par_iter()
            .map(|u| {
                let mut acc = accs[rayon::current_thread_index().unwrap_or(0) % accs.len()]
                    .lock()
                    .expect("a counting thread panicked");
                with_unit(&inputs[u.file], u, opts.kind, |piece| acc.count(piece))
            })
            .collect();
        results.into_iter().collect::<Result<()>>()?;
        done += batch_bytes(&units[batch.clone()]);
        progress(done, total);
    }
    let mut counts = Counts::new(opts.kind);
    for acc in accs {
        counts.add(&acc.into_inner().expect("a counting thread panicked"));
    }
    let mut sep_counts = Counts::new(opts.kind);
    for _ in 1..nonempty.max(1) {
        sep_counts.count(sep);
    }
    counts.add(&sep_counts);
    let present = counts.present();
    let n_tokens: u64 = present.iter().map(|&(_, n)| n).sum();
    if n_tokens == 0 {
        return Err(Error::Input {
            what: describe_inputs(opts),
            hint: "the inputs hold no text (every file is empty)".into(),
        });
    }
    let (vocab, table, vocab_counts, unknown_symbols) = build_vocab(&present, opts)?;

    // Pass 2: encode, batch by batch, writing units in input order.
    let (vocab_path, token_path, manifest_path) = tokens::paths(&opts.out);
    let mut writer = TokenWriter::create(&token_path, &vocab, n_tokens)?;
    let width = writer.width();
    let mut sep_ids = Vec::new();
    encode(sep, opts.kind, &table, width, &mut sep_ids);
    for batch in &batches {
        let outs: Vec<Result<Option<Vec<u8>>>> = units[batch.clone()]
            .par_iter()
            .map(|u| {
                with_unit(&inputs[u.file], u, opts.kind, |piece| {
                    let mut out = Vec::new();
                    encode(piece, opts.kind, &table, width, &mut out).then_some(out)
                })
            })
            .collect();
        for (k, out) in batch.clone().zip(outs) {
            let input = &inputs[units[k].file];
            let out = out?.ok_or_else(|| changed(input))?;
            if first_units[k] {
                writer.write(&sep_ids)?;
            }
            writer.write(&out)?;
        }
        done += batch_bytes(&units[batch.clone()]);
        progress(done, total);
    }
    for input in &inputs {
        let now = std::fs::metadata(&input.path).map(|m| m.len()).ok();
        if now != Some(input.bytes) {
            return Err(changed(input));
        }
    }
    if writer.written() != n_tokens {
        return Err(changed(&inputs[0]));
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
    std::fs::create_dir_all(out).map_err(|e| Error::io("cannot create directory", out, e))?;
    // What an earlier, killed prepare left half-written.
    crate::atomic::clean_stale_temps(out);
    Ok(())
}

fn describe_inputs(opts: &Options) -> String {
    let names: Vec<String> = opts
        .inputs
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    names.join(" ")
}
