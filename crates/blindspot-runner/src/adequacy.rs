//! Model adequacy of a run (docs/method.md, "Model adequacy"): the model-free references (the
//! position-mean image of the training slices and the σ = 1 blur) measured on each healthy
//! validation slice, each member's adequacy from its reconstruction errors on the same slices,
//! and the members' training curves with adequacy against step.
//!
//! `blindspot train` writes the references to `model/adequacy.json` before training, so that
//! `evaluate` (and `evaluate --merge`, which has no cache) can average them over exactly the
//! slices it inferred, and the report can turn every logged validation `rec_err` into an
//! adequacy.

use std::path::Path;

use blindspot_core::{SliceSource, validation_indices};
use blindspot_metrics::{AdequacyReference, PositionMean, PositionMeanImages, ReferenceErrors};
use blindspot_report::{AdequacyResult, MemberAdequacy, TrainingCurve, TrainingPoint};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{RunError, create_dir};
use crate::inference::SetData;
use crate::slices::CacheSlices;

/// File (under the run's `model/`) holding the references.
pub const ADEQUACY_FILE: &str = "adequacy.json";

/// The references of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct References {
    /// Per validation slice, in cache order: the errors of the position-mean image
    /// (`e_mean`) and of the blur (`e_blur`) on that one slice.
    pub validation: Vec<AdequacyReference>,
    /// Over the slices a training validation sees (`train.val_batches`).
    pub during_training: AdequacyReference,
}

impl References {
    /// The references averaged over the validation slices `slices` (cache indices).
    ///
    /// # Errors
    /// [`RunError::Empty`] when a slice is not in the references (they were computed on
    /// another validation set) or `slices` is empty.
    pub fn over(&self, slices: &[usize]) -> Result<AdequacyReference, RunError> {
        let mut sum = (0.0, 0.0);
        for &i in slices {
            let r = self.validation.get(i).ok_or_else(|| RunError::Empty {
                dataset: "validation".into(),
                why: format!(
                    "slice {i} has no adequacy reference in model/{ADEQUACY_FILE} ({} slices): \
                     rerun `blindspot train` to recompute it",
                    self.validation.len()
                ),
            })?;
            sum.0 += r.e_mean;
            sum.1 += r.e_blur;
        }
        if slices.is_empty() {
            return Err(RunError::Empty {
                dataset: "validation".into(),
                why: "no inferred slice to measure adequacy on".into(),
            });
        }
        let n = slices.len() as f64;
        Ok(AdequacyReference {
            e_mean: sum.0 / n,
            e_blur: sum.1 / n,
            slices: slices.len() as u64,
        })
    }
}

/// The mean training image at each slice position.
///
/// # Errors
/// [`RunError::Empty`] when a slice cannot be read or the set is empty.
pub fn position_means(train: &CacheSlices) -> Result<PositionMeanImages, RunError> {
    let [h, w] = train.shape();
    let mut means = PositionMean::new([h, w]);
    let (mut image, mut mask) = (vec![0.0f32; h * w], vec![0.0f32; h * w]);
    for i in 0..train.len() {
        read(train, "train", i, &mut image, &mut mask)?;
        means.add(train.cache().identity(i).index, &image, &mask)?;
    }
    Ok(means.finish()?)
}

fn read(
    set: &CacheSlices,
    name: &str,
    i: usize,
    image: &mut [f32],
    mask: &mut [f32],
) -> Result<(), RunError> {
    set.read(i, image, mask).map_err(|why| RunError::Empty {
        dataset: name.to_owned(),
        why,
    })
}

/// The references of `config`'s run on its validation set.
///
/// # Errors
/// [`RunError::Empty`] for an unreadable slice; [`RunError::Metrics`] when a set is empty.
pub fn references(
    config: &RunConfig,
    train: &CacheSlices,
    val: &CacheSlices,
) -> Result<References, RunError> {
    let means = position_means(train)?;
    let [h, w] = val.shape();
    let (mut image, mut mask) = (vec![0.0f32; h * w], vec![0.0f32; h * w]);
    let seen = validation_indices(val.len(), config.train.batch_size, config.train.val_batches);
    let mut subset = ReferenceErrors::new();
    let mut next = seen.iter().peekable();
    let mut validation = Vec::with_capacity(val.len());
    for i in 0..val.len() {
        read(val, "validation", i, &mut image, &mut mask)?;
        let position = val.cache().identity(i).index;
        let mut one = ReferenceErrors::new();
        one.add(&means, position, &image, &mask)?;
        validation.push(one.finish()?);
        while next.peek() == Some(&&i) {
            subset.merge(&one);
            next.next();
        }
    }
    Ok(References {
        validation,
        during_training: subset.finish()?,
    })
}

