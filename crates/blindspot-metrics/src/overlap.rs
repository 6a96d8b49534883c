//! Dice and IoU of binary maps, per volume and pooled, and slice-level labels.
//!
//! Two ways to summarise a dataset, both reported and named as such:
//! - **per-volume**: Dice of each volume, then mean and standard deviation over volumes
//!   (what the paper reports, when a batch is one BraTS volume);
//! - **pooled**: one Dice over the counts of every pixel of every volume.
//!
//! Both maps empty makes Dice and IoU 0/0: [`MetricsError::EmptyMaps`] for one map, and such
//! volumes are left out of the per-volume mean (and counted) in [`OverlapSummary`].

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::check_len;

/// Confusion counts of a binary prediction against a binary ground truth. Mergeable: add them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverlapCounts {
    /// Predicted and true.
    pub tp: u64,
    /// Predicted, not true.
    pub fp: u64,
    /// True, not predicted.
    pub fn_: u64,
    /// Neither.
    pub tn: u64,
}

impl std::ops::Add for OverlapCounts {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            tp: self.tp + o.tp,
            fp: self.fp + o.fp,
            fn_: self.fn_ + o.fn_,
            tn: self.tn + o.tn,
        }
    }
}

impl std::ops::AddAssign for OverlapCounts {
    fn add_assign(&mut self, o: Self) {
        *self = *self + o;
    }
}

impl std::iter::Sum for OverlapCounts {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}

