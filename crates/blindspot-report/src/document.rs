//! The report as one document model ([`Block`]s: headings, paragraphs, tables, figures),
//! built from the results alone, which [`crate::markdown`] and [`crate::html`] render.

use blindspot_ood::Decision;

use crate::figures::{Plot, PlotSection};
use crate::findings::{est, est_pct, findings, pct};
use crate::schema::{
    AdequacyResult, Detection, GateResult, GridKind, Results, TestSetResult, TestSetRole,
};
use Block::{Break, Heading, Image, List, Para, Table};

/// A piece of the document.
pub(crate) enum Block {
    Heading(u8, String),
    Para(String),
    List(Vec<String>),
    Table {
        header: Vec<String>,
        rows: Vec<Vec<String>>,
    },
    /// An image, its path relative to the output directory.
    Image {
        path: String,
        caption: String,
    },
    /// Start the next images on a new row (HTML only).
    Break,
}

pub(crate) fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

pub(crate) fn role(r: TestSetRole) -> &'static str {
    match r {
        TestSetRole::InDistribution => "ID",
        TestSetRole::OutOfDistribution => "OOD",
    }
}

pub(crate) fn pixel_rows(r: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let header = [
        "test set",
        "method",
        "AUROC",
        "AP",
        "best Dice (t)",
        "Dice at t",
        "healthy FPR at t",
    ]
    .map(String::from)
    .to_vec();
    let mut rows = Vec::new();
    for t in &r.test_sets {
        for p in &t.pixel {
            rows.push(vec![
                t.name.clone(),
                if p.baseline {
                    format!("{} (baseline)", p.method)
                } else {
                    p.method.clone()
                },
                opt(p.auroc.as_ref(), est),
                opt(p.ap.as_ref(), est),
                opt(p.best_dice, |b| {
                    format!("{:.3} ({:.3})", b.dice, b.threshold)
                }),
                opt(p.dice_at_threshold.as_ref(), est),
                opt(p.healthy_fpr_at_threshold.as_ref(), est_pct),
            ]);
        }
    }
    (header, rows)
}

pub(crate) type ModeGetter = fn(&crate::schema::OodDetection) -> Option<Detection>;

pub(crate) const MODES: [(&str, ModeGetter); 3] = [
    ("all", |o| o.all),
    ("lesional", |o| o.lesional),
    ("healthy", |o| o.healthy),
];

/// Statistic × test-set matrix of a cell function; `None` when no set has a cell.
pub(crate) fn matrix(
    r: &Results,
    cell: impl Fn(&crate::schema::TestSetResult, &str) -> Option<String>,
) -> Option<(Vec<String>, Vec<Vec<String>>)> {
    let stats: Vec<(String, String)> = stat_order(r);
    let sets: Vec<&crate::schema::TestSetResult> = r
        .test_sets
        .iter()
        .filter(|t| stats.iter().any(|(s, _)| cell(t, s).is_some()))
        .collect();
    if sets.is_empty() {
        return None;
    }
    let mut header = vec!["statistic".to_string()];
    header.extend(sets.iter().map(|t| t.name.clone()));
    let rows = stats
        .iter()
        .map(|(name, label)| {
            let mut row = vec![label.clone()];
            row.extend(
                sets.iter()
                    .map(|t| cell(t, name).unwrap_or_else(|| "n/a".into())),
            );
            row
        })
        .collect();
    Some((header, rows))
}

/// Statistics in display order: those listed in `statistics`, then any others that appear.
pub(crate) fn stat_order(r: &Results) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .statistics
        .iter()
        .map(|s| (s.name.clone(), s.label.clone()))
        .collect();
    for t in &r.test_sets {
        for name in t
            .ood
            .iter()
            .map(|o| &o.statistic)
            .chain(t.disentangling.iter().map(|d| &d.statistic))
        {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.clone(), name.clone()));
            }
        }
    }
    out
}

