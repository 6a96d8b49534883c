//! The one error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, generating or writing a phantom dataset.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The TOML text is not valid TOML or does not match the schema (unknown or mistyped key).
    #[error("synth config: {message}")]
    Parse {
        /// What the TOML reader said (it names the line and the key).
        message: String,
    },
    /// A configuration value is out of range.
    #[error("synth config: `{key}` = {value} is not allowed: {allowed}")]
    Invalid {
        /// The offending key, dotted (`synth.sets[2].count`).
        key: String,
        /// The value found, as written.
        value: String,
        /// What is allowed instead.
        allowed: String,
    },
    /// A file or folder could not be created, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// `manifest.csv` could not be written, or a row of it does not fit
    /// [`crate::ManifestRow`].
    #[error("{path}: not a phantom manifest: {why}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What does not fit, with the row.
        why: String,
    },
    /// blindspot-io failed to write or read a volume (its error names the file).
    #[error(transparent)]
    Volume(#[from] blindspot_io::IoError),
    /// The output folder holds a subject file that this config would not write (left by
    /// another config); nothing is deleted.
    #[error(
        "{path}: belongs to no subject of this config (output of another config?); delete it or write to an empty folder"
    )]
    StaleOutput {
        /// The stale file.
        path: PathBuf,
    },
    /// Two volumes that must share one grid do not.
    #[error("volume grids differ: {what} has dims {got:?}, expected {expected:?}")]
    Shape {
        /// Which input is off.
        what: String,
        /// Its dims.
        got: [usize; 3],
        /// The dims it must have.
        expected: [usize; 3],
    },
    /// An input volume has no brain voxel (or no voxel at all) where some are needed.
    #[error("{what}: the brain mask is empty")]
    EmptyMask {
        /// Which input is empty.
        what: String,
    },
}

/// `Result` with [`SynthError`].
pub type Result<T> = std::result::Result<T, SynthError>;

pub(crate) fn invalid(
    key: impl Into<String>,
    value: impl ToString,
    allowed: impl Into<String>,
) -> SynthError {
    SynthError::Invalid {
        key: key.into(),
        value: value.to_string(),
        allowed: allowed.into(),
    }
}
