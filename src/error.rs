//! The library's one error type. Every variant names what went wrong, where, and how to fix it.

use std::path::PathBuf;

/// Everything that can go wrong in charrnn, with enough context for the user to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read, written or renamed.
    #[error("{action} {path}: {err}")]
    Io {
        /// What was being done ("cannot read", "cannot write", ...).
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's error (shown in the message, so not also a `source`).
        err: std::io::Error,
    },
    /// The corpus holds no characters at all.
    #[error("corpus {path} is empty: give a text file with at least a few hundred characters")]
    EmptyCorpus {
        /// The corpus file (or `<built-in>`).
        path: String,
    },
    /// The corpus is not valid UTF-8.
    #[error(
        "corpus {path} is not valid UTF-8 at byte offset {offset}: re-encode it as UTF-8, {hint}"
    )]
    InvalidUtf8 {
        /// The corpus file.
        path: String,
        /// Byte offset of the first invalid sequence.
        offset: u64,
        /// The other way out, which depends on the command.
        hint: &'static str,
    },
    /// The corpus is too short for the requested streams and sequence length.
    #[error(
        "corpus is too short: {chars} symbol(s) cut into {batch} stream(s) gives {per_stream} per \
         stream, but each stream needs at least seq_len+1 = {needed}; lower --batch or --seq-len, \
         or use a longer corpus"
    )]
    CorpusTooShort {
        /// Symbols in the corpus.
        chars: usize,
        /// Number of streams asked for.
        batch: usize,
        /// Symbols per stream.
        per_stream: usize,
        /// seq_len + 1.
        needed: usize,
    },
    /// A hyperparameter is out of range.
    #[error("invalid {name} = {value}: {hint}")]
    InvalidConfig {
        /// The option's name as the user wrote it (e.g. `--lr`).
        name: &'static str,
        /// The offending value.
        value: String,
        /// What values are accepted.
        hint: String,
    },
    /// Text to feed the model holds symbols outside its vocabulary.
    #[error(
        "{what} contains {} symbol(s) not in the model's vocabulary: {}; \
         remove them or train on a corpus that contains them",
        symbols.len(),
        symbols.join(" ")
    )]
    UnknownSymbols {
        /// Which text (e.g. "prime text", "evaluation corpus").
        what: &'static str,
        /// The unknown symbols, quoted and escaped, in order of first appearance.
        symbols: Vec<String>,
    },
    /// A model file is truncated, corrupted, or not a charrnn model.
    #[error("{path} is not a valid charrnn model file: {reason}")]
    BadModel {
        /// The model file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A model file was written by an incompatible format version.
    #[error(
        "{path} has model format version {found}, this charrnn reads versions 1 to {expected}: \
         retrain, or use the charrnn version that wrote it"
    )]
    ModelVersion {
        /// The model file.
        path: PathBuf,
        /// The version in the file.
        found: String,
        /// The newest version this build reads (it reads every version from 1 on).
        expected: u32,
    },
    /// A text to evaluate holds fewer than two symbols: nothing to predict.
    #[error(
        "{path} holds {chars} symbol(s): evaluation needs at least 2 (one to read, one to predict)"
    )]
    TooShortToEvaluate {
        /// The text's file.
        path: String,
        /// Symbols in it.
        chars: usize,
    },
    /// The loss plot could not be drawn.
    #[error("cannot draw {path}: {reason}")]
    Plot {
        /// The plot file.
        path: PathBuf,
        /// What the plotting library said.
        reason: String,
    },
    /// Training produced a non-finite loss or gradient.
    #[error(
        "training diverged at step {step}: the {what} is {value}; lower the learning rate \
         (--lr), clip harder (--clip, or --clip-mode norm), or warm up (--schedule cosine)"
    )]
    Diverged {
        /// The step at which it happened.
        step: u64,
        /// What became non-finite ("loss", "gradient norm").
        what: &'static str,
        /// The non-finite value.
        value: f64,
    },
    /// A new run would overwrite a run directory that already holds a model.
    #[error(
        "{} already holds a model: continue it with --resume {}, replace it with --force, or \
         choose another --out",
        dir.display(),
        dir.display()
    )]
    RunExists {
        /// The run directory.
        dir: PathBuf,
    },
    /// Another process is training in the run directory (it holds the directory's lock).
    #[error(
        "another charrnn process{} is training in {}: wait for it to end (or stop it; Ctrl-C \
         saves), then resume; two writers would interleave its metrics and overwrite its model",
        holder.as_ref().map_or(String::new(), |p| format!(" (pid {p})")),
        dir.display()
    )]
    RunBusy {
        /// The run directory.
        dir: PathBuf,
        /// The process id the lock file names, when readable.
        holder: Option<String>,
    },
    /// A run directory's model could not be loaded to resume it.
    #[error("cannot resume from {}: {cause}", dir.display())]
    Resume {
        /// The run directory.
        dir: PathBuf,
        /// Why its model file could not be loaded.
        cause: Box<Error>,
    },
    /// A prepared data directory's vocabulary is not the model's.
    #[error(
        "{dir} was prepared with a vocabulary of {prepared} symbols that is not the model's \
         ({model}): evaluate the text itself, or prepare it again"
    )]
    OtherVocabulary {
        /// The data directory.
        dir: PathBuf,
        /// Its vocabulary's size.
        prepared: usize,
        /// The model's.
        model: usize,
    },
    /// This process could not join the MPI job that launched it (what, and how to fix it).
    #[error("{0}")]
    Mpi(String),
    /// A caller refused what it was asked for, in its own words (e.g. a command-line flag
    /// that does not apply to the run it resumes).
    #[error("{0}")]
    Refused(String),
    /// A resumed run was asked to change a setting that defines it.
    #[error(
        "{} cannot change when resuming: a resumed run continues with the configuration saved in \
         {}/model.safetensors ({}); only its end (--steps, --epochs, --chars), --target-loss, \
         --precision, --eval-every, the samples and the display flags may change; leave the \
         others out or give them as saved",
        changes.iter().map(|c| c.flag()).collect::<Vec<_>>().join(", "),
        dir.display(),
        changes.iter().map(|c| format!("{} saved as {}, asked {}", c.flag(), c.saved, c.asked)).collect::<Vec<_>>().join("; ")
    )]
    ResumeChanges {
        /// The run directory.
        dir: PathBuf,
        /// The settings asked to change.
        changes: Vec<ConfigChange>,
    },
    /// A resumed run was given other training data than it was trained on.
    #[error(
        "the training data differs from the data this run was trained on ({corpus}: fingerprint \
         {now} now, {saved} saved): resume with the same corpus file and contents"
    )]
    DataChanged {
        /// The data source given.
        corpus: String,
        /// Its fingerprint.
        now: String,
        /// The fingerprint the model file records.
        saved: String,
    },
    /// A prepared data directory (or its token file) is missing a part, truncated, or
    /// inconsistent.
    #[error(
        "{} is not usable prepared data: {reason}; prepare it again with `charrnn prepare INPUT... --out DIR`",
        path.display()
    )]
    BadData {
        /// The directory or file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A run directory's metrics log holds a line that is not a metrics record.
    #[error(
        "{} is damaged: {reason}; delete that line (or the file: the model files hold the run, only the plot's history is lost)",
        path.display()
    )]
    BadLog {
        /// The metrics file.
        path: PathBuf,
        /// Which line, and why.
        reason: String,
    },
    /// `charrnn prepare` was given inputs it cannot use.
    #[error("cannot prepare {what}: {hint}")]
    Input {
        /// The input (a path, a glob) concerned.
        what: String,
        /// What is wrong and how to fix it.
        hint: String,
    },
    /// The processes training one run together ([`crate::parallel::Group`]) could not
    /// exchange what a step needs.
    #[error("rank {rank} of {size}: {what}")]
    Group {
        /// This process's rank.
        rank: usize,
        /// Processes in the group.
        size: usize,
        /// What failed, and what to do about it.
        what: String,
    },
    /// Training stopped on an error (a diverged step); the last saved model is kept.
    #[error(
        "training stopped; {}: {cause}",
        kept.as_ref().map_or("nothing was saved".to_string(), |p| format!("the last saved model, {}, is kept", p.display()))
    )]
    TrainingStopped {
        /// The model file that stays as it was saved, if any.
        kept: Option<PathBuf>,
        /// What stopped it.
        cause: Box<Error>,
    },
}

/// The library's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidConfig`] with the value formatted for display.
    pub fn config(
        name: &'static str,
        value: impl std::fmt::Display,
        hint: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            name,
            value: value.to_string(),
            hint: hint.into(),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            err: source,
        }
    }
}

/// One setting of a configuration asked to differ from a saved run's: see
/// [`crate::config::TrainConfig::changes_on_resume`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigChange {
    /// Its key in the model file's configuration (e.g. `seq_len`).
    pub key: String,
    /// The saved value, as JSON.
    pub saved: String,
    /// The value asked for, as JSON.
    pub asked: String,
}

impl ConfigChange {
    /// The command-line flag that sets it (e.g. `--seq-len`).
    pub fn flag(&self) -> String {
        match self.key.as_str() {
            "symbols" => "--bytes".into(),
            key => format!("--{}", key.replace('_', "-")),
        }
    }
}
