//! Residual thresholds chosen on healthy data only.
//!
//! - The exact way: [`crate::threshold_for_fpr`] (or [`crate::RankedScores::threshold_for_fpr`])
//!   returns the order statistic that gives the target pixel FPR on the pooled healthy brain
//!   pixels.
//! - The paper's way, kept for comparison (docs/method.md section 3.2): golden-section search
//!   on `|mean_b FPR_b(t) - target|` over `[0, 2]` with tolerance 0.001, where `FPR_b` is the
//!   false-positive rate of batch `b` and the mean is over batches (not pooled). The objective
//!   is a step function, so the search may stop on a plateau away from the exact threshold.

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};

/// `1 / phi`.
const INV_PHI: f64 = 0.618_033_988_749_894_8;
/// `1 / phi^2`.
const INV_PHI2: f64 = 0.381_966_011_250_105_1;

/// Settings of the paper's golden-section threshold search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GoldenSectionConfig {
    /// Target mean false-positive rate (`accepted_fpr`).
    pub target_fpr: f64,
    /// Lower end of the search interval (`gss_lower`).
    pub lower: f64,
    /// Upper end of the search interval (`gss_upper`).
    pub upper: f64,
    /// Bracket width at which the search stops (`tolerance`).
    pub tolerance: f64,
}

impl Default for GoldenSectionConfig {
    /// The paper's values: 5 % FPR on `[0, 2]`, tolerance 0.001 (16 iterations).
    fn default() -> Self {
        Self {
            target_fpr: 0.05,
            lower: 0.0,
            upper: 2.0,
            tolerance: 0.001,
        }
    }
}

/// Result of a golden-section search.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GoldenSectionResult {
    /// The midpoint of the final bracket (the paper's `return_mean=True`).
    pub x: f64,
    /// Number of objective evaluations (17 with the paper's settings).
    pub evaluations: usize,
}

/// Minimises `f` on `[lower, upper]` by golden-section search, as the paper's code does: after
/// `n = ceil(ln(tol / h) / ln(1 / phi))` brackets (`n - 1` shrinking steps after the first two
/// evaluations) it returns the midpoint of the final bracket `[a, d]` or `[c, b]`.
///
/// # Errors
/// [`MetricsError::InvalidParameter`] for a non-finite or empty interval or a tolerance that is
/// not positive.
pub fn golden_section_search<F: FnMut(f64) -> f64>(
    mut f: F,
    lower: f64,
    upper: f64,
    tolerance: f64,
) -> Result<GoldenSectionResult> {
    if !(lower.is_finite() && upper.is_finite() && lower < upper) {
        return Err(MetricsError::invalid(
            "lower..upper",
            format!("{lower}..{upper}"),
            "finite with lower < upper",
        ));
    }
    if tolerance.is_nan() || tolerance <= 0.0 {
        return Err(MetricsError::invalid("tolerance", tolerance, "> 0"));
    }
    let (mut a, mut b) = (lower, upper);
    let mut h = b - a;
    if h <= tolerance {
        return Ok(GoldenSectionResult {
            x: 0.5 * (a + b),
            evaluations: 0,
        });
    }
    let n = ((tolerance / h).ln() / INV_PHI.ln()).ceil() as usize;
    let mut c = a + INV_PHI2 * h;
    let mut d = a + INV_PHI * h;
    let (mut fc, mut fd) = (f(c), f(d));
    let mut evaluations = 2;
    for _ in 1..n {
        h *= INV_PHI;
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = a + INV_PHI2 * h;
            fc = f(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + INV_PHI * h;
            fd = f(d);
        }
        evaluations += 1;
    }
    let x = if fc < fd {
        0.5 * (a + d)
    } else {
        0.5 * (c + b)
    };
    Ok(GoldenSectionResult { x, evaluations })
}

/// Mean over batches of each batch's pixel FPR at threshold `t` (`score > t` is a false
/// positive: the scores are healthy brain pixels). Empty batches are skipped.
///
/// # Errors
/// [`MetricsError::Empty`] when no batch has a pixel.
pub fn mean_batch_fpr(batches: &[&[f64]], t: f64) -> Result<f64> {
    let mut sum = 0.0;
    let mut used = 0usize;
    for batch in batches.iter().filter(|b| !b.is_empty()) {
        let fp = batch.iter().filter(|&&s| s > t).count();
        sum += fp as f64 / batch.len() as f64;
        used += 1;
    }
    if used == 0 {
        return Err(MetricsError::Empty {
            metric: "mean_batch_fpr",
        });
    }
    Ok(sum / used as f64)
}

