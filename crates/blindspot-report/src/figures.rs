//! The report's figures: every plot of a run drawn from its results into `plots/`, and the
//! file-safe names ([`slug`]) they and the tables use.

use std::collections::HashSet;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use crate::error::Result;
use crate::findings::{est, pct};
use crate::plot::{Axes, Bar, RefLine, bar_plot, histogram_plot, line_plot, padded_range};
use crate::schema::{
    AdequacyResult, Curve, Estimate, GateResult, Histogram, PixelMetrics, Results, SizeBin,
    TestSetResult, TestSetRole, ThresholdInfo, TrainingCurve, TrainingPoint,
};

/// A file-name-safe form of a name: lower-case ASCII letters, digits and `-`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() { "x".into() } else { out }
}

/// A written plot: where, and what it shows.
pub(crate) struct Plot {
    /// The file, relative to the report's folder.
    pub(crate) path: String,
    /// Its caption.
    pub(crate) caption: String,
    /// Which section it belongs to.
    pub(crate) section: PlotSection,
}

#[derive(PartialEq, Eq, Clone, Copy)]
pub(crate) enum PlotSection {
    Adequacy,
    Disentangling,
    BlindSpot,
    Pixel,
    Histogram,
    Gate,
}

/// Every plot of a run, written under `dir/plots/`: training curves, disentangling against
/// lesion size, FPR against threshold, pixel ROC and PR per test set, score histograms and the
/// gate's plots, each with its caption and section.
pub(crate) fn write_plots(r: &Results, dir: &Path) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    for c in &r.training {
        plots.extend(training_plot(c, r.adequacy.as_ref(), dir)?);
    }
    if r.disentangling_by_size.len() >= 2 {
        plots.push(disentangling_by_size_plot(r, dir)?);
    }
    plots.extend(fpr_vs_threshold_plot(&r.test_sets, &r.threshold, dir)?);
    let mut slugs = UniqueSlugs::default();
    for t in &r.test_sets {
        let s = slugs.next(&t.name);
        plots.extend(roc_plot(t, &s, dir)?);
        plots.extend(pr_plot(t, &s, dir)?);
    }
    for h in &r.histograms {
        let rel = format!("plots/hist-{}.png", slugs.next(&h.statistic));
        plots.push(score_histogram(
            rel,
            r.statistic_label(&h.statistic),
            h,
            dir,
        )?);
    }
    if let Some(g) = &r.gate {
        plots.extend(gate_acceptance_plot(g, &r.test_sets, dir)?);
        plots.extend(gate_lesion_roc_plot(g, dir)?);
        plots.extend(risk_coverage_plot(g, dir)?);
    }
    Ok(plots)
}

/// File names from [`slug`]s, unique within one report: distinct names can share a slug (`T1`,
/// `t1`), so the later ones are numbered.
#[derive(Default)]
struct UniqueSlugs {
    used: HashSet<String>,
}

impl UniqueSlugs {
    /// The slug of `name`, with `-2`, `-3`, ... appended when it was handed out before.
    fn next(&mut self, name: &str) -> String {
        let base = slug(name);
        let mut s = base.clone();
        let mut k = 2;
        while !self.used.insert(s.clone()) {
            s = format!("{base}-{k}");
            k += 1;
        }
        s
    }
}

/// One series of a member's training log: the steps at which `f` has a value.
fn training_series(c: &TrainingCurve, label: &str, f: fn(&TrainingPoint) -> Option<f64>) -> Curve {
    Curve {
        label: label.into(),
        points: c
            .points
            .iter()
            .filter_map(|p| f(p).map(|v| [p.step as f64, v]))
            .collect(),
    }
}

/// The curves of a member's training plot: the losses and the validation error that were
/// logged, then the KL weight β, scaled onto the axis of the losses.
fn training_curves(c: &TrainingCurve) -> Vec<Curve> {
    let mut curves: Vec<Curve> = [
        training_series(c, "training loss", |p| Some(p.loss)),
        training_series(c, "validation loss", |p| p.val_loss),
        training_series(c, "validation rec. error", |p| p.val_rec_err),
    ]
    .into_iter()
    .filter(|c| !c.points.is_empty())
    .collect();
    // β shares the axis of the losses; a small β (0.01) would lie flat on zero, so it is
    // scaled by the largest power of ten that keeps it under the losses, and the label says
    // by how much
    let mut beta = training_series(c, "KL weight β", |p| p.beta);
    let top = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p[1]))
        .fold(0.0f64, f64::max);
    let beta_max = beta.points.iter().map(|p| p[1]).fold(0.0f64, f64::max);
    if beta_max > 0.0 && top > 0.0 {
        let mut k = 1.0f64;
        while beta_max * k * 10.0 <= 0.9 * top && k < 1e6 {
            k *= 10.0;
        }
        if k > 1.0 {
            beta.label = format!("KL weight β × {k:.0}");
            beta.points.iter_mut().for_each(|p| p[1] *= k);
        }
    }
    if !beta.points.is_empty() {
        curves.push(beta);
    }
    curves
}

