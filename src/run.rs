//! A training run's directory: the model files, the metrics log and the loss plot.
//!
//! ```text
//! DIR/model.safetensors   the latest state (written at every evaluation and at the end)
//! DIR/best.safetensors    the state with the lowest validation loss so far
//! DIR/metrics.jsonl       one JSON object per evaluation interval
//! DIR/samples.jsonl       text sampled during training (`--sample-every`), one object per sample
//! DIR/loss.png            training (mean per interval) and validation loss against characters seen
//! DIR/.lock               held (flock) by the process training in DIR; names its pid
//! ```
//! Model files and the plot are replaced atomically. Metric lines are appended, each with one
//! `write` and flushed to disk; a line torn by a crash is dropped, with a note, on resume.
//! Temporary files a killed process left behind are removed when a run starts or resumes.
//! One process writes a directory at a time ([`RunDir::lock`]); the kernel releases the lock
//! when its holder exits, however it exits.

use std::path::{Path, PathBuf};

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Optimizer steps taken.
    pub step: u64,
    /// Completed epochs.
    pub epoch: u64,
    /// Characters predicted so far.
    pub chars_seen: u64,
    /// Mean loss of the last step, nats/char.
    pub train_loss: f64,
    /// The tutorial's smoothed loss (per sequence of T characters).
    pub smooth_loss: f64,
    /// The smoothed loss per character (smooth_loss / T), comparable with `val_loss`.
    pub smooth_loss_per_char: f64,
    /// Mean training loss (nats/char) over the steps since the previous line.
    pub interval_loss: f64,
    /// Validation loss, nats/char, when measured at this line.
    pub val_loss: Option<f64>,
    /// Validation bits/char, when measured.
    pub val_bpc: Option<f64>,
    /// The loss (nats/char) of a screen of the validation part (`--val-screen`), when one was
    /// read at this line; `val_loss` is absent when the screen found the whole part not worth
    /// reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen_loss: Option<f64>,
    /// Training throughput since the previous line.
    pub chars_per_sec: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Gradient norm of the last step (before clipping).
    pub grad_norm: f64,
    /// Seconds spent in training steps so far, over every leg of the run (evaluation, saving
    /// and plotting excluded): the clock of a time-to-loss race. 0 in files written before it
    /// was recorded.
    #[serde(default)]
    pub train_secs: f64,
}

/// One line of `samples.jsonl`: text sampled from the model during training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleLine {
    /// Optimizer steps taken when it was drawn.
    pub step: u64,
    /// Completed epochs then.
    pub epoch: u64,
    /// The text (bytes that are not UTF-8 replaced by U+FFFD).
    pub text: String,
}

/// A line of a run's JSON-lines logs: it belongs to a step.
trait AtStep: Serialize + serde::de::DeserializeOwned {
    fn step(&self) -> u64;
}

impl AtStep for Metrics {
    fn step(&self) -> u64 {
        self.step
    }
}

impl AtStep for SampleLine {
    fn step(&self) -> u64 {
        self.step
    }
}

/// The records of the JSON-lines file `path` up to `max_step` (none when it does not exist).
/// A last line that does not parse (torn by a crash during its write) is dropped with a note;
/// a bad line before the last is an error naming `what` the lines should be.
fn read_lines<T: AtStep>(
    path: &Path,
    max_step: u64,
    what: &str,
) -> Result<(Vec<T>, Option<String>)> {
    let text = match std::fs::read(path) {
        Ok(t) => String::from_utf8_lossy(&t).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(Error::io("cannot read", path, e)),
    };
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let (mut out, mut note) = (Vec::new(), None);
    for (k, &(i, line)) in lines.iter().enumerate() {
        let r: T = match serde_json::from_str(line) {
            Ok(r) => r,
            Err(_) if k + 1 == lines.len() => {
                note = Some(format!(
                    "note: dropped the last line of {}, which is incomplete (a crash during its write)",
                    path.display()
                ));
                break;
            }
            Err(e) => {
                return Err(Error::BadLog {
                    path: path.into(),
                    reason: format!("line {} is not a {what}: {e}", i + 1),
                })
            }
        };
        if r.step() <= max_step {
            out.push(r);
        }
    }
    Ok((out, note))
}

