//! WAIC over a deep ensemble (docs/method.md 4.2), with slices aligned by identity.
//!
//! The paper's code aligned members by loader position, which mixes up slices as soon as a
//! loader shuffles or a dataset is random. Here every member hands in its records, and the
//! scores are matched by [`SliceId`]; members that disagree on the set of slices are an error.

use std::collections::BTreeMap;

use crate::error::{OodError, Result};
use crate::record::{SliceId, SliceRecord, Statistic};

/// How the per-member values are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaicKind {
    /// The paper: `mean - var` (population variance, ddof 0) of the coded ELBO `rec - kl`
    /// ([`Statistic::CodedElbo`]); stored as [`Statistic::Waic`], higher is OOD.
    Paper,
    /// Choi et al.'s WAIC on the log-likelihood bound `-NegElbo`, negated so that higher is
    /// OOD: `mean + var` of [`Statistic::NegElbo`]; stored as [`Statistic::WaicNegElbo`].
    NegElbo,
}

impl WaicKind {
    /// The per-member statistic this kind reads.
    pub fn member_statistic(self) -> Statistic {
        match self {
            WaicKind::Paper => Statistic::CodedElbo,
            WaicKind::NegElbo => Statistic::NegElbo,
        }
    }

    /// The statistic under which the result is stored.
    pub fn output_statistic(self) -> Statistic {
        match self {
            WaicKind::Paper => Statistic::Waic,
            WaicKind::NegElbo => Statistic::WaicNegElbo,
        }
    }
}

/// `mean(values) - var(values)` with the population variance (numpy's `np.var`, ddof 0).
///
/// # Panics
/// When `values` is empty (a programmer error: callers check the ensemble size).
pub fn mean_minus_variance(values: &[f64]) -> f64 {
    assert!(!values.is_empty(), "mean_minus_variance of no values");
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    mean - var
}

/// WAIC per slice over ensemble `members` (each member's records of the same slices, in any
/// order).
///
/// # Errors
/// [`OodError::TooFewSamples`] for fewer than two members, [`OodError::DuplicateSlice`] when a
/// member scores a slice twice, [`OodError::EnsembleMismatch`] when a member's slice set
/// differs from member 0's (naming the first differing slice), and
/// [`OodError::MissingStatistic`] when a record lacks the member statistic.
pub fn ensemble_waic(members: &[&[SliceRecord]], kind: WaicKind) -> Result<BTreeMap<SliceId, f64>> {
    if members.len() < 2 {
        return Err(OodError::TooFewSamples {
            what: "WAIC ensemble members".into(),
            needed: 2,
            got: members.len(),
        });
    }
    let stat = kind.member_statistic();
    let tables = members
        .iter()
        .enumerate()
        .map(|(m, records)| {
            let mut table = BTreeMap::new();
            for r in records.iter() {
                if table.insert(r.id.clone(), r.get(stat)?).is_some() {
                    return Err(OodError::DuplicateSlice {
                        what: format!("ensemble member {m}"),
                        id: r.id.clone(),
                    });
                }
            }
            Ok(table)
        })
        .collect::<Result<Vec<_>>>()?;
    let reference = &tables[0];
    for (m, table) in tables.iter().enumerate().skip(1) {
        if let Some(id) = reference.keys().find(|id| !table.contains_key(*id)) {
            return Err(OodError::EnsembleMismatch {
                member: m,
                detail: format!("slice {id} is missing from member {m}"),
            });
        }
        if let Some(id) = table.keys().find(|id| !reference.contains_key(*id)) {
            return Err(OodError::EnsembleMismatch {
                member: m,
                detail: format!("slice {id} is missing from member 0"),
            });
        }
    }
    let mut values = vec![0.0; tables.len()];
    Ok(reference
        .keys()
        .map(|id| {
            for (v, table) in values.iter_mut().zip(&tables) {
                *v = table[id];
            }
            let w = match kind {
                WaicKind::Paper => mean_minus_variance(&values),
                // -(mean(ll) - var(ll)) with ll = -neg_elbo: mean(neg_elbo) + var(neg_elbo).
                WaicKind::NegElbo => {
                    let negated: Vec<f64> = values.iter().map(|v| -v).collect();
                    -mean_minus_variance(&negated)
                }
            };
            (id.clone(), w)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(values: &[(u32, f64)]) -> Vec<SliceRecord> {
        values
            .iter()
            .map(|&(slice, v)| {
                let mut r = SliceRecord::new(SliceId::new("camcan", "sub-1", slice), 100, 0);
                r.set(Statistic::CodedElbo, v);
                r.set(Statistic::NegElbo, 10.0 * v);
                r
            })
            .collect()
    }

    #[test]
    fn aligns_members_by_identity_not_position() {
        // Member 1 lists the same slices in another order (a shuffled loader).
        let a = member(&[(0, 1.0), (1, 2.0), (2, 3.0)]);
        let b = member(&[(2, 5.0), (0, 1.0), (1, 4.0)]);
        let c = member(&[(1, 0.0), (2, 4.0), (0, 1.0)]);
        let w = ensemble_waic(&[&a, &b, &c], WaicKind::Paper).unwrap();
        let id = |s| SliceId::new("camcan", "sub-1", s);
        // slice 0: all members agree on 1.0 -> mean 1, var 0.
        assert_eq!(w[&id(0)], 1.0);
        // slice 1: [2, 4, 0] -> mean 2, var 8/3.
        assert!((w[&id(1)] - (2.0 - 8.0 / 3.0)).abs() < 1e-12);
        // slice 2: [3, 5, 4] -> mean 4, var 2/3.
        assert!((w[&id(2)] - (4.0 - 2.0 / 3.0)).abs() < 1e-12);
        // Choi's variant on neg_elbo = 10 * v: mean + var = 20 + 800/3 for slice 1.
        let w = ensemble_waic(&[&a, &b, &c], WaicKind::NegElbo).unwrap();
        assert!((w[&id(1)] - (20.0 + 800.0 / 3.0)).abs() < 1e-9);
    }

    #[test]
    fn disagreeing_slice_sets_are_an_error() {
        let a = member(&[(0, 1.0), (1, 2.0)]);
        let b = member(&[(0, 1.0), (2, 2.0)]);
        let err = ensemble_waic(&[&a, &a, &b], WaicKind::Paper).unwrap_err();
        assert!(
            matches!(err, OodError::EnsembleMismatch { member: 2, .. }),
            "{err}"
        );
        let short = member(&[(0, 1.0)]);
        assert!(matches!(
            ensemble_waic(&[&a, &short], WaicKind::Paper),
            Err(OodError::EnsembleMismatch { member: 1, .. })
        ));
        let dup = member(&[(0, 1.0), (0, 2.0)]);
        assert!(matches!(
            ensemble_waic(&[&dup, &a], WaicKind::Paper),
            Err(OodError::DuplicateSlice { .. })
        ));
        assert!(matches!(
            ensemble_waic(&[&a], WaicKind::Paper),
            Err(OodError::TooFewSamples { .. })
        ));
    }
}
