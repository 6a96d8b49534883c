//! The crate's one error type.

use std::path::PathBuf;

use crate::ids::{SliceId, Statistic};

/// Everything that can go wrong computing, fitting or evaluating OOD statistics.
///
/// Variants carry the offending key, value or file and say what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OodError {
    /// A buffer does not have the length its width and height (or another buffer) imply.
    #[error("{what}: length {actual}, expected {expected}")]
    ShapeMismatch {
        /// Which buffer, for example `reconstruction of camcan/sub-01 slice 40`.
        what: String,
        /// The length implied by the shape.
        expected: usize,
        /// The length found.
        actual: usize,
    },
    /// A value is NaN or infinite where a finite number is required.
    #[error("{what}: non-finite value {value} at index {index} (only finite numbers are allowed)")]
    NonFinite {
        /// Which input, for example `KDE fit values of rec_err`.
        what: String,
        /// Position of the first offending value.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Too few samples to fit or evaluate something.
    #[error("{what}: needs at least {needed} sample(s), got {got}")]
    TooFewSamples {
        /// What was being fitted or evaluated.
        what: String,
        /// The minimum.
        needed: usize,
        /// How many there were.
        got: usize,
    },
    /// Samples that cannot define the estimate (zero spread, a singular covariance, one class).
    #[error("{what}: degenerate sample: {reason}")]
    Degenerate {
        /// What was being fitted or evaluated.
        what: String,
        /// Why the sample is degenerate.
        reason: String,
    },
    /// A parameter outside its allowed range.
    #[error("invalid parameter `{name}` = {value}: {allowed}")]
    InvalidParameter {
        /// The parameter name.
        name: &'static str,
        /// The offending value.
        value: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// A slice record lacks a statistic that the operation needs.
    #[error("slice {id} has no value for statistic `{statistic}`")]
    MissingStatistic {
        /// The slice.
        id: SliceId,
        /// The statistic it lacks.
        statistic: Statistic,
    },
    /// The same slice identity occurs twice where identities must be unique.
    #[error("{what}: slice {id} occurs more than once")]
    DuplicateSlice {
        /// Which collection, for example `ensemble member 2`.
        what: String,
        /// The repeated identity.
        id: SliceId,
    },
    /// Ensemble members (or two tables that must match) disagree on the set of slice identities.
    #[error(
        "ensemble member {member} disagrees with member 0 on the slice set: {detail} \
         (every member must score exactly the same slices; they are aligned by identity)"
    )]
    EnsembleMismatch {
        /// The index of the first member that disagrees.
        member: usize,
        /// The first differing identity and on which side it is missing.
        detail: String,
    },
    /// Two vectors that must have the same dimension do not.
    #[error("{what}: dimension {actual}, expected {expected}")]
    DimensionMismatch {
        /// Which vector, for example `latent mean of brats/BraTS17_2013_2_1 slice 60`.
        what: String,
        /// The fitted dimension.
        expected: usize,
        /// The dimension found.
        actual: usize,
    },
    /// An operating-system error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A metric from blindspot-metrics failed (one class only, a degenerate bootstrap, ...).
    #[error(transparent)]
    Metrics(#[from] blindspot_metrics::MetricsError),
    /// A value could not be turned into JSON.
    #[error("{path}: cannot serialise to JSON: {source}")]
    Json {
        /// The file that was being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, OodError>;

/// Check that every value is finite, naming the input in the error.
pub(crate) fn check_finite(what: impl FnOnce() -> String, values: &[f64]) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(OodError::NonFinite {
            what: what(),
            index,
            value: values[index],
        }),
    }
}
