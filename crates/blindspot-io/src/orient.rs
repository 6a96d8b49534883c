//! Voxel-grid geometry: the closest canonical (RAS+) orientation of an affine, lossless
//! reorientation by axis permutation and flips (nibabel's `io_orientation` /
//! `as_closest_canonical`), its inverse, and grid comparison.

use std::path::{Path, PathBuf};

use crate::error::{IoError, Result};
use crate::volume::{Affine, Volume};

type Mat3 = [[f64; 3]; 3];

/// Where one input voxel axis goes: output (world-aligned) axis and whether it is reversed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AxisMap {
    /// The output axis (0 = R, 1 = A, 2 = S) this input axis becomes.
    pub axis: usize,
    /// Whether the input axis runs against the output axis (L, P or I) and is reversed.
    pub flip: bool,
}

/// The orientation of each voxel axis of `affine`: nibabel's `io_orientation`.
///
/// The rotation part is normalised per column and replaced by its closest orthogonal matrix
/// (polar decomposition); each voxel axis is then assigned, in order, the world axis it moves
/// along most, ties broken by removing used world axes.
///
/// # Errors
///
/// [`IoError::InvalidVolume`] when the affine is not finite or a voxel axis does not move in
/// world space (a zero column), so no orientation exists.
pub fn io_orientation(affine: &Affine) -> Result<[AxisMap; 3]> {
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        return Err(IoError::InvalidVolume(format!(
            "affine is not finite: {affine:?}"
        )));
    }
    let mut rs: Mat3 = [[0.0; 3]; 3];
    for c in 0..3 {
        let norm = (0..3)
            .map(|r| affine[r][c] * affine[r][c])
            .sum::<f64>()
            .sqrt();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        for r in 0..3 {
            rs[r][c] = affine[r][c] / norm;
        }
    }
    let mut rot = polar_factor(&rs);
    let mut out = [AxisMap {
        axis: 0,
        flip: false,
    }; 3];
    for in_ax in 0..3 {
        let col = [rot[0][in_ax], rot[1][in_ax], rot[2][in_ax]];
        if col.iter().all(|v| v.abs() <= 1e-8) {
            return Err(IoError::InvalidVolume(format!(
                "voxel axis {in_ax} of the affine does not move in world space, so the image has \
                 no orientation: {affine:?}"
            )));
        }
        let mut best = 0;
        for r in 1..3 {
            if col[r].abs() > col[best].abs() {
                best = r;
            }
        }
        out[in_ax] = AxisMap {
            axis: best,
            flip: col[best] < 0.0,
        };
        rot[best] = [0.0; 3];
    }
    Ok(out)
}

/// Orientation codes of an affine, nibabel's `aff2axcodes`: for each voxel axis the world
/// direction it increases towards, one of `R`/`L`, `A`/`P`, `S`/`I` (`['L', 'A', 'S']`, ...).
///
/// # Errors
///
/// As [`io_orientation`].
pub fn axcodes(affine: &Affine) -> Result<[char; 3]> {
    const LABELS: [[char; 2]; 3] = [['R', 'L'], ['A', 'P'], ['S', 'I']];
    Ok(io_orientation(affine)?.map(|m| LABELS[m.axis][usize::from(m.flip)]))
}

/// A lossless reorientation between a voxel grid and its closest canonical (RAS+) grid, kept so
/// that results computed in RAS can be written back on the original grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Reorientation {
    axes: [AxisMap; 3],
    original_dims: [usize; 3],
    original_affine: Affine,
    original_spacing: [f64; 3],
    ras_dims: [usize; 3],
    ras_affine: Affine,
    ras_spacing: [f64; 3],
}

