//! Bootstrap confidence intervals that resample **subjects**, not pixels or slices, and a paired
//! bootstrap test of the difference between two methods scored on the same subjects.
//!
//! Pixels and slices of one subject are strongly correlated; resampling them as if they were
//! independent gives intervals that are far too narrow. Here every resample draws `n` subject
//! indices with replacement and hands them to the statistic, which pools whatever belongs to
//! those subjects (a subject drawn twice counts twice).
//!
//! Determinism: resample `b` draws from `ChaCha8Rng::seed_from_u64(seed)` on stream `b`, so the
//! result depends on the seed only, never on the number of rayon threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::rank::{RankAccumulator, check_len};

/// How to bootstrap.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Number of resamples (at least 10; 1,000 to 10,000 are usual).
    pub resamples: usize,
    /// Confidence level of the percentile interval, in (0, 1).
    pub level: f64,
    /// Seed of the resampling.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    /// 2,000 resamples, 95 % level, seed 0.
    fn default() -> Self {
        Self {
            resamples: 2000,
            level: 0.95,
            seed: 0,
        }
    }
}

impl BootstrapConfig {
    fn check(&self) -> Result<()> {
        if self.resamples < 10 {
            return Err(MetricsError::invalid(
                "resamples",
                self.resamples,
                "at least 10",
            ));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(MetricsError::invalid("level", self.level, "0 < level < 1"));
        }
        Ok(())
    }
}

/// A percentile bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceInterval {
    /// The statistic on the original subjects.
    pub estimate: f64,
    /// Lower bound (the `(1 - level) / 2` quantile of the resampled statistics).
    pub lower: f64,
    /// Upper bound (the `(1 + level) / 2` quantile).
    pub upper: f64,
    /// The confidence level.
    pub level: f64,
    /// Resamples that gave a value (degenerate ones, e.g. a single class, are left out).
    pub resamples: usize,
}

/// The paired bootstrap comparison of methods A and B on the same subjects.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedComparison {
    /// Statistic of A on the original subjects.
    pub a: f64,
    /// Statistic of B on the original subjects.
    pub b: f64,
    /// Interval of the difference A - B (its `estimate` is `a - b`).
    pub difference: ConfidenceInterval,
    /// Two-sided bootstrap p-value for "no difference":
    /// `min(1, 2 min((1 + #{d* <= 0}) / (B + 1), (1 + #{d* >= 0}) / (B + 1)))`.
    pub p_value: f64,
}

