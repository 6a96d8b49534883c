//! Property tests: the invariants every ranking metric must satisfy, and agreement with a
//! brute-force definition.

use blindspot_metrics::{RankAccumulator, RankedScores};
use proptest::prelude::*;

fn ranked(scores: &[f64], labels: &[bool]) -> RankedScores<f64> {
    let mut acc = RankAccumulator::<f64>::new();
    acc.push(scores, labels).unwrap();
    acc.finish()
}

/// (auroc, ap, best dice, fpr at 90 % tpr) or None when a class is missing.
fn all_metrics(r: &RankedScores<f64>) -> Option<(f64, f64, f64, f64)> {
    Some((
        r.auroc().ok()?,
        r.average_precision().ok()?,
        r.best_dice().ok()?.dice,
        r.fpr_at_tpr(0.9).ok()?,
    ))
}

/// AUROC by counting every (positive, negative) pair, ties one half.
fn brute_auroc(scores: &[f64], labels: &[bool]) -> f64 {
    let (mut num, mut pairs) = (0.0, 0.0);
    for (i, &si) in scores.iter().enumerate().filter(|(i, _)| labels[*i]) {
        let _ = i;
        for (_, &sj) in scores.iter().enumerate().filter(|(j, _)| !labels[*j]) {
            pairs += 1.0;
            num += if si > sj {
                1.0
            } else if si == sj {
                0.5
            } else {
                0.0
            };
        }
    }
    num / pairs
}

/// AP straight from its definition: precision at each distinct threshold times recall gain.
fn brute_ap(scores: &[f64], labels: &[bool]) -> f64 {
    let p = labels.iter().filter(|&&l| l).count() as f64;
    let mut thresholds: Vec<f64> = scores.to_vec();
    thresholds.sort_by(|a, b| b.total_cmp(a));
    thresholds.dedup();
    let (mut ap, mut prev_recall) = (0.0, 0.0);
    for t in thresholds {
        let tp = scores
            .iter()
            .zip(labels)
            .filter(|(s, l)| **s >= t && **l)
            .count() as f64;
        let fp = scores
            .iter()
            .zip(labels)
            .filter(|(s, l)| **s >= t && !**l)
            .count() as f64;
        ap += (tp / p - prev_recall) * tp / (tp + fp);
        prev_recall = tp / p;
    }
    ap
}

