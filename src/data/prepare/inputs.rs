//! Which files `prepare` reads, in which order: arguments as given, directory trees walked
//! in sorted order and filtered by globs, standard input spooled to a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::Options;
use crate::error::{Error, Result};

/// One input file.
pub(super) struct Input {
    /// Where to read it.
    pub path: PathBuf,
    /// As recorded in the manifest and shown in messages.
    pub shown: String,
    /// Its size when it was found.
    pub bytes: u64,
}

/// Standard input copied to a temporary file in the data directory (two passes need to read
/// it twice); removed when dropped.
pub(super) struct Spool(PathBuf);

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The input files in order: each argument as given, a directory's files sorted by path.
pub(super) fn collect(opts: &Options, spool: &mut Option<Spool>) -> Result<Vec<Input>> {
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
}
