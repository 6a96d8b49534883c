//! The preprocessing steps on whole volumes, each usable on its own (listed in
//! [`crate::preprocess`], which re-exports them): crop or pad, brain masks, z-score in the mask,
//! percentile clipping, axial slices.

use blindspot_metrics::quantile_select;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};
use crate::volume::Volume;
use crate::voxels::{check_same_dims, masked_values};

/// Cut or pad `vol` to the box of `size` voxels whose first voxel is the input voxel
/// `origin` (which may be negative, or beyond the input, to pad). Voxels outside the input
/// are `fill`. The affine is translated so that every kept voxel keeps its world position.
pub fn crop_or_pad<T: Copy>(
    vol: &Volume<T>,
    origin: [i64; 3],
    size: [usize; 3],
    fill: T,
) -> Volume<T> {
    let [nx, ny, nz] = vol.dims.map(|d| d as i64);
    let [sx, sy, sz] = size;
    let mut data = vec![fill; sx * sy * sz];
    // Input x range that lands inside the output, per row.
    let x_lo = origin[0].clamp(0, nx);
    let x_hi = (origin[0] + sx as i64).clamp(0, nx);
    if x_lo < x_hi {
        let out_x0 = (x_lo - origin[0]) as usize;
        let len = (x_hi - x_lo) as usize;
        for k in 0..sz {
            let zk = origin[2] + k as i64;
            if !(0..nz).contains(&zk) {
                continue;
            }
            for j in 0..sy {
                let yj = origin[1] + j as i64;
                if !(0..ny).contains(&yj) {
                    continue;
                }
                let src = vol.index(x_lo as usize, yj as usize, zk as usize);
                let dst = out_x0 + sx * (j + sy * k);
                data[dst..dst + len].copy_from_slice(&vol.data[src..src + len]);
            }
        }
    }
    let mut affine = vol.affine;
    for (r, row) in affine.iter_mut().enumerate().take(3) {
        let shift: f64 = (0..3).map(|c| vol.affine[r][c] * origin[c] as f64).sum();
        row[3] += shift;
    }
    Volume {
        dims: size,
        data,
        affine,
        spacing: vol.spacing,
    }
}

/// [`crop_or_pad`] to `size`, centred: the origin is `floor((n - size) / 2)` per axis.
pub fn center_crop_or_pad<T: Copy>(vol: &Volume<T>, size: [usize; 3], fill: T) -> Volume<T> {
    let origin = [0, 1, 2].map(|a| (vol.dims[a] as i64 - size[a] as i64).div_euclid(2));
    crop_or_pad(vol, origin, size, fill)
}

/// The brain mask of a skull-stripped image: 1 where the voxel is non-zero (and not NaN), else 0.
pub fn nonzero_mask(vol: &Volume<f32>) -> Volume<u8> {
    binarize(vol)
}

/// A 0/1 mask from a mask or label volume: 1 where the value is non-zero (and not NaN).
///
/// Label maps (BraTS `seg` with labels 1, 2, 4; CANDI segmentations) become "any label".
pub fn binarize(vol: &Volume<f32>) -> Volume<u8> {
    Volume {
        dims: vol.dims,
        data: vol
            .data
            .iter()
            .map(|&v| u8::from(v != 0.0 && !v.is_nan()))
            .collect(),
        affine: vol.affine,
        spacing: vol.spacing,
    }
}

/// Mean and standard deviation used by [`zscore_in_mask`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZScore {
    /// Mean of the brain voxels.
    pub mean: f64,
    /// Population standard deviation (`ddof = 0`) of the brain voxels.
    pub std: f64,
    /// Number of brain voxels.
    pub count: usize,
}

/// Voxels per parallel work item; fixed so that sums do not depend on the thread count.
pub(crate) const CHUNK: usize = 1 << 14;

/// Which voxels are brain: an explicit mask, or the image's non-zero voxels.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BrainRef<'a> {
    Mask(&'a [u8]),
    NonZero,
}

/// The brain test of [`nonzero_mask`]: not zero and not NaN (on the bits, branch-free).
#[inline(always)]
pub(crate) fn nonzero(v: f32) -> bool {
    let abs = v.to_bits() & 0x7fff_ffff;
    abs != 0 && abs <= 0x7f80_0000
}

