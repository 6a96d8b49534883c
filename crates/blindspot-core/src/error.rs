//! The one error type of blindspot-core.

use std::path::PathBuf;

/// A configuration value out of range: the one config error of the model crates and core,
/// naming the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value {value} for `{key}`: allowed {allowed}")]
pub struct InvalidConfig {
    /// The configuration key.
    pub key: &'static str,
    /// The offending value.
    pub value: String,
    /// What is allowed.
    pub allowed: &'static str,
}

impl InvalidConfig {
    /// `value` refused for `key`; `allowed` says what is accepted.
    pub fn new(key: &'static str, value: impl ToString, allowed: &'static str) -> Self {
        Self {
            key,
            value: value.to_string(),
            allowed,
        }
    }
}

/// Everything that can go wrong in the model contract, checkpoints and the training loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file (checkpoint state, pointer, log) could not be parsed or written.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A safetensors file could not be written or does not fit the model.
    #[error("safetensors {path}: {message}")]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What went wrong (missing tensor, shape mismatch, corrupt file).
        message: String,
    },
    /// The optimizer state of a checkpoint could not be written or read.
    #[error("optimizer state {path}: {message}")]
    OptimizerState {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A configuration value is out of range.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidConfig),
    /// The run directory holds a checkpoint of a run with a different configuration.
    #[error(
        "cannot resume from {path}: `{key}` was {saved} there but is {current} now (use a new output directory or the old value)"
    )]
    ResumeMismatch {
        /// The checkpoint state file.
        path: PathBuf,
        /// The configuration key that differs.
        key: &'static str,
        /// The saved value.
        saved: String,
        /// The current value.
        current: String,
    },
    /// The loss became NaN or infinite; the last good checkpoint is kept untouched.
    #[error(
        "loss is {loss} at step {step}: training stopped; last good checkpoint: {}",
        last_checkpoint.as_ref().map_or("none yet".to_string(), |p| p.display().to_string())
    )]
    NonFiniteLoss {
        /// The 0-based step whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f64,
        /// The newest checkpoint written before, if any.
        last_checkpoint: Option<PathBuf>,
    },
    /// The data source failed to produce a slice.
    #[error("data source failed at slice {index}: {message}")]
    Data {
        /// The slice index.
        index: usize,
        /// The source's error.
        message: String,
    },
    /// Host buffers do not match the declared batch shape.
    #[error("batch of {what}: expected {expected} values for shape {shape:?}, got {got}")]
    BatchShape {
        /// `images` or `masks`.
        what: &'static str,
        /// The number of values the shape needs.
        expected: usize,
        /// The number of values given.
        got: usize,
        /// The declared shape `[n, 1, h, w]`.
        shape: [usize; 4],
    },
    /// A tensor could not be read back to the host.
    #[error("reading tensor `{what}` back to the host: {message}")]
    TensorRead {
        /// Which tensor.
        what: String,
        /// The backend's message.
        message: String,
    },
    /// A checkpoint file does not match the checksum written with it (or is missing from its
    /// checkpoint directory): it is never loaded.
    #[error("checkpoint file {path} is corrupt ({why}); {advice}")]
    CorruptCheckpoint {
        /// The file.
        path: PathBuf,
        /// What does not match.
        why: String,
        /// What to do: the next older intact checkpoint, or how to retrain.
        advice: String,
    },
    /// A run directory has no checkpoint of the requested kind.
    #[error("no {which} checkpoint in {dir}")]
    NoCheckpoint {
        /// The run directory.
        dir: PathBuf,
        /// `last` or `best`.
        which: &'static str,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

pub(crate) fn json(path: impl Into<PathBuf>) -> impl FnOnce(serde_json::Error) -> Error {
    let path = path.into();
    move |source| Error::Json { path, source }
}
