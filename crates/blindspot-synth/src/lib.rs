//! blindspot-synth: a synthetic brain MRI phantom with lesion masks and labelled
//! out-of-distribution sets, written as a dataset folder that reads like real data.
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
//! ```
//! use blindspot_synth::{SynthConfig, read_manifest, write_dataset};
//!
//! // Two healthy and two lesional T2 subjects at 8 mm (the quickstart uses 2 mm).
//! let config = SynthConfig::from_toml_str(
//!     r#"
//!     [synth]
//!     seed = 5
//!     dims = [22, 26, 16]
//!     spacing = [8.0, 8.0, 8.0]
//!
//!     [[synth.sets]]
//!     name = "healthy"
//!     count = 2
//!
//!     [[synth.sets]]
//!     name = "lesional"
//!     count = 2
//!     lesions = ["tumour"]
//!     "#,
//! )?;
//! let dir = tempfile::tempdir()?;
//! let summary = write_dataset(&config, dir.path())?;
//! assert_eq!(summary.subjects, 4);
//!
//! // Real NIfTI files with exact masks, listed in the manifest.
//! let rows = read_manifest(&summary.manifest)?;
//! let tumour = rows.iter().find(|r| r.set == "lesional").unwrap();
//! assert!(tumour.lesion_ml > 0.0);
//! let files = tumour.files(dir.path());
//! let image = blindspot_io::read_volume(&files.image)?;
//! let lesion = blindspot_io::read_volume(files.lesion_mask.as_ref().unwrap())?;
//! assert_eq!(image.dims, [22, 26, 16]);
//! assert!(lesion.data.iter().any(|&v| v > 0.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

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
