//! The evaluation modes on a small table whose answers are worked out by hand.

use blindspot_metrics::BootstrapConfig;
use blindspot_ood::eval::{
    IdNegatives, OodMode, ScanOutcome, Scorer, bootstrap_aurc, compare_auroc, detection_set,
    disentangling_set, evaluate, paired_disentangling_sets, risk_coverage,
};
use blindspot_ood::{Dose, DoseCombine, LesionRule, ScanId, SliceId, SliceRecord, Statistic};

fn rec(dataset: &str, volume: &str, slice: u32, lesion: u32, rec_err: f64, h: f64) -> SliceRecord {
    let mut r = SliceRecord::new(SliceId::new(dataset, volume, slice), 400, lesion);
    r.set(Statistic::RecErr, rec_err);
    r.set(Statistic::EntropyClean, h);
    r
}

/// ID: rec_err 0.1..0.4, entropy high. OOD: two healthy slices with a higher residual but a
/// diffuse one (high entropy), two lesional slices with a concentrated residual (low entropy),
/// one of which has a residual inside the ID range. Plus one empty slice that never counts.
fn table() -> (Vec<SliceRecord>, Vec<SliceRecord>) {
    let id = vec![
        rec("camcan", "a", 0, 0, 0.1, 0.90),
        rec("camcan", "a", 1, 0, 0.2, 0.80),
        rec("camcan", "b", 0, 0, 0.3, 0.85),
        rec("camcan", "b", 1, 0, 0.4, 0.95),
        SliceRecord::new(SliceId::new("camcan", "b", 2), 0, 0),
    ];
    let ood = vec![
        rec("brats", "x", 0, 0, 0.5, 0.92),
        rec("brats", "x", 1, 0, 0.6, 0.88),
        rec("brats", "y", 0, 100, 0.35, 0.30),
        rec("brats", "y", 1, 100, 0.7, 0.50),
        SliceRecord::new(SliceId::new("brats", "y", 2), 0, 100),
    ];
    (id, ood)
}

fn auroc(id: &[SliceRecord], ood: &[SliceRecord], stat: Statistic, mode: OodMode) -> f64 {
    let set = detection_set(
        id,
        ood,
        &Scorer::Statistic(stat),
        mode,
        LesionRule::default(),
        IdNegatives::All,
    )
    .unwrap();
    evaluate(&set, None).unwrap().auroc
}

#[test]
fn three_detection_modes() {
    let (id, ood) = table();
    // all: 3 of 4 OOD slices beat every ID slice, 0.35 beats three: 15/16.
    assert_eq!(
        auroc(&id, &ood, Statistic::RecErr, OodMode::All),
        15.0 / 16.0
    );
    // lesional: 0.7 beats 4, 0.35 beats 3: 7/8.
    assert_eq!(
        auroc(&id, &ood, Statistic::RecErr, OodMode::Lesional),
        7.0 / 8.0
    );
    // healthy: 0.5 and 0.6 beat every ID slice.
    assert_eq!(auroc(&id, &ood, Statistic::RecErr, OodMode::Healthy), 1.0);
    // Entropy is oriented (lower = anomalous): healthy OOD entropies 0.92, 0.88 against ID
    // 0.8..0.95 -> (-0.92 beats -0.95 only; -0.88 beats -0.9, -0.95) = 3/8.
    assert_eq!(
        auroc(&id, &ood, Statistic::EntropyClean, OodMode::Healthy),
        3.0 / 8.0
    );

    let set = detection_set(
        &id,
        &ood,
        &Scorer::Statistic(Statistic::RecErr),
        OodMode::Lesional,
        LesionRule::default(),
        IdNegatives::Matched { seed: 3 },
    )
    .unwrap();
    assert_eq!(
        (set.positives(), set.negatives()),
        (2, 2),
        "ID negatives matched to positives"
    );
}

#[test]
fn disentangling_separates_a_lesion_statistic_from_an_ood_statistic() {
    let (id, ood) = table();
    let run = |stat| {
        let set = disentangling_set(
            &id,
            &[&ood],
            &Scorer::Statistic(stat),
            LesionRule::default(),
            IdNegatives::All,
        )
        .unwrap();
        assert_eq!((set.positives(), set.negatives()), (2, 6));
        evaluate(&set, None).unwrap()
    };
    // rec_err: negatives 0.1..0.6, positives 0.35 and 0.7: (3 + 6) / 12.
    let m = run(Statistic::RecErr);
    assert_eq!(m.auroc, 0.75);
    // Ranking 0.7(P) 0.6 0.5 0.4 0.35(P): AP = (1 + 2/5) / 2.
    assert!((m.auprc - 0.7).abs() < 1e-12);
    // TPR 95 % needs both positives: threshold 0.35 lets 0.4, 0.5, 0.6 through: 3/6.
    assert_eq!(m.fpr_at_95_tpr, 0.5);
    // The residual entropy puts both lesional slices below every healthy one.
    let m = run(Statistic::EntropyClean);
    assert_eq!((m.auroc, m.auprc, m.fpr_at_95_tpr), (1.0, 1.0, 0.0));
}

