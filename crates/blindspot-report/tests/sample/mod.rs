//! A small hand-built [`Results`] value with every part filled in, shared by the tests and
//! the `sample_report` example.

use std::path::Path;

use blindspot_ood::Decision;
use blindspot_report::*;

fn roc(k: f64) -> Vec<[f64; 2]> {
    (0..=50)
        .map(|i| i as f64 / 50.0)
        .map(|x| [x, x.powf(1.0 / k)])
        .collect()
}

fn pr(k: f64) -> Vec<[f64; 2]> {
    (0..=50)
        .map(|i| i as f64 / 50.0)
        .map(|r| [r, (1.0 - r.powf(k)).clamp(0.02, 1.0)])
        .collect()
}

fn fpr_curve(scale: f64) -> Vec<[f64; 2]> {
    (0..=40)
        .map(|i| 0.05 + i as f64 * 0.02)
        .map(|t| [t, (-t / scale).exp().min(1.0)])
        .collect()
}

fn det(auroc: f64) -> Detection {
    Detection {
        auroc: Estimate::with_ci(auroc, (auroc - 0.04).max(0.0), (auroc + 0.03).min(1.0)),
        auprc: Estimate::with_ci(
            auroc * 0.9,
            (auroc * 0.9 - 0.05).max(0.0),
            (auroc * 0.9 + 0.04).min(1.0),
        ),
        fpr_at_95_tpr: Estimate::with_ci(
            1.0 - auroc * 0.8,
            (0.95 - auroc * 0.8).max(0.0),
            (1.05 - auroc * 0.8).min(1.0),
        ),
    }
}

/// (name, role, healthy FPR at threshold, OOD AUROC of the plain scores, lesional slices)
const SETS: [(&str, TestSetRole, f64, f64, usize); 6] = [
    ("site-A T2", TestSetRole::InDistribution, 0.051, 0.5, 0),
    ("site-B T2", TestSetRole::OutOfDistribution, 0.21, 0.86, 40),
    ("T1", TestSetRole::OutOfDistribution, 0.47, 0.97, 38),
    ("flipped", TestSetRole::OutOfDistribution, 0.12, 0.78, 41),
    ("skull", TestSetRole::OutOfDistribution, 0.33, 0.92, 0),
    (
        "site-A T2 lesional",
        TestSetRole::InDistribution,
        0.06,
        0.55,
        52,
    ),
];

const STATS: [(&str, &str, bool); 5] = [
    ("rec_err", "Reconstruction error", false),
    ("coded_elbo", "ELBO (paper's coding)", false),
    ("waic", "WAIC (5 members)", false),
    ("dose", "DoSE", false),
    ("entropy", "Residual entropy H_l1", true),
];

fn slice_image(n: usize, lesion: bool, noise: f32) -> [GrayImage; 5] {
    let c = n as f32 / 2.0;
    let mut input = vec![0f32; n * n];
    let mut recon = vec![0f32; n * n];
    let mut mask = vec![0f32; n * n];
    for y in 0..n {
        for x in 0..n {
            let (dx, dy) = (
                (x as f32 - c) / (0.42 * n as f32),
                (y as f32 - c) / (0.35 * n as f32),
            );
            let r2 = dx * dx + dy * dy;
            if r2 < 1.0 {
                let tissue =
                    0.5 + 0.3 * (1.0 - r2) + noise * (((x * 7 + y * 13) % 5) as f32 / 5.0 - 0.4);
                recon[y * n + x] = 0.5 + 0.3 * (1.0 - r2);
                let (lx, ly) = (x as f32 - 0.6 * n as f32, y as f32 - 0.4 * n as f32);
                let in_lesion = lesion && lx * lx + ly * ly < (0.08 * n as f32).powi(2);
                mask[y * n + x] = f32::from(u8::from(in_lesion));
                input[y * n + x] = if in_lesion { 1.0 } else { tissue };
            }
        }
    }
    let residual: Vec<f32> = input
        .iter()
        .zip(&recon)
        .map(|(a, b)| (a - b).max(0.0))
        .collect();
    let thresholded: Vec<f32> = residual
        .iter()
        .map(|&r| f32::from(u8::from(r > 0.2)))
        .collect();
    let img = |data: Vec<f32>| GrayImage {
        width: n,
        height: n,
        data,
    };
    [
        img(input),
        img(recon),
        img(residual),
        img(mask),
        img(thresholded),
    ]
}

