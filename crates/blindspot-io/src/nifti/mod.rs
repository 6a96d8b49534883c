//! NIfTI-1 files in and out.
//!
//! - `header`: the 348-byte header, decoded in either byte order with nibabel's load-time
//!   fixes and choice of affine (sform, else qform, else base), and encoded for writing.
//! - `read`: [`read_nifti`] streams the (gzip) file once, decoding chunk by chunk straight
//!   into the output; [`read_header`] reads the header only.
//! - `write`: [`write_nifti`] writes atomically with sform and qform set.
//!
//! The `nifti` crate is not used for reading: it decodes into an intermediate byte buffer and
//! needs `ndarray` to convert, and its header reader cannot tell NIfTI-2 or negative dims
//! apart. Own code gives one pass, no intermediate copy and errors that name the field.

mod header;
mod read;
mod write;

use std::path::Path;

pub use header::{AffineSource, Datatype, NiftiHeader};
pub use read::{NiftiImage, NonFinitePolicy, ReadOptions, Sample, read_header, read_nifti};
pub use write::{
    DEFAULT_COMPRESSION, DiskElement, WriteOptions, XformCode, write_f32, write_nifti, write_u8,
};

use crate::error::Result;
use crate::volume::Volume;

/// Read the first volume of a `.nii` / `.nii.gz` file as float32, scaled, on the file's voxel
/// grid (no reorientation), refusing NaN/Inf voxels.
///
/// # Errors
///
/// As [`read_nifti`].
pub fn read_volume(path: &Path) -> Result<Volume<f32>> {
    Ok(read_nifti::<f32>(path, &ReadOptions::default())?.volume)
}
