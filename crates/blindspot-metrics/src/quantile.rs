//! The one quantile of sorted data that the statistics of the workspace use (the bootstrap's
//! percentile intervals, the gate's medians and MADs, the scan aggregations of blindspot-ood).

/// Quantile `q` of sorted, non-empty data with linear interpolation between order statistics
/// (numpy's default, Hyndman and Fan's type 7); `q` is clamped to `[0, 1]`.
///
/// # Panics
/// When `sorted` is empty (a programmer error).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of no values");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    if frac == 0.0 {
        // an order statistic itself (also when it is infinite)
        return sorted[lo];
    }
    sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_linear() {
        // numpy.quantile([1, 2, 4, 8], q) for q = 0, 0.1, 0.5, 0.9, 1
        let v = [1.0, 2.0, 4.0, 8.0];
        for (q, want) in [(0.0, 1.0), (0.1, 1.3), (0.5, 3.0), (0.9, 6.8), (1.0, 8.0)] {
            assert!((quantile_sorted(&v, q) - want).abs() < 1e-12, "q {q}");
        }
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
        assert_eq!(quantile_sorted(&v, 2.0), 8.0);
        assert_eq!(quantile_sorted(&[1.0, f64::INFINITY], 1.0), f64::INFINITY);
    }
}
