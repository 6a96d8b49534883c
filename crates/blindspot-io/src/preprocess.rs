//! Volume preprocessing: small composable steps, and the [`Pipeline`] that chains them into
//! model-ready 2-D axial slices.
//!
//! The steps, each usable on its own:
//!
//! - [`crop_or_pad`] / [`center_crop_or_pad`]: cut or pad a volume to a box (the affine follows);
//! - [`nonzero_mask`] / [`binarize`]: a brain mask from the non-zero voxels of the image, or
//!   from a mask file (any non-zero value is brain);
//! - [`crate::histmatch`]: Nyúl-style landmark histogram matching to a reference volume;
//! - [`clip_percentiles`]: clamp the brain voxels to two percentiles of their own distribution;
//! - [`zscore_in_mask`]: `(v - mean) / std` over the brain voxels (mean and standard deviation
//!   over **all** brain voxels of the volume, `ddof = 0`, in `f64`), every other voxel set to a
//!   background value (the paper uses `-3.5`);
//! - [`axial_slice`]: one z slice of a RAS+ volume as a row-major `H x W` image, see
//!   [`SliceView`] for the orientation;
//! - [`crate::resize`]: Pillow-compatible bilinear (images) and nearest (masks) resizing.
//!
//! [`Pipeline`] runs them in the paper's order on one subject (image, optional brain mask,
//! optional lesion mask, all on one RAS+ grid) and returns the slices with their identity
//! (the z index), dropping slices without brain if asked. Slices are processed in parallel
//! (rayon); the result does not depend on the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};
use crate::histmatch::{HistMatchConfig, Landmarks, match_histogram};
use crate::layout::SubjectFiles;
use crate::orient::Reorientation;
use crate::resize::{BilinearResizer, nearest_indices, resize_nearest};
use crate::steps::{BrainRef, brain_stats, check_percentiles, nonzero};
pub use crate::steps::{
    SliceView, ZScore, axial_slice, binarize, center_crop_or_pad, clip_percentiles, crop_or_pad,
    masked_stats, nonzero_mask, zscore_in_mask,
};
use crate::volume::Volume;
pub use crate::voxels::check_same_dims;
use crate::{check_same_grid, read_volume};

/// How lesion masks are brought to the slice size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LesionResize {
    /// Nearest neighbour, like the brain mask.
    #[default]
    Nearest,
    /// The paper's loader: bilinear resize of the 0/1 mask, then any value `> 0` is lesion,
    /// which slightly dilates lesions.
    BilinearAny,
}

/// Preprocessing parameters, as written in a TOML `[preprocess]` table.
///
/// Every key has a default (the paper's choices). Check with [`PreprocessConfig::check`]
/// (done by [`Pipeline::new`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PreprocessConfig {
    /// Centre crop/pad of the RAS+ volume to `[nx, ny, nz]` voxels before anything else
    /// (padding with 0, which is background). Default: none.
    pub crop: Option<[usize; 3]>,
    /// Axial field of view in millimetres, `[x, y]` (RAS: left-right, posterior-anterior),
    /// centred in-plane on the bounding box of the brain mask: each RAS+ volume is cut or padded
    /// (with 0, background) to it before slicing, after `crop`. Scans with other voxel sizes or
    /// fields of view then show the brain at one scale in the slices. Default: none (the slice
    /// is the whole grid, resized).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_of_view_mm: Option<[f64; 2]>,
    /// Histogram matching to a reference (its landmarks are given to [`Pipeline::new`]).
    /// Default: none.
    pub histogram_match: Option<HistMatchConfig>,
    /// Clamp brain voxels to these percentiles `[lower, upper]` (0 to 100) before z-scoring.
    /// Default: none.
    pub clip_percentiles: Option<[f64; 2]>,
    /// Value of every non-brain voxel after z-scoring. Default `-3.5`.
    pub background: f32,
    /// Output slice size `[height, width]`. Default `[128, 128]`.
    pub slice_size: [usize; 2],
    /// Slice layout. Default `radiological`.
    pub view: SliceView,
    /// Drop slices whose brain mask is empty. Default `true`.
    pub drop_empty_slices: bool,
    /// Lesion mask resizing. Default `nearest`.
    pub lesion_resize: LesionResize,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            crop: None,
            field_of_view_mm: None,
            histogram_match: None,
            clip_percentiles: None,
            background: -3.5,
            slice_size: [128, 128],
            view: SliceView::Radiological,
            drop_empty_slices: true,
            lesion_resize: LesionResize::Nearest,
        }
    }
}

