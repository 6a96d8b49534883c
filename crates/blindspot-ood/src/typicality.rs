//! The typicality test of Nalisnick et al. (2019) on a model's log-likelihood.
//!
//! In-distribution batches of `M` inputs have a mean negative log-likelihood close to the
//! model's entropy estimate `H_hat` (the mean `-log p` over training data); the test statistic
//! of a batch is `eps = | mean(-log p(x_m)) - H_hat |`. The threshold is the bootstrap
//! `(1 - alpha)` quantile of `eps` over `K` batches of size `M` resampled (with replacement)
//! from held-out in-distribution data. Here a batch is naturally the slices of one scan; a
//! single slice (`M = 1`) gives the per-slice [`Statistic::Typicality`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::conformal::ConformalThreshold;
use crate::error::{OodError, Result, check_finite};
use crate::record::{SliceRecord, Statistic};

/// A fitted typicality test.
#[derive(Debug, Clone, PartialEq)]
pub struct TypicalityTest {
    /// `H_hat`: the mean negative log-likelihood of the fit data.
    entropy: f64,
    /// The batch size the threshold was bootstrapped for.
    batch_size: usize,
    /// The bootstrap threshold on `eps`.
    threshold: f64,
}

impl TypicalityTest {
    /// Fit `H_hat` on `train_ll` and bootstrap the threshold for batches of `batch_size` from
    /// `validation_ll` (`bootstraps` resamples, seeded ChaCha8).
    ///
    /// # Errors
    /// [`OodError::TooFewSamples`] for empty inputs or fewer than 10 bootstraps,
    /// [`OodError::NonFinite`] for NaN or infinite log-likelihoods,
    /// [`OodError::InvalidParameter`] for `batch_size == 0` or `alpha` outside `(0, 1)`.
    pub fn fit(
        train_ll: &[f64],
        validation_ll: &[f64],
        batch_size: usize,
        alpha: f64,
        bootstraps: usize,
        seed: u64,
    ) -> Result<Self> {
        for (what, v) in [("training", train_ll), ("validation", validation_ll)] {
            if v.is_empty() {
                return Err(OodError::TooFewSamples {
                    what: format!("typicality test {what} log-likelihoods"),
                    needed: 1,
                    got: 0,
                });
            }
            check_finite(|| format!("typicality test {what} log-likelihoods"), v)?;
        }
        if batch_size == 0 {
            return Err(OodError::InvalidParameter {
                name: "typicality.batch_size",
                value: "0".into(),
                allowed: "a batch size of at least 1 (1 = per slice)",
            });
        }
        if bootstraps < 10 {
            return Err(OodError::TooFewSamples {
                what: "typicality bootstrap resamples".into(),
                needed: 10,
                got: bootstraps,
            });
        }
        let entropy = -train_ll.iter().sum::<f64>() / train_ll.len() as f64;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let eps: Vec<f64> = (0..bootstraps)
            .map(|_| {
                let mean_nll = -(0..batch_size)
                    .map(|_| validation_ll[rng.random_range(0..validation_ll.len())])
                    .sum::<f64>()
                    / batch_size as f64;
                (mean_nll - entropy).abs()
            })
            .collect();
        let t = ConformalThreshold::calibrate(&eps, alpha)?;
        let threshold = t.threshold.unwrap_or(f64::INFINITY);
        Ok(Self {
            entropy,
            batch_size,
            threshold,
        })
    }

    /// `H_hat`, the entropy estimate.
    pub fn entropy(&self) -> f64 {
        self.entropy
    }

    /// The batch size the threshold was bootstrapped for.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// The bootstrap threshold on the statistic (infinite when too few resamples for `alpha`).
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// `eps = | mean(-ll) - H_hat |` of a batch (NaN for an empty batch).
    pub fn statistic(&self, ll: &[f64]) -> f64 {
        let mean_nll = -ll.iter().sum::<f64>() / ll.len() as f64;
        (mean_nll - self.entropy).abs()
    }

    /// Whether the batch is atypical at the fitted level. Meaningful for batches of the fitted
    /// size.
    pub fn is_atypical(&self, ll: &[f64]) -> bool {
        self.statistic(ll) > self.threshold
    }

    /// Store the per-slice [`Statistic::Typicality`] of every record that has a
    /// [`Statistic::LogLikelihood`].
    pub fn annotate(&self, records: &mut [SliceRecord]) {
        for r in records.iter_mut() {
            if let Some(&ll) = r.values.get(&Statistic::LogLikelihood) {
                r.set(Statistic::Typicality, self.statistic(&[ll]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_draws(seed: u64, n: usize, mean: f64) -> Vec<f64> {
        use rand::Rng;
        let rng = ChaCha8Rng::seed_from_u64(seed);
        rng.sample_iter(rand_distr::StandardNormal)
            .take(n)
            .map(|z: f64| mean + z)
            .collect()
    }

    #[test]
    fn shifted_batches_are_atypical_and_typical_ones_mostly_not() {
        let train = normal_draws(1, 2000, -100.0);
        let val = normal_draws(2, 500, -100.0);
        let test = TypicalityTest::fit(&train, &val, 20, 0.05, 999, 3).unwrap();
        assert!((test.entropy() - 100.0).abs() < 0.1);
        // Both a higher and a lower likelihood are atypical (the test is two-sided).
        assert!(test.is_atypical(&normal_draws(4, 20, -99.0)));
        assert!(test.is_atypical(&normal_draws(5, 20, -101.0)));
        let fresh = normal_draws(6, 20 * 400, -100.0);
        let rejected = fresh.chunks(20).filter(|b| test.is_atypical(b)).count();
        assert!(
            rejected <= 40,
            "{rejected} of 400 ID batches rejected at alpha 0.05"
        );
        let mut recs = vec![SliceRecord::new(
            crate::record::SliceId::new("d", "v", 0),
            1,
            0,
        )];
        recs[0].set(Statistic::LogLikelihood, -103.0);
        test.annotate(&mut recs);
        assert!((recs[0].get(Statistic::Typicality).unwrap() - 3.0).abs() < 0.1);
    }

    #[test]
    fn bad_parameters_are_errors() {
        let v = [1.0, 2.0];
        assert!(TypicalityTest::fit(&[], &v, 1, 0.1, 100, 0).is_err());
        assert!(TypicalityTest::fit(&v, &v, 0, 0.1, 100, 0).is_err());
        assert!(TypicalityTest::fit(&v, &v, 1, 1.5, 100, 0).is_err());
        assert!(TypicalityTest::fit(&v, &[f64::NAN], 1, 0.1, 100, 0).is_err());
    }
}
