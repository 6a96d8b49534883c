//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while reading results or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `results.json` is not valid JSON for the schema.
    #[error("{path}: not a valid results file: {source}")]
    Json {
        /// The file read.
        path: PathBuf,
        /// What serde_json found.
        #[source]
        source: serde_json::Error,
    },
    /// `results.json` was written by another schema version.
    #[error(
        "{path}: schema_version {found} is not supported (this build reads schema_version {supported}); rerun `blindspot report` with a matching version or regenerate the results"
    )]
    SchemaVersion {
        /// The file read.
        path: PathBuf,
        /// The version in the file (0 when the field is missing or not a number).
        found: u64,
        /// The version this crate reads and writes.
        supported: u32,
    },
    /// A value in the results breaks the schema's rules.
    #[error("results: `{key}` = {value}: {allowed}")]
    Invalid {
        /// Where in the results (a dotted path such as `test_sets[2].pixel[0].auroc`).
        key: String,
        /// The offending value, as text.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// An image buffer does not match its stated size.
    #[error("image `{label}`: {width}x{height} needs {expected} pixels, got {got}")]
    ImageSize {
        /// The panel or image label.
        label: String,
        /// Stated width.
        width: usize,
        /// Stated height.
        height: usize,
        /// `width * height`.
        expected: usize,
        /// Length of the buffer.
        got: usize,
    },
    /// A plot could not be drawn (font or backend failure).
    #[error("plot {path}: {message}")]
    Plot {
        /// The PNG being drawn.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// A PNG could not be encoded.
    #[error("{path}: PNG encoding failed: {source}")]
    Png {
        /// The file being written.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
}

/// Shorthand for results of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

impl ReportError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