impl PreprocessConfig {
    /// Validate every value.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] naming the key, the value and what is allowed.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(IoError::InvalidParameter {
                key: key.into(),
                value,
                expected: expected.into(),
            })
        };
        if let Some(c) = self.crop
            && c.contains(&0)
        {
            return bad("crop", format!("{c:?}"), "three sizes >= 1");
        }
        if let Some(f) = self.field_of_view_mm
            && !f.iter().all(|v| v.is_finite() && *v > 0.0 && *v <= 1e4)
        {
            return bad(
                "field_of_view_mm",
                format!("{f:?}"),
                "[x, y] in millimetres, each above 0 and at most 10000",
            );
        }
        if let Some([lo, hi]) = self.clip_percentiles {
            check_percentiles(lo, hi)?;
        }
        if !self.background.is_finite() {
            return bad("background", self.background.to_string(), "a finite number");
        }
        if self.slice_size.contains(&0) || self.slice_size.iter().any(|&s| s > 1 << 15) {
            return bad(
                "slice_size",
                format!("{:?}", self.slice_size),
                "[height, width], each from 1 to 32768",
            );
        }
        if let Some(h) = &self.histogram_match {
            h.check()?;
        }
        Ok(())
    }
}

/// One preprocessed axial slice and its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Index of the slice along RAS `z` in the (cropped) volume.
    pub index: usize,
    /// Z-scored image, `height * width`, row-major.
    pub image: Vec<f32>,
    /// Brain mask, 0/1.
    pub brain: Vec<u8>,
    /// Lesion mask, 0/1 (all 0 when the subject has none).
    pub lesion: Vec<u8>,
}

/// The slices of one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectSlices {
    /// Slice height.
    pub height: usize,
    /// Slice width.
    pub width: usize,
    /// The z-score statistics of the volume.
    pub zscore: ZScore,
    /// The kept slices in increasing z order.
    pub slices: Vec<Slice>,
}

/// A checked preprocessing configuration plus the histogram reference, ready to run.
#[derive(Debug, Clone)]
pub struct Pipeline {
    config: PreprocessConfig,
    reference: Option<Landmarks>,
}

impl Pipeline {
    /// Check `config` and pair it with the reference landmarks histogram matching needs.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] if a value is out of range, if `histogram_match` is set
    /// without a reference or a reference is given without `histogram_match`, or if the
    /// reference was computed with other landmark levels.
    pub fn new(config: PreprocessConfig, reference: Option<Landmarks>) -> Result<Self> {
        config.check()?;
        match (&config.histogram_match, &reference) {
            (Some(h), Some(r)) => r.check_compatible(h)?,
            (None, None) => {}
            (Some(_), None) => {
                return Err(IoError::InvalidParameter {
                    key: "histogram_match".into(),
                    value: "set".into(),
                    expected: "reference landmarks (Landmarks::compute on the reference volume)"
                        .into(),
                });
            }
            (None, Some(_)) => {
                return Err(IoError::InvalidParameter {
                    key: "histogram_match".into(),
                    value: "absent".into(),
                    expected: "a [histogram_match] table when reference landmarks are given".into(),
                });
            }
        }
        Ok(Self { config, reference })
    }

