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

/// The `q`-th quantile (`0 <= q <= 1`) of `values` with linear interpolation between order
/// statistics (numpy's default). Reorders `values`.
///
/// # Panics
///
/// If `values` is empty or holds NaN.
pub(crate) fn quantile(values: &mut [f32], q: f64) -> f64 {
    assert!(!values.is_empty(), "quantile of an empty set");
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    let (_, lo, rest) = values.select_nth_unstable_by(i, f32::total_cmp);
    let lo = f64::from(*lo);
    if frac == 0.0 || rest.is_empty() {
        return lo;
    }
    let hi = f64::from(rest.iter().copied().fold(f32::INFINITY, f32::min));
    lo + (hi - lo) * frac
}
