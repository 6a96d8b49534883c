//! The plain data this crate speaks: slice identities, the statistics, and per-slice records.
//!
//! Nothing here knows about tensors: a model crate turns its outputs into [`SliceRecord`]s
//! (through [`crate::slice::SliceInput`] or by filling the values itself).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{OodError, Result};

/// Identity of one 2-D slice: which dataset, which subject or volume, which slice index.
///
/// Every alignment in this crate (ensemble members, score tables) is by identity, never by
/// position in a loader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SliceId {
    /// Dataset name, for example `camcan-t2` or `brats17-t2`.
    pub dataset: String,
    /// Subject or volume identifier within the dataset.
    pub volume: String,
    /// Axial slice index within the volume.
    pub slice: u32,
}

impl SliceId {
    /// A new identity.
    pub fn new(dataset: impl Into<String>, volume: impl Into<String>, slice: u32) -> Self {
        Self {
            dataset: dataset.into(),
            volume: volume.into(),
            slice,
        }
    }

    /// The scan this slice belongs to.
    pub fn scan(&self) -> ScanId {
        ScanId {
            dataset: self.dataset.clone(),
            volume: self.volume.clone(),
        }
    }
}

impl fmt::Display for SliceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} slice {}", self.dataset, self.volume, self.slice)
    }
}

/// Identity of one scan (volume): the unit the gate decides on and the bootstrap resamples.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ScanId {
    /// Dataset name.
    pub dataset: String,
    /// Subject or volume identifier within the dataset.
    pub volume: String,
}

impl fmt::Display for ScanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.dataset, self.volume)
    }
}

/// Which values of a statistic point to out-of-distribution input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger values are more anomalous.
    HigherIsOod,
    /// Smaller values are more anomalous.
    LowerIsOod,
}

impl Direction {
    /// The value oriented so that higher always means more anomalous.
    pub fn orient(self, value: f64) -> f64 {
        match self {
            Direction::HigherIsOod => value,
            Direction::LowerIsOod => -value,
        }
    }
}

/// The per-slice statistics. Each has one documented [`Direction`], used by every evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Statistic {
    /// Mean absolute reconstruction error inside the brain mask (`rec_err`). Higher is OOD.
    RecErr,
    /// KL divergence of the posterior from the prior, averaged over latent dimensions
    /// (`kl_div`). Higher is OOD.
    Kl,
    /// The negative ELBO in nats, a proper upper bound on `-log p(x)` (the model's own, or
    /// [`crate::slice::neg_elbo_laplace`]). Higher is OOD.
    NegElbo,
    /// The paper's coded "ELBO", `rec_err - kl_div` (docs/method.md 4.1, a [BUG?] kept as a
    /// named variant for faithful reproduction). Higher is OOD, as the paper used it.
    CodedElbo,
    /// Residual entropy `H_l1` exactly as the paper codes it (docs/method.md 4.4). Lower is
    /// OOD: a lesion concentrates the residual (low entropy).
    Entropy,
    /// The cleaner residual entropy of [`crate::entropy::residual_entropy_clean`]. Lower is OOD.
    EntropyClean,
    /// The model's log-likelihood `log p(x)` (a flow's exact one). Lower is OOD.
    LogLikelihood,
    /// Typicality distance `|-log p(x) - H_hat|` of [`crate::typicality`]. Higher is OOD.
    Typicality,
    /// Mahalanobis distance of the latent mean from the healthy latent distribution. Higher is OOD.
    Mahalanobis,
    /// The paper's ensemble WAIC: mean minus population variance over members of the coded
    /// ELBO (docs/method.md 4.2). Higher is OOD, as the paper used it.
    Waic,
    /// WAIC of Choi et al. on the log-likelihood bound, negated: `mean + var` over members of
    /// [`Statistic::NegElbo`]. Higher is OOD.
    WaicNegElbo,
    /// DoSE as published (Morningstar et al. 2021): the sum of per-statistic KDE
    /// log-densities. Lower is OOD.
    Dose,
    /// The paper's DoSE variant: the sum of raw KDE densities (docs/method.md 4.3). Lower is OOD.
    DoseDensitySum,
}

impl Statistic {
    /// Every statistic, in a fixed order.
    pub const ALL: [Statistic; 13] = [
        Statistic::RecErr,
        Statistic::Kl,
        Statistic::NegElbo,
        Statistic::CodedElbo,
        Statistic::Entropy,
        Statistic::EntropyClean,
        Statistic::LogLikelihood,
        Statistic::Typicality,
        Statistic::Mahalanobis,
        Statistic::Waic,
        Statistic::WaicNegElbo,
        Statistic::Dose,
        Statistic::DoseDensitySum,
    ];

    /// The short name used in tables, JSON and configs.
    pub fn name(self) -> &'static str {
        match self {
            Statistic::RecErr => "rec_err",
            Statistic::Kl => "kl",
            Statistic::NegElbo => "neg_elbo",
            Statistic::CodedElbo => "coded_elbo",
            Statistic::Entropy => "entropy",
            Statistic::EntropyClean => "entropy_clean",
            Statistic::LogLikelihood => "log_likelihood",
            Statistic::Typicality => "typicality",
            Statistic::Mahalanobis => "mahalanobis",
            Statistic::Waic => "waic",
            Statistic::WaicNegElbo => "waic_neg_elbo",
            Statistic::Dose => "dose",
            Statistic::DoseDensitySum => "dose_density_sum",
        }
    }

    /// Which values point to anomalous input (see each variant).
    pub fn direction(self) -> Direction {
        match self {
            Statistic::RecErr
            | Statistic::Kl
            | Statistic::NegElbo
            | Statistic::CodedElbo
            | Statistic::Typicality
            | Statistic::Mahalanobis
            | Statistic::Waic
            | Statistic::WaicNegElbo => Direction::HigherIsOod,
            Statistic::Entropy
            | Statistic::EntropyClean
            | Statistic::LogLikelihood
            | Statistic::Dose
            | Statistic::DoseDensitySum => Direction::LowerIsOod,
        }
    }
}

impl fmt::Display for Statistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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