/// The paired comparison of two scorings of the same slices: the difference of the AUROCs of
/// the table above (1.0 - 0.75), and an interval from resampling the same scans for both.
#[test]
fn paired_comparison_of_two_statistics_on_the_same_slices() {
    let (id, ood) = table();
    let scored = |stat| {
        disentangling_set(
            &id,
            &[&ood],
            &Scorer::Statistic(stat),
            LesionRule::default(),
            IdNegatives::All,
        )
        .unwrap()
    };
    let (h, r) = (scored(Statistic::EntropyClean), scored(Statistic::RecErr));
    let cfg = BootstrapConfig {
        resamples: 200,
        level: 0.9,
        seed: 4,
    };
    let c = compare_auroc(&h, &r, &cfg).unwrap();
    assert_eq!((c.a, c.b), (1.0, 0.75));
    assert_eq!(c.difference.estimate, 0.25);
    assert!(c.difference.lower <= 0.25 && c.difference.upper >= 0.25);
    // the same slices are required
    let mut other = r.clone();
    other.labels.pop();
    other.scores.pop();
    other.scans.pop();
    assert!(compare_auroc(&h, &other, &cfg).is_err());
}

#[test]
fn a_paired_comparison_keeps_the_slices_both_statistics_score() {
    let (id, mut ood) = table();
    // the entropy is undefined on one lesional slice: the plain sets then differ
    ood.push(SliceRecord::new(SliceId::new("brats", "z", 0), 400, 100));
    ood.last_mut().unwrap().set(Statistic::RecErr, 0.8);
    let rule = LesionRule { min_pixels: 20 };
    let (h, r) = (
        Scorer::Statistic(Statistic::EntropyClean),
        Scorer::Statistic(Statistic::RecErr),
    );
    let sets = [id.as_slice(), ood.as_slice()];
    let plain_h = disentangling_set(&[], &sets, &h, rule, IdNegatives::All).unwrap();
    let plain_r = disentangling_set(&[], &sets, &r, rule, IdNegatives::All).unwrap();
    assert_ne!(plain_h.labels.len(), plain_r.labels.len());
    let cfg = BootstrapConfig {
        resamples: 50,
        level: 0.9,
        seed: 4,
    };
    assert!(compare_auroc(&plain_h, &plain_r, &cfg).is_err());
    let (ph, pr) = paired_disentangling_sets(&sets, &h, &r, rule, IdNegatives::All).unwrap();
    assert_eq!(
        (ph.labels.clone(), ph.scans.clone()),
        (pr.labels.clone(), pr.scans.clone())
    );
    assert_eq!(pr.labels.len(), plain_h.labels.len());
    assert!(compare_auroc(&ph, &pr, &cfg).is_ok());
}

#[test]
fn dose_combinations_and_missing_statistics() {
    let (id, mut ood) = table();
    let dose = Dose::fit(&id, &[Statistic::RecErr, Statistic::EntropyClean]).unwrap();
    let scorer = Scorer::Dose {
        model: &dose,
        subset: vec![Statistic::EntropyClean],
        combine: DoseCombine::LogDensitySum,
    };
    assert_eq!(scorer.name(), "dose[entropy_clean]");
    ood[0].values.remove(&Statistic::EntropyClean);
    let set = disentangling_set(
        &id,
        &[&ood],
        &scorer,
        LesionRule::default(),
        IdNegatives::All,
    )
    .unwrap();
    assert_eq!(
        set.skipped, 1,
        "the slice without entropy is counted, not scored"
    );
    let m = evaluate(&set, None).unwrap();
    assert_eq!(m.auroc, 1.0, "a low entropy density flags both lesions");
}

#[test]
fn scan_level_bootstrap_intervals_cover_the_estimate() {
    let mut id = Vec::new();
    let mut ood = Vec::new();
    for v in 0..12 {
        for s in 0..5u32 {
            let x = f64::from(v * 5 + s) / 60.0;
            id.push(rec("camcan", &format!("h{v}"), s, 0, x, 0.9));
            ood.push(rec("brats", &format!("o{v}"), s, 0, x + 0.4, 0.9));
        }
    }
    let set = detection_set(
        &id,
        &ood,
        &Scorer::Statistic(Statistic::RecErr),
        OodMode::All,
        LesionRule::default(),
        IdNegatives::All,
    )
    .unwrap();
    let cfg = BootstrapConfig {
        resamples: 200,
        level: 0.9,
        seed: 1,
    };
    let m = evaluate(&set, Some(&cfg)).unwrap();
    let ci = m.intervals.unwrap();
    for (est, ci) in [
        (m.auroc, ci.auroc),
        (m.auprc, ci.auprc),
        (m.fpr_at_95_tpr, ci.fpr_at_95_tpr),
    ] {
        assert_eq!(est, ci.estimate);
        assert!(ci.lower <= est && est <= ci.upper, "{ci:?}");
    }
    assert!(
        ci.auroc.upper > ci.auroc.lower,
        "24 scans give a non-trivial interval"
    );
    assert_eq!(m, evaluate(&set, Some(&cfg)).unwrap(), "seeded");
}

