//! DoSE, Density of States Estimation (docs/method.md 4.3).
//!
//! One [`GaussianKde`] per statistic, fitted on healthy training slices. The score of a slice
//! sums the per-statistic log-densities (the original DoSE, [`Statistic::Dose`]); the paper's
//! sum of raw densities is kept as [`Statistic::DoseDensitySum`]. Both are high for
//! in-distribution input.

use rayon::prelude::*;

use crate::error::{OodError, Result};
use crate::kde::GaussianKde;
use crate::record::{SliceRecord, Statistic};

/// How per-statistic densities are combined into one score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoseCombine {
    /// Sum of log-densities (Morningstar et al. 2021): a product of marginal densities.
    LogDensitySum,
    /// Sum of raw densities, as the paper's code does (a [BUG?/DEVIATION]: statistics on
    /// different scales get different weights).
    DensitySum,
}

impl DoseCombine {
    /// The statistic under which [`Dose::annotate`] stores this combination.
    pub fn statistic(self) -> Statistic {
        match self {
            DoseCombine::LogDensitySum => Statistic::Dose,
            DoseCombine::DensitySum => Statistic::DoseDensitySum,
        }
    }
}

/// Per-statistic KDEs fitted on healthy slices.
#[derive(Debug, Clone)]
pub struct Dose {
    kdes: Vec<(Statistic, GaussianKde)>,
}