/// The whole report, section by section: the summary, model adequacy, the findings, the test
/// sets, pixel-level detection, slice-level OOD detection, disentangling, the gate, example
/// slices and the configuration, each section followed by its plots.
pub(crate) fn document(r: &Results, plots: &[Plot]) -> Vec<Block> {
    let mut d = vec![
        Heading(1, format!("blindspot report: {}", r.experiment)),
        List(summary(r)),
    ];
    d.extend(adequacy_section(r.adequacy.as_ref()));
    d.extend(images(plots, PlotSection::Adequacy));
    d.extend(findings_section(r));
    d.extend(test_sets_section(r));
    d.extend(pixel_section(r));
    d.extend(images(plots, PlotSection::BlindSpot));
    d.push(Break);
    d.extend(images(plots, PlotSection::Pixel));
    d.extend(ood_section(r));
    d.extend(pooled_disentangling_section(r));
    d.extend(images(plots, PlotSection::Disentangling));
    d.extend(per_set_disentangling(r));
    d.extend(images(plots, PlotSection::Histogram));
    if let Some(why) = &r.gate_error {
        d.push(Heading(2, "The gate".into()));
        d.push(Para(format!(
            "The configured gate could not be fitted on the healthy validation scans, so no scan was gated: {why}."
        )));
    }
    if let Some(g) = &r.gate {
        d.extend(gate_section(r, g));
        d.extend(images(plots, PlotSection::Gate));
    }
    d.extend(example_slices_section(r));
    d.extend(configuration_section(r));
    d
}

/// The plots of `section`, in the order they were drawn.
fn images(plots: &[Plot], section: PlotSection) -> impl Iterator<Item = Block> + '_ {
    plots
        .iter()
        .filter(move |p| p.section == section)
        .map(|p| Image {
            path: p.path.clone(),
            caption: p.caption.clone(),
        })
}

/// The summary under the title: the pixel threshold, how the intervals were computed and the
/// wall time of each step.
fn summary(r: &Results) -> Vec<String> {
    let mut summary = vec![format!(
        "Pixel threshold **{:.4}**{}, calibrated on {}.",
        r.threshold.value,
        r.threshold.target_fpr.map_or_else(String::new, |t| format!(
            " (target healthy-pixel FPR {})",
            pct(t)
        )),
        r.threshold.calibrated_on
    )];
    summary.push(match &r.bootstrap {
        Some(b) => format!(
            "Intervals: {:.0}% percentile bootstrap over {}s, {} resamples, seed {}.",
            100.0 * b.level,
            b.unit,
            b.resamples,
            b.seed
        ),
        None => "No bootstrap intervals were computed.".into(),
    });
    if !r.wall_times.is_empty() {
        let total: f64 = r.wall_times.iter().map(|w| w.seconds).sum();
        let steps: Vec<String> = r
            .wall_times
            .iter()
            .map(|w| format!("{} {:.1} s", w.step, w.seconds))
            .collect();
        summary.push(format!("Wall time {total:.1} s ({}).", steps.join(", ")));
    }
    summary
}

/// "Model adequacy": each member's reconstruction error against the two references, or why it
/// was not measured.
fn adequacy_section(adequacy: Option<&AdequacyResult>) -> Vec<Block> {
    let mut d = vec![Heading(2, "Model adequacy".into())];
    match adequacy {
        Some(a) => {
            d.push(Para(format!(
                "Did the models learn the anatomy? Each member's mean reconstruction error on the {} healthy validation slices, beside two references on the same slices: the mean training image at the slice's position (E_mean = {:.3}, what a model that ignores its input scores) and the input blurred with σ = 1 pixel (E_blur = {:.3}). Adequacy = (E_mean − E_model) / (E_mean − E_blur): 0 is no better than the mean image, 1 as good as the blur. Criterion, fixed before any test result is seen: every member at least {:.2}. {}",
                a.slices,
                a.e_mean,
                a.e_blur,
                a.criterion,
                if a.adequate() {
                    "Every member meets it."
                } else {
                    "**Not met: the findings below are not interpretable.**"
                }
            )));
            d.push(Table {
                header: ["member", "E_model", "adequacy", "criterion met"]
                    .map(String::from)
                    .to_vec(),
                rows: a
                    .members
                    .iter()
                    .map(|m| {
                        vec![
                            m.member.to_string(),
                            format!("{:.3}", m.e_model),
                            format!("{:.2}", m.adequacy),
                            if m.adequacy >= a.criterion { "yes" } else { "no" }.into(),
                        ]
                    })
                    .collect(),
            });
        }
        None => d.push(Para(
            "Not measured: the model reports no reconstruction error (a flow), or the run predates the measurement."
                .into(),
        )),
    }
    d
}