    /// The checked configuration.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Everything that determines the output, as JSON (the configuration and the reference
    /// landmarks): what a slice cache records so that a stale cache is detected.
    pub fn params_json(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config,
            "reference": self.reference,
        })
    }

    /// Read one subject's files, reorient them to RAS+ (see [`crate::reorient_to_ras`]) and
    /// preprocess them with [`Pipeline::run`]. Mask files count any non-zero voxel.
    ///
    /// # Errors
    ///
    /// Reading errors naming the file ([`crate::read_volume`]); [`IoError::GridMismatch`]
    /// naming both files if a mask is not on the image's grid; as [`Pipeline::run`].
    pub fn run_files(&self, files: &SubjectFiles) -> Result<SubjectSlices> {
        let read_mask = |path: &Option<std::path::PathBuf>| -> Result<Option<Volume<f32>>> {
            path.as_deref().map(read_volume).transpose()
        };
        let (image, (brain, lesion)) = rayon::join(
            || read_volume(&files.image),
            || {
                rayon::join(
                    || read_mask(&files.brain_mask),
                    || read_mask(&files.lesion_mask),
                )
            },
        );
        let (image, brain, lesion) = (image?, brain?, lesion?);
        let mut masks = [None, None];
        for (slot, (mask, path)) in masks
            .iter_mut()
            .zip([(brain, &files.brain_mask), (lesion, &files.lesion_mask)])
        {
            if let (Some(mask), Some(path)) = (mask, path) {
                check_same_grid(&files.image, &image, path, &mask)?;
                *slot = Some(binarize(&mask));
            }
        }
        let [brain, lesion] = masks;
        self.run_native(image, brain, lesion)
    }

    /// Preprocess one subject whose volumes are on the voxel grid of their file, in any
    /// orientation: the result equals [`Pipeline::run`] on the volumes reoriented to RAS+
    /// ([`crate::reorient_to_ras`]), but the slices are read straight from the original grid
    /// (no reoriented copy) unless `crop` needs the RAS volume.
    ///
    /// # Errors
    ///
    /// As [`Pipeline::run`], and [`IoError::InvalidVolume`] when the image's affine has no
    /// orientation.
    pub fn run_native(
        &self,
        image: Volume<f32>,
        brain: Option<Volume<u8>>,
        lesion: Option<Volume<u8>>,
    ) -> Result<SubjectSlices> {
        check_masks_fit(&image, brain.as_ref(), lesion.as_ref())?;
        let to_ras = Reorientation::new(image.dims, &image.affine, image.spacing)?;
        if self.config.crop.is_some() || self.config.field_of_view_mm.is_some() {
            let brain = brain.map(|b| to_ras.to_ras(&b)).transpose()?;
            let lesion = lesion.map(|l| to_ras.to_ras(&l)).transpose()?;
            return self.run(to_ras.to_ras(&image)?, brain, lesion);
        }
        self.run_view(image, brain, lesion, RasView::of(&to_ras))
    }

    /// Preprocess one subject. `image`, `brain` and `lesion` must be RAS+ volumes on one grid
    /// (see `reorient_to_ras`); without `brain` the non-zero voxels of `image` are the brain.
    ///
    /// # Errors
    ///
    /// [`IoError::GridMismatch`] if the volumes differ in size; [`IoError::DegenerateMask`] if
    /// the brain mask is empty or the brain has no contrast.
    pub fn run(
        &self,
        image: Volume<f32>,
        brain: Option<Volume<u8>>,
        lesion: Option<Volume<u8>>,
    ) -> Result<SubjectSlices> {
        check_masks_fit(&image, brain.as_ref(), lesion.as_ref())?;
        let c = &self.config;
        let mut image = image;
        let mut brain = brain;
        let mut lesion = lesion;
        if let Some(size) = c.crop {
            // Padding is 0, so the non-zero mask of the cropped image is the cropped mask.
            image = center_crop_or_pad(&image, size, 0.0);
            brain = brain.map(|b| center_crop_or_pad(&b, size, 0));
            lesion = lesion.map(|l| center_crop_or_pad(&l, size, 0));
        }
        if let Some(fov) = c.field_of_view_mm {
            let (origin, size) = {
                let mask = match &brain {
                    Some(b) => std::borrow::Cow::Borrowed(b),
                    None => std::borrow::Cow::Owned(nonzero_mask(&image)),
                };
                brain_field_of_view(&mask, fov)?
            };
            image = crop_or_pad(&image, origin, size, 0.0);
            brain = brain.map(|b| crop_or_pad(&b, origin, size, 0));
            lesion = lesion.map(|l| crop_or_pad(&l, origin, size, 0));
        }
        let view = RasView::identity(image.dims);
        self.run_view(image, brain, lesion, view)
    }

    /// The pipeline after cropping: intensity steps on the whole volume (they do not depend on
    /// the voxel order), then slices along RAS `z` read through `view`.
    fn run_view(
        &self,
        mut image: Volume<f32>,
        brain: Option<Volume<u8>>,
        lesion: Option<Volume<u8>>,
        view: RasView,
    ) -> Result<SubjectSlices> {
        let c = &self.config;
        // Steps before z-scoring need the mask as a volume, taken before intensities change.
        let needs_mask = c.crop.is_some()
            || c.field_of_view_mm.is_some()
            || c.histogram_match.is_some()
            || c.clip_percentiles.is_some();
        let brain = match brain {
            None if needs_mask => Some(nonzero_mask(&image)),
            b => b,
        };
        if let (Some(h), Some(reference), Some(b)) = (&c.histogram_match, &self.reference, &brain) {
            match_histogram(&mut image, b, reference, h)?;
        }
        if let (Some([lo, hi]), Some(b)) = (c.clip_percentiles, &brain) {
            clip_percentiles(&mut image, b, lo, hi)?;
        }
        let brain_ref = match &brain {
            Some(b) => BrainRef::Mask(&b.data),
            None => BrainRef::NonZero,
        };
        let zscore = brain_stats(&image.data, brain_ref)?;
        let [oh, ow] = c.slice_size;
        let ctx = SliceCtx::new(c, view, zscore);
        let mask = match brain_ref {
            BrainRef::Mask(m) => Some(m),
            BrainRef::NonZero => None,
        };
        let lesion = lesion.as_ref().map(|l| l.data.as_slice());
        let slices: Vec<Slice> = (0..view.dims[2])
            .into_par_iter()
            .filter_map(|k| ctx.slice(k, &image.data, mask, lesion))
            .collect();
        Ok(SubjectSlices {
            height: oh,
            width: ow,
            zscore,
            slices,
        })
    }
}

