//! Helpers of this crate's unit tests.

use crate::volume::{Volume, scaled_identity};

/// A volume of `dims` whose voxel `(i, j, k)` is `f(i, j, k)`, spacing 1, 2, 3 mm.
pub(crate) fn vol<T: Copy>(dims: [usize; 3], f: impl Fn(usize, usize, usize) -> T) -> Volume<T> {
    let mut data = Vec::with_capacity(dims.iter().product());
    for k in 0..dims[2] {
        for j in 0..dims[1] {
            for i in 0..dims[0] {
                data.push(f(i, j, k));
            }
        }
    }
    Volume {
        dims,
        data,
        affine: scaled_identity([1.0, 2.0, 3.0]),
        spacing: [1.0, 2.0, 3.0],
    }
}
