//! `charrnn prepare` and `charrnn synth`: the commands that make data, and their flags.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::json;

use charrnn::atomic::AtomicFile;
use charrnn::data::prepare::{prepare, Options};
use charrnn::data::SymbolKind;
use charrnn::synth::MarkovSource;

use clap::Args;

#[derive(Args)]
pub(crate) struct PrepareArgs {
    /// Files, directories (walked recursively, files in sorted order), or - for standard
    /// input; concatenated in the order given.
    #[arg(required = true)]
    pub(crate) inputs: Vec<PathBuf>,
    /// The data directory to write (vocab.json, tokens.bin, manifest.json).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Take only the files in directories that match one of these globs (comma-separated,
    /// e.g. '*.c,*.h'). A glob with a / matches the path below the directory, else the file
    /// name; as in a shell, * and ? never match a /, ** matches any number of directories
    /// ('drivers/*.c' takes drivers/x.c, not drivers/net/x.c; 'drivers/**/*.c' takes both).
    #[arg(long, value_delimiter = ',')]
    pub(crate) include: Vec<String>,
    /// Leave out the files in directories that match one of these globs (as for --include).
    #[arg(long, value_delimiter = ',')]
    pub(crate) exclude: Vec<String>,
    /// Text put between consecutive files (escapes \n and \t are understood).
    #[arg(long)]
    pub(crate) separator: Option<String>,
    /// Raw bytes instead of UTF-8 characters (any file is accepted).
    #[arg(long)]
    pub(crate) bytes: bool,
    /// Symbols seen fewer times than this map to one reserved unknown id.
    #[arg(long, default_value_t = 1)]
    pub(crate) min_count: u64,
    /// At most this many ids (the unknown id included): the rarest symbols map to the
    /// unknown id.
    #[arg(long)]
    pub(crate) max_vocab: Option<usize>,
    /// Replace prepared data already in --out.
    #[arg(long)]
    pub(crate) force: bool,
    /// Threads [default: the available cores]; the output does not depend on it.
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// End stdout with one JSON object of the summary.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct SynthArgs {
    /// Characters to write.
    #[arg(long)]
    pub(crate) chars: u64,
    /// The file to write (replaced atomically; refused if it exists, unless --force).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Seed of the text (the chain is always the built-in corpus's).
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Replace --out if it exists.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `\n`, `\t` and `\\` in a --separator become the characters they name.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

pub(crate) fn prepare_cmd(a: PrepareArgs) -> Result<()> {
    let threads = a
        .threads
        .unwrap_or_else(charrnn::parallel::launch::available_cores);
    if threads == 0 {
        bail!("invalid --threads = 0: use at least 1 thread");
    }
    let opts = Options {
        inputs: a.inputs.clone(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        separator: a.separator.as_deref().map(unescape),
        kind: if a.bytes {
            SymbolKind::Bytes
        } else {
            SymbolKind::Chars
        },
        min_count: a.min_count,
        max_vocab: a.max_vocab,
        out: a.out.clone(),
        force: a.force,
    };
    let bar = if !a.quiet && std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{bar:30.cyan/blue} {binary_bytes}/{binary_total_bytes} (2 passes) | {binary_bytes_per_sec} | ETA {eta}",
        )
        .expect("valid template");
        bar.set_style(style);
        Some(bar)
    } else {
        None
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the threads")?;
    let report = pool.install(|| {
        prepare(&opts, &mut |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        })
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    println!(
        "prepared {} file(s), {} bytes → {} tokens of {} byte(s) in {} ({} symbols{}) in {:.2} s: {:.0} MB/s",
        report.files,
        report.bytes,
        report.tokens,
        report.width,
        a.out.display(),
        report.vocab,
        if report.unknown_symbols > 0 {
            format!(
                "; {} rare symbol(s), {} occurrence(s), mapped to the unknown id",
                report.unknown_symbols, report.unknown_mapped
            )
        } else {
            String::new()
        },
        report.secs,
        report.bytes as f64 / report.secs.max(1e-9) / 1e6
    );
    if a.json {
        println!(
            "{}",
            json!({
                "files": report.files,
                "bytes": report.bytes,
                "tokens": report.tokens,
                "vocab": report.vocab,
                "id_width": report.width,
                "unknown_symbols": report.unknown_symbols,
                "unknown_mapped": report.unknown_mapped,
                "seconds": report.secs,
                "threads": threads,
            })
        );
    }
    Ok(())
}

pub(crate) fn synth_cmd(a: SynthArgs) -> Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "{} exists: pass --force to replace it, or choose another --out",
            a.out.display()
        );
    }
    let source = MarkovSource::builtin();
    let mut out = AtomicFile::create(&a.out)?;
    let mut buf = String::with_capacity(1 << 20);
    let mut chars = source.chars(a.seed);
    let mut left = a.chars;
    while left > 0 {
        buf.clear();
        let n = left.min(1 << 20);
        buf.extend(chars.by_ref().take(n as usize));
        out.write(buf.as_bytes())?;
        left -= n;
    }
    out.commit()?;
    println!(
        "wrote {} characters of the built-in Markov source (seed {}, entropy rate {:.4} nats/char) to {}",
        a.chars,
        a.seed,
        source.entropy_rate_nats(),
        a.out.display()
    );
    Ok(())
}
