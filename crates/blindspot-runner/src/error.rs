//! Why a run failed: [`RunError`], and which failures are the user's configuration (exit 2).

use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading or preprocessing data failed.
    #[error(transparent)]
    Data(#[from] blindspot_io::IoError),
    /// Synthesising the phantom failed.
    #[error(transparent)]
    Synth(#[from] blindspot_synth::SynthError),
    /// A model refused a setting, or training, loading or inference failed.
    #[error(transparent)]
    Model(#[from] blindspot_core::Error),
    /// An OOD statistic or the gate failed.
    #[error(transparent)]
    Ood(#[from] blindspot_ood::OodError),
    /// A metric failed.
    #[error(transparent)]
    Metrics(#[from] blindspot_metrics::MetricsError),
    /// Writing the results or the report failed.
    #[error(transparent)]
    Report(#[from] blindspot_report::ReportError),
    /// A configuration value this pipeline does not run yet.
    #[error("`{key}` = {value} is not supported by `blindspot run` yet; allowed: {allowed}")]
    Unsupported {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// An input this command cannot take as it was given, with the option that would make it
    /// acceptable (for example a 4-D scan without `--volume`).
    #[error("{path}: {why}; {hint}")]
    Refused {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
        /// What to do instead.
        hint: &'static str,
    },
    /// A partial result of `evaluate --shard` is missing, duplicated, unreadable or from
    /// another evaluation.
    #[error("shard file {path}: {why}")]
    Shard {
        /// The shard file (or the one expected).
        path: PathBuf,
        /// What is wrong and what to do.
        why: String,
    },
    /// A command-line option with a value it cannot take.
    #[error("{option} {value}: allowed: {allowed}")]
    BadOption {
        /// The option, for example `--array`.
        option: String,
        /// Its value as given.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// `sbatch` refused a job script or could not be run.
    #[error("sbatch {script}: {why}")]
    Submit {
        /// The job script.
        script: PathBuf,
        /// sbatch's exit status and message, or why it could not start.
        why: String,
    },
    /// A dataset holds no usable slice or subject.
    #[error("dataset `{dataset}` is empty: {why}")]
    Empty {
        /// The dataset.
        dataset: String,
        /// What is missing.
        why: String,
    },
}

impl RunError {
    /// Whether the error is the user's configuration (exit code 2) rather than a runtime
    /// failure (exit code 1).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            RunError::Config(_)
                | RunError::Unsupported { .. }
                | RunError::Refused { .. }
                | RunError::BadOption { .. }
                | RunError::Model(
                    blindspot_core::Error::InvalidConfig(_)
                        | blindspot_core::Error::ResumeMismatch { .. }
                )
        )
    }
}

pub(crate) type Result<T> = std::result::Result<T, RunError>;

pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
        path: dir.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_crate_refusing_a_setting_is_a_config_error() {
        let width = blindspot_core::InvalidConfig::new("width", 0, "> 0");
        assert!(RunError::Model(width.into()).is_config());
        let core = blindspot_core::InvalidConfig::new("batch_size", 0, ">= 1");
        assert!(RunError::Model(core.into()).is_config());
        let runtime = blindspot_core::Error::NoCheckpoint {
            dir: "x".into(),
            which: "last",
        };
        assert!(!RunError::Model(runtime).is_config());
    }
}
