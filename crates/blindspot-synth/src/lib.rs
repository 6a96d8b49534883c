#![doc = include_str!("../README.md")]
//!
//! # Modules
//!
//! - [`config`]: the `[synth]` TOML section ([`SynthConfig`], [`SynthConfig::quickstart`]).
//! - [`generate_subject`]: one [`Subject`] (image, brain mask, lesion mask, tissue labels)
//!   from a [`SubjectSpec`], deterministic in its seed.
//! - [`write_dataset`]: every subject of a config, in parallel, as `.nii.gz` files through
//!   blindspot-io plus `manifest.csv` (see [`dataset`]).
//! - [`ThresholdBaseline`]: the model-free lesion detector used as the report's baseline.
//!
//! Pipeline of one subject: anatomy (signed distances with partial volume) -> lesions ->
//! tissue means of the weighting -> acquisition of the site (blur, slice thickness, bias
//! field, gamma, scale, Rician noise) -> skull-stripping -> OOD transform.
//!
//! This crate never depends on burn (an architecture invariant checked by `cargo xtask validate`).
//!

mod anatomy;
pub mod baseline;
pub mod config;
pub mod contrast;
pub mod dataset;
pub mod error;
mod field;
mod lesion;
mod ood;
mod scan;
pub mod site;
mod subject;

pub use baseline::{ThresholdBaseline, dice};
pub use config::{
    BlobConfig, Contrast, LesionConfig, LesionKind, OodTransform, SetConfig, Split, SynthConfig,
};
pub use contrast::{Tissue, nominal_means};
pub use dataset::{
    DATASET_DIRS, DatasetSummary, MANIFEST_HEADER, ManifestRow, ood_label, plan, read_manifest,
    subject_seed, write_dataset,
};
pub use error::{Result, SynthError};
pub use scan::Subject;
pub use site::SiteParams;
pub use subject::{SubjectSpec, generate_subject, ras_affine};
