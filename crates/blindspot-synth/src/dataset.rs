//! Planning subjects from a config, and writing the dataset folder.
//!
//! ```text
//! <out>/images/<subject>.nii.gz        float32 image
//! <out>/brain_masks/<subject>.nii.gz   uint8 0/1 (the head for `skull` subjects: Subject::shipped_mask)
//! <out>/lesion_masks/<subject>.nii.gz  uint8 0/1 (empty when healthy)
//! <out>/manifest.csv                   one row per subject (see MANIFEST_HEADER)
//! <out>/layout.toml                    the blindspot-io generic layout of this folder
//! <out>/synth.toml                     the resolved [synth] config that produced it
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::config::{OodTransform, SynthConfig};
use crate::error::{Result, SynthError};
use crate::field::{fnv1a, splitmix64};
use crate::subject::{SubjectSpec, generate_subject};

/// The manifest's columns, in order (the fields of [`ManifestRow`]).
pub const MANIFEST_HEADER: &str =
    "subject,split,set,site,contrast,lesion_kind,lesion_ml,ood_kind,ood_transform,seed";

/// The folders of a dataset written here: images, brain masks, lesion masks (`<id>.nii.gz` in
/// each), as [`LAYOUT_TOML`] says.
pub const DATASET_DIRS: [&str; 3] = ["images", "brain_masks", "lesion_masks"];

/// One subject's row of `manifest.csv`, written and read through serde and the `csv` crate.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ManifestRow {
    /// The subject id (its files are `<dir>/<subject>.nii.gz`).
    pub subject: String,
    /// `train`, `val` or `test`.
    pub split: String,
    /// The set of the config it belongs to.
    pub set: String,
    /// The scanner site.
    pub site: String,
    /// The MR contrast.
    pub contrast: String,
    /// The lesion kind (`none` for a healthy subject).
    pub lesion_kind: String,
    /// The lesion volume in ml (written with 4 decimals).
    #[serde(serialize_with = "four_decimals")]
    pub lesion_ml: f64,
    /// The OOD label of the subject (`none` in distribution).
    pub ood_kind: String,
    /// The OOD transform applied (`none` for none).
    pub ood_transform: String,
    /// The subject's seed.
    pub seed: u64,
}

fn four_decimals<S: serde::Serializer>(v: &f64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:.4}"))
}

impl ManifestRow {
    /// The subject's files under the dataset folder `data_dir`.
    pub fn files(&self, data_dir: &Path) -> blindspot_io::SubjectFiles {
        let file = format!("{}.nii.gz", self.subject);
        let [images, brain, lesion] = DATASET_DIRS.map(|d| data_dir.join(d).join(&file));
        blindspot_io::SubjectFiles {
            id: self.subject.clone(),
            image: images,
            brain_mask: Some(brain),
            lesion_mask: Some(lesion),
        }
    }
}

/// Reads `manifest.csv` of a dataset folder written by [`write_dataset`].
///
/// # Errors
/// [`SynthError::Io`] when it cannot be read; [`SynthError::Manifest`] for a row that does not
/// fit [`ManifestRow`] (naming the file and the row).
pub fn read_manifest(path: &Path) -> Result<Vec<ManifestRow>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| manifest_error(path, e))?;
    reader
        .deserialize()
        .collect::<std::result::Result<Vec<ManifestRow>, _>>()
        .map_err(|e| manifest_error(path, e))
}

fn manifest_error(path: &Path, e: csv::Error) -> SynthError {
    if e.is_io_error() {
        if let csv::ErrorKind::Io(source) = e.into_kind() {
            return SynthError::Io {
                path: path.to_owned(),
                source,
            };
        }
        unreachable!("is_io_error said so");
    }
    // name the line and the column, not the field's number
    let why = match e.kind() {
        csv::ErrorKind::Deserialize { pos, err } => {
            let column = err
                .field()
                .and_then(|f| MANIFEST_HEADER.split(',').nth(f as usize))
                .unwrap_or("?");
            let line = pos.as_ref().map_or(0, csv::Position::line);
            format!("line {line}, column `{column}`: {}", err.kind())
        }
        _ => e.to_string(),
    };
    SynthError::Manifest {
        path: path.to_owned(),
        why,
    }
}

/// The blindspot-io layout of a dataset folder written here.
pub const LAYOUT_TOML: &str = "image = \"images/*.nii.gz\"\n\
id_regex = 'images/(?P<id>[^/]+)\\.nii\\.gz$'\n\
brain_mask = \"brain_masks/{id}.nii.gz\"\n\
lesion_mask = \"lesion_masks/{id}.nii.gz\"\n";

/// The seed of subject `index` of set `set` under master seed `seed`.
pub fn subject_seed(seed: u64, set: &str, index: usize) -> u64 {
    splitmix64(splitmix64(seed) ^ fnv1a(set) ^ splitmix64(index as u64 ^ 0x5EED))
}

/// Every subject of the config, set by set, in manifest order.
///
/// Lesional subjects are the first `round(lesion_rate * count)` of a set; their kinds cycle
/// through the set's `lesions` list.
///
/// # Errors
/// [`SynthError::Invalid`] when the config does not validate.
pub fn plan(config: &SynthConfig) -> Result<Vec<SubjectSpec>> {
    config.validate()?;
    let mut out = Vec::new();
    for set in &config.sets {
        let n_lesional = (set.effective_lesion_rate() * set.count as f64).round() as usize;
        for i in 0..set.count {
            let lesion = if i < n_lesional {
                set.lesions[i % set.lesions.len()]
            } else {
                crate::LesionKind::None
            };
            out.push(SubjectSpec {
                id: format!("{}-{i:03}", set.name),
                set: set.name.clone(),
                split: set.split,
                seed: subject_seed(config.seed, &set.name, i),
                site: set.site.clone(),
                contrast: set.contrast,
                lesion,
                ood: set.ood,
            });
        }
    }
    Ok(out)
}