/// A member's training curves with the adequacy references (`plots/training-member-<m>.png`);
/// `None` when its log has no series.
fn training_plot(
    c: &TrainingCurve,
    adequacy: Option<&AdequacyResult>,
    dir: &Path,
) -> Result<Option<Plot>> {
    let curves = training_curves(c);
    if curves.is_empty() {
        return Ok(None);
    }
    let xs = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p[0])));
    let mut refs = Vec::new();
    if let Some(a) = adequacy {
        for (label, y) in [("position-mean image", a.e_mean), ("σ=1 blur", a.e_blur)] {
            refs.push(RefLine {
                label: format!("{label} {y:.3}"),
                from: (xs.start, y),
                to: (xs.end, y),
            });
        }
    }
    let ys = padded_range(
        curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p[1]))
            .chain(refs.iter().map(|l| l.from.1))
            .chain([0.0]),
    );
    let member = adequacy.and_then(|a| a.members.iter().find(|m| m.member == c.member));
    let title = match member {
        Some(m) => format!("Member {} (adequacy {:.2})", c.member, m.adequacy),
        None => format!("Member {}", c.member),
    };
    let rel = format!("plots/training-member-{}.png", c.member);
    let axes = Axes {
        title: &title,
        x_desc: "training step",
        y_desc: "loss, error, β",
        x: xs,
        y: ys,
        legend: SeriesLabelPosition::UpperRight,
    };
    line_plot(&dir.join(&rel), &axes, &curves, &refs)?;
    Ok(Some(Plot {
        path: rel,
        caption: format!(
            "Training curves of member {}: the loss of each logged training batch, the validation loss and reconstruction error (evaluation mode) and the KL weight β against step (β scaled by a power of ten when the legend says so). The dashed lines are the references of adequacy on the validation slices: the error of the mean training image at each slice position (a model that ignores its input) and of the input blurred with σ = 1 pixel.",
            c.member
        ),
        section: PlotSection::Adequacy,
    }))
}

/// The pooled disentangling AUROC against lesion size, one curve per statistic
/// (`plots/disentangling-by-size.png`).
fn disentangling_by_size_plot(r: &Results, dir: &Path) -> Result<Plot> {
    let mid = |b: &SizeBin| 100.0 * 0.5 * (b.low + b.high.min(0.4));
    let mut names: Vec<String> = Vec::new();
    for b in &r.disentangling_by_size {
        for (n, _) in &b.auroc {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
    }
    let curves: Vec<Curve> = names
        .iter()
        .map(|n| Curve {
            label: r.statistic_label(n).to_owned(),
            points: r
                .disentangling_by_size
                .iter()
                .filter_map(|b| {
                    b.auroc
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, e)| [mid(b), e.value])
                })
                .collect(),
        })
        .collect();
    let xs = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p[0])));
    let rel = "plots/disentangling-by-size.png".to_string();
    let axes = Axes {
        title: "Disentangling against lesion size",
        x_desc: "lesion share of the slice's brain (%, bin centre)",
        y_desc: "disentangling AUROC",
        x: xs.clone(),
        y: 0.0..1.0,
        legend: SeriesLabelPosition::LowerRight,
    };
    let refs = [RefLine {
        label: "chance".into(),
        from: (xs.start, 0.5),
        to: (xs.end, 0.5),
    }];
    line_plot(&dir.join(&rel), &axes, &curves, &refs)?;
    let bins: Vec<String> = r
        .disentangling_by_size
        .iter()
        .map(|b| {
            format!(
                "{:.0}-{:.0} % ({} slices)",
                100.0 * b.low,
                100.0 * b.high,
                b.positives
            )
        })
        .collect();
    Ok(Plot {
        path: rel,
        caption: format!(
            "Pooled disentangling AUROC (lesional slices of one size bin against every healthy slice) against the lesion's share of the slice's brain. Bins: {}. A prior-knowledge statistic that sees concentrated residuals should gain most on small lesions.",
            bins.join(", ")
        ),
        section: PlotSection::Disentangling,
    })
}