/// Accumulator lanes: independent partial sums the compiler keeps in SIMD registers.
pub(crate) const LANES: usize = 8;

/// Sum of `v - center` (or its square with `SQUARE`) over the brain voxels of one chunk, and
/// their count (0 with `SQUARE`, which only runs after the count is known). Lanes and their
/// reduction order are fixed, so the result is reproducible.
///
/// Branch-free so that it vectorises: each term is computed for every voxel and its bits are
/// masked to `+0.0` outside the brain (which also drops NaN or infinite background voxels).
pub(crate) fn chunk_sums<const SQUARE: bool>(
    v: &[f32],
    mask: Option<&[u8]>,
    center: f64,
) -> (f64, usize) {
    #[inline(always)]
    fn lanes<const SQUARE: bool>(
        v: &[f32],
        keep: impl Fn(usize) -> bool,
        center: f64,
        acc: &mut [f64; LANES],
        cnt: &mut [u64; LANES],
    ) {
        for l in 0..LANES {
            let bits = if keep(l) { u64::MAX } else { 0 };
            let d = f64::from(v[l]) - center;
            let t = if SQUARE { d * d } else { d };
            acc[l] += f64::from_bits(t.to_bits() & bits);
            if !SQUARE {
                cnt[l] += bits & 1;
            }
        }
    }
    let mut acc = [0.0f64; LANES];
    let mut cnt = [0u64; LANES];
    let split = v.len() - v.len() % LANES;
    let (body, tail) = v.split_at(split);
    match mask {
        Some(m) => {
            for (vc, mc) in body.chunks_exact(LANES).zip(m.chunks_exact(LANES)) {
                lanes::<SQUARE>(vc, |l| mc[l] != 0, center, &mut acc, &mut cnt);
            }
            for (i, &x) in tail.iter().enumerate() {
                let keep = m[split + i] != 0;
                lanes::<SQUARE>(&[x; LANES], |l| l == 0 && keep, center, &mut acc, &mut cnt);
            }
        }
        None => {
            for vc in body.chunks_exact(LANES) {
                lanes::<SQUARE>(vc, |l| nonzero(vc[l]), center, &mut acc, &mut cnt);
            }
            for &x in tail {
                lanes::<SQUARE>(
                    &[x; LANES],
                    |l| l == 0 && nonzero(x),
                    center,
                    &mut acc,
                    &mut cnt,
                );
            }
        }
    }
    (acc.iter().sum(), cnt.iter().sum::<u64>() as usize)
}

/// Count, mean and sum of squared deviations of the brain voxels of one chunk: two passes
/// over the chunk while it is in cache.
pub(crate) fn chunk_moments(v: &[f32], mask: Option<&[u8]>) -> (usize, f64, f64) {
    let (sum, n) = chunk_sums::<false>(v, mask, 0.0);
    if n == 0 {
        return (0, 0.0, 0.0);
    }
    let mean = sum / n as f64;
    let (m2, _) = chunk_sums::<true>(v, mask, mean);
    (n, mean, m2)
}

/// Two-pass mean and population standard deviation of the brain voxels: each fixed chunk
/// (processed in parallel) gets its own two-pass moments, which are then merged in chunk
/// order (Chan et al.), so the volume is read from memory once and the result does not
/// depend on the thread count.
pub(crate) fn brain_stats(data: &[f32], brain: BrainRef<'_>) -> Result<ZScore> {
    let degenerate = |reason: String| IoError::DegenerateMask {
        what: "z-score".into(),
        reason,
    };
    let parts: Vec<(usize, f64, f64)> = match brain {
        BrainRef::Mask(m) => data
            .par_chunks(CHUNK)
            .zip(m.par_chunks(CHUNK))
            .map(|(v, m)| chunk_moments(v, Some(m)))
            .collect(),
        BrainRef::NonZero => data
            .par_chunks(CHUNK)
            .map(|v| chunk_moments(v, None))
            .collect(),
    };
    let (mut count, mut mean, mut m2) = (0usize, 0.0f64, 0.0f64);
    for &(n, mu, q) in parts.iter().filter(|p| p.0 > 0) {
        let total = (count + n) as f64;
        let delta = mu - mean;
        mean += delta * n as f64 / total;
        m2 += q + delta * delta * count as f64 * n as f64 / total;
        count += n;
    }
    if count == 0 {
        return Err(degenerate("the brain mask selects no voxel".into()));
    }
    if !mean.is_finite() || !m2.is_finite() {
        return Err(degenerate("a brain voxel is NaN or infinite".into()));
    }
    let std = (m2 / count as f64).sqrt();
    if std == 0.0 {
        return Err(degenerate(format!(
            "all {count} brain voxels equal {mean}: the standard deviation is 0"
        )));
    }
    Ok(ZScore { mean, std, count })
}