/// Scores on a coarse grid (many ties) with labels, both classes present.
fn tied_case() -> impl Strategy<Value = (Vec<f64>, Vec<bool>)> {
    (2usize..80)
        .prop_flat_map(|n| {
            (
                prop::collection::vec((-8i32..8).prop_map(|k| f64::from(k) / 4.0), n),
                prop::collection::vec(any::<bool>(), n),
            )
        })
        .prop_filter("both classes", |(_, l)| {
            l.iter().any(|&x| x) && l.iter().any(|&x| !x)
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn matches_brute_force((s, l) in tied_case()) {
        let r = ranked(&s, &l);
        prop_assert!((r.auroc().unwrap() - brute_auroc(&s, &l)).abs() < 1e-12);
        prop_assert!((r.average_precision().unwrap() - brute_ap(&s, &l)).abs() < 1e-12);
    }

    #[test]
    fn permutation_invariant((s, l) in tied_case(), seed in any::<u64>()) {
        use rand::{SeedableRng, seq::SliceRandom};
        let mut idx: Vec<usize> = (0..s.len()).collect();
        idx.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        let s2: Vec<f64> = idx.iter().map(|&i| s[i]).collect();
        let l2: Vec<bool> = idx.iter().map(|&i| l[i]).collect();
        prop_assert_eq!(all_metrics(&ranked(&s, &l)), all_metrics(&ranked(&s2, &l2)));
    }

    #[test]
    fn invariant_under_strictly_increasing_transforms((s, l) in tied_case()) {
        // x -> x^3 + 2x + 7 and x -> exp(x) are strictly increasing (exact on this grid for
        // the first; the second keeps distinct grid points distinct).
        let cubic: Vec<f64> = s.iter().map(|x| x * x * x + 2.0 * x + 7.0).collect();
        let exp: Vec<f64> = s.iter().map(|x| x.exp()).collect();
        let base = all_metrics(&ranked(&s, &l));
        prop_assert_eq!(base, all_metrics(&ranked(&cubic, &l)));
        prop_assert_eq!(base, all_metrics(&ranked(&exp, &l)));
    }

    #[test]
    fn batch_split_and_merge_invariant((s, l) in tied_case(), cuts in prop::collection::vec(0usize..80, 0..5)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (s.len() + 1)).collect();
        cuts.push(0);
        cuts.push(s.len());
        cuts.sort_unstable();
        let mut merged = RankAccumulator::<f64>::new();
        for w in cuts.windows(2) {
            let mut part = RankAccumulator::<f64>::new();
            part.push(&s[w[0]..w[1]], &l[w[0]..w[1]]).unwrap();
            merged.merge(part);
        }
        prop_assert_eq!(all_metrics(&ranked(&s, &l)), all_metrics(&merged.finish()));
    }

    #[test]
    fn negating_untied_scores_flips_auroc(perm in Just((0..60).collect::<Vec<i32>>()).prop_shuffle(),
                                          l in prop::collection::vec(any::<bool>(), 60)) {
        prop_assume!(l.iter().any(|&x| x) && l.iter().any(|&x| !x));
        let s: Vec<f64> = perm.iter().map(|&k| f64::from(k) * 0.37).collect();
        let neg: Vec<f64> = s.iter().map(|x| -x).collect();
        let a = ranked(&s, &l).auroc().unwrap();
        let b = ranked(&neg, &l).auroc().unwrap();
        prop_assert!((a - (1.0 - b)).abs() < 1e-12);
    }

    #[test]
    fn f32_and_f64_agree_and_zeros_tie((s, l) in tied_case()) {
        // Flip the sign of zero scores: -0.0 and 0.0 must tie.
        let s_neg0: Vec<f64> = s.iter().map(|&x| if x == 0.0 { -0.0 } else { x }).collect();
        let s32: Vec<f32> = s_neg0.iter().map(|&x| x as f32).collect();
        let mut acc = RankAccumulator::<f32>::new();
        acc.push(&s32, &l).unwrap();
        let r32 = acc.finish();
        let r64 = ranked(&s, &l);
        prop_assert_eq!(r32.auroc().unwrap(), r64.auroc().unwrap());
        prop_assert_eq!(r32.average_precision().unwrap(), r64.average_precision().unwrap());
        prop_assert_eq!(r32.best_dice().unwrap().dice, r64.best_dice().unwrap().dice);
    }

    #[test]
    fn best_dice_is_the_max_over_thresholds((s, l) in tied_case()) {
        let best = ranked(&s, &l).best_dice().unwrap();
        let mut brute: f64 = 0.0;
        for &t in &s {
            let t = t.next_down();
            brute = brute.max(blindspot_metrics::dice_at_threshold(&s, &l, t).unwrap());
        }
        prop_assert_eq!(best.dice, brute);
        prop_assert_eq!(blindspot_metrics::dice_at_threshold(&s, &l, best.threshold).unwrap(), best.dice);
    }

    #[test]
    fn fpr_threshold_is_the_smallest_valid_one(h in prop::collection::vec((0i32..30).prop_map(f64::from), 1..100),
                                               target in 0.0f64..0.99) {
        let t = blindspot_metrics::threshold_for_fpr(&h, target).unwrap();
        let fpr_at = |th: f64| h.iter().filter(|&&x| x > th).count() as f64 / h.len() as f64;
        prop_assert!(t.fpr <= target);
        prop_assert_eq!(t.fpr, fpr_at(t.threshold));
        // The next lower score would exceed the target.
        if let Some(lower) = h.iter().copied().filter(|&x| x < t.threshold).max_by(f64::total_cmp) {
            prop_assert!(fpr_at(lower) > target);
        }
    }
}

/// Large enough for the parallel radix sort on a 4-thread pool, checked against a comparison
/// sort, on both the counting and the sorting path.
#[test]
fn large_inputs_match_a_comparison_sort() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let n = 300_000;
    let labels: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.1).collect();
    // Coarse grid (counting path) and fine grid (radix-sort path, ~10^5 distinct values).
    for grid in [512.0f32, 65536.0] {
        let scores: Vec<f32> = labels
            .iter()
            .map(|&l| ((rng.random::<f32>() + if l { 0.3 } else { 0.0 }) * grid).round() / grid)
            .collect();
        check_against_comparison_sort(&scores, &labels);
    }
}

