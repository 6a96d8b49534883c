//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong when computing a metric or post-processing a map.
///
/// Every variant carries the offending value and says what is allowed; no metric ever falls
/// back silently to a placeholder such as 0.5 on degenerate input.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// Two inputs that must pair up element by element have different lengths.
    #[error("length mismatch: {what} has {got} elements but {expected} were expected")]
    LengthMismatch {
        /// Which input is too short or too long (for example `"labels"`).
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length it must have.
        expected: usize,
    },
    /// A score is NaN; scores must be ordered, so NaN is rejected (infinities are allowed).
    #[error("score {index} is NaN; scores must be numbers (±inf is allowed)")]
    NanScore {
        /// Position of the first NaN in the slice that was passed in.
        index: usize,
    },
    /// There are no scores at all.
    #[error("no scores: {metric} needs at least one scored element")]
    Empty {
        /// The metric that was asked for.
        metric: &'static str,
    },
    /// The metric needs both classes, but one of them is absent.
    #[error(
        "{metric} is undefined with {positives} positive and {negatives} negative elements: it needs both classes"
    )]
    SingleClass {
        /// The metric that was asked for.
        metric: &'static str,
        /// Number of positive (lesional / OOD) elements.
        positives: u64,
        /// Number of negative (healthy / in-distribution) elements.
        negatives: u64,
    },
    /// Both binary maps are empty, so Dice and IoU are 0/0.
    #[error("{metric} is undefined (0/0): both the prediction and the ground truth are empty")]
    EmptyMaps {
        /// `"dice"` or `"iou"`.
        metric: &'static str,
    },
    /// A parameter lies outside its allowed range.
    #[error("invalid parameter {name} = {value}: allowed is {allowed}")]
    InvalidParameter {
        /// The parameter's name, as in the function signature or config struct.
        name: &'static str,
        /// The value that was given, formatted.
        value: String,
        /// The allowed values or range.
        allowed: &'static str,
    },
    /// The dimensions of an image do not match its data.
    #[error("shape {dims:?} does not fit {len} elements: {allowed}")]
    Shape {
        /// The dimensions that were given.
        dims: Vec<usize>,
        /// The number of elements in the buffer.
        len: usize,
        /// What is required.
        allowed: &'static str,
    },
    /// Too few bootstrap resamples gave a finite statistic.
    #[error(
        "bootstrap: only {succeeded} of {resamples} resamples gave a value (the others hit: {first_error}); at least half must succeed"
    )]
    BootstrapDegenerate {
        /// Resamples that gave a value.
        succeeded: usize,
        /// Resamples drawn.
        resamples: usize,
        /// The first error a failed resample reported.
        first_error: Box<MetricsError>,
    },
    /// A serialized accumulator is not one this version can read.
    #[error("accumulator format {found} is not supported (this version reads format {supported})")]
    Format {
        /// The format number found in the data.
        found: u32,
        /// The format number this version writes and reads.
        supported: u32,
    },
}

/// `Result` with [`MetricsError`].
pub type Result<T, E = MetricsError> = std::result::Result<T, E>;

impl MetricsError {
    pub(crate) fn invalid(name: &'static str, value: impl ToString, allowed: &'static str) -> Self {
        Self::InvalidParameter {
            name,
            value: value.to_string(),
            allowed,
        }
    }
}
