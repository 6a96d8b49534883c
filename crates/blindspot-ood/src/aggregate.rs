//! Per-volume aggregation of per-slice statistics.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{OodError, Result, check_finite};
use crate::record::{ScanId, SliceRecord, Statistic};

/// How a scan's slice values are reduced to one number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "q")]
pub enum Aggregation {
    /// The mean over slices.
    Mean,
    /// The maximum over slices.
    Max,
    /// The minimum over slices.
    Min,
    /// A quantile in `[0, 1]` with linear interpolation (numpy's default): robust to a few
    /// extreme slices (0.5 = the median).
    Quantile(f64),
}

impl Aggregation {
    /// How the report and the CLI name it: `mean`, `max`, `min`, `q0.25`.
    pub fn label(self) -> String {
        match self {
            Aggregation::Mean => "mean".into(),
            Aggregation::Max => "max".into(),
            Aggregation::Min => "min".into(),
            Aggregation::Quantile(q) => format!("q{q}"),
        }
    }

    /// Reduce `values`.
    ///
    /// # Errors
    /// [`OodError::TooFewSamples`] for no values, [`OodError::NonFinite`] for NaN or infinite
    /// ones, [`OodError::InvalidParameter`] for a quantile outside `[0, 1]`.
    pub fn apply(self, values: &[f64]) -> Result<f64> {
        if values.is_empty() {
            return Err(OodError::TooFewSamples {
                what: "aggregation over a scan's slices".into(),
                needed: 1,
                got: 0,
            });
        }
        check_finite(|| "values to aggregate".into(), values)?;
        Ok(match self {
            Aggregation::Mean => values.iter().sum::<f64>() / values.len() as f64,
            Aggregation::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Aggregation::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
            Aggregation::Quantile(q) => {
                if !(0.0..=1.0).contains(&q) {
                    return Err(OodError::InvalidParameter {
                        name: "aggregation quantile",
                        value: q.to_string(),
                        allowed: "a number in [0, 1]",
                    });
                }
                let mut sorted = values.to_vec();
                sorted.sort_by(f64::total_cmp);
                quantile_sorted(&sorted, q)
            }
        })
    }
}

/// The workspace's quantile of sorted data (one home, in blindspot-metrics).
pub use blindspot_metrics::quantile_sorted;

/// Per-scan values of one statistic: the non-empty slices of each scan, aggregated.
///
/// Slices without a value of `statistic` (for example the entropy of a near-empty slice) are
/// skipped; a scan with no valued slice is left out.
///
/// # Errors
/// As [`Aggregation::apply`].
pub fn scan_values(
    records: &[SliceRecord],
    statistic: Statistic,
    aggregation: Aggregation,
) -> Result<BTreeMap<ScanId, f64>> {
    let mut groups: BTreeMap<ScanId, Vec<f64>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.is_empty()) {
        if let Some(v) = r.values.get(&statistic) {
            groups.entry(r.id.scan()).or_default().push(*v);
        }
    }
    groups
        .into_iter()
        .map(|(scan, values)| Ok((scan, aggregation.apply(&values)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SliceId;

    #[test]
    fn aggregations_on_known_values() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(Aggregation::Mean.apply(&v).unwrap(), 2.5);
        assert_eq!(Aggregation::Max.apply(&v).unwrap(), 4.0);
        assert_eq!(Aggregation::Min.apply(&v).unwrap(), 1.0);
        assert_eq!(Aggregation::Quantile(0.5).apply(&v).unwrap(), 2.5);
        assert_eq!(Aggregation::Quantile(1.0 / 3.0).apply(&v).unwrap(), 2.0);
        assert!((Aggregation::Quantile(0.9).apply(&v).unwrap() - 3.7).abs() < 1e-12);
        assert!(Aggregation::Quantile(1.5).apply(&v).is_err());
        assert!(Aggregation::Mean.apply(&[]).is_err());
        assert!(Aggregation::Max.apply(&[1.0, f64::NAN]).is_err());
    }

    #[test]
    fn groups_slices_by_scan_and_skips_empty_ones() {
        let mk = |vol: &str, s: u32, mask: u32, v: f64| {
            let mut r = SliceRecord::new(SliceId::new("d", vol, s), mask, 0);
            r.set(Statistic::RecErr, v);
            r
        };
        let recs = vec![
            mk("a", 0, 10, 1.0),
            mk("b", 0, 10, 5.0),
            mk("a", 1, 10, 3.0),
            mk("a", 2, 0, 100.0),
        ];
        let m = scan_values(&recs, Statistic::RecErr, Aggregation::Mean).unwrap();
        let a = ScanId {
            dataset: "d".into(),
            volume: "a".into(),
        };
        assert_eq!(m[&a], 2.0);
        assert_eq!(m.len(), 2);
    }
}