/// Draws the subject indices of resample `b`.
fn draw(seed: u64, b: usize, n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(b as u64);
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

fn interval(estimate: f64, mut values: Vec<f64>, level: f64) -> ConfidenceInterval {
    values.sort_by(f64::total_cmp);
    ConfidenceInterval {
        estimate,
        lower: crate::quantile_sorted(&values, (1.0 - level) / 2.0),
        upper: crate::quantile_sorted(&values, (1.0 + level) / 2.0),
        level,
        resamples: values.len(),
    }
}

/// Keeps the successful resamples; fails when fewer than half succeeded.
fn collect(results: Vec<Result<f64>>) -> Result<Vec<f64>> {
    let resamples = results.len();
    let mut first_error = None;
    let mut values = Vec::with_capacity(resamples);
    for r in results {
        match r {
            Ok(v) if v.is_finite() => values.push(v),
            Ok(v) => {
                first_error.get_or_insert(MetricsError::invalid("statistic", v, "a finite value"));
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if values.len() * 2 < resamples {
        return Err(MetricsError::BootstrapDegenerate {
            succeeded: values.len(),
            resamples,
            first_error: Box::new(first_error.expect("some resample failed")),
        });
    }
    Ok(values)
}

/// Percentile bootstrap interval of `statistic` over `n_subjects` subjects.
///
/// `statistic` receives the subject indices of one sample (`0..n` for the estimate, `n` draws
/// with replacement for each resample) and computes the metric over everything those subjects
/// contribute. Resamples where it fails (for example only one class drawn) are left out and
/// counted; resamples run in parallel on the rayon pool.
///
/// # Errors
/// Invalid config, `n_subjects < 2`, the statistic failing on the original subjects, or fewer
/// than half of the resamples giving a finite value ([`MetricsError::BootstrapDegenerate`]).
pub fn bootstrap_ci<F>(
    n_subjects: usize,
    config: &BootstrapConfig,
    statistic: F,
) -> Result<ConfidenceInterval>
where
    F: Fn(&[usize]) -> Result<f64> + Sync,
{
    config.check()?;
    check_subjects(n_subjects)?;
    let all: Vec<usize> = (0..n_subjects).collect();
    let estimate = statistic(&all)?;
    let results: Vec<Result<f64>> = (0..config.resamples)
        .into_par_iter()
        .map(|b| statistic(&draw(config.seed, b, n_subjects)))
        .collect();
    Ok(interval(estimate, collect(results)?, config.level))
}

/// Paired bootstrap of the difference `A - B` between two methods evaluated on the **same**
/// subjects: both statistics see the same resampled subjects in every resample.
///
/// # Errors
/// As [`bootstrap_ci`]; a resample counts as failed when either statistic fails.
pub fn paired_bootstrap<FA, FB>(
    n_subjects: usize,
    config: &BootstrapConfig,
    statistic_a: FA,
    statistic_b: FB,
) -> Result<PairedComparison>
where
    FA: Fn(&[usize]) -> Result<f64> + Sync,
    FB: Fn(&[usize]) -> Result<f64> + Sync,
{
    config.check()?;
    check_subjects(n_subjects)?;
    let all: Vec<usize> = (0..n_subjects).collect();
    let (a, b) = (statistic_a(&all)?, statistic_b(&all)?);
    let results: Vec<Result<f64>> = (0..config.resamples)
        .into_par_iter()
        .map(|r| {
            let idx = draw(config.seed, r, n_subjects);
            Ok(statistic_a(&idx)? - statistic_b(&idx)?)
        })
        .collect();
    let diffs = collect(results)?;
    let total = diffs.len() as f64 + 1.0;
    let at_most_zero = diffs.iter().filter(|&&d| d <= 0.0).count() as f64;
    let at_least_zero = diffs.iter().filter(|&&d| d >= 0.0).count() as f64;
    let p_value =
        (2.0 * ((1.0 + at_most_zero) / total).min((1.0 + at_least_zero) / total)).min(1.0);
    Ok(PairedComparison {
        a,
        b,
        difference: interval(a - b, diffs, config.level),
        p_value,
    })
}

fn check_subjects(n: usize) -> Result<()> {
    if n < 2 {
        return Err(MetricsError::invalid("n_subjects", n, "at least 2"));
    }
    Ok(())
}

/// Elements (slices, pixels, ...) grouped by subject, for bootstrapping a ranking metric.
///
/// Built once from one subject id per element; [`SubjectGroups::accumulate`] then pools the
/// scores of a resample's subjects (with multiplicity) into a [`RankAccumulator`].
#[derive(Debug, Clone)]
pub struct SubjectGroups {
    /// Element indices of each subject, subjects in increasing id order.
    members: Vec<Vec<usize>>,
    len: usize,
}

impl SubjectGroups {
    /// Groups elements by `subject_ids[i]` (any ids; subject `k` is the `k`-th smallest id).
    pub fn new<T: Ord + Clone>(subject_ids: &[T]) -> Self {
        let mut ids: Vec<T> = subject_ids.to_vec();
        ids.sort();
        ids.dedup();
        let mut members = vec![Vec::new(); ids.len()];
        for (i, id) in subject_ids.iter().enumerate() {
            let k = ids.binary_search(id).expect("id was collected above");
            members[k].push(i);
        }
        Self {
            members,
            len: subject_ids.len(),
        }
    }

    /// Number of subjects.
    pub fn subjects(&self) -> usize {
        self.members.len()
    }

    /// Pools the elements of `subjects` (indices as given to a bootstrap statistic).
    ///
    /// # Errors
    /// Length mismatch of `scores`/`labels` against the ids; NaN scores.
    pub fn accumulate(
        &self,
        subjects: &[usize],
        scores: &[f64],
        labels: &[bool],
    ) -> Result<RankAccumulator<f64>> {
        check_len("scores", scores.len(), self.len)?;
        check_len("labels", labels.len(), self.len)?;
        let mut acc = RankAccumulator::new();
        let mut s = Vec::new();
        let mut l = Vec::new();
        for &k in subjects {
            for &i in &self.members[k] {
                s.push(scores[i]);
                l.push(labels[i]);
            }
        }
        acc.push(&s, &l)?;
        Ok(acc)
    }
}

/// Bootstrap interval of the AUROC of `scores` against `labels`, resampling the subjects given
/// by `subject_ids` (one id per element).
///
/// # Errors
/// As [`bootstrap_ci`]; length mismatches; NaN.
pub fn bootstrap_auroc<T: Ord + Clone>(
    scores: &[f64],
    labels: &[bool],
    subject_ids: &[T],
    config: &BootstrapConfig,
) -> Result<ConfidenceInterval> {
    check_len("labels", labels.len(), scores.len())?;
    check_len("subject_ids", subject_ids.len(), scores.len())?;
    let groups = SubjectGroups::new(subject_ids);
    bootstrap_ci(groups.subjects(), config, |idx| {
        groups.accumulate(idx, scores, labels)?.finish().auroc()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_is_seeded_and_thread_independent() {
        let a = draw(3, 17, 50);
        assert_eq!(a, draw(3, 17, 50));
        assert_ne!(a, draw(3, 18, 50));
        assert_ne!(a, draw(4, 17, 50));
        assert!(a.iter().all(|&i| i < 50));
    }

    #[test]
    fn mean_ci_covers_the_mean_and_shrinks_with_data() {
        let values: Vec<f64> = (0..40).map(|i| f64::from(i % 10)).collect();
        let mean = |idx: &[usize]| -> Result<f64> {
            Ok(idx.iter().map(|&i| values[i]).sum::<f64>() / idx.len() as f64)
        };
        let cfg = BootstrapConfig {
            resamples: 500,
            ..Default::default()
        };
        let ci = bootstrap_ci(values.len(), &cfg, mean).unwrap();
        assert_eq!(ci.estimate, 4.5);
        assert!(ci.lower < 4.5 && 4.5 < ci.upper, "{ci:?}");
        assert_eq!(ci.resamples, 500);
        // Standard error of the mean is 2.87 / sqrt(40) = 0.45; the 95 % interval is about
        // +-0.9 wide on each side.
        assert!(
            ci.upper - ci.lower > 1.2 && ci.upper - ci.lower < 2.4,
            "{ci:?}"
        );
        let again = bootstrap_ci(values.len(), &cfg, mean).unwrap();
        assert_eq!(ci, again);
    }

    #[test]
    fn paired_test_sees_a_consistent_difference() {
        // A beats B by exactly 0.1 on every subject: every resampled difference is 0.1.
        let base: Vec<f64> = (0..30).map(|i| f64::from(i) / 30.0).collect();
        let mean = |off: f64| {
            let base = &base;
            move |idx: &[usize]| -> Result<f64> {
                Ok(idx.iter().map(|&i| base[i] + off).sum::<f64>() / idx.len() as f64)
            }
        };
        let cfg = BootstrapConfig {
            resamples: 200,
            ..Default::default()
        };
        let cmp = paired_bootstrap(30, &cfg, mean(0.1), mean(0.0)).unwrap();
        assert!((cmp.difference.estimate - 0.1).abs() < 1e-12);
        assert!((cmp.difference.lower - 0.1).abs() < 1e-12);
        assert!((cmp.p_value - 2.0 / 201.0).abs() < 1e-12);
        // Identical methods: p = 1.
        let same = paired_bootstrap(30, &cfg, mean(0.0), mean(0.0)).unwrap();
        assert_eq!(same.p_value, 1.0);
    }

    #[test]
    fn degenerate_resamples_are_reported() {
        let cfg = BootstrapConfig {
            resamples: 20,
            ..Default::default()
        };
        let err = bootstrap_ci(5, &cfg, |idx| {
            if idx == [0, 1, 2, 3, 4] {
                Ok(1.0)
            } else {
                Err(MetricsError::Empty { metric: "x" })
            }
        })
        .unwrap_err();
        assert!(matches!(
            err,
            MetricsError::BootstrapDegenerate { succeeded: 0, .. }
        ));
        assert!(bootstrap_ci(1, &cfg, |_| Ok(0.0)).is_err());
        let bad = BootstrapConfig { level: 1.0, ..cfg };
        assert!(bootstrap_ci(5, &bad, |_| Ok(0.0)).is_err());
    }

    #[test]
    fn auroc_by_subject_pools_whole_subjects() {
        // Subject k (ids given out of order, as strings) has a positive at k + 0.5 and a
        // negative at k.
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        let mut ids = Vec::new();
        for k in (0..10).rev() {
            scores.extend([f64::from(k) + 0.5, f64::from(k)]);
            labels.extend([true, false]);
            ids.extend([format!("sub-{k:02}"), format!("sub-{k:02}")]);
        }
        let cfg = BootstrapConfig {
            resamples: 100,
            ..Default::default()
        };
        let ci = bootstrap_auroc(&scores, &labels, &ids, &cfg).unwrap();
        // 55 of the 100 pairs have pos > neg (neg j <= pos i).
        assert_eq!(ci.estimate, 0.55);
        // The same intervals by gathering each resample's subjects by hand: subject k is
        // sub-0k, elements 2 (9 - k) and 2 (9 - k) + 1.
        let by_hand = bootstrap_ci(10, &cfg, |idx| {
            let pick: Vec<usize> = idx
                .iter()
                .flat_map(|&k| [2 * (9 - k), 2 * (9 - k) + 1])
                .collect();
            let s: Vec<f64> = pick.iter().map(|&i| scores[i]).collect();
            let l: Vec<bool> = pick.iter().map(|&i| labels[i]).collect();
            crate::auroc(&s, &l)
        })
        .unwrap();
        assert_eq!(ci, by_hand);
        assert!(0.0 <= ci.lower && ci.lower <= ci.upper && ci.upper <= 1.0);
        // Perfectly separated subjects: every resample gives 1.
        let sep: Vec<f64> = scores
            .iter()
            .zip(&labels)
            .map(|(s, &l)| if l { s + 100.0 } else { *s })
            .collect();
        let ci = bootstrap_auroc(&sep, &labels, &ids, &cfg).unwrap();
        assert_eq!((ci.lower, ci.estimate, ci.upper), (1.0, 1.0, 1.0));
    }
}