/// Computes the references and writes them to `dir/model/adequacy.json` (atomically).
///
/// # Errors
/// As [`references`]; writing the file.
pub fn write_references(
    config: &RunConfig,
    dir: &Path,
    train: &CacheSlices,
    val: &CacheSlices,
) -> Result<References, RunError> {
    let refs = references(config, train, val)?;
    let model_dir = dir.join("model");
    create_dir(&model_dir)?;
    let path = model_dir.join(ADEQUACY_FILE);
    let text = serde_json::to_vec_pretty(&refs).map_err(|e| RunError::Io {
        path: path.clone(),
        source: e.into(),
    })?;
    blindspot_report::write_atomic(&path, &text)?;
    Ok(refs)
}

/// Reads `dir/model/adequacy.json`.
///
/// # Errors
/// [`RunError::Io`] naming the file when it is missing or not the references of this version.
pub fn read_references(dir: &Path) -> Result<References, RunError> {
    let path = dir.join("model").join(ADEQUACY_FILE);
    let text = std::fs::read(&path).map_err(|source| RunError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&text).map_err(|e| RunError::Io {
        path,
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

/// Each member's adequacy on the inferred validation slices `val`, against `criterion`;
/// `None` when the model reports no reconstruction error (a flow), or, with a warning on
/// stderr, when the references span no scale (`E_mean <= E_blur`: slices too small or smooth).
///
/// # Errors
/// [`RunError::Empty`] when the references do not cover the slices.
pub(crate) fn member_adequacy(
    refs: &References,
    val: &SetData,
    criterion: f64,
) -> Result<Option<AdequacyResult>, RunError> {
    let members = val.member_rec_err.first().map_or(0, Vec::len);
    if members == 0 || val.member_rec_err.iter().any(|m| m.len() != members) {
        return Ok(None);
    }
    let reference = refs.over(&val.record_slices)?;
    if !reference.has_scale() {
        // tiny or very smooth slices: the blur is no better than the mean image, so the scale
        // from "ignores its input" to "faithful" does not exist; say so, and go on
        eprintln!(
            "warning: model adequacy cannot be measured on these validation slices: the mean \
             training image scores {:.4} and a 1-pixel blur of the input {:.4}, so there is no \
             scale between them (slices too small or too smooth); the findings are reported \
             without the adequacy check",
            reference.e_mean, reference.e_blur
        );
        return Ok(None);
    }
    let n = val.member_rec_err.len() as f64;
    let members = (0..members)
        .map(|m| {
            let e_model = val.member_rec_err.iter().map(|r| r[m]).sum::<f64>() / n;
            Ok(MemberAdequacy {
                member: m,
                e_model,
                adequacy: reference.adequacy(e_model)?.score,
            })
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    Ok(Some(AdequacyResult {
        e_mean: reference.e_mean,
        e_blur: reference.e_blur,
        slices: reference.slices,
        criterion,
        members,
    }))
}

/// The training log of every member under `dir/model`, with the adequacy of each validation
/// against the references of the validation slices training saw (members without a log are
/// left out).
///
/// # Errors
/// [`RunError::Model`] for an unreadable log.
pub(crate) fn training_curves(
    dir: &Path,
    members: usize,
    refs: Option<&References>,
) -> Result<Vec<TrainingCurve>, RunError> {
    let mut curves = Vec::new();
    for m in 0..members {
        let run = dir.join("model").join(format!("member-{m}"));
        if !run.join("log.jsonl").is_file() {
            continue;
        }
        let points = blindspot_core::read_log(&run)?
            .into_iter()
            .filter_map(|l| {
                let term = |terms: &[(String, f64)], name: &str| {
                    terms.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
                };
                let val_rec_err = term(&l.val_terms, blindspot_core::ModelStat::RecErr.name());
                Some(TrainingPoint {
                    step: l.step,
                    loss: l.loss?,
                    beta: term(&l.terms, "beta"),
                    val_loss: l.val_loss,
                    val_rec_err,
                    adequacy: refs
                        .zip(val_rec_err)
                        .and_then(|(r, e)| r.during_training.adequacy(e).ok().map(|a| a.score)),
                })
            })
            .collect();
        curves.push(TrainingCurve { member: m, points });
    }
    Ok(curves)
}
