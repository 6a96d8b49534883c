//! The one quantile definition of the workspace (numpy's default), on sorted data (the
//! bootstrap's percentile intervals, the gate's medians and MADs, the scan aggregations of
//! blindspot-ood) and on unsorted volumes by selection (blindspot-io's intensity
//! normalisation and histogram landmarks).

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

/// Quantile `q` of unsorted, non-empty `f32` data, the same value as [`quantile_sorted`] of
/// the sorted data, found by selection in `O(n)` instead of sorting a copy: for the million
/// voxels of a volume. Reorders `values`; `q` is clamped to `[0, 1]`.
///
/// # Panics
/// When `values` is empty (a programmer error).
pub fn quantile_select(values: &mut [f32], q: f64) -> f64 {
    assert!(!values.is_empty(), "quantile of no values");
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let i = pos.floor() as usize;
    let frac = pos - i as f64;
    let (_, lo, rest) = values.select_nth_unstable_by(i, f32::total_cmp);
    let lo = f64::from(*lo);
    if frac == 0.0 || rest.is_empty() {
        return lo;
    }
    // the next order statistic is the smallest of the values above the selected one
    let hi = f64::from(rest.iter().copied().fold(f32::INFINITY, f32::min));
    lo + (hi - lo) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_matches_numpy_on_unsorted_data() {
        // np.percentile([10, 3, 1, 4, 2], [0, 25, 50, 90, 100]) = [1, 2, 3, 7.6, 10]
        for (q, want) in [(0.0, 1.0), (0.25, 2.0), (0.5, 3.0), (0.9, 7.6), (1.0, 10.0)] {
            let mut v = vec![10.0, 3.0, 1.0, 4.0, 2.0];
            assert!((quantile_select(&mut v, q) - want).abs() < 1e-6, "q {q}");
        }
    }

    #[test]
    fn selection_agrees_with_the_sorted_quantile() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for n in [1usize, 2, 3, 10, 257] {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-5.0f32..5.0)).collect();
            let mut sorted: Vec<f64> = v.iter().map(|&x| f64::from(x)).collect();
            sorted.sort_by(f64::total_cmp);
            for q in [0.0, 0.01, 0.25, 0.5, 0.9, 0.995, 1.0] {
                let got = quantile_select(&mut v.clone(), q);
                let want = quantile_sorted(&sorted, q);
                assert!((got - want).abs() < 1e-12, "n {n} q {q}: {got} vs {want}");
            }
        }
    }

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