/// Rewrites the JSON-lines file `path` with exactly `lines` (atomically).
fn rewrite_lines<T: AtStep>(path: &Path, lines: &[T]) -> Result<()> {
    let mut text = String::new();
    for r in lines {
        text += &serde_json::to_string(r).expect("plain data serialises to JSON");
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// The files of a run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

/// The exclusive right to write a run directory, held until dropped (or the process ends).
/// A directory the lock created and nothing else wrote to is removed with it, so that a run
/// that fails before its first save leaves nothing behind.
#[derive(Debug)]
pub struct RunLock {
    file: std::fs::File,
    dir: PathBuf,
    created: bool,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        if self.created {
            let only_lock = std::fs::read_dir(&self.dir).is_ok_and(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .all(|e| e.file_name() == ".lock")
            });
            if only_lock {
                let _ = std::fs::remove_file(self.dir.join(".lock"));
                let _ = std::fs::remove_dir(&self.dir);
            }
        }
        // Released explicitly, not by closing: a child forked by another thread holds a copy
        // of the descriptor until it execs, and the lock would outlive this one until then.
        use std::os::fd::AsRawFd;
        // SAFETY: flock on the descriptor this lock owns; a failure leaves it to the close.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

impl RunDir {
    /// Takes the directory's lock (creating the directory): refused with
    /// [`Error::RunBusy`] while another process holds it.
    pub fn lock(&self) -> Result<RunLock> {
        use std::io::{Seek, Write};
        use std::os::fd::AsRawFd;
        let created = !self.dir.exists();
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create the run directory", &self.dir, e))?;
        let path = self.dir.join(".lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("cannot open the run directory's lock", &path, e))?;
        // SAFETY: flock on a descriptor this function owns; failure is reported by its result.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = std::fs::read_to_string(&path)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
            return Err(Error::RunBusy {
                dir: self.dir.clone(),
                holder,
            });
        }
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        written.map_err(|e| Error::io("cannot write the run directory's lock", &path, e))?;
        Ok(RunLock {
            file,
            dir: self.dir.clone(),
            created,
        })
    }

    /// The run directory `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        RunDir {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/model.safetensors`.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model.safetensors")
    }

    /// `DIR/best.safetensors`.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// `DIR/metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// `DIR/loss.png`.
    pub fn plot(&self) -> PathBuf {
        self.dir.join("loss.png")
    }

    /// Appends one metrics line (one `write` of a whole line, flushed to disk).
    pub fn append_metrics(&self, m: &Metrics) -> Result<()> {
        self.append(&self.metrics(), m)
    }

    /// Every metrics line written so far (none when the file does not exist); lines after
    /// `max_step` (left by a run that was interrupted after its last save) are dropped. A
    /// last line that does not parse (torn by a crash during its write) is dropped too, with
    /// a note saying so; a bad line before the last is an error.
    pub fn read_metrics(&self, max_step: u64) -> Result<(Vec<Metrics>, Option<String>)> {
        read_lines(&self.metrics(), max_step, "metrics record")
    }

    /// Rewrites `metrics.jsonl` with exactly `lines` (atomically): used when resuming, to drop
    /// the lines of steps that the saved model does not contain.
    pub fn rewrite_metrics(&self, lines: &[Metrics]) -> Result<()> {
        rewrite_lines(&self.metrics(), lines)
    }

    /// `DIR/samples.jsonl`.
    pub fn samples(&self) -> PathBuf {
        self.dir.join("samples.jsonl")
    }

    /// Appends one sample line (one `write` of a whole line, flushed to disk).
    pub fn append_sample(&self, s: &SampleLine) -> Result<()> {
        self.append(&self.samples(), s)
    }

    /// Every sample recorded up to `max_step`, as [`RunDir::read_metrics`] reads metrics.
    pub fn read_samples(&self, max_step: u64) -> Result<(Vec<SampleLine>, Option<String>)> {
        read_lines(&self.samples(), max_step, "sample record")
    }

    /// Rewrites `samples.jsonl` with exactly `lines` (atomically).
    pub fn rewrite_samples(&self, lines: &[SampleLine]) -> Result<()> {
        rewrite_lines(&self.samples(), lines)
    }

    fn append(&self, path: &Path, record: &impl Serialize) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create directory", &self.dir, e))?;
        let line = serde_json::to_string(record).expect("plain data serialises to JSON") + "\n";
        crate::atomic::append_line(path, &line)
    }

    /// Removes temporary files that a killed process left in the directory (see
    /// [`crate::atomic::clean_stale_temps`]); returns their names.
    pub fn clean_stale_temps(&self) -> Vec<String> {
        crate::atomic::clean_stale_temps(&self.dir)
    }

    /// Draws `loss.png`: the training loss averaged over each interval and the validation loss (nats/char)
    /// against characters seen. Text is rendered with an embedded DejaVu font, so no system
    /// font or display is needed. Replaced atomically.
    pub fn plot_losses(&self, lines: &[Metrics], title: &str) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io("cannot create directory", &self.dir, e))?;
        let tmp = self
            .dir
            .join(format!(".loss.{}.tmp.png", std::process::id()));
        if let Err(reason) = draw(&tmp, lines, title) {
            // A partial image (a full disk, say) is garbage; the last good plot stays.
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::Plot {
                path: self.plot(),
                reason,
            });
        }
        std::fs::rename(&tmp, self.plot())
            .map_err(|e| Error::io("cannot rename temporary file onto", self.plot(), e))
    }
}