/// The paper's threshold: golden-section search for `mean_batch_fpr(t) = target_fpr` on the
/// healthy `batches` (deterministic here: the batches are fixed, where the paper re-ran a
/// stochastic inference at every evaluation).
///
/// # Errors
/// Invalid config, no healthy pixel, NaN scores.
pub fn golden_section_threshold(
    batches: &[&[f64]],
    config: &GoldenSectionConfig,
) -> Result<GoldenSectionResult> {
    if !(0.0..=1.0).contains(&config.target_fpr) {
        return Err(MetricsError::invalid(
            "target_fpr",
            config.target_fpr,
            "0 <= target_fpr <= 1",
        ));
    }
    for batch in batches {
        if let Some(index) = batch.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore { index });
        }
    }
    mean_batch_fpr(batches, config.lower)?;
    golden_section_search(
        |t| {
            let fpr = mean_batch_fpr(batches, t).expect("checked non-empty above");
            (fpr - config.target_fpr).abs()
        },
        config.lower,
        config.upper,
        config.tolerance,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_settings_take_17_evaluations() {
        let r = golden_section_search(|x| (x - 0.7).powi(2), 0.0, 2.0, 0.001).unwrap();
        assert_eq!(r.evaluations, 17);
        assert!((r.x - 0.7).abs() < 0.001, "{r:?}");
    }

    #[test]
    fn search_finds_minimum_of_hand_made_functions() {
        let r = golden_section_search(|x| (x + 1.25).abs(), -3.0, 5.0, 1e-6).unwrap();
        assert!((r.x + 1.25).abs() < 1e-6);
        // Minimum at the edge: converges towards it.
        let r = golden_section_search(|x| x, 0.0, 1.0, 1e-4).unwrap();
        assert!(r.x < 1e-4);
        assert!(golden_section_search(|x| x, 1.0, 0.0, 1e-4).is_err());
        assert!(golden_section_search(|x| x, 0.0, 1.0, 0.0).is_err());
    }

    #[test]
    fn batch_fpr_is_mean_over_batches_not_pooled() {
        // Batch 1: 1 of 2 above 0.5; batch 2: 0 of 8. Mean 0.25, pooled would be 0.1.
        let b1 = [0.9, 0.1];
        let b2 = [0.0; 8];
        assert_eq!(mean_batch_fpr(&[&b1, &b2], 0.5).unwrap(), 0.25);
        assert!(mean_batch_fpr(&[&[]], 0.5).is_err());
    }

    #[test]
    fn gss_threshold_lands_near_exact_quantile() {
        // Healthy scores 0.002, 0.004, ..., 2.000 in 4 interleaved batches; 5 % FPR: exact
        // t = 1.9 (50 of 1000 above).
        let all: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 500.0).collect();
        let split: Vec<Vec<f64>> = (0..4)
            .map(|b| all.iter().skip(b).step_by(4).copied().collect())
            .collect();
        let batches: Vec<&[f64]> = split.iter().map(Vec::as_slice).collect();
        let exact = crate::threshold_for_fpr(&all, 0.05).unwrap();
        assert_eq!(exact.threshold, 1.9);
        let r = golden_section_threshold(&batches, &GoldenSectionConfig::default()).unwrap();
        assert!((r.x - 1.9).abs() < 0.003, "{r:?}");
        assert!(golden_section_threshold(&[&[f64::NAN]], &GoldenSectionConfig::default()).is_err());
    }

    #[test]
    fn gss_stalls_on_a_plateau_as_documented() {
        // Scores 0.001..=1.000: above t = 1 the objective is flat at |0 - 0.05| and the first
        // comparison already sends the search right; it ends near 2 with FPR 0, far from the
        // exact t = 0.95. This is why the exact quantile is the default.
        let all: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 1000.0).collect();
        let r = golden_section_threshold(&[&all], &GoldenSectionConfig::default()).unwrap();
        assert!(r.x > 1.99, "{r:?}");
        assert_eq!(mean_batch_fpr(&[&all], r.x).unwrap(), 0.0);
    }
}
