//! The gate on synthetic scans: healthy, globally shifted, and lesional.

use blindspot_ood::gate::{Decision, Gate, GateConfig, Role, ScanVerdict};
use blindspot_ood::{OodError, SliceId, SliceRecord, Statistic};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SLICES: u32 = 6;

#[derive(Clone, Copy)]
enum Kind {
    Healthy,
    Shifted,
    Lesional,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(rand_distr::StandardNormal)
}

/// One scan: per-scan offsets plus per-slice noise; a shift moves every slice, a lesion makes
/// two slices' residual high and concentrated (a bright peak, a low entropy).
fn scan(rng: &mut ChaCha8Rng, dataset: &str, volume: usize, kind: Kind) -> Vec<SliceRecord> {
    let rec_off = 0.005 * normal(rng);
    let kl_off = 0.03 * normal(rng);
    let q95_off = 0.01 * normal(rng);
    (0..SLICES)
        .map(|s| {
            let mut r = SliceRecord::new(SliceId::new(dataset, format!("v{volume:04}"), s), 500, 0);
            let mut rec = 0.10 + rec_off + 0.01 * normal(rng);
            let mut kl = 1.0 + kl_off + 0.05 * normal(rng);
            let mut h = 0.90 + 0.01 * normal(rng);
            let mut q95 = 0.30 + q95_off + 0.01 * normal(rng);
            let mut peak = 0.60 + 0.03 * normal(rng);
            match kind {
                Kind::Healthy => {}
                Kind::Shifted => {
                    rec += 0.08;
                    kl += 0.4;
                    h += 0.02;
                    q95 += 0.1;
                    peak += 0.1;
                }
                Kind::Lesional if s == 2 || s == 3 => {
                    rec += 0.2;
                    h -= 0.3;
                    q95 += 0.1;
                    peak += 0.5;
                    r.lesion_pixels = 200;
                }
                Kind::Lesional => {}
            }
            r.set(Statistic::RecErr, rec);
            r.set(Statistic::Kl, kl);
            r.set(Statistic::EntropyClean, h);
            r.set(Statistic::ResidualQ95, q95);
            r.set(Statistic::ResidualPeak, peak);
            r.set(Statistic::IntensityIqr, 1.3 + 0.02 * normal(rng));
            r
        })
        .collect()
}

fn scans(seed: u64, dataset: &str, n: usize, kind: Kind) -> Vec<SliceRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .flat_map(|v| scan(&mut rng, dataset, v, kind))
        .collect()
}

#[test]
fn shifted_scans_are_rejected_and_lesional_ones_flagged_with_reasons() {
    let healthy = scans(1, "camcan-val", 200, Kind::Healthy);
    let gate = Gate::fit_split(&healthy, GateConfig::default()).unwrap();
    assert_eq!(gate.shift_threshold().n, 100);

    let shifted = gate
        .decide_all(&scans(2, "other-site", 20, Kind::Shifted))
        .unwrap();
    assert!(
        shifted
            .iter()
            .all(|v| v.decision == Decision::OutOfDistribution)
    );
    assert!(shifted.iter().all(|v| !v.lesion_map_reported));
    let v = &shifted[0];
    assert!(v.shift_score > v.shift_threshold);
    assert!(
        v.reasons
            .iter()
            .any(|r| r.role == Role::Shift && r.exceeds && r.z > 3.0),
        "a shift component names the cause: {:?}",
        v.reasons
    );

    let lesional = gate
        .decide_all(&scans(3, "camcan-lesion", 20, Kind::Lesional))
        .unwrap();
    // Healthy variation sends about alpha = 5 % of scans to OOD, a little more here: the lesion
    // raises the residual level of two of the six slices, so the lower quartile is taken over
    // four healthy ones. No lesion goes unseen.
    let flagged: Vec<&ScanVerdict> = lesional
        .iter()
        .filter(|v| v.decision == Decision::LesionSuspected)
        .collect();
    assert!(
        flagged.len() >= 15,
        "{} of 20 lesional scans flagged",
        flagged.len()
    );
    assert!(
        lesional
            .iter()
            .all(|v| v.decision != Decision::InDistribution)
    );
    assert!(flagged.iter().all(|v| v.lesion_map_reported));
    for r in flagged[0].reasons.iter().filter(|r| r.role == Role::Lesion) {
        assert!(r.exceeds, "both lesion components are out: {r:?}");
    }

    let fresh = gate
        .decide_all(&scans(4, "camcan-test", 200, Kind::Healthy))
        .unwrap();
    let in_dist = fresh
        .iter()
        .filter(|v| v.decision == Decision::InDistribution)
        .count();
    assert!(
        in_dist >= 160,
        "{in_dist} of 200 healthy scans in distribution"
    );
}