impl OverlapCounts {
    /// Counts `pred` against `truth`.
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`].
    pub fn from_maps(pred: &[bool], truth: &[bool]) -> Result<Self> {
        check_len("truth", truth.len(), pred.len())?;
        let mut c = Self::default();
        for (&p, &t) in pred.iter().zip(truth) {
            match (p, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        Ok(c)
    }

    /// Counts the prediction `score > threshold` (the paper's rule) against `truth`, over the
    /// elements where `mask` is true (pass `None` for all).
    ///
    /// # Errors
    /// Length mismatches; [`MetricsError::NanScore`] for a NaN score inside the mask.
    pub fn from_scores(
        scores: &[f64],
        truth: &[bool],
        mask: Option<&[bool]>,
        threshold: f64,
    ) -> Result<Self> {
        check_len("truth", truth.len(), scores.len())?;
        if let Some(m) = mask {
            check_len("mask", m.len(), scores.len())?;
        }
        let mut c = Self::default();
        for (i, (&s, &t)) in scores.iter().zip(truth).enumerate() {
            if mask.is_some_and(|m| !m[i]) {
                continue;
            }
            if s.is_nan() {
                return Err(MetricsError::NanScore { index: i });
            }
            match (s > threshold, t) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
        }
        Ok(c)
    }

    /// Dice = 2 TP / (2 TP + FP + FN).
    ///
    /// # Errors
    /// [`MetricsError::EmptyMaps`] when prediction and truth are both empty.
    pub fn dice(&self) -> Result<f64> {
        let den = 2 * self.tp + self.fp + self.fn_;
        if den == 0 {
            return Err(MetricsError::EmptyMaps { metric: "dice" });
        }
        Ok(2.0 * self.tp as f64 / den as f64)
    }

    /// IoU (Jaccard) = TP / (TP + FP + FN).
    ///
    /// # Errors
    /// [`MetricsError::EmptyMaps`] when prediction and truth are both empty.
    pub fn iou(&self) -> Result<f64> {
        let den = self.tp + self.fp + self.fn_;
        if den == 0 {
            return Err(MetricsError::EmptyMaps { metric: "iou" });
        }
        Ok(self.tp as f64 / den as f64)
    }
}

/// Dice of two binary maps.
///
/// # Errors
/// Length mismatch; [`MetricsError::EmptyMaps`] when both are empty.
pub fn dice(pred: &[bool], truth: &[bool]) -> Result<f64> {
    OverlapCounts::from_maps(pred, truth)?.dice()
}

/// IoU of two binary maps.
///
/// # Errors
/// Length mismatch; [`MetricsError::EmptyMaps`] when both are empty.
pub fn iou(pred: &[bool], truth: &[bool]) -> Result<f64> {
    OverlapCounts::from_maps(pred, truth)?.iou()
}

/// Dice of the prediction `score > threshold` against `truth`.
///
/// # Errors
/// Length mismatch, NaN, both maps empty.
pub fn dice_at_threshold(scores: &[f64], truth: &[bool], threshold: f64) -> Result<f64> {
    OverlapCounts::from_scores(scores, truth, None, threshold)?.dice()
}

/// Per-volume and pooled overlap of a set of volumes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlapSummary {
    /// Dice of each volume; `None` where both maps are empty.
    pub per_volume_dice: Vec<Option<f64>>,
    /// Mean of the defined per-volume Dice values.
    pub per_volume_dice_mean: f64,
    /// Population standard deviation (ddof = 0, as numpy) of the defined per-volume values.
    pub per_volume_dice_std: f64,
    /// Mean per-volume IoU over the same volumes.
    pub per_volume_iou_mean: f64,
    /// Dice of the counts pooled over all volumes.
    pub pooled_dice: f64,
    /// IoU of the pooled counts.
    pub pooled_iou: f64,
    /// Volumes left out of the per-volume statistics because both maps were empty.
    pub empty_volumes: usize,
    /// The pooled counts.
    pub pooled: OverlapCounts,
}

impl OverlapSummary {
    /// Summarises the counts of each volume.
    ///
    /// # Errors
    /// [`MetricsError::Empty`] with no volume; [`MetricsError::EmptyMaps`] when every volume
    /// has both maps empty.
    pub fn from_volumes(volumes: &[OverlapCounts]) -> Result<Self> {
        if volumes.is_empty() {
            return Err(MetricsError::Empty {
                metric: "overlap summary",
            });
        }
        let pooled: OverlapCounts = volumes.iter().copied().sum();
        let per_volume_dice: Vec<Option<f64>> = volumes.iter().map(|c| c.dice().ok()).collect();
        let defined: Vec<f64> = per_volume_dice.iter().flatten().copied().collect();
        if defined.is_empty() {
            return Err(MetricsError::EmptyMaps { metric: "dice" });
        }
        let n = defined.len() as f64;
        let mean = defined.iter().sum::<f64>() / n;
        let var = defined.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n;
        let iou_mean = volumes.iter().filter_map(|c| c.iou().ok()).sum::<f64>() / n;
        Ok(Self {
            per_volume_dice_mean: mean,
            per_volume_dice_std: var.sqrt(),
            per_volume_iou_mean: iou_mean,
            pooled_dice: pooled.dice()?,
            pooled_iou: pooled.iou()?,
            empty_volumes: volumes.len() - defined.len(),
            per_volume_dice,
            pooled,
        })
    }
}

/// The rule that makes a slice lesional: more than `more_than` lesion pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LesionalRule {
    /// A slice is lesional when its lesion-pixel count is strictly greater than this.
    pub more_than: usize,
}

impl LesionalRule {
    /// The paper-era rule (commit c8323de): more than 20 pixels at 128 x 128.
    pub const PAPER: Self = Self { more_than: 20 };
    /// The rule at the authors' HEAD (after 2021-02-17): more than 50 pixels at 128 x 128.
    pub const HEAD: Self = Self { more_than: 50 };

    /// Whether one slice's segmentation is lesional.
    pub fn is_lesional(&self, seg: &[bool]) -> bool {
        seg.iter().filter(|&&s| s).count() > self.more_than
    }

    /// Lesional flag of each slice of a stack of `slice_len`-pixel slices.
    ///
    /// # Errors
    /// [`MetricsError::InvalidParameter`] when `slice_len` is 0 or does not divide the length.
    pub fn label_slices(&self, seg: &[bool], slice_len: usize) -> Result<Vec<bool>> {
        if slice_len == 0 || !seg.len().is_multiple_of(slice_len) {
            return Err(MetricsError::invalid(
                "slice_len",
                slice_len,
                "a positive divisor of the segmentation length",
            ));
        }
        Ok(seg
            .chunks_exact(slice_len)
            .map(|s| self.is_lesional(s))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_dice_and_iou() {
        let pred = [true, true, false, false, true];
        let truth = [true, false, true, false, true];
        // TP 2, FP 1, FN 1: Dice 4/6, IoU 2/4.
        assert_eq!(dice(&pred, &truth).unwrap(), 4.0 / 6.0);
        assert_eq!(iou(&pred, &truth).unwrap(), 0.5);
        assert!(matches!(
            dice(&[false, false], &[false, false]),
            Err(MetricsError::EmptyMaps { metric: "dice" })
        ));
        assert_eq!(dice(&[true], &[false]).unwrap(), 0.0);
        assert!(dice(&[true], &[false, true]).is_err());
        // Threshold rule is strict: 0.5 > 0.5 is false.
        let s = [0.9, 0.5, 0.2];
        assert_eq!(
            dice_at_threshold(&s, &[true, true, false], 0.5).unwrap(),
            2.0 / 3.0
        );
    }

    #[test]
    fn masked_counts_skip_outside_pixels() {
        let s = [0.9, f64::NAN, 0.2, 0.7];
        let t = [true, true, false, false];
        let m = [true, false, true, true];
        let c = OverlapCounts::from_scores(&s, &t, Some(&m), 0.5).unwrap();
        assert_eq!(
            c,
            OverlapCounts {
                tp: 1,
                fp: 1,
                fn_: 0,
                tn: 1
            }
        );
        assert!(OverlapCounts::from_scores(&s, &t, None, 0.5).is_err());
    }

    #[test]
    fn per_volume_and_pooled_differ_as_computed_by_hand() {
        // Volume A: TP 1, FP 0, FN 0 (Dice 1). Volume B: TP 1, FP 3, FN 0 (Dice 2/5).
        // Volume C: empty. Per-volume mean 0.7, std 0.3; pooled TP 2 FP 3: Dice 4/7.
        let a = OverlapCounts::from_maps(&[true], &[true]).unwrap();
        let b = OverlapCounts::from_maps(&[true, true, true, true], &[true, false, false, false])
            .unwrap();
        let c = OverlapCounts::from_maps(&[false], &[false]).unwrap();
        let s = OverlapSummary::from_volumes(&[a, b, c]).unwrap();
        assert_eq!(s.per_volume_dice, vec![Some(1.0), Some(0.4), None]);
        assert!((s.per_volume_dice_mean - 0.7).abs() < 1e-15);
        assert!((s.per_volume_dice_std - 0.3).abs() < 1e-15);
        assert!((s.pooled_dice - 4.0 / 7.0).abs() < 1e-15);
        assert!((s.pooled_iou - 2.0 / 5.0).abs() < 1e-15);
        assert!((s.per_volume_iou_mean - (1.0 + 0.25) / 2.0).abs() < 1e-15);
        assert_eq!(s.empty_volumes, 1);
        assert!(OverlapSummary::from_volumes(&[c]).is_err());
        assert!(OverlapSummary::from_volumes(&[]).is_err());
    }

    #[test]
    fn lesional_rule_is_strict() {
        let mut seg = vec![false; 8];
        seg[..3].fill(true);
        let rule = LesionalRule { more_than: 2 };
        assert!(rule.is_lesional(&seg[..4]));
        assert!(!rule.is_lesional(&seg[1..4]));
        assert_eq!(rule.label_slices(&seg, 4).unwrap(), vec![true, false]);
        assert!(rule.label_slices(&seg, 3).is_err());
        assert!(rule.label_slices(&seg, 0).is_err());
        assert_eq!(LesionalRule::PAPER.more_than, 20);
        assert_eq!(LesionalRule::HEAD.more_than, 50);
    }
}