/// Mean and population standard deviation of the voxels of `vol` where `mask` is non-zero,
/// in `f64`, two-pass.
///
/// # Errors
///
/// [`IoError::GridMismatch`] if the grids differ; [`IoError::DegenerateMask`] if the mask is
/// empty, a brain voxel is not finite, or all brain voxels are equal.
pub fn masked_stats(vol: &Volume<f32>, mask: &Volume<u8>) -> Result<ZScore> {
    check_same_dims("image", vol, "brain mask", mask)?;
    brain_stats(&vol.data, BrainRef::Mask(&mask.data))
}

/// Z-score `vol` inside `mask`: brain voxels become `(v - mean) / std` with the mean and the
/// population standard deviation (`ddof = 0`) of **all** brain voxels of the volume; every
/// other voxel becomes `background`. Returns the statistics used.
///
/// # Errors
///
/// As [`masked_stats`].
pub fn zscore_in_mask(vol: &mut Volume<f32>, mask: &Volume<u8>, background: f32) -> Result<ZScore> {
    let z = masked_stats(vol, mask)?;
    let inv = 1.0 / z.std;
    vol.data
        .par_chunks_mut(CHUNK)
        .zip(mask.data.par_chunks(CHUNK))
        .for_each(|(v, m)| {
            for (v, &m) in v.iter_mut().zip(m) {
                *v = if m != 0 {
                    ((f64::from(*v) - z.mean) * inv) as f32
                } else {
                    background
                };
            }
        });
    Ok(z)
}

/// Clamp the brain voxels of `vol` to the `[lower, upper]` percentiles (0 to 100) of the brain
/// voxels. Returns the two clamp values.
///
/// # Errors
///
/// [`IoError::InvalidParameter`] unless `0 <= lower < upper <= 100`;
/// [`IoError::GridMismatch`]; [`IoError::DegenerateMask`] if the mask is empty or a brain
/// voxel is NaN.
pub fn clip_percentiles(
    vol: &mut Volume<f32>,
    mask: &Volume<u8>,
    lower: f64,
    upper: f64,
) -> Result<(f32, f32)> {
    check_percentiles(lower, upper)?;
    check_same_dims("image", vol, "brain mask", mask)?;
    let mut values = masked_values(vol, mask);
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return Err(IoError::DegenerateMask {
            what: "percentile clipping".into(),
            reason: "the brain mask selects no voxel, or a brain voxel is NaN".into(),
        });
    }
    let lo = quantile_select(&mut values, lower / 100.0) as f32;
    let hi = quantile_select(&mut values, upper / 100.0) as f32;
    for (v, &m) in vol.data.iter_mut().zip(&mask.data) {
        if m != 0 {
            *v = v.clamp(lo, hi);
        }
    }
    Ok((lo, hi))
}

pub(crate) fn check_percentiles(lower: f64, upper: f64) -> Result<()> {
    if !(0.0..=100.0).contains(&lower) || !(0.0..=100.0).contains(&upper) || lower >= upper {
        return Err(IoError::InvalidParameter {
            key: "clip_percentiles".into(),
            value: format!("[{lower}, {upper}]"),
            expected: "two percentiles with 0 <= lower < upper <= 100".into(),
        });
    }
    Ok(())
}