/// "Findings": the four findings, numbered, each with its verdict.
fn findings_section(r: &Results) -> [Block; 2] {
    [
        Heading(2, "Findings".into()),
        List(
            findings(r)
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    format!(
                        "**{}. {}** ({}). {}",
                        i + 1,
                        f.title,
                        f.verdict.label(),
                        f.text
                    )
                })
                .collect(),
        ),
    ]
}

/// "Test sets": each set's role, scans and slice counts.
fn test_sets_section(r: &Results) -> [Block; 2] {
    [
        Heading(2, "Test sets".into()),
        Table {
            header: [
                "test set",
                "role",
                "scans",
                "ID slices",
                "healthy-OOD slices",
                "lesional slices",
            ]
            .map(String::from)
            .to_vec(),
            rows: test_set_rows(r),
        },
    ]
}

/// "Pixel-level lesion detection": every method's pixel metrics on every test set.
fn pixel_section(r: &Results) -> [Block; 3] {
    let (header, rows) = pixel_rows(r);
    [
        Heading(2, "Pixel-level lesion detection".into()),
        Para("Every model beside the intensity-threshold baseline; `t` is the calibrated threshold, and the healthy FPR counts non-lesion brain pixels above it.".into()),
        Table { header, rows },
    ]
}

/// "Slice-level OOD detection": the AUROC matrices of the three modes, then AUPRC and FPR at
/// 95 % TPR of mode `all`.
fn ood_section(r: &Results) -> Vec<Block> {
    let mut d = vec![
        Heading(2, "Slice-level OOD detection".into()),
        Para("AUROC of each statistic at telling a test set's slices from in-distribution slices, in three modes: all slices of the set, its lesional slices only, its healthy slices only.".into()),
    ];
    for (mode, get) in MODES {
        if let Some((header, rows)) = matrix(r, |t, s| {
            t.ood
                .iter()
                .find(|o| o.statistic == s)
                .and_then(get)
                .map(|x| est(&x.auroc))
        }) {
            d.push(Heading(3, format!("AUROC, mode `{mode}`")));
            d.push(Table { header, rows });
        }
    }
    type DetectionGetter = fn(&Detection) -> &crate::schema::Estimate;
    let others: [(&str, DetectionGetter); 2] = [
        ("AUPRC, mode `all`", |x| &x.auprc),
        ("FPR at 95% TPR, mode `all` (lower is better)", |x| {
            &x.fpr_at_95_tpr
        }),
    ];
    for (title, get) in others {
        if let Some((header, rows)) = matrix(r, |t, s| {
            t.ood
                .iter()
                .find(|o| o.statistic == s)
                .and_then(|o| o.all)
                .map(|x| est(get(&x)))
        }) {
            d.push(Heading(3, title.into()));
            d.push(Table { header, rows });
        }
    }
    d.push(Para(
        "All three modes with AUPRC and FPR@95TPR are in `tables/ood.csv`.".into(),
    ));
    d
}

/// The start of "Disentangling lesions from distribution shift": what it measures, then the
/// pooled experiments and the paired prior-knowledge difference, when the run has them.
fn pooled_disentangling_section(r: &Results) -> Vec<Block> {
    let mut d = vec![
        Heading(2, "Disentangling lesions from distribution shift".into()),
        Para("AUROC of lesional slices against healthy slices (in-distribution and healthy-OOD); 0.5 is chance.".into()),
    ];
    if r.pooled.is_empty() {
        return d;
    }
    d.push(Heading(3, "All test sets pooled".into()));
    d.push(Para("The paper's two experiments over every test set at once, with scan-level intervals (findings 2 and 3 are judged on these): OOD detection, the healthy slices of the shifted sets against the healthy in-distribution slices; disentangling, the lesional slices of every set against the healthy slices of every set.".into()));
    d.push(Table {
        header: ["statistic", "OOD AUROC", "disentangling AUROC"]
            .map(String::from)
            .to_vec(),
        rows: stat_order(r)
            .into_iter()
            .filter_map(|(name, label)| {
                let p = r.pooled.iter().find(|p| p.statistic == name)?;
                Some(vec![
                    label,
                    opt(p.ood_auroc.as_ref(), est),
                    opt(p.disentangling_auroc.as_ref(), est),
                ])
            })
            .collect(),
    });
    if let Some(c) = &r.prior_comparison {
        d.push(Para(format!(
            "Paired difference of the disentangling AUROC, {} minus {} (the same scans resampled for both): {}.",
            r.statistic_label(&c.prior),
            r.statistic_label(&c.plain),
            est(&c.difference)
        )));
    }
    d
}

