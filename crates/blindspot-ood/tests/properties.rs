//! Invariants under permutation and rescaling (proptest).

use blindspot_ood::entropy::{residual_entropy_clean, residual_entropy_paper};
use blindspot_ood::waic::{WaicKind, ensemble_waic};
use blindspot_ood::{SliceId, SliceRecord, Statistic};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The clean entropy is in [0, 1], unchanged by a pixel permutation (mask permuted
    /// alike) and by rescaling the residual.
    #[test]
    fn clean_entropy_is_bounded_and_invariant(
        values in prop::collection::vec(0.0f32..10.0, 30..120),
        mask_bits in prop::collection::vec(any::<bool>(), 120),
        rotate in 0usize..120,
        scale in 0.01f32..100.0,
    ) {
        let n = values.len();
        let mask: Vec<bool> = (0..n).map(|i| mask_bits[i] || i < 12).collect();
        let h = residual_entropy_clean(&values, &mask, 10).unwrap().unwrap();
        prop_assert!((0.0..=1.0).contains(&h));
        let k = rotate % n;
        let (mut rv, mut rm) = (values.clone(), mask.clone());
        rv.rotate_left(k);
        rm.rotate_left(k);
        let hr = residual_entropy_clean(&rv, &rm, 10).unwrap().unwrap();
        prop_assert!((h - hr).abs() < 1e-9);
        let scaled: Vec<f32> = values.iter().map(|v| v * scale).collect();
        let hs = residual_entropy_clean(&scaled, &mask, 10).unwrap().unwrap();
        prop_assert!((h - hs).abs() < 1e-5);
        // The paper's variant is permutation-invariant too (it is not scale-invariant: eps).
        let p = residual_entropy_paper(&values, &mask, 1e-4, 10).unwrap().unwrap();
        let pr = residual_entropy_paper(&rv, &rm, 1e-4, 10).unwrap().unwrap();
        prop_assert!((p - pr).abs() < 1e-9);
    }

    /// WAIC does not depend on the order in which members list their slices.
    #[test]
    fn waic_ignores_member_record_order(
        values in prop::collection::vec(prop::collection::vec(-5.0f64..5.0, 8), 3),
        rotations in prop::collection::vec(0usize..8, 3),
    ) {
        let members: Vec<Vec<SliceRecord>> = values
            .iter()
            .map(|vals| {
                vals.iter()
                    .enumerate()
                    .map(|(s, &v)| {
                        let mut r = SliceRecord::new(SliceId::new("d", "v", s as u32), 10, 0);
                        r.set(Statistic::CodedElbo, v);
                        r
                    })
                    .collect()
            })
            .collect();
        let refs: Vec<&[SliceRecord]> = members.iter().map(Vec::as_slice).collect();
        let a = ensemble_waic(&refs, WaicKind::Paper).unwrap();
        let shuffled: Vec<Vec<SliceRecord>> = members
            .iter()
            .zip(&rotations)
            .map(|(m, &k)| {
                let mut m = m.clone();
                m.rotate_left(k);
                m
            })
            .collect();
        let refs: Vec<&[SliceRecord]> = shuffled.iter().map(Vec::as_slice).collect();
        prop_assert_eq!(a, ensemble_waic(&refs, WaicKind::Paper).unwrap());
    }
}