/// How an axial slice is laid out as an image.
///
/// Both views put **anterior at the top** (row 0 is the most anterior row of voxels, i.e. rows
/// run along RAS `y` reversed) and the image is `H = ny` rows by `W = nx` columns; they differ
/// in the left-right direction:
///
/// - [`SliceView::Radiological`] (the default, as radiological viewers show it): the patient's
///   right is on the image's left, so column `c` is RAS `x = nx - 1 - c`;
/// - [`SliceView::Neurological`]: the patient's left is on the image's left, column `c` is
///   RAS `x = c`. This is the layout of the paper's BraTS slices (stored LPS, transposed and
///   rotated by the authors' code).
///
/// A model trained and evaluated in one view is unaffected by the choice; the flipped-BraTS
/// OOD sets flip relative to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceView {
    /// Anterior at the top, patient's right on the image's left.
    #[default]
    Radiological,
    /// Anterior at the top, patient's left on the image's left.
    Neurological,
}

/// The axial slice `k` of a RAS+ volume as a row-major `ny x nx` image laid out as `view` says.
///
/// # Shapes
///
/// Returns `(data, (height, width))` with `height = ny`, `width = nx`.
///
/// # Panics
///
/// If `k >= nz`.
pub fn axial_slice<T: Copy>(
    vol: &Volume<T>,
    k: usize,
    view: SliceView,
) -> (Vec<T>, (usize, usize)) {
    let [nx, ny, nz] = vol.dims;
    assert!(k < nz, "slice {k} out of range for {nz} slices");
    let plane = &vol.data[nx * ny * k..nx * ny * (k + 1)];
    let mut out = Vec::with_capacity(nx * ny);
    for r in 0..ny {
        let row = &plane[nx * (ny - 1 - r)..nx * (ny - r)];
        match view {
            SliceView::Neurological => out.extend_from_slice(row),
            SliceView::Radiological => out.extend(row.iter().rev()),
        }
    }
    (out, (ny, nx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::vol;

    use proptest::prelude::*;

    #[test]
    fn crop_or_pad_moves_voxels_and_affine() {
        let v = vol([4, 3, 2], |i, j, k| (i + 10 * j + 100 * k) as f32);
        let c = crop_or_pad(&v, [1, -1, 0], [2, 3, 3], -1.0);
        assert_eq!(c.dims, [2, 3, 3]);
        // Output (0, 1, 0) is input (1, 0, 0); output row j = 0 is padding.
        assert_eq!(c.data[c.index(0, 1, 0)], 1.0);
        assert_eq!(c.data[c.index(1, 2, 1)], 112.0);
        assert_eq!(c.data[c.index(0, 0, 0)], -1.0);
        assert_eq!(c.data[c.index(0, 1, 2)], -1.0); // z = 2 is beyond the input
        // World position of output (0, 1, 0) = input (1, 0, 0) = (1 mm, 0, 0).
        let a = c.affine;
        assert_eq!([a[0][3], a[1][3], a[2][3]], [1.0, -2.0, 0.0]);
        assert!(c.data.len() == 18);
    }

    #[test]
    fn center_crop_then_pad_round_trips_the_middle() {
        let v = vol([6, 5, 4], |i, j, k| (i * 7 + j * 3 + k) as f32 + 1.0);
        let small = center_crop_or_pad(&v, [4, 3, 2], 0.0);
        assert_eq!(small.data[small.index(0, 0, 0)], v.data[v.index(1, 1, 1)]);
        let back = center_crop_or_pad(&small, [6, 5, 4], 0.0);
        assert_eq!(back.affine, v.affine);
        for (a, b) in back.data.iter().zip(&v.data) {
            assert!(*a == 0.0 || a == b);
        }
        assert_eq!(back.data.iter().filter(|&&x| x != 0.0).count(), 24);
    }

    #[test]
    fn masks_from_nonzero_and_labels() {
        let v = vol([3, 1, 1], |i, _, _| [0.0, 4.0, f32::NAN][i]);
        assert_eq!(nonzero_mask(&v).data, [0, 1, 0]);
        let seg = vol([4, 1, 1], |i, _, _| [0.0, 1.0, 2.0, 4.0][i]);
        assert_eq!(binarize(&seg).data, [0, 1, 1, 1]);
    }

    #[test]
    fn zscore_sets_background_and_reports_stats() {
        let mut v = vol([4, 1, 1], |i, _, _| [0.0, 1.0, 2.0, 3.0][i]);
        let m = nonzero_mask(&v);
        let z = zscore_in_mask(&mut v, &m, -3.5).unwrap();
        assert_eq!(z.count, 3);
        assert!((z.mean - 2.0).abs() < 1e-12);
        assert!((z.std - (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
        assert_eq!(v.data[0], -3.5);
        assert!((v.data[1] + 1.224_745).abs() < 1e-5);
    }

    #[test]
    fn zscore_rejects_empty_and_constant_masks() {
        let mut v = vol([3, 1, 1], |_, _, _| 5.0);
        let empty = vol([3, 1, 1], |_, _, _| 0u8);
        assert!(matches!(
            zscore_in_mask(&mut v, &empty, -3.5),
            Err(IoError::DegenerateMask { .. })
        ));
        let full = vol([3, 1, 1], |_, _, _| 1u8);
        let err = zscore_in_mask(&mut v, &full, -3.5).unwrap_err();
        assert!(err.to_string().contains("standard deviation is 0"), "{err}");
        let other = vol([2, 1, 1], |_, _, _| 1u8);
        assert!(matches!(
            zscore_in_mask(&mut v, &other, -3.5),
            Err(IoError::GridMismatch { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn zscore_gives_mean_0_std_1_inside_mask(
            values in prop::collection::vec(-1000.0f32..1000.0, 60),
            mask in prop::collection::vec(0u8..2, 60),
            background in -10.0f32..10.0,
        ) {
            let brain: Vec<f32> = values.iter().zip(&mask).filter(|(_, m)| **m != 0).map(|(v, _)| *v).collect();
            prop_assume!(brain.len() >= 2 && brain.iter().any(|&v| (v - brain[0]).abs() > 1e-2));
            let mut v = vol([5, 4, 3], |i, j, k| values[i + 5 * (j + 4 * k)]);
            let m = vol([5, 4, 3], |i, j, k| mask[i + 5 * (j + 4 * k)]);
            zscore_in_mask(&mut v, &m, background).unwrap();
            let z: Vec<f64> = v.data.iter().zip(&m.data).filter(|(_, m)| **m != 0).map(|(v, _)| f64::from(*v)).collect();
            let n = z.len() as f64;
            let mean = z.iter().sum::<f64>() / n;
            let std = (z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
            prop_assert!(mean.abs() < 1e-5, "mean {}", mean);
            prop_assert!((std - 1.0).abs() < 1e-5, "std {}", std);
            for (x, mk) in v.data.iter().zip(&m.data) {
                if *mk == 0 { prop_assert_eq!(*x, background); }
            }
        }
    }

    #[test]
    fn clip_percentiles_clamps_brain_only() {
        let mut v = vol([6, 1, 1], |i, _, _| [100.0, 1.0, 2.0, 3.0, 4.0, 0.0][i]);
        let m = vol([6, 1, 1], |i, _, _| u8::from(i < 5));
        let (lo, hi) = clip_percentiles(&mut v, &m, 0.0, 75.0).unwrap();
        assert_eq!((lo, hi), (1.0, 4.0));
        assert_eq!(v.data, [4.0, 1.0, 2.0, 3.0, 4.0, 0.0]);
        let err = clip_percentiles(&mut v, &m, 50.0, 20.0).unwrap_err();
        assert!(err.to_string().contains("clip_percentiles"), "{err}");
    }

    #[test]
    fn axial_slice_orientation() {
        // 3 x 2 x 2 volume: value = 10 * y + x (+ 100 z).
        let v = vol([3, 2, 2], |i, j, k| (i + 10 * j + 100 * k) as u16);
        let (n, hw) = axial_slice(&v, 1, SliceView::Neurological);
        assert_eq!(hw, (2, 3));
        // Row 0 is the most anterior (largest y); columns run along x.
        assert_eq!(n, [110, 111, 112, 100, 101, 102]);
        let (r, _) = axial_slice(&v, 0, SliceView::Radiological);
        assert_eq!(r, [12, 11, 10, 2, 1, 0]);
    }
}