#[test]
fn the_verdict_round_trips_through_json_written_atomically() {
    let healthy = scans(5, "camcan-val", 60, Kind::Healthy);
    let gate = Gate::fit_split(&healthy, GateConfig::default()).unwrap();
    let verdict = gate.decide(&scans(6, "brats", 1, Kind::Lesional)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v0000.verdict.json");
    verdict.write_json(&path).unwrap();
    let back: ScanVerdict = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // serde_json may round the last digit of an f64; everything else is exact.
    assert_eq!(
        (&back.scan, back.decision, back.reasons.len()),
        (&verdict.scan, verdict.decision, verdict.reasons.len())
    );
    for (a, b) in back.reasons.iter().zip(&verdict.reasons) {
        assert_eq!(
            (a.role, a.component, a.exceeds),
            (b.role, b.component, b.exceeds)
        );
        assert!((a.z - b.z).abs() <= 1e-12 * b.z.abs().max(1.0));
    }
    assert!((back.shift_threshold - verdict.shift_threshold).abs() < 1e-12);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(names.len(), 1, "no temporary file is left behind");
    let missing = dir.path().join("no-such-dir").join("v.json");
    assert!(matches!(
        verdict.write_json(&missing),
        Err(OodError::Io { .. })
    ));
}

/// The split-conformal guarantee, end to end: over many independent draws of the fit and
/// calibration scans, the rate at which fresh healthy scans are rejected as OOD stays within
/// `[alpha - 1/(n+1), alpha]` (plus Monte-Carlo slack), and the rate at which they are flagged
/// "lesion suspected" stays at most `lesion_alpha`.
#[test]
fn healthy_rejection_rate_stays_within_the_conformal_guarantee() {
    let alpha = 0.1;
    let lesion_alpha = 0.05;
    let n_cal = 39;
    let seeds = 300u64;
    let mut rejected = 0usize;
    let mut flagged = 0usize;
    let mut tested = 0usize;
    for seed in 0..seeds {
        let config = GateConfig {
            alpha,
            lesion_alpha,
            seed,
            ..GateConfig::default()
        };
        let fit = scans(1000 + seed, "fit", 30, Kind::Healthy);
        let cal = scans(5000 + seed, "cal", n_cal, Kind::Healthy);
        let gate = Gate::fit(&fit, &cal, config).unwrap();
        let test = gate
            .decide_all(&scans(9000 + seed, "test", 40, Kind::Healthy))
            .unwrap();
        rejected += test
            .iter()
            .filter(|v| v.decision == Decision::OutOfDistribution)
            .count();
        flagged += test
            .iter()
            .filter(|v| v.decision == Decision::LesionSuspected)
            .count();
        tested += test.len();
    }
    let flag_rate = flagged as f64 / tested as f64;
    assert!(
        flag_rate <= lesion_alpha + 0.01,
        "healthy scans flagged at {flag_rate}, above lesion_alpha {lesion_alpha}"
    );
    let rate = rejected as f64 / tested as f64;
    let lower = alpha - 1.0 / (n_cal as f64 + 1.0);
    // Standard error of the mean rate: calibration spread sqrt(alpha(1-alpha)/n) and test
    // binomial noise, over 300 seeds: about 0.004.
    let slack = 0.015;
    assert!(
        rate <= alpha + slack && rate >= lower - slack,
        "rate {rate} outside [{lower}, {alpha}]"
    );
}

#[test]
fn bad_gate_inputs_are_clear_errors() {
    let healthy = scans(7, "camcan-val", 20, Kind::Healthy);
    // 10 calibration scans cannot support alpha = 0.05 (needs at least 19).
    let err = Gate::fit_split(&healthy, GateConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            OodError::TooFewSamples {
                needed: 19,
                got: 10,
                ..
            }
        ),
        "{err}"
    );
    let bad_alpha = GateConfig {
        alpha: 1.0,
        ..GateConfig::default()
    };
    assert!(matches!(
        Gate::fit_split(&healthy, bad_alpha),
        Err(OodError::InvalidParameter {
            name: "gate.alpha",
            ..
        })
    ));
    let mut no_peak = scans(8, "camcan-val", 60, Kind::Healthy);
    no_peak.iter_mut().for_each(|r| {
        r.values.remove(&Statistic::ResidualPeak);
    });
    assert!(matches!(
        Gate::fit_split(&no_peak, GateConfig::default()),
        Err(OodError::MissingStatistic {
            statistic: Statistic::ResidualPeak,
            ..
        })
    ));
    let gate = Gate::fit_split(
        &scans(9, "camcan-val", 60, Kind::Healthy),
        GateConfig::default(),
    )
    .unwrap();
    let mut two = scans(10, "a", 2, Kind::Healthy);
    assert!(matches!(
        gate.decide(&two),
        Err(OodError::InvalidParameter { .. })
    ));
    two.clear();
    assert!(matches!(
        gate.decide(&two),
        Err(OodError::TooFewSamples { .. })
    ));
}

