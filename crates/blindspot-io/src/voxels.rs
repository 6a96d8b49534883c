//! Small operations on voxel values that preprocessing and histogram matching share: the
//! dims check of two volumes, the voxels inside a mask, and a linear-interpolation quantile.

use crate::error::{IoError, Result};
use crate::volume::Volume;

/// Check that two in-memory volumes have the same `dims` (files are checked with
/// [`crate::check_same_grid`], which also compares affines).
///
/// # Errors
///
/// [`IoError::GridMismatch`] naming the two volumes (`first`, `second`) and both sizes.
pub fn check_same_dims<A, B>(
    first: &str,
    a: &Volume<A>,
    second: &str,
    b: &Volume<B>,
) -> Result<()> {
    if a.dims != b.dims {
        return Err(IoError::GridMismatch {
            first: first.into(),
            second: second.into(),
            detail: format!("dims {:?} vs {:?}", a.dims, b.dims),
        });
    }
    Ok(())
}

/// The voxels of `vol` where `mask` is non-zero, in storage order (same dims assumed).
pub(crate) fn masked_values(vol: &Volume<f32>, mask: &Volume<u8>) -> Vec<f32> {
    vol.data
        .iter()
        .zip(&mask.data)
        .filter(|(_, m)| **m != 0)
        .map(|(v, _)| *v)
        .collect()
}