/// The OOD label of a subject against the config's reference site and weighting: `none`, or
/// `+`-joined parts among `site`, `modality` and the transform's name (`flip_lr`, `skull`, ...).
pub fn ood_label(config: &SynthConfig, spec: &SubjectSpec) -> String {
    let mut parts = Vec::new();
    if spec.ood == OodTransform::Noise {
        return "noise".to_owned();
    }
    if spec.site != config.reference_site {
        parts.push("site");
    }
    if spec.contrast != config.reference_contrast {
        parts.push("modality");
    }
    if spec.ood != OodTransform::None {
        parts.push(spec.ood.name());
    }
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join("+")
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetSummary {
    /// Number of subjects.
    pub subjects: usize,
    /// Total bytes of the files written (images, masks, manifest, configs).
    pub bytes: u64,
    /// The manifest's path.
    pub manifest: PathBuf,
}

/// Generate every subject of `config` (in parallel, on rayon's pool) and write the dataset
/// folder `out` (created if missing). Every file is written atomically; the same config
/// gives the same bytes whatever the thread count.
///
/// # Errors
/// [`SynthError::Invalid`] for a config that does not validate; [`SynthError::StaleOutput`]
/// when `out/images` holds a subject this config would not write (from another config);
/// [`SynthError::Io`] / [`SynthError::Volume`] when a file cannot be written.
pub fn write_dataset(config: &SynthConfig, out: &Path) -> Result<DatasetSummary> {
    let specs = plan(config)?;
    let dirs = DATASET_DIRS.map(|d| out.join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).map_err(|source| SynthError::Io {
            path: d.clone(),
            source,
        })?;
    }
    check_no_stale(&dirs[0], &specs)?;
    let rows: Vec<Result<(ManifestRow, u64)>> = specs
        .par_iter()
        .map(|spec| {
            let s = generate_subject(config, spec)?;
            let file = format!("{}.nii.gz", spec.id);
            let paths = dirs.clone().map(|d| d.join(&file));
            blindspot_io::write_f32(&paths[0], &s.image)?;
            blindspot_io::write_u8(&paths[1], &s.shipped_mask(spec.ood))?;
            blindspot_io::write_u8(&paths[2], &s.lesion_mask)?;
            let mut bytes = 0;
            for p in &paths {
                bytes += std::fs::metadata(p)
                    .map_err(|source| SynthError::Io {
                        path: p.clone(),
                        source,
                    })?
                    .len();
            }
            let row = ManifestRow {
                subject: spec.id.clone(),
                split: spec.split.name().to_owned(),
                set: spec.set.clone(),
                site: spec.site.to_string(),
                contrast: spec.contrast.name().to_owned(),
                lesion_kind: spec.lesion.name().to_owned(),
                lesion_ml: s.lesion_ml,
                ood_kind: ood_label(config, spec),
                ood_transform: spec.ood.name().to_owned(),
                seed: spec.seed,
            };
            Ok((row, bytes))
        })
        .collect();
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let mut bytes = 0;
    let csv_error = |e: csv::Error| SynthError::Manifest {
        path: out.join("manifest.csv"),
        why: e.to_string(),
    };
    for r in rows {
        let (row, b) = r?;
        writer.serialize(row).map_err(csv_error)?;
        bytes += b;
    }
    let manifest = writer
        .into_inner()
        .map_err(|e| csv_error(e.into_error().into()))?;
    let manifest = String::from_utf8(manifest).expect("the csv writer writes UTF-8 from strings");
    let manifest_path = out.join("manifest.csv");
    bytes += write_text_atomic(&manifest_path, &manifest)?;
    bytes += write_text_atomic(&out.join("layout.toml"), LAYOUT_TOML)?;
    bytes += write_text_atomic(&out.join("synth.toml"), &config.to_toml_string())?;
    Ok(DatasetSummary {
        subjects: specs.len(),
        bytes,
        manifest: manifest_path,
    })
}

/// Refuse a folder whose `images/` holds subjects this plan does not write.
fn check_no_stale(images: &Path, specs: &[SubjectSpec]) -> Result<()> {
    let entries = std::fs::read_dir(images).map_err(|source| SynthError::Io {
        path: images.to_owned(),
        source,
    })?;
    for entry in entries {
        let entry = entry.map_err(|source| SynthError::Io {
            path: images.to_owned(),
            source,
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".nii.gz")
            && !specs.iter().any(|s| s.id == id)
        {
            return Err(SynthError::StaleOutput { path: entry.path() });
        }
    }
    Ok(())
}

/// Write `text` to `path` through the workspace's atomic writer (a temporary file in the same
/// folder, synced, then renamed).
fn write_text_atomic(path: &Path, text: &str) -> Result<u64> {
    blindspot_io::atomic::write_atomic(path, |w| w.write_all(text.as_bytes())).map_err(
        |source| SynthError::Io {
            path: path.to_owned(),
            source,
        },
    )?;
    Ok(text.len() as u64)
}
