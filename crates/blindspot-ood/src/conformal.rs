//! Split-conformal calibration of a rejection threshold.
//!
//! # The guarantee
//!
//! Let `s_1, ..., s_n` be nonconformity scores of `n` calibration scans that are exchangeable
//! with a test scan's score `s` (healthy, in-distribution, scored by a function fitted on
//! *other* data), and let the threshold `tau` be the `k`-th smallest calibration score with
//! `k = ceil((n + 1)(1 - alpha))`. Rejecting when `s > tau` gives
//!
//! `P(reject a healthy ID scan) <= alpha`,
//!
//! and, when scores have no ties, `P(reject) >= alpha - 1 / (n + 1)`. The probability is over
//! the calibration set and the test scan together. When `k > n` (too few calibration scans for
//! the asked `alpha`, i.e. `n < 1/alpha - 1`) no finite threshold works: the threshold is
//! `None` and nothing is rejected.

use serde::{Deserialize, Serialize};

use crate::error::{OodError, Result, check_finite};

/// A calibrated threshold: reject a score strictly above it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConformalThreshold {
    /// The target rate of wrongly rejected healthy scans.
    pub alpha: f64,
    /// Number of calibration scores.
    pub n: usize,
    /// The rank `k = ceil((n + 1)(1 - alpha))` of the threshold among the sorted scores.
    pub rank: usize,
    /// The threshold; `None` when `rank > n` (never reject).
    pub threshold: Option<f64>,
}

impl ConformalThreshold {
    /// Calibrate on `scores` (higher = less conforming).
    ///
    /// # Errors
    /// [`OodError::InvalidParameter`] for `alpha` outside `(0, 1)`,
    /// [`OodError::TooFewSamples`] for no scores, [`OodError::NonFinite`] for a NaN or
    /// infinite score.
    pub fn calibrate(scores: &[f64], alpha: f64) -> Result<Self> {
        if !(alpha > 0.0 && alpha < 1.0) {
            return Err(OodError::InvalidParameter {
                name: "alpha",
                value: alpha.to_string(),
                allowed: "a rate strictly between 0 and 1",
            });
        }
        if scores.is_empty() {
            return Err(OodError::TooFewSamples {
                what: "conformal calibration scores".into(),
                needed: 1,
                got: 0,
            });
        }
        check_finite(|| "conformal calibration scores".into(), scores)?;
        let n = scores.len();
        // ceil((n+1)(1-alpha)) with a guard against (n+1)(1-alpha) landing a hair above an
        // integer through rounding.
        let exact = (n as f64 + 1.0) * (1.0 - alpha);
        let rank = (exact - 1e-9 * exact.max(1.0)).ceil().max(1.0) as usize;
        let threshold = if rank > n {
            None
        } else {
            let mut sorted = scores.to_vec();
            sorted.sort_by(f64::total_cmp);
            Some(sorted[rank - 1])
        };
        Ok(Self {
            alpha,
            n,
            rank,
            threshold,
        })
    }

    /// Whether `score` is rejected (strictly above the threshold).
    pub fn rejects(&self, score: f64) -> bool {
        match self.threshold {
            Some(t) => score > t || score.is_nan(),
            None => false,
        }
    }

    /// The lower end of the guarantee, `alpha - 1/(n+1)` (valid without ties).
    pub fn lower_bound(&self) -> f64 {
        (self.alpha - 1.0 / (self.n as f64 + 1.0)).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn rank_and_threshold_on_known_scores() {
        let scores: Vec<f64> = (1..=19).map(f64::from).collect();
        // n = 19, alpha = 0.1: k = ceil(20 * 0.9) = 18.
        let t = ConformalThreshold::calibrate(&scores, 0.1).unwrap();
        assert_eq!((t.rank, t.threshold), (18, Some(18.0)));
        assert!(t.rejects(18.5) && !t.rejects(18.0));
        // n = 5, alpha = 0.1: k = ceil(5.4) = 6 > 5, never reject.
        let t = ConformalThreshold::calibrate(&scores[..5], 0.1).unwrap();
        assert_eq!(t.threshold, None);
        assert!(!t.rejects(1e300));
        assert!(ConformalThreshold::calibrate(&scores, 0.0).is_err());
        assert!(ConformalThreshold::calibrate(&[], 0.1).is_err());
        assert!(ConformalThreshold::calibrate(&[1.0, f64::NAN], 0.1).is_err());
    }

    /// With uniform scores the rejection probability given the threshold is `1 - tau`
    /// exactly, so averaging it over calibration draws measures the marginal rate without
    /// test-draw noise. It must lie in `[alpha - 1/(n+1), alpha]`.
    #[test]
    fn marginal_rejection_rate_stays_within_the_guarantee() {
        for &(n, alpha) in &[(19usize, 0.1), (50, 0.05), (99, 0.2), (37, 0.1)] {
            let seeds = 4000;
            let mut total = 0.0;
            for seed in 0..seeds {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let scores: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
                let t = ConformalThreshold::calibrate(&scores, alpha).unwrap();
                total += t.threshold.map_or(0.0, |tau| 1.0 - tau);
            }
            let rate = total / seeds as f64;
            // Monte-Carlo standard error of the mean is below sqrt(alpha / n / seeds).
            let slack = 4.0 * (alpha / n as f64 / seeds as f64).sqrt();
            let lower = alpha - 1.0 / (n as f64 + 1.0);
            assert!(
                rate <= alpha + slack && rate >= lower - slack,
                "n = {n}, alpha = {alpha}: rate {rate} outside [{lower}, {alpha}]"
            );
        }
    }
}