/// The disentangling AUROC per lesional test set (under its own heading when the pooled
/// numbers precede it).
fn per_set_disentangling(r: &Results) -> Vec<Block> {
    let mut d = Vec::new();
    if !r.pooled.is_empty() {
        d.push(Heading(3, "Per lesional set".into()));
    }
    if let Some((header, rows)) = matrix(r, |t, s| {
        t.disentangling
            .iter()
            .find(|x| x.statistic == s)
            .map(|x| est(&x.auroc))
    }) {
        d.push(Table { header, rows });
    } else {
        d.push(Para("Not measured.".into()));
    }
    d
}

/// "The gate": its worth (accepted scans against all), its goals, the whole decision and the
/// decisions per test set.
fn gate_section(r: &Results, g: &GateResult) -> Vec<Block> {
    let mut d = vec![
        Heading(2, "The gate".into()),
        Para("What the gate is worth: the lesion maps of the scans it accepts, against those of every test scan (no gate), at the same calibrated pixel threshold.".into()),
        gate_worth_table(g),
        List(vec![
            format!(
                "Fraction of test scans rejected: {}.",
                pct(g.fraction_rejected)
            ),
            format!(
                "Dice on accepted lesional scans: {}; on all lesional scans: {}.",
                opt(g.dice_accepted.as_ref(), est),
                opt(g.dice_all.as_ref(), est)
            ),
            format!(
                "Area under the risk-coverage curve: {}.",
                opt(g.aurc.as_ref(), est)
            ),
        ]),
    ];
    d.extend(gate_goals_blocks(r));
    if !g.scans.is_empty() {
        d.push(Heading(3, "The whole decision".into()));
        d.push(Para("Every test scan by its true kind (the role of its set, and whether it has lesion pixels) against the gate's verdict.".into()));
        d.push(decision_table(&r.test_sets, g));
    }
    d.push(gate_per_set_table(&r.test_sets, g));
    d
}

/// The lesion maps of the accepted scans against those of every scan: healthy-pixel FPR, pixel
/// AP, Dice and in-distribution acceptance.
fn gate_worth_table(g: &GateResult) -> Block {
    let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "n/a".into(), f);
    let three = |v: f64| format!("{v:.3}");
    Table {
        header: ["", "accepted scans (gate)", "all scans (no gate)"]
            .map(String::from)
            .to_vec(),
        rows: vec![
            vec![
                "healthy-pixel FPR at the threshold".into(),
                cell(g.healthy_fpr_accepted, pct),
                cell(g.healthy_fpr_all, pct),
            ],
            vec![
                "pixel AP (lesion pixels)".into(),
                cell(g.pixel_ap_accepted, three),
                cell(g.pixel_ap_all, three),
            ],
            vec![
                "Dice, lesional scans".into(),
                opt(g.dice_accepted.as_ref(), est),
                opt(g.dice_all.as_ref(), est),
            ],
            vec![
                "in-distribution scans accepted".into(),
                cell(g.id_acceptance, pct),
                "100.0%".into(),
            ],
        ],
    }
}

/// "The gate's goals": each goal with its criterion, measurement and verdict; nothing when the
/// run has no goals.
fn gate_goals_blocks(r: &Results) -> Vec<Block> {
    let goals = crate::findings::gate_goals(r);
    if goals.is_empty() {
        return Vec::new();
    }
    vec![
        Heading(3, "The gate's goals".into()),
        Para("Each goal was written into the run's `[gate.goals]` before its results were seen, and is judged on scan-level bootstrap intervals as the findings are: it holds when the interval lies on the goal's side, does not hold when it lies on the other, and is inconclusive when it reaches both.".into()),
        Table {
            header: ["goal", "criterion", "measured", "verdict"]
                .map(String::from)
                .to_vec(),
            rows: goals
                .iter()
                .map(|x| {
                    vec![
                        x.goal.clone(),
                        x.criterion.clone(),
                        x.measured.clone(),
                        x.verdict.label().split(':').next().unwrap_or("").to_owned(),
                    ]
                })
                .collect(),
        },
    ]
}

