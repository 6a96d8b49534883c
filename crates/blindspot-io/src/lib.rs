//! blindspot-io: brain MRI volumes in and out, and the preprocessing that turns them into
//! model-ready 2-D slices.
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
//! This crate never depends on burn (an architecture invariant checked by `cargo xtask validate`).

pub mod atomic;
pub mod cache;
pub mod error;
pub mod histmatch;
pub mod layout;
pub mod nifti;
pub mod orient;
pub mod preprocess;
pub mod resize;
pub mod split;
mod steps;
#[cfg(test)]
mod test_util;
pub mod volume;
mod voxels;

pub use cache::{CacheWriter, SliceCache, build_cache};
pub use error::{IoError, Result};
pub use layout::{Layout, LayoutConfig, Preset, SplitSelect, SubjectFiles};
pub use nifti::{
    Datatype, NiftiHeader, NiftiImage, NonFinitePolicy, ReadOptions, WriteOptions, XformCode,
    read_header, read_nifti, read_volume, write_f32, write_nifti, write_u8,
};
pub use orient::{Reorientation, axcodes, check_same_grid, reorient_to_ras};
pub use preprocess::{Pipeline, PreprocessConfig, SliceView, SubjectSlices};
pub use split::{Part, Split, SplitConfig};
pub use volume::{Affine, Volume};