impl Reorientation {
    /// The reorientation of a grid with `dims` voxels, voxel-to-world `affine` and voxel sizes
    /// `spacing` to its closest RAS+ grid.
    ///
    /// # Errors
    ///
    /// As [`io_orientation`].
    pub fn new(dims: [usize; 3], affine: &Affine, spacing: [f64; 3]) -> Result<Self> {
        let axes = io_orientation(affine)?;
        let mut ras_dims = [0; 3];
        let mut ras_spacing = [0.0; 3];
        // nibabel: new_affine = affine . inv_ornt_aff(ornt, shape). Output column `axis` is the
        // input column times the flip sign; a flipped axis moves the origin to its far end.
        let mut ras_affine = [[0.0; 4]; 4];
        ras_affine[3][3] = 1.0;
        for r in 0..3 {
            ras_affine[r][3] = affine[r][3];
        }
        for (i, m) in axes.iter().enumerate() {
            ras_dims[m.axis] = dims[i];
            ras_spacing[m.axis] = spacing[i];
            let sign = if m.flip { -1.0 } else { 1.0 };
            for r in 0..3 {
                ras_affine[r][m.axis] = sign * affine[r][i];
                if m.flip {
                    ras_affine[r][3] += affine[r][i] * (dims[i] as f64 - 1.0);
                }
            }
        }
        Ok(Reorientation {
            axes,
            original_dims: dims,
            original_affine: *affine,
            original_spacing: spacing,
            ras_dims,
            ras_affine,
            ras_spacing,
        })
    }

    /// Per original voxel axis: the RAS axis it becomes and whether it is reversed.
    pub fn axes(&self) -> [AxisMap; 3] {
        self.axes
    }

    /// Whether the original grid already is RAS+ (reorienting copies the data unchanged).
    pub fn is_identity(&self) -> bool {
        self.axes
            .iter()
            .enumerate()
            .all(|(i, m)| m.axis == i && !m.flip)
    }

    /// Voxels per axis of the original grid.
    pub fn original_dims(&self) -> [usize; 3] {
        self.original_dims
    }

    /// Voxel-to-world affine of the original grid.
    pub fn original_affine(&self) -> &Affine {
        &self.original_affine
    }

    /// Voxels per axis of the RAS grid.
    pub fn ras_dims(&self) -> [usize; 3] {
        self.ras_dims
    }

    /// Voxel-to-world affine of the RAS grid.
    pub fn ras_affine(&self) -> &Affine {
        &self.ras_affine
    }

    /// Reorient a volume on the original grid (the image, or a mask on the same grid) to RAS.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidVolume`] when `vol` does not have the original dims or its data length
    /// does not match its dims.
    pub fn to_ras<T: Clone>(&self, vol: &Volume<T>) -> Result<Volume<T>> {
        check_volume(vol, self.original_dims, "original")?;
        // Gather: output (RAS) axis j reads input axis i where axes[i].axis == j.
        let in_strides = [
            1,
            self.original_dims[0],
            self.original_dims[0] * self.original_dims[1],
        ];
        let mut start = 0isize;
        let mut step = [0isize; 3];
        for (i, m) in self.axes.iter().enumerate() {
            let s = in_strides[i] as isize;
            if m.flip {
                start += (self.original_dims[i] as isize - 1) * s;
                step[m.axis] = -s;
            } else {
                step[m.axis] = s;
            }
        }
        Ok(Volume {
            dims: self.ras_dims,
            data: gather(&vol.data, self.ras_dims, start, step),
            affine: self.ras_affine,
            spacing: self.ras_spacing,
        })
    }

