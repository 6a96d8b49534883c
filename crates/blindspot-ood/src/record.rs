//! Per-slice records: a slice's identity, ground truth and statistic values (the identities
//! and statistics themselves are in [`crate::ids`], re-exported here).
//!
//! Nothing here knows about tensors: a model crate turns its outputs into [`SliceRecord`]s
//! (through [`crate::slice::SliceInput`] or by filling the values itself).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{OodError, Result};
pub use crate::ids::{Direction, ScanId, SliceId, Statistic};

/// One slice's identity, ground truth and statistic values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SliceRecord {
    /// Which slice.
    pub id: SliceId,
    /// Brain-mask pixels (0 = empty slice; empty slices are left out of fitting and evaluation).
    pub mask_pixels: u32,
    /// Ground-truth lesion pixels (0 for healthy data and for data without segmentations).
    pub lesion_pixels: u32,
    /// Statistic values; a statistic that could not be computed (for example the entropy of a
    /// near-empty slice) is absent.
    pub values: BTreeMap<Statistic, f64>,
    /// The posterior mean in latent space, for [`crate::mahalanobis`]; `None` when the model
    /// has no latent space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_mean: Option<Vec<f32>>,
}

impl SliceRecord {
    /// A record with no statistic values yet.
    pub fn new(id: SliceId, mask_pixels: u32, lesion_pixels: u32) -> Self {
        Self {
            id,
            mask_pixels,
            lesion_pixels,
            values: BTreeMap::new(),
            latent_mean: None,
        }
    }

    /// The value of `statistic`.
    ///
    /// # Errors
    /// [`OodError::MissingStatistic`] when the record has none.
    pub fn get(&self, statistic: Statistic) -> Result<f64> {
        self.values
            .get(&statistic)
            .copied()
            .ok_or_else(|| OodError::MissingStatistic {
                id: self.id.clone(),
                statistic,
            })
    }

    /// The value of `statistic` oriented so that higher is more anomalous.
    ///
    /// # Errors
    /// [`OodError::MissingStatistic`] when the record has none.
    pub fn oriented(&self, statistic: Statistic) -> Result<f64> {
        Ok(statistic.direction().orient(self.get(statistic)?))
    }

    /// Set (or replace) the value of `statistic`.
    pub fn set(&mut self, statistic: Statistic, value: f64) {
        self.values.insert(statistic, value);
    }

    /// Whether the slice holds brain.
    pub fn is_empty(&self) -> bool {
        self.mask_pixels == 0
    }

    /// Whether the slice counts as lesional: more than `min_pixels` lesion pixels (the paper
    /// uses 50 at HEAD, 20 before; see [`LesionRule`]).
    pub fn is_lesional(&self, rule: LesionRule) -> bool {
        self.lesion_pixels > rule.min_pixels
    }
}

/// When a slice counts as lesional: strictly more than `min_pixels` ground-truth lesion pixels
/// (counted at the model resolution, 128x128 in the paper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LesionRule {
    /// The pixel count a lesional slice must exceed.
    pub min_pixels: u32,
}

impl Default for LesionRule {
    /// The paper's HEAD value, 50 pixels.
    fn default() -> Self {
        Self { min_pixels: 50 }
    }
}

/// Insert per-slice scores into records, matching by identity.
///
/// # Errors
/// [`OodError::MissingStatistic`] when `scores` has no entry for a record.
pub fn insert_scores(
    records: &mut [SliceRecord],
    statistic: Statistic,
    scores: &BTreeMap<SliceId, f64>,
) -> Result<()> {
    for r in records.iter_mut() {
        let v = scores
            .get(&r.id)
            .ok_or_else(|| OodError::MissingStatistic {
                id: r.id.clone(),
                statistic,
            })?;
        r.set(statistic, *v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_json_with_named_statistics() {
        let mut r = SliceRecord::new(
            SliceId::new("brats17-t2", "Brats17_2013_2_1", 60),
            4000,
            120,
        );
        r.set(Statistic::RecErr, 0.25);
        r.set(Statistic::EntropyClean, 0.5);
        r.latent_mean = Some(vec![0.5, -1.0]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"rec_err\":0.25"), "{json}");
        let back: SliceRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        assert!(r.is_lesional(LesionRule::default()));
        assert!(!r.is_lesional(LesionRule { min_pixels: 120 }));
        assert_eq!(r.oriented(Statistic::EntropyClean).unwrap(), -0.5);
        assert!(matches!(
            r.get(Statistic::Kl),
            Err(OodError::MissingStatistic {
                statistic: Statistic::Kl,
                ..
            })
        ));
        for s in Statistic::ALL {
            let name = serde_json::to_string(&s).unwrap();
            assert_eq!(name, format!("\"{}\"", s.name()));
        }
    }
}