fn outcome(volume: &str, gate_score: f64, tp: u64, fp: u64, fn_: u64) -> ScanOutcome {
    ScanOutcome {
        scan: ScanId {
            dataset: "brats".into(),
            volume: volume.into(),
        },
        gate_score,
        true_positives: tp,
        false_positives: fp,
        false_negatives: fn_,
    }
}

#[test]
fn risk_coverage_by_hand() {
    // Dice: a = 1, b = 10/15, c = 0.
    let outcomes = vec![
        outcome("c", 0.9, 0, 20, 10),
        outcome("a", 0.1, 10, 0, 0),
        outcome("b", 0.5, 5, 5, 0),
    ];
    let rc = risk_coverage(&outcomes).unwrap();
    let dice = [1.0, 5.0 / 6.0, (1.0 + 2.0 / 3.0) / 3.0];
    let fp = [0.0, 2.5, 25.0 / 3.0];
    assert_eq!(rc.points.len(), 3);
    for (k, p) in rc.points.iter().enumerate() {
        assert!((p.coverage - (k + 1) as f64 / 3.0).abs() < 1e-12);
        assert!((p.mean_dice - dice[k]).abs() < 1e-12);
        assert!((p.mean_false_positives - fp[k]).abs() < 1e-12);
    }
    let aurc = dice.iter().map(|d| 1.0 - d).sum::<f64>() / 3.0;
    assert!((rc.aurc - aurc).abs() < 1e-12);
    assert!((rc.false_positive_area - fp.iter().sum::<f64>() / 3.0).abs() < 1e-12);

    // A tie with b: both enter together, one point, both coverage levels get its risk.
    let mut tied = outcomes.clone();
    tied.push(outcome("d", 0.5, 0, 0, 0));
    let rc = risk_coverage(&tied).unwrap();
    assert_eq!(rc.points.len(), 3);
    assert!((rc.points[1].coverage - 0.75).abs() < 1e-12);
    let mid = (1.0 + 2.0 / 3.0 + 1.0) / 3.0;
    let expected = (0.0 + 2.0 * (1.0 - mid) + (1.0 - (mid * 3.0) / 4.0)) / 4.0;
    assert!((rc.aurc - expected).abs() < 1e-12);

    let ci = bootstrap_aurc(
        &tied,
        &BootstrapConfig {
            resamples: 100,
            level: 0.9,
            seed: 0,
        },
    )
    .unwrap();
    assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
    assert!(risk_coverage(&[]).is_err());
    assert!(risk_coverage(&[outcome("n", f64::NAN, 0, 0, 0)]).is_err());
}

#[test]
fn tables_cover_every_set_mode_and_scorer() {
    use blindspot_ood::eval::{detection_table, disentangling_table, dose_combinations};
    let (id, ood) = table();
    let healthy_only: Vec<SliceRecord> = ood
        .iter()
        .filter(|r| r.lesion_pixels == 0)
        .cloned()
        .collect();
    let scorers = [
        Scorer::Statistic(Statistic::RecErr),
        Scorer::Statistic(Statistic::EntropyClean),
    ];
    let rows = detection_table(
        &id,
        &[("brats", &ood), ("ixi", &healthy_only)],
        &scorers,
        LesionRule::default(),
        IdNegatives::All,
        None,
    )
    .unwrap();
    // brats: 3 modes x 2 scorers; ixi (no lesional slice): `all` only.
    assert_eq!(rows.len(), 8);
    assert_eq!(rows[2].mode, Some(OodMode::Lesional));
    assert_eq!(rows[2].metrics.auroc, 7.0 / 8.0);
    assert_eq!(rows[6].test_set, "ixi");

    let dose = Dose::fit(&id, &[Statistic::RecErr, Statistic::EntropyClean]).unwrap();
    let combos = dose_combinations(&dose, DoseCombine::LogDensitySum);
    let names: Vec<String> = combos.iter().map(Scorer::name).collect();
    assert_eq!(
        names,
        [
            "dose[rec_err]",
            "dose[entropy_clean]",
            "dose[rec_err+entropy_clean]"
        ]
    );
    let rows = disentangling_table(
        &id,
        &[&ood],
        &combos,
        LesionRule::default(),
        IdNegatives::All,
        None,
    )
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[1].metrics.auroc, 1.0,
        "the entropy density alone separates the lesions"
    );
}
