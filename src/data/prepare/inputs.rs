//! Which files `prepare` reads, in which order: arguments as given, directory trees walked
//! in sorted order and filtered by globs, standard input spooled to a file.

use std::fs::File;
use std::path::{Path, PathBuf};

use globset::{ErrorKind, GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::WalkDir;

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
    let include = Globs::new("--include", &opts.include)?;
    let exclude = Globs::new("--exclude", &opts.exclude)?;
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
            let found = walk(arg, &include, &exclude)?;
            if found.is_empty() {
                let filter = if include.given.is_empty() && exclude.given.is_empty() {
                    String::new()
                } else {
                    format!(
                        " matching --include {} --exclude {}",
                        if include.given.is_empty() {
                            "*".into()
                        } else {
                            include.given.join(",")
                        },
                        if exclude.given.is_empty() {
                            "(none)".into()
                        } else {
                            exclude.given.join(",")
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

/// The globs of `--include` or `--exclude`, with a shell's rules: `*` matches any run of
/// characters but `/`, `**` (a whole path component) any number of directories, `?` one
/// character but `/`, `[abc]` one of a class (a comma separates globs, so no `{a,b}`). A
/// glob with a `/` is matched against the path below the directory given (`drivers/*.c` takes
/// `drivers/x.c`, not `drivers/net/x.c`), any other against the file name (`*.c` takes a C
/// file at any depth).
struct Globs {
    /// The globs as given, for messages.
    given: Vec<String>,
    /// Those without a `/`.
    by_name: GlobSet,
    /// Those with a `/`.
    by_path: GlobSet,
}

impl Globs {
    /// Compiles the globs of `flag`: one per comma-separated item of each value, so that
    /// `--include '*.c,*.h'` and a repeated flag are alike.
    fn new(flag: &str, values: &[String]) -> Result<Globs> {
        let given: Vec<String> = values
            .iter()
            .flat_map(|g| g.split(','))
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(String::from)
            .collect();
        let bad = |what: String, e: globset::Error| {
            let comma = matches!(
                e.kind(),
                ErrorKind::UnclosedAlternates | ErrorKind::UnopenedAlternates
            );
            Error::Input {
                what,
                hint: format!(
                    "not a valid glob ({}); {}",
                    e.kind(),
                    if comma {
                        "commas separate globs, so write *.c,*.h rather than *.{c,h}"
                    } else {
                        "write it as for a shell: * matches within a directory, ** across \
                         directories, ? one character, [abc] one of a class"
                    }
                ),
            }
        };
        let (mut by_name, mut by_path) = (GlobSetBuilder::new(), GlobSetBuilder::new());
        for g in &given {
            let glob = GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| bad(format!("{flag} {g}"), e))?;
            if g.contains('/') {
                by_path.add(glob);
            } else {
                by_name.add(glob);
            }
        }
        let set = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| bad(format!("{flag} {}", given.join(",")), e))
        };
        Ok(Globs {
            by_name: set(by_name)?,
            by_path: set(by_path)?,
            given,
        })
    }

    /// True when the file `rel` (its path below the directory walked) matches a glob.
    fn matches(&self, rel: &Path) -> bool {
        rel.file_name()
            .is_some_and(|name| self.by_name.is_match(name))
            || self.by_path.is_match(rel)
    }
}

/// The files under `root` that pass the globs, sorted by name at every level (a directory's
/// files come where its name sorts). Symbolic links to files are followed; links to
/// directories are not (no cycles).
fn walk(root: &Path, include: &Globs, exclude: &Globs) -> Result<Vec<Input>> {
    let mut found = Vec::new();
    for entry in WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = entry.map_err(|err| {
            let path = err.path().unwrap_or(root).to_path_buf();
            let action = if path.is_dir() {
                "cannot read directory"
            } else {
                "cannot read"
            };
            let msg = err.to_string();
            let io = err
                .into_io_error()
                .unwrap_or_else(|| std::io::Error::other(msg));
            Error::io(action, path, io)
        })?;
        let kind = e.file_type();
        if kind.is_dir() {
            continue;
        }
        let path = e.path();
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => continue,
            Err(err) if kind.is_symlink() => {
                return Err(Error::io("cannot follow the link", path, err))
            }
            Err(err) => return Err(Error::io("cannot read", path, err)),
        };
        let rel = path.strip_prefix(root).unwrap_or(path);
        if (!include.given.is_empty() && !include.matches(rel)) || exclude.matches(rel) {
            continue;
        }
        found.push(Input {
            shown: path.display().to_string(),
            path: path.to_path_buf(),
            bytes: meta.len(),
        });
    }
    Ok(found)
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

    fn globs(g: &str) -> Globs {
        Globs::new("--include", &[g.to_string()]).unwrap()
    }

    #[test]
    fn globs_match_like_a_shell() {
        let m = |g: &str, rel: &str| globs(g).matches(Path::new(rel));
        assert!(m("*.c", "main.c"));
        assert!(m("*.c", "deep/down/main.c"));
        assert!(!m("*.c", "main.cc"));
        assert!(m("a?c*", "abcdef"));
        assert!(m("*.[ch]", "x.h"));
        assert!(m("drivers/*/*.h", "drivers/net/x.h"));
        assert!(!m("drivers/*.c", "drivers/net/x.c"));
        assert!(!m("drivers/?x.c", "drivers/ax.c/x.c"));
        assert!(m("drivers/**/*.c", "drivers/x.c"));
        assert!(m("drivers/**/*.c", "drivers/net/wireless/x.c"));
        assert!(m("drivers/**", "drivers/net/x.c"));
        assert!(!m("drivers/**", "lib/x.c"));
    }

    #[test]
    fn globs_split_at_commas_and_a_bad_one_is_named() {
        let g = Globs::new("--exclude", &["*.o, *.a".into(), ",lib/*".into()]).unwrap();
        assert_eq!(g.given, ["*.o", "*.a", "lib/*"]);
        assert!(g.matches(Path::new("x/y.a")) && g.matches(Path::new("lib/z")));
        assert!(!g.matches(Path::new("lib/sub/z")));
        for (bad, needle) in [
            ("src/[ab", "unclosed character class"),
            ("x/[z-a]", "invalid range"),
            ("*.{c", "commas separate globs"),
        ] {
            let e = Globs::new("--exclude", &[bad.into()])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains(&format!("--exclude {bad}")), "{e}");
            assert!(e.contains("not a valid glob") && e.contains(needle), "{e}");
        }
    }
}
