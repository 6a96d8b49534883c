#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`volume`]: the in-memory [`Volume`] (x-fastest voxel order, an affine, voxel sizes).
//! - [`nifti`]: NIfTI-1 `.nii`/`.nii.gz` reading ([`read_volume`], [`read_nifti`]) and atomic
//!   writing ([`write_f32`], [`write_u8`], [`write_nifti`]), as nibabel reads them.
//! - [`orient`]: closest-canonical RAS+ reorientation and its inverse ([`reorient_to_ras`]),
//!   orientation codes, [`check_same_grid`].
//! - [`preprocess`]: composable steps (crop/pad, brain masks, percentile clipping, z-scoring,
//!   axial slices) and the [`Pipeline`] that turns a subject into model-ready slices;
//!   [`resize`]: Pillow-exact bilinear / nearest slice resizing; [`histmatch`]: landmark
//!   histogram matching.
//! - [`layout`]: dataset layouts from TOML (generic globs or presets) -> [`SubjectFiles`];
//!   [`split`]: seeded subject-level train/val/test splits.
//! - [`cache`]: the memory-mapped, checksummed on-disk slice cache ([`build_cache`],
//!   [`SliceCache`]).
//!
//! The pipeline, [`histmatch`], [`layout`], [`split`] and [`cache`] are the default feature
//! `dataset`; with `default-features = false` the crate is the NIfTI reader and writer,
//! [`orient`] and [`resize`] alone, and depends on flate2 and thiserror only.
//!
//! This crate never depends on burn (an architecture invariant checked by `cargo xtask validate`).
//!
//! # From a NIfTI file to model-ready slices (feature `dataset`)
//!
#![cfg_attr(
    feature = "dataset",
    doc = r#"
```"#
)]
#![cfg_attr(not(feature = "dataset"), doc = "```text")]
// Without `dataset` the page above still names the pipeline's modules, which are absent.
#![cfg_attr(not(feature = "dataset"), allow(rustdoc::broken_intra_doc_links))]
//! use blindspot_io::volume::scaled_identity;
//! use blindspot_io::{Pipeline, PreprocessConfig, Volume, axcodes, read_volume, write_f32};
//!
//! // A 2 mm, 20 x 24 x 6 volume with a box of "brain" in slices 1 to 4, written as .nii.gz.
//! let dims = [20, 24, 6];
//! let data = (0..dims.iter().product::<usize>())
//!     .map(|i| {
//!         let (x, y, z) = (i % 20, i / 20 % 24, i / 480);
//!         let brain = (4..16).contains(&x) && (4..20).contains(&y) && (1..5).contains(&z);
//!         if brain { 100.0 + (x * y) as f32 } else { 0.0 }
//!     })
//!     .collect();
//! let spacing = [2.0, 2.0, 2.0];
//! let vol = Volume { dims, data, affine: scaled_identity(spacing), spacing };
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("scan.nii.gz");
//! write_f32(&path, &vol)?;
//!
//! // Read it back as nibabel would, and cut it into 32 x 32 z-scored axial slices.
//! let back = read_volume(&path)?;
//! assert_eq!(back.data, vol.data);
//! assert_eq!(axcodes(&back.affine)?, ['R', 'A', 'S']);
//! let config = PreprocessConfig { slice_size: [32, 32], ..Default::default() };
//! let slices = Pipeline::new(config, None)?.run_native(back, None, None)?;
//! assert_eq!(slices.slices.len(), 4, "slices without brain are dropped");
//! assert_eq!(slices.slices[0].index, 1);
//! assert_eq!(slices.slices[0].image.len(), 32 * 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod atomic;
#[cfg(feature = "dataset")]
pub mod cache;
pub mod error;
#[cfg(feature = "dataset")]
pub mod histmatch;
#[cfg(feature = "dataset")]
pub mod layout;
pub mod nifti;
pub mod orient;
#[cfg(feature = "dataset")]
pub mod preprocess;
pub mod resize;
#[cfg(feature = "dataset")]
pub mod split;
#[cfg(feature = "dataset")]
mod steps;
#[cfg(all(test, feature = "dataset"))]
mod test_util;
pub mod volume;
#[cfg(feature = "dataset")]
mod voxels;

#[cfg(feature = "dataset")]
pub use cache::{CacheWriter, SliceCache, SlicePosition, build_cache};
pub use error::{IoError, Result};
#[cfg(feature = "dataset")]
pub use layout::{Layout, LayoutConfig, Preset, SplitSelect, SubjectFiles};
pub use nifti::{
    Datatype, NiftiHeader, NiftiImage, NonFinitePolicy, ReadOptions, WriteOptions, XformCode,
    read_header, read_nifti, read_volume, write_f32, write_nifti, write_u8,
};
pub use orient::{Reorientation, axcodes, check_same_grid, reorient_to_ras};
#[cfg(feature = "dataset")]
pub use preprocess::{Pipeline, PreprocessConfig, SliceView, SubjectSlices};
#[cfg(feature = "dataset")]
pub use split::{Part, Split, SplitConfig};
pub use volume::{Affine, Volume};