/// Each test set's FPR-against-threshold curve of the first learned method, named after the
/// set, cut where every curve has fallen to a fifth of the target FPR (0.5 % without a target):
/// beyond it the curves are flat at zero.
fn fpr_curves_cut(test_sets: &[TestSetResult], threshold: &ThresholdInfo) -> Vec<Curve> {
    let fpr_curves: Vec<Curve> = test_sets
        .iter()
        .filter_map(|t| {
            t.curves.fpr_vs_threshold.first().map(|c| Curve {
                label: t.name.clone(),
                points: c.points.clone(),
            })
        })
        .collect();
    let floor = threshold.target_fpr.map_or(0.005, |t| t / 5.0);
    let x_end = fpr_curves
        .iter()
        .filter_map(|c| {
            // FPR falls with the threshold: the points at or below the floor are a tail
            c.points
                .iter()
                .filter(|p| p[1] <= floor)
                .map(|p| p[0])
                .reduce(f64::min)
        })
        .fold(threshold.value, f64::max);
    fpr_curves
        .into_iter()
        .map(|c| Curve {
            label: c.label,
            points: c.points.into_iter().filter(|p| p[0] <= x_end).collect(),
        })
        .collect()
}

/// Healthy-pixel FPR against threshold, one curve per test set, with the calibrated threshold
/// and its target (`plots/fpr-vs-threshold.png`); `None` when no set has the curve.
fn fpr_vs_threshold_plot(
    test_sets: &[TestSetResult],
    threshold: &ThresholdInfo,
    dir: &Path,
) -> Result<Option<Plot>> {
    let fpr_curves = fpr_curves_cut(test_sets, threshold);
    if fpr_curves.is_empty() {
        return Ok(None);
    }
    let xs = padded_range(
        fpr_curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p[0]))
            .chain([threshold.value]),
    );
    let ymax = fpr_curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p[1]))
        .fold(0.0, f64::max)
        .max(0.05)
        * 1.05;
    let mut refs = vec![RefLine {
        label: format!("threshold {:.3}", threshold.value),
        from: (threshold.value, 0.0),
        to: (threshold.value, ymax),
    }];
    if let Some(t) = threshold.target_fpr {
        refs.push(RefLine {
            label: format!("target FPR {}", pct(t)),
            from: (xs.start, t),
            to: (xs.end, t),
        });
    }
    let rel = "plots/fpr-vs-threshold.png".to_string();
    let axes = Axes {
        title: "Healthy-pixel FPR against threshold",
        x_desc: "threshold",
        y_desc: "healthy-pixel FPR",
        x: xs,
        y: 0.0..ymax,
        legend: SeriesLabelPosition::UpperRight,
    };
    line_plot(&dir.join(&rel), &axes, &fpr_curves, &refs)?;
    let method = test_sets
        .iter()
        .find_map(|t| t.curves.fpr_vs_threshold.first())
        .map_or_else(String::new, |c| format!(" of {}", c.label));
    Ok(Some(Plot {
        path: rel,
        caption: format!(
            "Healthy-pixel false-positive rate{method} on each test set against the pixel threshold; the dashed lines mark the calibrated threshold and its target FPR. A curve passing above their crossing flags that set's healthy pixels as lesion more often than the calibration promised."
        ),
        section: PlotSection::BlindSpot,
    }))
}

/// `curves` of test set `t` labelled "method (AUROC 0.872)": the curve's area (`name`, read by
/// `get`) from the set's pixel table, when it is there.
fn with_area(
    t: &TestSetResult,
    curves: &[Curve],
    name: &str,
    get: fn(&PixelMetrics) -> Option<Estimate>,
) -> Vec<Curve> {
    curves
        .iter()
        .map(|c| {
            let area = t.pixel.iter().find(|p| p.method == c.label).and_then(get);
            Curve {
                label: area.map_or_else(
                    || c.label.clone(),
                    |a| format!("{} ({name} {:.3})", c.label, a.value),
                ),
                points: c.points.clone(),
            }
        })
        .collect()
}