fn check_against_comparison_sort(scores: &[f32], labels: &[bool]) {
    let n = scores.len();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(4)
        .build()
        .unwrap();
    let r = pool.install(|| {
        let mut acc = RankAccumulator::<f32>::new();
        acc.push(scores, labels).unwrap();
        acc.finish()
    });
    let one_shot = pool.install(|| RankedScores::<f32>::from_scores(scores, labels).unwrap());
    // Reference: one comparison sort, then the same definitions.
    let mut pairs: Vec<(f32, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let p = labels.iter().filter(|&&l| l).count() as u64;
    let n_neg = n as u64 - p;
    let (mut tp, mut fp, mut twice_u, mut i) = (0u64, 0u64, 0u128, 0);
    let (mut distinct, mut ap) = (0, 0.0);
    while i < pairs.len() {
        let (mut tp_v, mut fp_v) = (0u64, 0u64);
        let v = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == v {
            if pairs[i].1 {
                tp_v += 1
            } else {
                fp_v += 1
            }
            i += 1;
        }
        let below = n_neg - fp - fp_v;
        twice_u += u128::from(tp_v) * u128::from(2 * below + fp_v);
        tp += tp_v;
        fp += fp_v;
        if tp_v > 0 {
            ap += (tp_v as f64 / p as f64) * (tp as f64 / (tp + fp) as f64);
        }
        distinct += 1;
    }
    let auroc = twice_u as f64 / (2.0 * p as f64 * n_neg as f64);
    assert_eq!(r.auroc().unwrap(), auroc);
    assert_eq!(one_shot.auroc().unwrap(), auroc);
    assert_eq!(r.average_precision().unwrap(), ap);
    assert_eq!(one_shot.average_precision().unwrap(), ap);
    assert_eq!(one_shot.tallies().count(), distinct);
    assert_eq!(r.tallies().count(), distinct);
    assert_eq!(r.tallies().map(|t| t.positives).sum::<u64>(), tp);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 12,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Over 4,096 distinct scores the radix-sort path runs (below it, exact counting):
    /// the same invariants hold there.
    #[test]
    fn sorted_path_invariants(seed in any::<u64>(), cut in 0usize..6000) {
        use rand::{Rng, SeedableRng, seq::SliceRandom};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = 6000;
        let s: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.3).collect();
        let l: Vec<bool> = s.iter().map(|&x| rng.random::<f64>() < 0.5 + x * 0.5).collect();
        prop_assume!(l.iter().any(|&x| x) && l.iter().any(|&x| !x));
        let base = all_metrics(&ranked(&s, &l));

        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut rng);
        let s2: Vec<f64> = idx.iter().map(|&i| s[i]).collect();
        let l2: Vec<bool> = idx.iter().map(|&i| l[i]).collect();
        prop_assert_eq!(base, all_metrics(&ranked(&s2, &l2)));

        let mut merged = RankAccumulator::<f64>::new();
        for (a, b) in [(0, cut), (cut, n)] {
            let mut part = RankAccumulator::<f64>::new();
            part.push(&s[a..b], &l[a..b]).unwrap();
            merged.merge(part);
        }
        prop_assert_eq!(base, all_metrics(&merged.finish()));

        let neg: Vec<f64> = s.iter().map(|x| -x).collect();
        let flipped = ranked(&neg, &l).auroc().unwrap();
        prop_assert!((base.unwrap().0 - (1.0 - flipped)).abs() < 1e-12);
    }
}