/// Where RAS voxel `(x, y, z)` of a volume stored on another grid is:
/// `data[start + x * step[0] + y * step[1] + z * step[2]]`.
#[derive(Debug, Clone, Copy)]
struct RasView {
    /// RAS dims `[nx, ny, nz]`.
    dims: [usize; 3],
    start: isize,
    step: [isize; 3],
}

impl RasView {
    /// A volume that is RAS already.
    fn identity(dims: [usize; 3]) -> Self {
        Self {
            dims,
            start: 0,
            step: [1, dims[0] as isize, (dims[0] * dims[1]) as isize],
        }
    }

    /// The RAS view of the original grid of `r` (what [`Reorientation::to_ras`] would copy).
    fn of(r: &Reorientation) -> Self {
        let d = r.original_dims();
        let strides = [1, d[0] as isize, (d[0] * d[1]) as isize];
        let mut start = 0isize;
        let mut step = [0isize; 3];
        for (i, m) in r.axes().iter().enumerate() {
            if m.flip {
                start += (d[i] as isize - 1) * strides[i];
                step[m.axis] = -strides[i];
            } else {
                step[m.axis] = strides[i];
            }
        }
        Self {
            dims: r.ras_dims(),
            start,
            step,
        }
    }
}

/// What every slice of one volume shares.
struct SliceCtx<'a> {
    config: &'a PreprocessConfig,
    view: RasView,
    resizer: BilinearResizer,
    /// Nearest-neighbour sampling: data offset (relative to the slice's first voxel) of the
    /// source row of each output row, and of the source column of each output column.
    row_offsets: Vec<isize>,
    col_offsets: Vec<isize>,
    zscore: ZScore,
}

impl<'a> SliceCtx<'a> {
    fn new(config: &'a PreprocessConfig, view: RasView, zscore: ZScore) -> Self {
        let [nx, ny, _] = view.dims;
        let [oh, ow] = config.slice_size;
        Self {
            config,
            view,
            resizer: BilinearResizer::new((ny, nx), (oh, ow)),
            row_offsets: nearest_indices(ny, oh)
                .into_iter()
                .map(|r| (ny - 1 - r) as isize * view.step[1])
                .collect(),
            col_offsets: nearest_indices(nx, ow)
                .into_iter()
                .map(|c| view_column(config.view, nx, c) as isize * view.step[0])
                .collect(),
            zscore,
        }
    }

    /// Data index of RAS `(x = 0, y, z = k)`.
    #[inline]
    fn row_base(&self, y: usize, k: usize) -> isize {
        self.view.start + y as isize * self.view.step[1] + k as isize * self.view.step[2]
    }