/// Registers the embedded DejaVu font as plotters' "sans-serif" (once).
pub(crate) fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bytes are a known-good TrueType font shipped by the `dejavu` crate.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw(path: &Path, lines: &[Metrics], title: &str) -> std::result::Result<(), String> {
    register_font();
    let err = |e: &dyn std::fmt::Display| format!("cannot draw the loss plot: {e}");
    // Losses above 100 nats/char only come from a run that is blowing up; drawn at 100 they
    // keep the axis readable (and plotters' tick search finite).
    let y = |v: f64| {
        if v.is_finite() {
            v.clamp(0.0, 100.0)
        } else {
            100.0
        }
    };
    let train: Vec<(f64, f64)> = lines
        .iter()
        .map(|m| (m.chars_seen as f64, y(m.interval_loss)))
        .collect();
    let val: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|m| m.val_loss.map(|v| (m.chars_seen as f64, y(v))))
        .collect();
    let all = train.iter().chain(&val);
    let x_max = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (y_min, y_max) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (y_min, y_max) = if y_min.is_finite() {
        (y_min, y_max)
    } else {
        (0.0, 1.0)
    };
    let pad = ((y_max - y_min) * 0.05).max(0.01);

    let root = BitMapBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, (y_min - pad)..(y_max + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("characters seen")
        .y_desc("loss (nats/char)")
        .label_style(("sans-serif", 16))
        .x_label_formatter(&|x| {
            if *x >= 1e6 {
                format!("{:.1}M", x / 1e6)
            } else {
                format!("{:.0}k", x / 1e3)
            }
        })
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("train (mean since the previous point)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if !val.is_empty() {
        chart
            .draw_series(LineSeries::new(val.clone(), RED.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label("validation")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], RED.stroke_width(2)));
        chart
            .draw_series(val.iter().map(|&p| Circle::new(p, 3, RED.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 16))
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dropped lock is free at once even while a forked child still holds a copy of its
    /// descriptor (as a child forked by another thread does until it execs).
    #[test]
    fn a_dropped_lock_is_free_while_a_forked_child_lives() {
        let dir = std::env::temp_dir().join(format!("charrnn-lock-{}", std::process::id()));
        let run = RunDir::new(&dir);
        let lock = run.lock().unwrap();
        // Something saved: the directory (and its `.lock`) stays when the lock is dropped.
        std::fs::write(run.model(), b"saved").unwrap();
        // SAFETY: the child only sleeps and exits (async-signal-safe calls).
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe {
                libc::sleep(1);
                libc::_exit(0);
            }
        }
        assert!(child > 0, "fork failed");
        drop(lock);
        let again = run.lock();
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(
            again.is_ok(),
            "the lock outlived its drop: {:?}",
            again.err()
        );
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