/// Every test scan by its true kind (role of its set, lesional or not) against the gate's
/// decision; kinds without scans are left out.
fn decision_table(test_sets: &[TestSetResult], g: &GateResult) -> Block {
    let kinds = [
        (
            TestSetRole::InDistribution,
            false,
            "in distribution, healthy",
        ),
        (
            TestSetRole::InDistribution,
            true,
            "in distribution, lesional",
        ),
        (TestSetRole::OutOfDistribution, false, "shifted, healthy"),
        (TestSetRole::OutOfDistribution, true, "shifted, lesional"),
    ];
    let role_of = |set: &str| test_sets.iter().find(|t| t.name == set).map(|t| t.role);
    let rows = kinds
        .iter()
        .filter_map(|&(kind_role, lesional, label)| {
            let of: Vec<_> = g
                .scans
                .iter()
                .filter(|s| s.lesional == lesional && role_of(&s.test_set) == Some(kind_role))
                .collect();
            if of.is_empty() {
                return None;
            }
            let count = |d: Decision| of.iter().filter(|s| s.decision == d).count().to_string();
            Some(vec![
                label.to_owned(),
                of.len().to_string(),
                count(Decision::InDistribution),
                count(Decision::LesionSuspected),
                count(Decision::OutOfDistribution),
            ])
        })
        .collect();
    Table {
        header: [
            "true kind of scan",
            "scans",
            "in distribution, no lesion",
            "lesion suspected",
            "rejected (OOD)",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// The gate's decisions on each test set, with the healthy-pixel FPR over all and over the
/// accepted scans.
fn gate_per_set_table(test_sets: &[TestSetResult], g: &GateResult) -> Block {
    Table {
        header: [
            "test set",
            "role",
            "scans",
            "lesional",
            "in distribution",
            "lesion suspected",
            "rejected (OOD)",
            "FPR, all scans",
            "FPR, accepted scans",
        ]
        .map(String::from)
        .to_vec(),
        rows: g
            .per_set
            .iter()
            .map(|s| {
                let set_role = test_sets
                    .iter()
                    .find(|t| t.name == s.test_set)
                    .map_or("", |t| role(t.role));
                vec![
                    s.test_set.clone(),
                    set_role.into(),
                    s.scans.to_string(),
                    s.lesional_scans.to_string(),
                    s.in_distribution.to_string(),
                    s.lesion_suspected.to_string(),
                    s.rejected.to_string(),
                    opt(s.healthy_fpr_all.as_ref(), est_pct),
                    if s.scans == s.rejected {
                        "none accepted".into()
                    } else {
                        opt(s.healthy_fpr_accepted.as_ref(), est_pct)
                    },
                ]
            })
            .collect(),
    }
}

/// "Example slices": the slice grids of every test set, grouped by kind; nothing when the run
/// drew none.
fn example_slices_section(r: &Results) -> Vec<Block> {
    let grids: Vec<_> = r
        .test_sets
        .iter()
        .flat_map(|t| t.slice_grids.iter())
        .collect();
    if grids.is_empty() {
        return Vec::new();
    }
    let mut d = vec![
        Heading(2, "Example slices".into()),
        Para("Each row is one slice; every column has one display window for all rows (printed under its name), so the rows compare.".into()),
    ];
    for (kind, title) in [
        (GridKind::InDistribution, "Healthy, in distribution"),
        (GridKind::Lesional, "Lesional"),
        (GridKind::OutOfDistribution, "Healthy, out of distribution"),
    ] {
        let mut of_kind = grids.iter().filter(|g| g.kind == kind).peekable();
        if of_kind.peek().is_some() {
            d.push(Heading(3, title.into()));
        }
        for g in of_kind {
            d.push(Image {
                path: g.path.clone(),
                caption: g.caption.clone(),
            });
        }
    }
    d
}

/// "Configuration": the resolved configuration of the run as JSON.
fn configuration_section(r: &Results) -> [Block; 3] {
    [
        Heading(2, "Configuration".into()),
        Para("The resolved configuration of the run (also in `results.json`):".into()),
        Para(format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(&r.config).unwrap_or_default()
        )),
    ]
}

/// One row per test set for the report's table and `test_sets.csv`: name, role, scans and the
/// slice counts (ID, healthy OOD, lesional).
pub(crate) fn test_set_rows(r: &Results) -> Vec<Vec<String>> {
    r.test_sets
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                role(t.role).into(),
                t.scans.to_string(),
                t.slices.id.to_string(),
                t.slices.healthy_ood.to_string(),
                t.slices.lesional.to_string(),
            ]
        })
        .collect()
}
