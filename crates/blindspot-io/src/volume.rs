//! The in-memory volume every other part of blindspot speaks.

/// A 4x4 voxel-to-world (RAS+ millimetres) matrix, row-major: `world = affine * [i, j, k, 1]`.
pub type Affine = [[f64; 4]; 4];

/// A 3-D scalar volume.
///
/// Voxels are stored x fastest (NIfTI / Fortran order): the voxel `(i, j, k)` is at
/// `data[i + nx * (j + ny * k)]` with `[nx, ny, nz] = dims`.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T = f32> {
    /// Number of voxels along each axis `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Voxel values, `nx * ny * nz` of them, x fastest.
    pub data: Vec<T>,
    /// Voxel-to-world matrix.
    pub affine: Affine,
    /// Voxel sizes in millimetres (NIfTI `pixdim[1..4]`).
    pub spacing: [f64; 3],
}

impl<T> Volume<T> {
    /// Number of voxels.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the volume holds no voxel.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Linear index of voxel `(i, j, k)`.
    #[inline]
    pub fn index(&self, i: usize, j: usize, k: usize) -> usize {
        i + self.dims[0] * (j + self.dims[1] * k)
    }
}

/// The identity affine scaled by the voxel sizes (what NIfTI readers fall back to).
pub fn scaled_identity(spacing: [f64; 3]) -> Affine {
    [
        [spacing[0], 0.0, 0.0, 0.0],
        [0.0, spacing[1], 0.0, 0.0],
        [0.0, 0.0, spacing[2], 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
}