/// Writes the example slice grids into `dir` and returns the hand-built results that
/// reference them.
pub fn sample_results(dir: &Path) -> Results {
    let config = serde_json::json!({"name": "sample", "data": {"size": 32}, "model": {"kind": "vae", "width": 0.5}, "seed": 7});
    let mut r = Results::new(
        "sample",
        config,
        ThresholdInfo {
            value: 0.2315,
            target_fpr: Some(0.05),
            calibrated_on: "healthy site-A T2 validation".into(),
        },
    );
    r.wall_times = vec![
        WallTime {
            step: "synth".into(),
            seconds: 3.2,
        },
        WallTime {
            step: "train".into(),
            seconds: 412.0,
        },
        WallTime {
            step: "evaluate".into(),
            seconds: 55.5,
        },
    ];
    r.bootstrap = Some(BootstrapInfo {
        resamples: 200,
        level: 0.95,
        unit: "scan".into(),
        seed: 7,
    });
    r.statistics = STATS
        .iter()
        .map(|&(n, l, p)| StatisticInfo {
            name: n.into(),
            label: l.into(),
            prior_knowledge: p,
        })
        .collect();
    for (i, &(name, role, fpr, ood_auroc, lesional)) in SETS.iter().enumerate() {
        let has_lesions = lesional > 0;
        let is_ood = role == TestSetRole::OutOfDistribution;
        let mut t = TestSetResult {
            name: name.into(),
            role,
            scans: 6,
            slices: SliceCounts {
                id: if is_ood { 0 } else { 120 - lesional },
                healthy_ood: if is_ood { 120 - lesional } else { 0 },
                lesional,
            },
            pixel: vec![
                PixelMetrics {
                    method: "vae".into(),
                    baseline: false,
                    auroc: has_lesions.then(|| {
                        Estimate::with_ci(
                            0.91 - 0.02 * i as f64,
                            0.88 - 0.02 * i as f64,
                            0.93 - 0.02 * i as f64,
                        )
                    }),
                    ap: has_lesions.then(|| Estimate::with_ci(0.42, 0.35, 0.49)),
                    best_dice: has_lesions.then_some(BestDice {
                        dice: 0.44,
                        threshold: 0.31,
                    }),
                    dice_at_threshold: has_lesions.then(|| Estimate::with_ci(0.37, 0.31, 0.42)),
                    healthy_fpr_at_threshold: Some(Estimate::with_ci(
                        fpr,
                        fpr * 0.8,
                        (fpr * 1.2).min(1.0),
                    )),
                },
                PixelMetrics {
                    method: "intensity threshold".into(),
                    baseline: true,
                    auroc: has_lesions.then(|| Estimate::point(0.83)),
                    ap: has_lesions.then(|| Estimate::point(0.3)),
                    best_dice: has_lesions.then_some(BestDice {
                        dice: 0.35,
                        threshold: 0.9,
                    }),
                    dice_at_threshold: has_lesions.then(|| Estimate::point(0.29)),
                    healthy_fpr_at_threshold: Some(Estimate::point((fpr * 1.4).min(1.0))),
                },
            ],
            ood: Vec::new(),
            disentangling: Vec::new(),
            curves: Curves::default(),
            slice_grids: Vec::new(),
        };
        if name != "site-A T2" {
            for (j, &(stat, _, prior)) in STATS.iter().enumerate() {
                let a = if prior {
                    0.6
                } else {
                    (ood_auroc - 0.02 * j as f64).clamp(0.0, 1.0)
                };
                t.ood.push(OodDetection {
                    statistic: stat.into(),
                    all: Some(det(a)),
                    lesional: has_lesions.then(|| det((a + 0.03).min(1.0))),
                    healthy: (is_ood && lesional < 120).then(|| det(a)),
                });
                if has_lesions {
                    let d = if prior {
                        0.86 - 0.01 * j as f64
                    } else {
                        0.49 + 0.02 * j as f64
                    };
                    t.disentangling.push(Disentangling {
                        statistic: stat.into(),
                        auroc: Estimate::with_ci(d, d - 0.05, d + 0.05),
                    });
                }
            }
        }
        if has_lesions {
            t.curves.roc = vec![
                Curve::thinned("vae", &roc(6.0), 30),
                Curve::thinned("intensity threshold", &roc(3.5), 30),
            ];
            t.curves.pr = vec![
                Curve::thinned("vae", &pr(0.6), 30),
                Curve::thinned("intensity threshold", &pr(0.4), 30),
            ];
        }
        // exp(-t / scale) passes through (threshold, fpr)
        t.curves.fpr_vs_threshold = vec![Curve::thinned("vae", &fpr_curve(-0.2315 / fpr.ln()), 40)];
        let (kind, lesion, noise) = match (role, has_lesions) {
            (_, true) => (GridKind::Lesional, true, 0.05),
            (TestSetRole::InDistribution, false) => (GridKind::InDistribution, false, 0.05),
            (TestSetRole::OutOfDistribution, false) => (GridKind::OutOfDistribution, false, 0.4),
        };
        if i < 3 || name == "skull" {
            let rel = format!("grids/{}.png", slug(name));
            let grid = SliceGrid {
                title: format!("{name}: example slices"),
                columns: SliceGrid::PAPER_COLUMNS
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
                rows: (0..2)
                    .map(|k| GridRow {
                        label: format!("scan {k}, slice {}", 10 + k),
                        panels: slice_image(32, lesion, noise).to_vec(),
                    })
                    .collect(),
                display_ranges: Vec::new(),
            };
            write_slice_grid_with(&grid, &SliceGrid::paper_styles(), &dir.join(&rel))
                .expect("sample grid");
            t.slice_grids.push(SliceGridRef {
                kind,
                path: rel,
                caption: format!("Examples from {name}."),
            });
        }
        r.test_sets.push(t);
    }
    let vals = |mean: f64, n: usize| {
        (0..n)
            .map(|k| mean + 0.3 * ((k * 37 % 101) as f64 / 101.0 - 0.5))
            .collect::<Vec<f64>>()
    };
    let (h_id, h_b, l_b) = (vals(0.2, 200), vals(0.45, 160), vals(0.55, 40));
    r.histograms = vec![Histogram::from_values(
        "rec_err",
        &[
            ("site-A T2 healthy", &h_id),
            ("site-B T2 healthy", &h_b),
            ("site-B T2 lesional", &l_b),
        ],
        30,
    )];
    r.gate = Some(GateResult {
        per_set: SETS
            .iter()
            .map(|&(name, role, ..)| {
                let rejected = if role == TestSetRole::OutOfDistribution {
                    6
                } else {
                    0
                };
                let ood = role == TestSetRole::OutOfDistribution;
                GateSetResult {
                    test_set: name.into(),
                    scans: 6,
                    in_distribution: if ood { 0 } else { 5 },
                    lesion_suspected: if ood { 0 } else { 1 },
                    rejected,
                    lesional_scans: 3,
                    rejection: Some(Estimate::with_ci(
                        rejected as f64 / 6.0,
                        rejected as f64 / 6.0,
                        rejected as f64 / 6.0,
                    )),
                    healthy_fpr_all: Some(Estimate::with_ci(
                        if ood { 0.21 } else { 0.051 },
                        if ood { 0.15 } else { 0.04 },
                        if ood { 0.27 } else { 0.06 },
                    )),
                    healthy_fpr_accepted: (!ood).then(|| Estimate::with_ci(0.052, 0.04, 0.065)),
                }
            })
            .collect(),
        fraction_rejected: 24.0 / 36.0,
        dice_accepted: Some(Estimate::with_ci(0.52, 0.44, 0.58)),
        dice_all: Some(Estimate::with_ci(0.37, 0.31, 0.42)),
        risk_coverage: (1..=20)
            .map(|i| i as f64 / 20.0)
            .map(|c| [c, 0.3 + 0.4 * c * c])
            .collect(),
        aurc: Some(Estimate::with_ci(0.43, 0.39, 0.47)),
        healthy_fpr_accepted: Some(0.062),
        healthy_fpr_all: Some(0.19),
        pixel_ap_accepted: Some(0.48),
        pixel_ap_all: Some(0.31),
        id_acceptance: Some(1.0),
        scans: SETS
            .iter()
            .flat_map(|&(name, role, ..)| {
                (0..6).map(move |i| GateScan {
                    test_set: name.into(),
                    scan: format!("{name}-{i}"),
                    lesional: i % 2 == 1,
                    decision: match (role, i) {
                        (TestSetRole::OutOfDistribution, 0..=4) => Decision::OutOfDistribution,
                        (_, 5) => Decision::LesionSuspected,
                        _ => Decision::InDistribution,
                    },
                    shift_score: i as f64,
                    lesion_score: 1.0 - i as f64,
                    false_positives: 50 + i as u64,
                    healthy_pixels: 1000,
                })
            })
            .collect(),
        criteria: Some(blindspot_ood::GateGoals::default()),
        goals: Some(GateGoalNumbers {
            id_acceptance: Some(Estimate::with_ci(1.0, 1.0, 1.0)),
            lesional_acceptance: Some(Estimate::with_ci(1.0, 1.0, 1.0)),
            lesion_sensitivity: Some(Estimate::with_ci(0.97, 0.92, 1.0)),
            healthy_flag_rate: Some(Estimate::with_ci(0.03, 0.0, 0.08)),
            lesion_auroc: Some(Estimate::with_ci(0.98, 0.96, 1.0)),
            lesion_roc: vec![[0.0, 0.0], [0.0, 0.8], [0.1, 0.95], [1.0, 1.0]],
        }),
    });
    r.disentangling_by_size = [
        (0.0, 0.02, 30, 0.82),
        (0.02, 0.05, 44, 0.74),
        (0.05, 0.1, 51, 0.66),
    ]
    .iter()
    .map(|&(low, high, positives, h)| SizeBin {
        low,
        high,
        positives,
        auroc: vec![
            ("entropy".into(), Estimate::with_ci(h, h - 0.06, h + 0.05)),
            ("rec_err".into(), Estimate::with_ci(0.58, 0.52, 0.64)),
        ],
    })
    .collect();
    r
}