    /// Take a volume on the RAS grid back to the original voxel grid, affine and spacing (the
    /// inverse of [`Reorientation::to_ras`]).
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidVolume`] when `ras` does not have the RAS dims or its data length does
    /// not match its dims.
    pub fn to_original<T: Clone>(&self, ras: &Volume<T>) -> Result<Volume<T>> {
        check_volume(ras, self.ras_dims, "RAS")?;
        // Gather: output (original) axis i reads RAS axis axes[i].axis.
        let d = self.ras_dims;
        let ras_strides = [1, d[0], d[0] * d[1]];
        let mut start = 0isize;
        let mut step = [0isize; 3];
        for (i, m) in self.axes.iter().enumerate() {
            let s = ras_strides[m.axis] as isize;
            if m.flip {
                start += (d[m.axis] as isize - 1) * s;
                step[i] = -s;
            } else {
                step[i] = s;
            }
        }
        Ok(Volume {
            dims: self.original_dims,
            data: gather(&ras.data, self.original_dims, start, step),
            affine: self.original_affine,
            spacing: self.original_spacing,
        })
    }
}

fn check_volume<T>(vol: &Volume<T>, dims: [usize; 3], grid: &str) -> Result<()> {
    if vol.dims != dims {
        return Err(IoError::InvalidVolume(format!(
            "volume has dims {:?}, the {grid} grid of this reorientation has {dims:?}",
            vol.dims
        )));
    }
    let n: usize = dims.iter().product();
    if vol.data.len() != n {
        return Err(IoError::InvalidVolume(format!(
            "volume data holds {} voxels, its dims {dims:?} need {n}",
            vol.data.len()
        )));
    }
    Ok(())
}

/// Output voxel `(a, b, c)` (x fastest over `out_dims`) is `src[start + a*step[0] + b*step[1] +
/// c*step[2]]`.
fn gather<T: Clone>(src: &[T], out_dims: [usize; 3], start: isize, step: [isize; 3]) -> Vec<T> {
    let mut out = Vec::with_capacity(src.len());
    let mut kz = start;
    for _ in 0..out_dims[2] {
        let mut ky = kz;
        for _ in 0..out_dims[1] {
            let (n, k) = (out_dims[0], ky as usize);
            match step[0] {
                // Rows that stay contiguous (x kept or only flipped): copy whole rows.
                1 => out.extend_from_slice(&src[k..k + n]),
                -1 => out.extend(src[k + 1 - n..=k].iter().rev().cloned()),
                s => out.extend((0..n as isize).map(|i| src[(ky + i * s) as usize].clone())),
            }
            ky += step[1];
        }
        kz += step[2];
    }
    out
}

/// Reorient a volume to the closest canonical RAS+ orientation by permuting and flipping axes
/// only (no resampling): nibabel's `as_closest_canonical`.
///
/// Returns the RAS volume and the [`Reorientation`], which reorients more volumes on the same
/// grid ([`Reorientation::to_ras`]) and takes RAS results back
/// ([`Reorientation::to_original`]).
///
/// # Errors
///
/// As [`io_orientation`], and [`IoError::InvalidVolume`] when the data length does not match
/// the dims.
pub fn reorient_to_ras<T: Clone>(vol: &Volume<T>) -> Result<(Volume<T>, Reorientation)> {
    let r = Reorientation::new(vol.dims, &vol.affine, vol.spacing)?;
    Ok((r.to_ras(vol)?, r))
}

/// Largest difference allowed between two affines (entries, millimetres) or voxel sizes on the
/// same grid: NIfTI stores them as float32.
pub const GRID_TOLERANCE: f64 = 1e-4;

/// Check that two volumes (for example an image and its mask) share one voxel grid: the same
/// dims, and affines and voxel sizes within [`GRID_TOLERANCE`].
///
/// `first` and `second` name the volumes in the error (usually their files).
///
/// # Errors
///
/// [`IoError::GridMismatch`] naming the first property that differs and both values.
pub fn check_same_grid<A, B>(
    first: &Path,
    a: &Volume<A>,
    second: &Path,
    b: &Volume<B>,
) -> Result<()> {
    let mismatch = |detail: String| IoError::GridMismatch {
        first: PathBuf::from(first),
        second: PathBuf::from(second),
        detail,
    };
    if a.dims != b.dims {
        return Err(mismatch(format!("dims {:?} vs {:?}", a.dims, b.dims)));
    }
    let close = |x: f64, y: f64| (x - y).abs() <= GRID_TOLERANCE;
    if !a.spacing.iter().zip(&b.spacing).all(|(x, y)| close(*x, *y)) {
        return Err(mismatch(format!(
            "voxel sizes {:?} vs {:?}",
            a.spacing, b.spacing
        )));
    }
    if !a
        .affine
        .iter()
        .flatten()
        .zip(b.affine.iter().flatten())
        .all(|(x, y)| close(*x, *y))
    {
        return Err(mismatch(format!(
            "affines {:?} vs {:?}",
            a.affine, b.affine
        )));
    }
    Ok(())
}

/// The closest orthogonal matrix to `m` (polar decomposition) for an invertible `m`; `None`
/// when `m` is singular or not finite.
pub(crate) fn polar_rotation(m: &Mat3) -> Option<Mat3> {
    if m.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let (_, s, _) = svd3(m);
    let smax = s.iter().copied().fold(0.0, f64::max);
    if smax == 0.0 || s.iter().any(|v| *v <= smax * 3.0 * f64::EPSILON) {
        return None;
    }
    Some(polar_factor(m))
}

/// nibabel's rank-aware polar factor: `U[:, keep] @ Vt[keep]`, where `keep` drops singular values
/// below `max(S) * 3 * eps`.
fn polar_factor(m: &Mat3) -> Mat3 {
    let (u, s, v) = svd3(m);
    let smax = s.iter().copied().fold(0.0, f64::max);
    let tol = smax * 3.0 * f64::EPSILON;
    let mut r = [[0.0; 3]; 3];
    for k in 0..3 {
        if s[k] > tol {
            for i in 0..3 {
                for j in 0..3 {
                    r[i][j] += u[i][k] * v[j][k];
                }
            }
        }
    }
    r
}

/// Thin SVD of a 3x3 matrix: `m = U diag(s) V^T`, columns of `U` and `V` the singular vectors.
/// Columns of `U` for zero singular values are left zero (only used through the polar factor).
fn svd3(m: &Mat3) -> (Mat3, [f64; 3], Mat3) {
    // Eigen-decomposition of the symmetric M^T M by cyclic Jacobi rotations.
    let mut a = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            a[i][j] = (0..3).map(|k| m[k][i] * m[k][j]).sum();
        }
    }
    let mut v: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    for _sweep in 0..64 {
        let off = a[0][1].abs() + a[0][2].abs() + a[1][2].abs();
        let diag = a[0][0].abs() + a[1][1].abs() + a[2][2].abs();
        if off <= f64::EPSILON * 1e-3 * diag || off == 0.0 {
            break;
        }
        for (p, q) in [(0, 1), (0, 2), (1, 2)] {
            if a[p][q] == 0.0 {
                continue;
            }
            let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
            let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
            let t = if theta == 0.0 { 1.0 } else { t };
            let c = 1.0 / (t * t + 1.0).sqrt();
            let s = t * c;
            // A <- J^T A J with J the rotation in the (p, q) plane.
            for k in 0..3 {
                let akp = a[k][p];
                let akq = a[k][q];
                a[k][p] = c * akp - s * akq;
                a[k][q] = s * akp + c * akq;
            }
            for k in 0..3 {
                let apk = a[p][k];
                let aqk = a[q][k];
                a[p][k] = c * apk - s * aqk;
                a[q][k] = s * apk + c * aqk;
            }
            for k in 0..3 {
                let vkp = v[k][p];
                let vkq = v[k][q];
                v[k][p] = c * vkp - s * vkq;
                v[k][q] = s * vkp + c * vkq;
            }
        }
    }
    let s = [
        a[0][0].max(0.0).sqrt(),
        a[1][1].max(0.0).sqrt(),
        a[2][2].max(0.0).sqrt(),
    ];
    let smax = s.iter().copied().fold(0.0, f64::max);
    let mut u = [[0.0; 3]; 3];
    for k in 0..3 {
        if s[k] > smax * 3.0 * f64::EPSILON {
            for i in 0..3 {
                u[i][k] = (0..3).map(|j| m[i][j] * v[j][k]).sum::<f64>() / s[k];
            }
        }
    }
    (u, s, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::volume::scaled_identity;

    fn vol(dims: [usize; 3], affine: Affine) -> Volume<u32> {
        let n = dims.iter().product::<usize>() as u32;
        Volume {
            dims,
            data: (0..n).collect(),
            affine,
            spacing: [1.0, 2.0, 3.0],
        }
    }

    #[test]
    fn axcodes_of_common_orientations() {
        let las = [
            [-1.0, 0.0, 0.0, 74.0],
            [0.0, 1.0, 0.0, -108.0],
            [0.0, 0.0, 1.0, -72.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(axcodes(&las).unwrap(), ['L', 'A', 'S']);
        // FreeSurfer conformed: LIA.
        let lia = [
            [-1.0, 0.0, 0.0, 128.0],
            [0.0, 0.0, 1.0, -128.0],
            [0.0, -1.0, 0.0, 128.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(axcodes(&lia).unwrap(), ['L', 'I', 'A']);
        assert_eq!(
            axcodes(&scaled_identity([2.0, 2.0, 2.0])).unwrap(),
            ['R', 'A', 'S']
        );
    }

    #[test]
    fn las_flips_x_and_moves_origin_like_nibabel() {
        // expected.json, arc_stroke/M2208_T2w_norm: shape 148x185x156, LAS.
        let las = [
            [-1.0, 0.0, 0.0, 74.0],
            [0.0, 1.0, 0.0, -108.0],
            [0.0, 0.0, 1.0, -72.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let r = Reorientation::new([148, 185, 156], &las, [1.0; 3]).unwrap();
        assert_eq!(r.ras_dims(), [148, 185, 156]);
        assert_eq!(r.ras_affine()[0], [1.0, 0.0, 0.0, -73.0]);
    }

    #[test]
    fn lia_permutes_axes_and_voxels_follow() {
        let lia = [
            [-1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 2.0, -4.0],
            [0.0, -3.0, 0.0, 6.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let v = vol([2, 3, 4], lia);
        let (ras, r) = reorient_to_ras(&v).unwrap();
        assert_eq!(ras.dims, [2, 4, 3]);
        assert_eq!(ras.spacing, [1.0, 3.0, 2.0]);
        // Every RAS voxel maps to the same world point as the original voxel it came from.
        let world = |a: &Affine, p: [usize; 3]| -> [f64; 3] {
            std::array::from_fn(|r| {
                a[r][0] * p[0] as f64 + a[r][1] * p[1] as f64 + a[r][2] * p[2] as f64 + a[r][3]
            })
        };
        for k in 0..3 {
            for j in 0..4 {
                for i in 0..2 {
                    let val = ras.data[ras.index(i, j, k)];
                    let (oi, oj, ok) = (val as usize % 2, (val as usize / 2) % 3, val as usize / 6);
                    assert_eq!(world(&ras.affine, [i, j, k]), world(&lia, [oi, oj, ok]));
                }
            }
        }
        assert_eq!(r.to_original(&ras).unwrap(), v);
    }

    #[test]
    fn identity_orientation_copies() {
        let v = vol([3, 2, 2], scaled_identity([1.0, 2.0, 3.0]));
        let (ras, r) = reorient_to_ras(&v).unwrap();
        assert!(r.is_identity());
        assert_eq!(ras, v);
    }

    #[test]
    fn degenerate_affine_is_an_error() {
        let mut a = scaled_identity([1.0; 3]);
        a[1][1] = 0.0;
        assert!(matches!(io_orientation(&a), Err(IoError::InvalidVolume(_))));
        a[1][1] = f64::NAN;
        assert!(matches!(io_orientation(&a), Err(IoError::InvalidVolume(_))));
    }

    #[test]
    fn wrong_dims_are_errors_not_panics() {
        let v = vol([2, 3, 4], scaled_identity([1.0; 3]));
        let (_, r) = reorient_to_ras(&v).unwrap();
        let other = vol([4, 3, 2], scaled_identity([1.0; 3]));
        assert!(r.to_ras(&other).is_err());
        assert!(r.to_original(&other).is_err());
        let mut short = v.clone();
        short.data.pop();
        assert!(r.to_ras(&short).is_err());
    }

    #[test]
    fn oblique_affine_picks_dominant_axes() {
        // A 20-degree rotation about z of an LPS grid.
        let (c, s) = (20f64.to_radians().cos(), 20f64.to_radians().sin());
        let a = [
            [-c, s, 0.0, 0.0],
            [-s, -c, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(axcodes(&a).unwrap(), ['L', 'P', 'S']);
        let m: Mat3 = [[2.0, 0.3, 0.0], [0.1, 1.0, 0.2], [0.0, 0.4, 3.0]];
        let r = polar_rotation(&m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let dot: f64 = (0..3).map(|k| r[k][i] * r[k][j]).sum();
                assert!((dot - f64::from(u8::from(i == j))).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn grid_check_names_the_difference() {
        let a = vol([2, 3, 4], scaled_identity([1.0; 3]));
        let mut b = a.clone();
        assert!(check_same_grid(Path::new("a"), &a, Path::new("b"), &b).is_ok());
        b.affine[0][3] = 1.0;
        let e = check_same_grid(Path::new("a"), &a, Path::new("b"), &b).unwrap_err();
        assert!(e.to_string().contains("affines"), "{e}");
        let c = vol([2, 3, 5], scaled_identity([1.0; 3]));
        let e = check_same_grid(Path::new("a"), &a, Path::new("c"), &c).unwrap_err();
        assert!(e.to_string().contains("dims"), "{e}");
    }
}
