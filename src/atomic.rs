//! Files replaced atomically: written to a temporary file beside the target, flushed to
//! disk, then renamed over it. A crash at any moment leaves the old file or the new one, and
//! a failed write removes its temporary file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written that replaces `target` only when [`AtomicFile::commit`] succeeds;
/// dropped uncommitted, it removes its temporary file and leaves the target untouched.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing a replacement for `target` (its directory is created if missing).
    pub fn create(target: &Path) -> Result<AtomicFile> {
        let dir = parent(target);
        std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create directory", dir, e))?;
        let tmp = temp_beside(target);
        let file = File::create(&tmp).map_err(|e| Error::io("cannot create", &tmp, e))?;
        Ok(AtomicFile {
            target: target.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let out = self.out.as_mut().expect("not yet committed");
        out.write_all(bytes)
            .map_err(|e| Error::io("cannot write", &self.tmp, e))
    }

    /// The open file, for positioned writes (flush first with [`AtomicFile::flush`]).
    pub fn file(&mut self) -> Result<&File> {
        self.flush()?;
        Ok(self.out.as_ref().expect("not yet committed").get_ref())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        let out = self.out.as_mut().expect("not yet committed");
        out.flush()
            .map_err(|e| Error::io("cannot write", &self.tmp, e))
    }

    /// Flushes the file to disk and renames it over the target, durably. On failure the
    /// temporary file is removed and the target is untouched.
    pub fn commit(mut self) -> Result<()> {
        let out = self.out.take().expect("committed once");
        let synced = out
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|file| file.sync_all());
        if let Err(e) = synced {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::io("cannot write", &self.tmp, e));
        }
        if let Err(e) = std::fs::rename(&self.tmp, &self.target) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::io(
                "cannot rename temporary file onto",
                &self.target,
                e,
            ));
        }
        let dir = parent(&self.target);
        // Make the rename itself durable.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io("cannot sync directory", dir, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// This process's temporary name for a replacement of `target`: `.NAME.tmp.PID` beside it
/// (what [`clean_stale_temps`] removes once the process is gone).
fn temp_beside(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(target).join(format!(".{name}.tmp.{}", std::process::id()))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Writes `bytes` to `path` atomically (see [`AtomicFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write(bytes)?;
    f.commit()
}

/// Makes `target` a second name of the file `src` (a hard link), atomically: the link is made
/// at a temporary name beside the target and renamed over it, durably. A crash leaves the old
/// target or the new one. Every file charrnn writes replaces its target by a rename, never in
/// place, so writing either name later leaves the other as it was. Fails where the file
/// system has no hard links (the caller then writes the file again).
pub fn link_atomic(src: &Path, target: &Path) -> Result<()> {
    let dir = parent(target);
    let tmp = temp_beside(target);
    let _ = std::fs::remove_file(&tmp);
    std::fs::hard_link(src, &tmp).map_err(|e| Error::io("cannot link to", src, e))?;
    if let Err(e) = std::fs::rename(&tmp, target) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("cannot rename temporary link onto", target, e));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync directory", dir, e))
}

/// Removes the temporary files that a killed process left in `dir` — `.NAME.tmp.PID` (and the
/// plots' `.loss.PID.tmp.png`) of a process that no longer runs — and returns their names.
pub fn clean_stale_temps(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(".loss.")
            .and_then(|r| r.strip_suffix(".tmp.png"))
            .or_else(|| name.rsplit_once(".tmp.").map(|(_, pid)| pid))
            .filter(|_| name.starts_with('.'))
            .and_then(|pid| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        let alive = pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists();
        if !alive && std::fs::remove_file(e.path()).is_ok() {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

/// Appends `line` (which must end with a newline) to `path` with one `write`, synced; a torn
/// last line left by a crash is ended first, so it stays one bad line that readers skip.
pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let torn = std::fs::read(path).is_ok_and(|b| b.last().is_some_and(|&c| c != b'\n'));
    let text = if torn {
        format!("\n{line}")
    } else {
        line.to_string()
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io("cannot open", path, e))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_data())
        .map_err(|e| Error::io("cannot append to", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A linked name reads the file; replacing either name afterwards leaves the other.
    #[test]
    fn a_linked_name_keeps_its_file_when_the_other_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        write_atomic(&a, b"first").unwrap();
        write_atomic(&b, b"old").unwrap();
        link_atomic(&a, &b).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"first");
        write_atomic(&a, b"second").unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"first");
        link_atomic(&a, &b).unwrap();
        write_atomic(&b, b"third").unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        assert!(link_atomic(&dir.path().join("missing"), &b).is_err());
        assert_eq!(std::fs::read(&b).unwrap(), b"third");
    }
}