    /// Nearest-neighbour resize of a mask (tested through `keep(data index)`) of slice `k`.
    fn sample(&self, k: usize, keep: impl Fn(usize) -> bool) -> Vec<u8> {
        let base = self.row_base(0, k);
        let mut out = Vec::with_capacity(self.row_offsets.len() * self.col_offsets.len());
        for &r in &self.row_offsets {
            out.extend(
                self.col_offsets
                    .iter()
                    .map(|&c| u8::from(keep((base + r + c) as usize))),
            );
        }
        out
    }

    /// The data of RAS row `y` of slice `k`: a contiguous run when RAS `x` is stored
    /// contiguously (forward or backward), as `(first index, reversed)`; `None` otherwise.
    fn row_run(&self, y: usize, k: usize) -> Option<(usize, bool)> {
        let nx = self.view.dims[0] as isize;
        let base = self.row_base(y, k);
        match self.view.step[0] {
            1 => Some((base as usize, false)),
            -1 => Some(((base - (nx - 1)) as usize, true)),
            _ => None,
        }
    }

    /// Gather RAS row `y` of slice `k` (x increasing) into `buf`.
    fn gather_row<T: Copy>(&self, data: &[T], y: usize, k: usize, buf: &mut Vec<T>) {
        let base = self.row_base(y, k);
        let sx = self.view.step[0];
        buf.clear();
        buf.extend((0..self.view.dims[0] as isize).map(|x| data[(base + x * sx) as usize]));
    }

    /// One slice: `data` is the whole image, `mask` the whole brain mask (`None`: non-zero
    /// voxels), `lesion` the whole lesion mask. Z-scoring happens while the rows are laid
    /// out as the oriented slice (the same arithmetic as [`zscore_in_mask`]); masks are
    /// sampled straight from the volume.
    fn slice(
        &self,
        k: usize,
        data: &[f32],
        mask: Option<&[u8]>,
        lesion: Option<&[u8]>,
    ) -> Option<Slice> {
        let c = self.config;
        let [nx, ny, _] = self.view.dims;
        let radiological = c.view == SliceView::Radiological;
        let mut buf_f = Vec::new();
        let mut buf_m = Vec::new();
        if c.drop_empty_slices {
            let any = (0..ny).any(|y| match (self.row_run(y, k), mask) {
                (Some((at, _)), Some(m)) => m[at..at + nx].iter().any(|&b| b != 0),
                (Some((at, _)), None) => data[at..at + nx].iter().any(|&v| nonzero(v)),
                (None, Some(m)) => {
                    self.gather_row(m, y, k, &mut buf_m);
                    buf_m.iter().any(|&b| b != 0)
                }
                (None, None) => {
                    self.gather_row(data, y, k, &mut buf_f);
                    buf_f.iter().any(|&v| nonzero(v))
                }
            });
            if !any {
                return None;
            }
        }
        let mut oriented = vec![0.0f32; nx * ny];
        for (r, row) in oriented.chunks_exact_mut(nx).enumerate() {
            let y = ny - 1 - r;
            match self.row_run(y, k) {
                Some((at, backward)) => {
                    let m = mask.map(|m| &m[at..at + nx]);
                    // Column c shows x = nx-1-c (radiological) or x = c; the run holds x
                    // increasing (forward) or decreasing (backward).
                    self.fill_row(row, &data[at..at + nx], m, backward != radiological);
                }
                None => {
                    self.gather_row(data, y, k, &mut buf_f);
                    let m = mask.map(|m| {
                        self.gather_row(m, y, k, &mut buf_m);
                        buf_m.as_slice()
                    });
                    self.fill_row(row, &buf_f, m, radiological);
                }
            }
        }
        let [oh, ow] = c.slice_size;
        let lesion = match (lesion, c.lesion_resize) {
            (None, _) => vec![0; oh * ow],
            (Some(l), LesionResize::Nearest) => self.sample(k, |i| l[i] != 0),
            (Some(l), LesionResize::BilinearAny) => {
                let mut oriented = vec![0u8; nx * ny];
                for (r, row) in oriented.chunks_exact_mut(nx).enumerate() {
                    self.gather_row(l, ny - 1 - r, k, &mut buf_m);
                    for (col, out) in row.iter_mut().enumerate() {
                        *out = buf_m[view_column(c.view, nx, col)];
                    }
                }
                resize_lesion(&oriented, (ny, nx), (oh, ow), LesionResize::BilinearAny)
            }
        };
        let brain = match mask {
            Some(m) => self.sample(k, |i| m[i] != 0),
            None => self.sample(k, |i| nonzero(data[i])),
        };
        Some(Slice {
            index: k,
            image: self.resizer.resize(&oriented),
            brain,
            lesion,
        })
    }

