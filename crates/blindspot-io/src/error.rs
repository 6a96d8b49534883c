//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong reading, checking, transforming or writing volumes.
///
/// Every variant that concerns a file carries its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    /// An operating-system error on a file (open, read, write, rename).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a NIfTI-1 file, or a gzip stream is broken or truncated.
    #[error("{path}: not a readable NIfTI-1 file: {reason}")]
    InvalidFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A valid file in a format or with a feature this crate does not read (NIfTI-2, an
    /// unsupported datatype, more than 4 dimensions, ...).
    #[error("{path}: unsupported: {reason}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What is unsupported and what is allowed.
        reason: String,
    },
    /// A header field holds a value that cannot describe an image.
    #[error("{path}: invalid header field `{field}` = {value}: {expected}")]
    InvalidHeader {
        /// The file.
        path: PathBuf,
        /// The header field, for example `dim[2]`.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// The requested volume of a 4-D file does not exist.
    #[error("{path}: volume index {index} out of range: the file holds {count} volume(s)")]
    VolumeIndex {
        /// The file.
        path: PathBuf,
        /// The requested index.
        index: usize,
        /// How many volumes the file holds.
        count: usize,
    },
    /// The image holds NaN or infinite voxels and the policy was to refuse them.
    #[error("{path}: {count} non-finite voxel(s) (NaN or Inf), first at linear index {first}")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// How many voxels are NaN or infinite.
        count: usize,
        /// Linear index (x fastest) of the first one.
        first: usize,
    },
    /// Finite voxel values (float64, or after `scl_slope`/`scl_inter`) lie beyond the range of
    /// the float32 they are read into, and the policy was to refuse non-finite voxels.
    #[error(
        "{path}: {count} voxel(s) of this {datatype} file hold finite values beyond float32's range \
         (about ±3.4e38), first at linear index {first}: rescale the image (or its scl_slope) so \
         that it fits float32"
    )]
    Overflow {
        /// The file.
        path: PathBuf,
        /// How many finite values overflow float32.
        count: usize,
        /// Linear index (x fastest) of the first non-finite voxel after conversion.
        first: usize,
        /// The file's datatype, for example `float64`.
        datatype: &'static str,
    },
    /// Two volumes that must share one voxel grid (an image and its mask) do not.
    #[error("{first} and {second} are not on the same voxel grid: {detail}")]
    GridMismatch {
        /// The first volume's file.
        first: PathBuf,
        /// The second volume's file.
        second: PathBuf,
        /// Which property differs (dims, voxel sizes or affine) and the two values.
        detail: String,
    },
    /// A volume handed to a function is inconsistent (data length vs dims, a singular or
    /// non-finite affine, ...).
    #[error("invalid volume: {0}")]
    InvalidVolume(String),
    // --- preprocessing, layouts, splits, slice caches (part B) ---
    /// A parameter (preprocessing, layout, split) holds a value that is not allowed.
    #[error("invalid value for `{key}`: {value}: {expected}")]
    InvalidParameter {
        /// The parameter or configuration key, for example `split.val` or `id_regex`.
        key: String,
        /// The offending value.
        value: String,
        /// What is allowed.
        expected: String,
    },
    /// A statistic needs brain voxels but the mask selects none, or they are all equal.
    #[error("degenerate brain mask in {what}: {reason}")]
    DegenerateMask {
        /// The step that needed the mask, for example `z-score`.
        what: String,
        /// What is wrong (no voxel selected, zero standard deviation, ...).
        reason: String,
    },
    /// A layout file could not be read or parsed.
    #[error("{path}: invalid dataset layout: {reason}")]
    LayoutFile {
        /// The TOML file.
        path: PathBuf,
        /// The parser's message (it names the key).
        reason: String,
    },
    /// A layout pattern matched no file.
    #[error("dataset layout: pattern `{pattern}` (key `{key}`) matches no file under {root}")]
    NoMatch {
        /// The dataset root.
        root: PathBuf,
        /// The layout key, for example `image`.
        key: String,
        /// The pattern as written.
        pattern: String,
    },
    /// An image path does not match the layout's subject-id regex.
    #[error("dataset layout: {path} matches `image` but not `id_regex` = `{regex}`")]
    IdMismatch {
        /// The image file, relative to the dataset root.
        path: PathBuf,
        /// The regex.
        regex: String,
    },
    /// Two image files yield the same subject id.
    #[error("dataset layout: subject `{id}` found twice: {first} and {second}")]
    DuplicateSubject {
        /// The subject id.
        id: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A subject lacks a file the layout requires (brain or lesion mask), or has several.
    #[error(
        "dataset layout: subject `{subject}`: `{key}` pattern `{pattern}` matches {found} file(s), expected exactly 1"
    )]
    SubjectFile {
        /// The subject id.
        subject: String,
        /// The layout key, for example `lesion_mask`.
        key: String,
        /// The pattern after substituting the subject's placeholders.
        pattern: String,
        /// How many files matched.
        found: usize,
    },
    /// A slice cache file is not a cache, is truncated or is otherwise inconsistent.
    #[error("{path}: corrupt slice cache: {reason}")]
    CacheCorrupt {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A slice cache file was written by another format version.
    #[error(
        "{path}: slice cache format version {found}, this build reads version {expected}; rebuild the cache"
    )]
    CacheVersion {
        /// The cache file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        expected: u32,
    },
    /// A slice cache file's checksum does not match its contents.
    #[error(
        "{path}: slice cache checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the file is corrupt; rebuild the cache"
    )]
    CacheChecksum {
        /// The cache file.
        path: PathBuf,
        /// The CRC-32 stored in the header.
        stored: u32,
        /// The CRC-32 of the contents.
        computed: u32,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, IoError>;