#[test]
fn fit_and_calibration_scans_must_be_disjoint() {
    let healthy = scans(11, "camcan-val", 40, Kind::Healthy);
    let err = Gate::fit(&healthy, &healthy[..60], GateConfig::default()).unwrap_err();
    assert!(
        matches!(
            err,
            OodError::InvalidParameter {
                name: "calibration",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_two_sided_component_rejects_a_shift_either_way_and_the_summary_names_it() {
    use blindspot_ood::Aggregation;
    use blindspot_ood::gate::{GateComponent, Side};
    let config = GateConfig {
        shift: vec![GateComponent {
            statistic: Statistic::Kl,
            aggregation: Aggregation::Quantile(0.5),
            side: Side::Both,
        }],
        ..GateConfig::default()
    };
    let gate = Gate::fit_split(&scans(11, "val", 80, Kind::Healthy), config).unwrap();
    let mut low = scans(12, "low", 1, Kind::Healthy);
    let mut high = low.clone();
    for (l, h) in low.iter_mut().zip(&mut high) {
        let kl = l.get(Statistic::Kl).unwrap();
        l.set(Statistic::Kl, kl - 0.5);
        h.set(Statistic::Kl, kl + 0.5);
    }
    for recs in [&low, &high] {
        let v = gate.decide(recs).unwrap();
        assert_eq!(v.decision, Decision::OutOfDistribution);
        assert!(v.shift_score > 5.0, "{}", v.shift_score);
        let line = v.summary();
        assert!(
            line.starts_with("out of distribution") && line.contains("kl (q0.5)"),
            "{line}"
        );
    }
    let fine = gate.decide(&scans(13, "ok", 1, Kind::Healthy)).unwrap();
    assert!(
        fine.summary().starts_with("in distribution"),
        "{}",
        fine.summary()
    );
}

#[test]
fn decisions_print_as_their_json_names() {
    for d in [
        Decision::InDistribution,
        Decision::LesionSuspected,
        Decision::OutOfDistribution,
    ] {
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{d}\""));
    }
}