    /// Z-score one row (`src`, its brain mask `mask` or the non-zero test) into `dst`,
    /// reversed if asked. Branch-free so that it vectorises.
    fn fill_row(&self, dst: &mut [f32], src: &[f32], mask: Option<&[u8]>, reverse: bool) {
        let (mean, inv) = (self.zscore.mean, 1.0 / self.zscore.std);
        let bg = self.config.background.to_bits();
        let z = |v: f32, keep: bool| {
            let zv = ((f64::from(v) - mean) * inv) as f32;
            f32::from_bits(if keep { zv.to_bits() } else { bg })
        };
        match mask {
            Some(m) => {
                for ((d, &v), &b) in dst.iter_mut().zip(src).zip(m) {
                    *d = z(v, b != 0);
                }
            }
            None => {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = z(v, nonzero(v));
                }
            }
        }
        if reverse {
            dst.reverse();
        }
    }
}

/// Plane column (RAS `x`) shown in column `c` of a slice in `view`.
fn view_column(view: SliceView, nx: usize, c: usize) -> usize {
    match view {
        SliceView::Radiological => nx - 1 - c,
        SliceView::Neurological => c,
    }
}

fn resize_lesion(
    mask: &[u8],
    input: (usize, usize),
    output: (usize, usize),
    how: LesionResize,
) -> Vec<u8> {
    match how {
        LesionResize::Nearest => resize_nearest(mask, input, output),
        LesionResize::BilinearAny => {
            let f: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m != 0))).collect();
            crate::resize::resize_bilinear(&f, input, output)
                .iter()
                .map(|&v| u8::from(v > 0.0))
                .collect()
        }
    }
}

/// Both optional masks lie on the image's voxel grid.
fn check_masks_fit(
    image: &Volume<f32>,
    brain: Option<&Volume<u8>>,
    lesion: Option<&Volume<u8>>,
) -> Result<()> {
    if let Some(b) = brain {
        check_same_dims("image", image, "brain mask", b)?;
    }
    if let Some(l) = lesion {
        check_same_dims("image", image, "lesion mask", l)?;
    }
    Ok(())
}