/// Test set `t`'s pixel ROC curves (`plots/roc-<slug>.png`); `None` when it has none.
fn roc_plot(t: &TestSetResult, slug: &str, dir: &Path) -> Result<Option<Plot>> {
    if t.curves.roc.is_empty() {
        return Ok(None);
    }
    let rel = format!("plots/roc-{slug}.png");
    let title = format!("Pixel ROC: {}", t.name);
    let diag = [RefLine {
        label: "chance".into(),
        from: (0.0, 0.0),
        to: (1.0, 1.0),
    }];
    let axes = Axes {
        title: &title,
        x_desc: "false-positive rate",
        y_desc: "true-positive rate",
        x: 0.0..1.0,
        y: 0.0..1.0,
        legend: SeriesLabelPosition::LowerRight,
    };
    line_plot(
        &dir.join(&rel),
        &axes,
        &with_area(t, &t.curves.roc, "AUROC", |p| p.auroc),
        &diag,
    )?;
    Ok(Some(Plot {
        path: rel,
        caption: format!(
            "Pixel-level ROC curves on {}, lesion pixels against all other brain pixels; the legend gives each method's AUROC.",
            t.name
        ),
        section: PlotSection::Pixel,
    }))
}

/// Test set `t`'s pixel precision-recall curves (`plots/pr-<slug>.png`); `None` when it has
/// none.
fn pr_plot(t: &TestSetResult, slug: &str, dir: &Path) -> Result<Option<Plot>> {
    if t.curves.pr.is_empty() {
        return Ok(None);
    }
    let rel = format!("plots/pr-{slug}.png");
    let title = format!("Pixel precision-recall: {}", t.name);
    let axes = Axes {
        title: &title,
        x_desc: "recall",
        y_desc: "precision",
        x: 0.0..1.0,
        y: 0.0..1.0,
        legend: SeriesLabelPosition::UpperRight,
    };
    line_plot(
        &dir.join(&rel),
        &axes,
        &with_area(t, &t.curves.pr, "AP", |p| p.ap),
        &[],
    )?;
    Ok(Some(Plot {
        path: rel,
        caption: format!(
            "Pixel-level precision-recall curves on {}; the legend gives each method's average precision.",
            t.name
        ),
        section: PlotSection::Pixel,
    }))
}

/// The slice scores of one statistic (its display `label`), one strip per split, written to
/// `rel`.
fn score_histogram(rel: String, label: &str, h: &Histogram, dir: &Path) -> Result<Plot> {
    let title = format!("Slice scores: {label}");
    let hidden = histogram_plot(&dir.join(&rel), &title, h)?;
    let reference = h
        .groups
        .iter()
        .find(|g| g.counts.iter().any(|&c| c > 0))
        .map_or_else(String::new, |g| {
            format!("; the dashed outline repeats {} in every row", g.label)
        });
    let hidden = if hidden > 0 {
        format!(" {hidden} slices in the outer 0.5 % tails lie beyond the axis.")
    } else {
        String::new()
    };
    Ok(Plot {
        path: rel,
        caption: format!(
            "Distribution of the slice score {label} per dataset split: the share of slices per bin, each row scaled to its own peak{reference}.{hidden}"
        ),
        section: PlotSection::Histogram,
    })
}

/// The share of each test set's scans the gate accepts, ID and OOD sets coloured apart, with
/// the acceptance goal (`plots/gate-acceptance.png`); `None` when the gate decided no set.
fn gate_acceptance_plot(
    g: &GateResult,
    test_sets: &[TestSetResult],
    dir: &Path,
) -> Result<Option<Plot>> {
    if g.per_set.is_empty() {
        return Ok(None);
    }
    let goal_line = g
        .criteria
        .map_or(crate::findings::GATE_ID_ACCEPTANCE, |c| c.id_acceptance);
    let rel = "plots/gate-acceptance.png".to_string();
    let bars: Vec<Bar> = g
        .per_set
        .iter()
        .map(|s| {
            let id = test_sets
                .iter()
                .find(|t| t.name == s.test_set)
                .is_some_and(|t| t.role == TestSetRole::InDistribution);
            Bar {
                label: s.test_set.clone(),
                value: if s.scans == 0 {
                    0.0
                } else {
                    (s.scans - s.rejected) as f64 / s.scans as f64
                },
                group: if id { 0 } else { 1 },
            }
        })
        .collect();
    bar_plot(
        &dir.join(&rel),
        "Scans the gate accepts, per test set",
        "fraction of the set's scans accepted (lesion map reported)",
        &bars,
        &["ID", "OOD"],
        &[goal_line],
    )?;
    Ok(Some(Plot {
        path: rel,
        caption: format!(
            "The share of each test set's scans the gate accepts, that is, reports a lesion map for (judged in distribution, with or without a suspected lesion). In-distribution (ID, blue) sets, healthy and lesional, should be accepted: the dashed line is the goal of {}. Shifted (OOD, orange) sets should be rejected where the shift harms the lesion map.",
            pct(goal_line)
        ),
        section: PlotSection::Gate,
    }))
}