impl Dose {
    /// Fit one KDE per statistic on the non-empty slices of `healthy` (the paper's defaults
    /// are `rec_err, kl, coded_elbo, entropy`).
    ///
    /// # Errors
    /// [`OodError::InvalidParameter`] for an empty, repeated or DoSE-derived statistic list,
    /// [`OodError::MissingStatistic`] when a non-empty slice lacks a statistic, and the KDE's
    /// errors (too few slices, constant or non-finite values).
    pub fn fit(healthy: &[SliceRecord], statistics: &[Statistic]) -> Result<Self> {
        if statistics.is_empty() {
            return Err(OodError::InvalidParameter {
                name: "dose.statistics",
                value: "[]".into(),
                allowed: "at least one per-slice statistic",
            });
        }
        for (i, s) in statistics.iter().enumerate() {
            if matches!(s, Statistic::Dose | Statistic::DoseDensitySum) {
                return Err(OodError::InvalidParameter {
                    name: "dose.statistics",
                    value: s.name().into(),
                    allowed: "per-slice statistics, not a DoSE score itself",
                });
            }
            if statistics[..i].contains(s) {
                return Err(OodError::InvalidParameter {
                    name: "dose.statistics",
                    value: s.name().into(),
                    allowed: "each statistic at most once",
                });
            }
        }
        let kdes = statistics
            .iter()
            .map(|&s| {
                let values = healthy
                    .iter()
                    .filter(|r| !r.is_empty())
                    .map(|r| r.get(s))
                    .collect::<Result<Vec<f64>>>()?;
                Ok((
                    s,
                    GaussianKde::fit_named(&format!("DoSE KDE of {s}"), &values)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { kdes })
    }

    /// The statistics, in fit order.
    pub fn statistics(&self) -> impl Iterator<Item = Statistic> + '_ {
        self.kdes.iter().map(|(s, _)| *s)
    }

    /// The KDE of one statistic.
    pub fn kde(&self, statistic: Statistic) -> Option<&GaussianKde> {
        self.kdes
            .iter()
            .find(|(s, _)| *s == statistic)
            .map(|(_, k)| k)
    }

    /// The log-density of each fitted statistic at the record's values.
    ///
    /// # Errors
    /// [`OodError::MissingStatistic`] when the record lacks a statistic.
    pub fn log_densities(&self, record: &SliceRecord) -> Result<Vec<(Statistic, f64)>> {
        self.kdes
            .iter()
            .map(|(s, k)| Ok((*s, k.log_density(record.get(*s)?))))
            .collect()
    }

    /// DoSE of a record over a subset of the fitted statistics (all when `subset` is empty).
    ///
    /// # Errors
    /// [`OodError::InvalidParameter`] when `subset` names a statistic that was not fitted,
    /// [`OodError::MissingStatistic`] when the record lacks one.
    pub fn score(
        &self,
        record: &SliceRecord,
        subset: &[Statistic],
        combine: DoseCombine,
    ) -> Result<f64> {
        let mut total = 0.0;
        for (s, k) in &self.kdes {
            if !subset.is_empty() && !subset.contains(s) {
                continue;
            }
            let ld = k.log_density(record.get(*s)?);
            total += match combine {
                DoseCombine::LogDensitySum => ld,
                DoseCombine::DensitySum => ld.exp(),
            };
        }
        if let Some(s) = subset.iter().find(|s| self.kde(**s).is_none()) {
            return Err(OodError::InvalidParameter {
                name: "dose subset",
                value: s.name().into(),
                allowed: "statistics the DoSE model was fitted on",
            });
        }
        Ok(total)
    }

    /// Store [`Statistic::Dose`] and [`Statistic::DoseDensitySum`] (over all fitted
    /// statistics) in every non-empty record, in parallel. Empty slices get no DoSE value.
    ///
    /// # Errors
    /// [`OodError::MissingStatistic`] when a non-empty record lacks a statistic.
    pub fn annotate(&self, records: &mut [SliceRecord]) -> Result<()> {
        records
            .par_iter_mut()
            .filter(|r| !r.is_empty())
            .try_for_each(|r| {
                let lds = self.log_densities(r)?;
                r.set(Statistic::Dose, lds.iter().map(|(_, l)| l).sum());
                r.set(
                    Statistic::DoseDensitySum,
                    lds.iter().map(|(_, l)| l.exp()).sum(),
                );
                Ok(())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SliceId;

    fn record(i: u32, rec: f64, kl: f64) -> SliceRecord {
        let mut r = SliceRecord::new(SliceId::new("camcan", format!("s{}", i / 10), i), 100, 0);
        r.set(Statistic::RecErr, rec);
        r.set(Statistic::Kl, kl);
        r
    }

    #[test]
    fn typical_slices_score_higher_than_outliers() {
        let healthy: Vec<SliceRecord> = (0..200)
            .map(|i| {
                let t = i as f64 / 200.0;
                record(
                    i,
                    0.1 + 0.02 * (t * 17.0).sin(),
                    1.0 + 0.1 * (t * 11.0).cos(),
                )
            })
            .collect();
        let dose = Dose::fit(&healthy, &[Statistic::RecErr, Statistic::Kl]).unwrap();
        let mut test = vec![
            record(0, 0.1, 1.0),
            record(1, 0.4, 1.0),
            record(2, 0.1, 3.0),
        ];
        test.push(SliceRecord::new(SliceId::new("brats", "x", 0), 0, 0));
        dose.annotate(&mut test).unwrap();
        for combine in [Statistic::Dose, Statistic::DoseDensitySum] {
            let typical = test[0].get(combine).unwrap();
            assert!(typical > test[1].get(combine).unwrap());
            assert!(typical > test[2].get(combine).unwrap());
        }
        assert!(
            test[3].get(Statistic::Dose).is_err(),
            "empty slices get no DoSE"
        );
        // The log-density sum is the sum of the per-statistic KDE log-densities.
        let lds = dose.log_densities(&test[1]).unwrap();
        let sum: f64 = lds.iter().map(|(_, l)| l).sum();
        assert_eq!(sum, test[1].get(Statistic::Dose).unwrap());
        let only_rec = dose
            .score(&test[1], &[Statistic::RecErr], DoseCombine::LogDensitySum)
            .unwrap();
        assert_eq!(only_rec, lds[0].1);
    }

    #[test]
    fn bad_statistic_lists_are_errors() {
        let healthy = vec![record(0, 0.1, 1.0), record(1, 0.2, 1.5)];
        assert!(Dose::fit(&healthy, &[]).is_err());
        assert!(Dose::fit(&healthy, &[Statistic::Dose]).is_err());
        assert!(Dose::fit(&healthy, &[Statistic::Kl, Statistic::Kl]).is_err());
        assert!(matches!(
            Dose::fit(&healthy, &[Statistic::Entropy]),
            Err(OodError::MissingStatistic { .. })
        ));
        let dose = Dose::fit(&healthy, &[Statistic::Kl]).unwrap();
        assert!(
            dose.score(&healthy[0], &[Statistic::RecErr], DoseCombine::DensitySum)
                .is_err()
        );
    }
}