/// The box of [`PreprocessConfig::field_of_view_mm`] on a RAS+ grid: `fov` millimetres in x
/// and y centred on the bounding box of the mask's non-zero voxels, every z slice.
fn brain_field_of_view(mask: &Volume<u8>, fov: [f64; 2]) -> Result<([i64; 3], [usize; 3])> {
    let [nx, ny, nz] = mask.dims;
    let (mut lo, mut hi) = ([usize::MAX; 2], [0usize; 2]);
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                if mask.data[x + nx * (y + ny * z)] != 0 {
                    lo = [lo[0].min(x), lo[1].min(y)];
                    hi = [hi[0].max(x), hi[1].max(y)];
                }
            }
        }
    }
    if lo[0] == usize::MAX {
        return Err(IoError::DegenerateMask {
            what: "field_of_view_mm".into(),
            reason: "the brain mask is empty, so the field of view has no centre".into(),
        });
    }
    let mut origin = [0i64; 3];
    let mut size = [nx, ny, nz];
    for a in 0..2 {
        let spacing = mask.spacing[a];
        if !(spacing.is_finite() && spacing > 0.0) {
            return Err(IoError::InvalidParameter {
                key: "field_of_view_mm".into(),
                value: format!("voxel size {spacing} mm along axis {a}"),
                expected: "a volume with positive voxel sizes".into(),
            });
        }
        let voxels = (fov[a] / spacing).round().clamp(1.0, 1e6) as usize;
        // Twice the centre, so that odd and even boxes centre without rounding drift.
        let centre2 = (lo[a] + hi[a] + 1) as i64;
        origin[a] = (centre2 - voxels as i64).div_euclid(2);
        size[a] = voxels;
    }
    Ok((origin, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::vol;
    use crate::volume::scaled_identity;

    #[test]
    fn config_check_names_keys() {
        let bad = |c: PreprocessConfig, key: &str| {
            let err = c.check().unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        };
        bad(
            PreprocessConfig {
                slice_size: [0, 128],
                ..Default::default()
            },
            "slice_size",
        );
        bad(
            PreprocessConfig {
                crop: Some([1, 0, 1]),
                ..Default::default()
            },
            "crop",
        );
        bad(
            PreprocessConfig {
                background: f32::NAN,
                ..Default::default()
            },
            "background",
        );
        bad(
            PreprocessConfig {
                clip_percentiles: Some([1.0, 101.0]),
                ..Default::default()
            },
            "clip_percentiles",
        );
        let err = toml::from_str::<PreprocessConfig>("backgroud = 1.0").unwrap_err();
        assert!(err.to_string().contains("backgroud"), "{err}");
        let c: PreprocessConfig =
            toml::from_str("view = \"neurological\"\nslice_size = [64, 32]").unwrap();
        assert_eq!(
            (c.view, c.slice_size, c.background),
            (SliceView::Neurological, [64, 32], -3.5)
        );
        assert!(
            Pipeline::new(
                PreprocessConfig {
                    histogram_match: Some(HistMatchConfig::default()),
                    ..Default::default()
                },
                None
            )
            .is_err()
        );
    }

    /// A 12 x 10 x 6 "head": brain in the middle of slices 1..=4, a lesion in slice 2.
    fn subject() -> (Volume<f32>, Volume<u8>) {
        let img = vol([12, 10, 6], |i, j, k| {
            let inside = (2..10).contains(&i) && (2..8).contains(&j) && (1..5).contains(&k);
            if inside {
                50.0 + (i * 3 + j * 5 + k * 7) as f32
            } else {
                0.0
            }
        });
        let lesion = vol([12, 10, 6], |i, j, k| {
            u8::from(k == 2 && (4..6).contains(&i) && (3..5).contains(&j))
        });
        (img, lesion)
    }

    #[test]
    fn pipeline_drops_empty_slices_and_keeps_identity() {
        let (img, lesion) = subject();
        let p = Pipeline::new(
            PreprocessConfig {
                slice_size: [5, 6],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let out = p.run(img.clone(), None, Some(lesion.clone())).unwrap();
        assert_eq!((out.height, out.width), (5, 6));
        assert_eq!(
            out.slices.iter().map(|s| s.index).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(
            out.slices
                .iter()
                .all(|s| s.image.len() == 30 && s.brain.len() == 30)
        );
        assert!(out.slices[1].lesion.contains(&1));
        assert!(out.slices[0].lesion.iter().all(|&l| l == 0));
        // Same result as the composable steps run one by one.
        let mut z = img.clone();
        let m = nonzero_mask(&z);
        zscore_in_mask(&mut z, &m, -3.5).unwrap();
        let (s, hw) = axial_slice(&z, 3, SliceView::Radiological);
        assert_eq!(
            out.slices[2].image,
            crate::resize::resize_bilinear(&s, hw, (5, 6))
        );
        // Keeping empty slices gives all 6.
        let p = Pipeline::new(
            PreprocessConfig {
                drop_empty_slices: false,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let out = p.run(img, None, None).unwrap();
        assert_eq!(out.slices.len(), 6);
        assert!(out.slices[0].image.iter().all(|&v| v == -3.5));
    }

    #[test]
    fn native_grid_equals_reoriented_volume() {
        use crate::reorient_to_ras;
        // Stored axes (P, S, L)-like: voxel i moves along -y, j along +z, k along -x, so RAS
        // x is not contiguous (the gather path) and two axes are flipped.
        let affine = [
            [0.0, 0.0, -1.0, 20.0],
            [-1.0, 0.0, 0.0, 30.0],
            [0.0, 1.0, 0.0, -5.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let dims = [9, 7, 11];
        let mk = |f: &dyn Fn(usize, usize, usize) -> f32| {
            let mut v = vol(dims, f);
            v.affine = affine;
            v
        };
        let img = mk(&|i, j, k| {
            if (1..8).contains(&i) && (2..6).contains(&j) && (1..10).contains(&k) {
                10.0 + (i * 3 + j * 5 + k * 7) as f32
            } else {
                0.0
            }
        });
        let lesion = binarize(&mk(&|i, j, k| {
            f32::from(u8::from(i == 4 && j == 3 && k > 5))
        }));
        let brain = binarize(&mk(&|i, _, k| f32::from(u8::from(i > 2 && k < 9))));
        for view in [SliceView::Radiological, SliceView::Neurological] {
            for lesion_resize in [LesionResize::Nearest, LesionResize::BilinearAny] {
                let p = Pipeline::new(
                    PreprocessConfig {
                        slice_size: [6, 5],
                        view,
                        lesion_resize,
                        ..Default::default()
                    },
                    None,
                )
                .unwrap();
                for brain in [None, Some(brain.clone())] {
                    let (ras, r) = reorient_to_ras(&img).unwrap();
                    let b = brain.as_ref().map(|b| r.to_ras(b).unwrap());
                    let want = p.run(ras, b, Some(r.to_ras(&lesion).unwrap())).unwrap();
                    let got = p
                        .run_native(img.clone(), brain, Some(lesion.clone()))
                        .unwrap();
                    assert!(!want.slices.is_empty());
                    assert_eq!(got, want, "{view:?} {lesion_resize:?}");
                }
            }
        }
    }

    #[test]
    fn field_of_view_centres_the_brain_at_one_scale() {
        // One 8 x 8 mm brain, at 1 mm in a 12 x 10 grid (off centre) and at 2 mm filling a 4 x 4
        // grid: with a 16 mm field of view both give the same slice.
        let mut fine = vol([12, 10, 2], |i, j, _| {
            let inside = (1..9).contains(&i) && (2..10).contains(&j);
            f32::from(u8::from(inside)) * (100.0 + (i % 2) as f32)
        });
        fine.spacing = [1.0, 1.0, 1.0];
        fine.affine = scaled_identity(fine.spacing);
        let mut coarse = vol([4, 4, 2], |i, _, _| 100.0 + (i % 2) as f32);
        coarse.spacing = [2.0, 2.0, 1.0];
        coarse.affine = scaled_identity(coarse.spacing);
        let (origin, size) = brain_field_of_view(&nonzero_mask(&fine), [16.0, 16.0]).unwrap();
        assert_eq!((origin, size), ([-3, -2, 0], [16, 16, 2]));
        let (origin, size) = brain_field_of_view(&nonzero_mask(&coarse), [16.0, 16.0]).unwrap();
        assert_eq!((origin, size), ([-2, -2, 0], [8, 8, 2]));
        let p = Pipeline::new(
            PreprocessConfig {
                field_of_view_mm: Some([16.0, 16.0]),
                slice_size: [8, 8],
                ..Default::default()
            },
            None,
        )
        .unwrap();
        let a = p.run(fine.clone(), None, None).unwrap();
        let b = p.run(coarse, None, None).unwrap();
        assert_eq!(a.slices.len(), 2);
        let brain = |s: &SubjectSlices| s.slices[0].brain.clone();
        assert_eq!(brain(&a), brain(&b), "the brain at one place and scale");
        assert_eq!(brain(&a).iter().filter(|&&v| v == 1).count(), 4 * 4);
        // The native path crops the same way, and an empty brain is named.
        assert_eq!(p.run_native(fine, None, None).unwrap(), a);
        let empty = vol([4, 4, 2], |_, _, _| 0u8);
        let err = brain_field_of_view(&empty, [8.0, 8.0]).unwrap_err();
        assert!(err.to_string().contains("field_of_view_mm"), "{err}");
        let bad = PreprocessConfig {
            field_of_view_mm: Some([0.0, 200.0]),
            ..Default::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .contains("field_of_view_mm")
        );
    }

    #[test]
    fn pipeline_rejects_mismatched_masks() {
        let (img, _) = subject();
        let small = vol([3, 3, 3], |_, _, _| 1u8);
        let p = Pipeline::new(PreprocessConfig::default(), None).unwrap();
        let err = p.run(img, Some(small), None).unwrap_err();
        assert!(err.to_string().contains("brain mask"), "{err}");
    }
}