/// The ROC of the gate's scan-level lesion score on the in-distribution scans
/// (`plots/gate-lesion-roc.png`); `None` without goal numbers or with fewer than two points.
fn gate_lesion_roc_plot(g: &GateResult, dir: &Path) -> Result<Option<Plot>> {
    let Some(n) = g.goals.as_ref().filter(|n| n.lesion_roc.len() >= 2) else {
        return Ok(None);
    };
    let rel = "plots/gate-lesion-roc.png".to_string();
    let label = n
        .lesion_auroc
        .as_ref()
        .map_or_else(|| "lesion score".into(), |e| format!("AUROC {}", est(e)));
    let axes = Axes {
        title: "Scan-level lesion score, in-distribution scans",
        x_desc: "healthy scans flagged (FPR)",
        y_desc: "lesional scans flagged (TPR)",
        x: 0.0..1.0,
        y: 0.0..1.0,
        legend: SeriesLabelPosition::LowerRight,
    };
    let chance = RefLine {
        label: "chance".into(),
        from: (0.0, 0.0),
        to: (1.0, 1.0),
    };
    line_plot(
        &dir.join(&rel),
        &axes,
        &[Curve {
            label,
            points: n.lesion_roc.clone(),
        }],
        &[chance],
    )?;
    Ok(Some(Plot {
        path: rel,
        caption: "ROC of the gate's scan-level lesion score over the in-distribution test scans (lesional against healthy, whatever the shift verdict): how well the score the lesion flag thresholds separates scans with a lesion from scans without. The interval in the legend is a scan-level bootstrap.".into(),
        section: PlotSection::Gate,
    }))
}

/// The gate's risk (1 - Dice) against coverage, with the risk of accepting every scan
/// (`plots/risk-coverage.png`); `None` without a risk-coverage curve.
fn risk_coverage_plot(g: &GateResult, dir: &Path) -> Result<Option<Plot>> {
    if g.risk_coverage.is_empty() {
        return Ok(None);
    }
    let rel = "plots/risk-coverage.png".to_string();
    let ymax = g
        .risk_coverage
        .iter()
        .map(|p| p[1])
        .fold(0.0, f64::max)
        .max(0.1)
        * 1.05;
    let curve = Curve {
        label: "gate".into(),
        points: g.risk_coverage.clone(),
    };
    let axes = Axes {
        title: "Risk-coverage of the gate",
        x_desc: "coverage (fraction of scans accepted)",
        y_desc: "risk (1 - Dice)",
        x: 0.0..1.0,
        y: 0.0..ymax,
        legend: SeriesLabelPosition::LowerRight,
    };
    // accepting every scan is the risk without the gate: the curve's end at full coverage
    let refs: Vec<RefLine> = g
        .risk_coverage
        .iter()
        .max_by(|a, b| a[0].total_cmp(&b[0]))
        .map(|p| RefLine {
            label: format!("accept all: {:.3}", p[1]),
            from: (0.0, p[1]),
            to: (1.0, p[1]),
        })
        .into_iter()
        .collect();
    line_plot(&dir.join(&rel), &axes, &[curve], &refs)?;
    Ok(Some(Plot {
        path: rel,
        caption: "Risk (1 - Dice) of the accepted lesional scans as the gate accepts more scans, most confident first; the dashed line is the risk when every scan is accepted (no gate). A useful gate keeps its curve below the line at low coverage.".into(),
        section: PlotSection::Gate,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_keeps_names_file_safe() {
        for (name, expected) in [
            ("site-B T2", "site-b-t2"),
            ("BraTS T2 (flipped)", "brats-t2-flipped"),
            ("///", "x"),
            ("T1", "t1"),
        ] {
            assert_eq!(slug(name), expected, "{name}");
        }
    }
}
