//! The report: one document model rendered to Markdown and to self-contained HTML, the CSV
//! tables and the plots.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::SeriesLabelPosition;

use crate::error::{ReportError, Result};
use crate::findings::{est, est_pct, findings, pct};
use crate::io::{base64, load_results, write_atomic};
use crate::plot::{Axes, Bar, RefLine, bar_plot, histogram_plot, line_plot, padded_range};
use crate::schema::{Curve, Detection, GridKind, Results, TestSetRole};

/// File name of the results inside a run directory.
pub const RESULTS_FILE: &str = "results.json";

/// The files a rendered report consists of (paths inside the output directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `report.md`.
    pub markdown: PathBuf,
    /// `report.html` (images embedded, no external references).
    pub html: PathBuf,
    /// The CSV tables under `tables/`.
    pub tables: Vec<PathBuf>,
    /// The PNG plots under `plots/`.
    pub plots: Vec<PathBuf>,
}

/// A piece of the document.
enum Block {
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

/// Renders the report of `results` into `out_dir`: `report.md`, `report.html`, `tables/*.csv`
/// and `plots/*.png`. Slice grids referenced by the results are read from `out_dir` (they are
/// written there by the run). Every file is written atomically.
///
/// # Errors
/// [`ReportError::Invalid`]/[`ReportError::SchemaVersion`] when the results break the
/// schema, [`ReportError::Io`] naming a referenced slice grid that is missing or a file that
/// cannot be written, [`ReportError::Plot`] when a plot cannot be drawn (for example no font).
pub fn render_report(results: &Results, out_dir: &Path) -> Result<ReportFiles> {
    results.validate()?;
    for t in &results.test_sets {
        for g in &t.slice_grids {
            let p = out_dir.join(&g.path);
            if !p.is_file() {
                return Err(ReportError::io(
                    p,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "slice grid referenced by results.json is missing",
                    ),
                ));
            }
        }
    }
    let plots = write_plots(results, out_dir)?;
    let tables = write_tables(results, out_dir)?;
    let doc = document(results, &plots);
    let markdown = out_dir.join("report.md");
    write_atomic(&markdown, to_markdown(&doc).as_bytes())?;
    let html = out_dir.join("report.html");
    write_atomic(
        &html,
        to_html(&results.experiment, &doc, out_dir)?.as_bytes(),
    )?;
    Ok(ReportFiles {
        markdown,
        html,
        tables: tables.into_iter().map(|t| out_dir.join(t)).collect(),
        plots: plots.iter().map(|p| out_dir.join(&p.path)).collect(),
    })
}

/// Loads `dir/results.json` and renders its report into `dir` (the `blindspot report` command).
///
/// # Errors
/// Those of [`load_results`] and [`render_report`].
pub fn rebuild_report(dir: &Path) -> Result<ReportFiles> {
    let results = load_results(&dir.join(RESULTS_FILE))?;
    render_report(&results, dir)
}

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
struct Plot {
    path: String,
    caption: String,
    /// Which section it belongs to.
    section: PlotSection,
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum PlotSection {
    Adequacy,
    Disentangling,
    BlindSpot,
    Pixel,
    Histogram,
    Gate,
}

fn write_plots(r: &Results, dir: &Path) -> Result<Vec<Plot>> {
    let mut plots = Vec::new();
    let mut add = |rel: String, caption: String, section| {
        plots.push(Plot {
            path: rel,
            caption,
            section,
        })
    };

    // Training curves, one plot per member, with the adequacy references.
    for c in &r.training {
        let series = |label: &str, f: fn(&crate::schema::TrainingPoint) -> Option<f64>| Curve {
            label: label.into(),
            points: c
                .points
                .iter()
                .filter_map(|p| f(p).map(|v| [p.step as f64, v]))
                .collect(),
        };
        let mut curves: Vec<Curve> = [
            series("training loss", |p| Some(p.loss)),
            series("validation loss", |p| p.val_loss),
            series("validation rec. error", |p| p.val_rec_err),
        ]
        .into_iter()
        .filter(|c| !c.points.is_empty())
        .collect();
        // β shares the axis of the losses; a small β (0.01) would lie flat on zero, so it is
        // scaled by the largest power of ten that keeps it under the losses, and the label says
        // by how much
        let mut beta = series("KL weight β", |p| p.beta);
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
        if curves.is_empty() {
            continue;
        }
        let xs = padded_range(curves.iter().flat_map(|c| c.points.iter().map(|p| p[0])));
        let mut refs = Vec::new();
        if let Some(a) = &r.adequacy {
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
        let member = r
            .adequacy
            .as_ref()
            .and_then(|a| a.members.iter().find(|m| m.member == c.member));
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
        add(
            rel,
            format!(
                "Training curves of member {}: the loss of each logged training batch, the validation loss and reconstruction error (evaluation mode) and the KL weight β against step (β scaled by a power of ten when the legend says so). The dashed lines are the references of adequacy on the validation slices: the error of the mean training image at each slice position (a model that ignores its input) and of the input blurred with σ = 1 pixel.",
                c.member
            ),
            PlotSection::Adequacy,
        );
    }

    // Disentangling against lesion size, one curve per statistic.
    if r.disentangling_by_size.len() >= 2 {
        let mid = |b: &crate::schema::SizeBin| 100.0 * 0.5 * (b.low + b.high.min(0.4));
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
        add(
            rel,
            format!(
                "Pooled disentangling AUROC (lesional slices of one size bin against every healthy slice) against the lesion's share of the slice's brain. Bins: {}. A prior-knowledge statistic that sees concentrated residuals should gain most on small lesions.",
                bins.join(", ")
            ),
            PlotSection::Disentangling,
        );
    }

    // FPR against threshold, one curve per test set (first learned method).
    let fpr_curves: Vec<Curve> = r
        .test_sets
        .iter()
        .filter_map(|t| {
            t.curves.fpr_vs_threshold.first().map(|c| Curve {
                label: t.name.clone(),
                points: c.points.clone(),
            })
        })
        .collect();
    if !fpr_curves.is_empty() {
        // the threshold axis ends where every curve has fallen to a fifth of the target FPR
        // (0.5 % without a target): beyond it the curves are flat at zero
        let floor = r.threshold.target_fpr.map_or(0.005, |t| t / 5.0);
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
            .fold(r.threshold.value, f64::max);
        let fpr_curves: Vec<Curve> = fpr_curves
            .into_iter()
            .map(|c| Curve {
                label: c.label,
                points: c.points.into_iter().filter(|p| p[0] <= x_end).collect(),
            })
            .collect();
        let xs = padded_range(
            fpr_curves
                .iter()
                .flat_map(|c| c.points.iter().map(|p| p[0]))
                .chain([r.threshold.value]),
        );
        let ymax = fpr_curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p[1]))
            .fold(0.0, f64::max)
            .max(0.05)
            * 1.05;
        let mut refs = vec![RefLine {
            label: format!("threshold {:.3}", r.threshold.value),
            from: (r.threshold.value, 0.0),
            to: (r.threshold.value, ymax),
        }];
        if let Some(t) = r.threshold.target_fpr {
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
        let method = r
            .test_sets
            .iter()
            .find_map(|t| t.curves.fpr_vs_threshold.first())
            .map_or_else(String::new, |c| format!(" of {}", c.label));
        add(
            rel,
            format!(
                "Healthy-pixel false-positive rate{method} on each test set against the pixel threshold; the dashed lines mark the calibrated threshold and its target FPR. A curve passing above their crossing flags that set's healthy pixels as lesion more often than the calibration promised."
            ),
            PlotSection::BlindSpot,
        );
    }

    // distinct names can share a slug (`T1`, `t1`): number the later ones
    let mut used = std::collections::HashSet::new();
    let mut unique = |name: &str| {
        let base = slug(name);
        let mut s = base.clone();
        let mut k = 2;
        while !used.insert(s.clone()) {
            s = format!("{base}-{k}");
            k += 1;
        }
        s
    };
    for t in &r.test_sets {
        let s = unique(&t.name);
        // "method (AUROC 0.872)": the curve's area from the pixel table, when it is there
        let with_area =
            |curves: &[Curve],
             name: &str,
             get: fn(&crate::schema::PixelMetrics) -> Option<crate::schema::Estimate>|
             -> Vec<Curve> {
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
            };
        if !t.curves.roc.is_empty() {
            let rel = format!("plots/roc-{s}.png");
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
                &with_area(&t.curves.roc, "AUROC", |p| p.auroc),
                &diag,
            )?;
            add(
                rel,
                format!(
                    "Pixel-level ROC curves on {}, lesion pixels against all other brain pixels; the legend gives each method's AUROC.",
                    t.name
                ),
                PlotSection::Pixel,
            );
        }
        if !t.curves.pr.is_empty() {
            let rel = format!("plots/pr-{s}.png");
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
                &with_area(&t.curves.pr, "AP", |p| p.ap),
                &[],
            )?;
            add(
                rel,
                format!(
                    "Pixel-level precision-recall curves on {}; the legend gives each method's average precision.",
                    t.name
                ),
                PlotSection::Pixel,
            );
        }
    }

    for h in &r.histograms {
        let rel = format!("plots/hist-{}.png", unique(&h.statistic));
        let title = format!("Slice scores: {}", r.statistic_label(&h.statistic));
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
        add(
            rel,
            format!(
                "Distribution of the slice score {} per dataset split: the share of slices per bin, each row scaled to its own peak{reference}.{hidden}",
                r.statistic_label(&h.statistic)
            ),
            PlotSection::Histogram,
        );
    }

    if let Some(g) = r.gate.as_ref().filter(|g| !g.per_set.is_empty()) {
        let rel = "plots/gate-acceptance.png".to_string();
        let bars: Vec<Bar> = g
            .per_set
            .iter()
            .map(|s| {
                let id = r
                    .test_sets
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
            &[crate::findings::GATE_ID_ACCEPTANCE],
        )?;
        add(
            rel,
            format!(
                "The share of each test set's scans the gate accepts, that is, reports a lesion map for (judged in distribution, with or without a suspected lesion). In-distribution (ID, blue) sets, healthy and lesional, should be accepted: the dashed line is the goal of {}. Shifted (OOD, orange) sets should be rejected.",
                pct(crate::findings::GATE_ID_ACCEPTANCE)
            ),
            PlotSection::Gate,
        );
    }

    if let Some(g) = r.gate.as_ref().filter(|g| !g.risk_coverage.is_empty()) {
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
        add(
            rel,
            "Risk (1 - Dice) of the accepted lesional scans as the gate accepts more scans, most confident first; the dashed line is the risk when every scan is accepted (no gate). A useful gate keeps its curve below the line at low coverage.".into(),
            PlotSection::Gate,
        );
    }
    Ok(plots)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "n/a".into(), f)
}

fn role(r: TestSetRole) -> &'static str {
    match r {
        TestSetRole::InDistribution => "ID",
        TestSetRole::OutOfDistribution => "OOD",
    }
}

fn pixel_rows(r: &Results) -> (Vec<String>, Vec<Vec<String>>) {
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

type ModeGetter = fn(&crate::schema::OodDetection) -> Option<Detection>;
const MODES: [(&str, ModeGetter); 3] = [
    ("all", |o| o.all),
    ("lesional", |o| o.lesional),
    ("healthy", |o| o.healthy),
];

/// Statistic × test-set matrix of a cell function; `None` when no set has a cell.
fn matrix(
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
fn stat_order(r: &Results) -> Vec<(String, String)> {
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

fn document(r: &Results, plots: &[Plot]) -> Vec<Block> {
    use Block::*;
    let mut d = vec![Heading(1, format!("blindspot report: {}", r.experiment))];
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
    d.push(List(summary));

    let section_plots = |d: &mut Vec<Block>, section| {
        for p in plots.iter().filter(|p| p.section == section) {
            d.push(Image {
                path: p.path.clone(),
                caption: p.caption.clone(),
            });
        }
    };

    d.push(Heading(2, "Model adequacy".into()));
    match &r.adequacy {
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
    section_plots(&mut d, PlotSection::Adequacy);

    d.push(Heading(2, "Findings".into()));
    d.push(List(
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
    ));

    d.push(Heading(2, "Test sets".into()));
    d.push(Table {
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
    });

    d.push(Heading(2, "Pixel-level lesion detection".into()));
    d.push(Para("Every model beside the intensity-threshold baseline; `t` is the calibrated threshold, and the healthy FPR counts non-lesion brain pixels above it.".into()));
    let (header, rows) = pixel_rows(r);
    d.push(Table { header, rows });
    section_plots(&mut d, PlotSection::BlindSpot);
    d.push(Break);
    section_plots(&mut d, PlotSection::Pixel);

    d.push(Heading(2, "Slice-level OOD detection".into()));
    d.push(Para("AUROC of each statistic at telling a test set's slices from in-distribution slices, in three modes: all slices of the set, its lesional slices only, its healthy slices only.".into()));
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

    d.push(Heading(
        2,
        "Disentangling lesions from distribution shift".into(),
    ));
    d.push(Para("AUROC of lesional slices against healthy slices (in-distribution and healthy-OOD); 0.5 is chance.".into()));
    if !r.pooled.is_empty() {
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
    }
    section_plots(&mut d, PlotSection::Disentangling);
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
    section_plots(&mut d, PlotSection::Histogram);

    if let Some(g) = &r.gate {
        d.push(Heading(2, "The gate".into()));
        d.push(Para("What the gate is worth: the lesion maps of the scans it accepts, against those of every test scan (no gate), at the same calibrated pixel threshold.".into()));
        let cell = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "n/a".into(), f);
        let three = |v: f64| format!("{v:.3}");
        d.push(Table {
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
        });
        d.push(List(vec![
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
        ]));
        d.push(Table {
            header: [
                "test set",
                "role",
                "scans",
                "in distribution",
                "lesion suspected",
                "rejected (OOD)",
                "accepted",
            ]
            .map(String::from)
            .to_vec(),
            rows: g
                .per_set
                .iter()
                .map(|s| {
                    let set_role = r
                        .test_sets
                        .iter()
                        .find(|t| t.name == s.test_set)
                        .map_or("", |t| role(t.role));
                    vec![
                        s.test_set.clone(),
                        set_role.into(),
                        s.scans.to_string(),
                        s.in_distribution.to_string(),
                        s.lesion_suspected.to_string(),
                        s.rejected.to_string(),
                        if s.scans == 0 {
                            "n/a".into()
                        } else {
                            pct((s.scans - s.rejected) as f64 / s.scans as f64)
                        },
                    ]
                })
                .collect(),
        });
        section_plots(&mut d, PlotSection::Gate);
    }

    let grids: Vec<_> = r
        .test_sets
        .iter()
        .flat_map(|t| t.slice_grids.iter())
        .collect();
    if !grids.is_empty() {
        d.push(Heading(2, "Example slices".into()));
        d.push(Para("Each row is one slice; every column has one display window for all rows (printed under its name), so the rows compare.".into()));
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
    }

    d.push(Heading(2, "Configuration".into()));
    d.push(Para(
        "The resolved configuration of the run (also in `results.json`):".into(),
    ));
    d.push(Para(format!(
        "```json\n{}\n```",
        serde_json::to_string_pretty(&r.config).unwrap_or_default()
    )));
    d
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn to_markdown(doc: &[Block]) -> String {
    let mut out = String::new();
    let mut figure = 0;
    for b in doc {
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "{} {text}\n", "#".repeat(usize::from(*level)));
            }
            Block::Para(text) => {
                let _ = writeln!(out, "{text}\n");
            }
            Block::List(items) => {
                for i in items {
                    let _ = writeln!(out, "- {i}");
                }
                out.push('\n');
            }
            Block::Table { header, rows } => {
                let cells =
                    |r: &[String]| r.iter().map(|c| md_cell(c)).collect::<Vec<_>>().join(" | ");
                let _ = writeln!(out, "| {} |", cells(header));
                let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
                for r in rows {
                    let _ = writeln!(out, "| {} |", cells(r));
                }
                out.push('\n');
            }
            Block::Image { path, caption } => {
                figure += 1;
                let _ = writeln!(
                    out,
                    "![Figure {figure}]({path})\n\n*Figure {figure}. {caption}*\n"
                );
            }
            Block::Break => {}
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// HTML of inline Markdown: escapes, then `**bold**` and `` `code` ``.
fn inline(s: &str) -> String {
    let mut out = String::new();
    let e = esc(s);
    let mut bold = false;
    let mut code = false;
    let mut chars = e.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '`' {
            out.push_str(if code { "</code>" } else { "<code>" });
            code = !code;
        } else if c == '*' && chars.peek() == Some(&'*') && !code {
            chars.next();
            out.push_str(if bold { "</strong>" } else { "<strong>" });
            bold = !bold;
        } else {
            out.push(c);
        }
    }
    if code {
        out.push_str("</code>");
    }
    if bold {
        out.push_str("</strong>");
    }
    out
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'DejaVu Sans',sans-serif;max-width:1200px;margin:2em auto;padding:0 1.5em;color:#222;line-height:1.5}\
h1{font-size:1.8em;border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.1em}h3{font-size:1.05em;margin:1.4em 0 .4em}\
.table-wrap{overflow-x:auto;margin:.6em 0 1.2em}table{border-collapse:collapse;font-size:.88em;border-top:2px solid #333;border-bottom:2px solid #333}\
th,td{padding:.3em .7em;text-align:left;white-space:nowrap}thead th{border-bottom:1px solid #333;font-weight:600}tbody tr:nth-child(even){background:#f7f7f7}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}.ci{color:#6b6b6b;font-size:.85em}table.wide .ci{display:block}\
.figures{display:flex;flex-wrap:wrap;gap:1.5em 2%;margin:1em 0}figure{margin:0;width:49%}figure.wide{width:100%}\
figure img{width:100%;height:auto;border:1px solid #e2e2e2}figure.wide img{width:auto;max-width:100%}\
figcaption{font-size:.85em;color:#444;margin-top:.3em}figcaption b{color:#222}\
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.8em;max-height:40em}details{margin:1em 0}summary{cursor:pointer;color:#444}\
code{background:#f2f2f2;padding:0 .2em;border-radius:2px}li{margin:.3em 0}";

/// Whether a table cell holds a number (or `n/a` in a column of numbers).
fn is_numeric(c: &str) -> bool {
    c == "n/a"
        || c.chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_digit() || ch == '-')
}

/// HTML of a table cell: numbers right-aligned, bootstrap intervals `[lo, hi]` set smaller.
fn html_cell(c: &str) -> String {
    let numeric = is_numeric(c);
    let mut body = String::new();
    let mut rest = c;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find(']') else {
            break;
        };
        body.push_str(&esc(rest[..open].trim_end()));
        let _ = write!(
            body,
            " <span class=\"ci\">{}</span>",
            esc(&rest[open..=open + close])
        );
        rest = &rest[open + close + 1..];
    }
    body.push_str(&esc(rest));
    if numeric {
        format!("<td class=\"num\">{body}</td>")
    } else {
        format!("<td>{body}</td>")
    }
}

fn to_html(title: &str, doc: &[Block], dir: &Path) -> Result<String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>blindspot report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(title)
    );
    let mut figure = 0;
    let mut in_figures = false;
    for b in doc {
        let is_image = matches!(b, Block::Image { .. });
        if is_image && !in_figures {
            out.push_str("<div class=\"figures\">\n");
        } else if !is_image && in_figures {
            out.push_str("</div>\n");
        }
        in_figures = is_image;
        match b {
            Block::Heading(level, text) => {
                let _ = writeln!(out, "<h{level}>{}</h{level}>", inline(text));
            }
            Block::Para(text) => {
                if let Some(code) = text
                    .strip_prefix("```json\n")
                    .and_then(|t| t.strip_suffix("\n```"))
                {
                    let _ = writeln!(
                        out,
                        "<details><summary>Show the configuration (JSON)</summary><pre>{}</pre></details>",
                        esc(code)
                    );
                } else {
                    let _ = writeln!(out, "<p>{}</p>", inline(text));
                }
            }
            Block::List(items) => {
                out.push_str("<ul>\n");
                for i in items {
                    let _ = writeln!(out, "<li>{}</li>", inline(i));
                }
                out.push_str("</ul>\n");
            }
            Block::Table { header, rows } => {
                let class = if header.len() > 6 {
                    " class=\"wide\""
                } else {
                    ""
                };
                let _ = write!(out, "<div class=\"table-wrap\"><table{class}>\n<thead><tr>");
                for (k, h) in header.iter().enumerate() {
                    // the header of a column of numbers sits over them, on the right
                    let numeric = !rows.is_empty()
                        && rows.iter().all(|r| r.get(k).is_some_and(|c| is_numeric(c)));
                    let class = if numeric { " class=\"num\"" } else { "" };
                    let _ = write!(out, "<th{class}>{}</th>", esc(h));
                }
                out.push_str("</tr></thead>\n<tbody>\n");
                for r in rows {
                    out.push_str("<tr>");
                    for c in r {
                        out.push_str(&html_cell(c));
                    }
                    out.push_str("</tr>\n");
                }
                out.push_str("</tbody>\n</table></div>\n");
            }
            Block::Image { path, caption } => {
                figure += 1;
                let file = dir.join(path);
                let bytes = std::fs::read(&file).map_err(|e| ReportError::io(&file, e))?;
                // slice grids are wide: give them the full row
                let class = if path.starts_with("plots/") {
                    ""
                } else {
                    " class=\"wide\""
                };
                let _ = writeln!(
                    out,
                    "<figure{class}><img src=\"data:image/png;base64,{}\" alt=\"Figure {figure}: {}\"><figcaption><b>Figure {figure}.</b> {}</figcaption></figure>",
                    base64(&bytes),
                    esc(caption),
                    inline(caption)
                );
            }
            // closing the row of figures above is all a break does
            Block::Break => {}
        }
    }
    if in_figures {
        out.push_str("</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// A CSV table (header, then rows), written by the `csv` crate (a field holding a comma, a
/// quote or a line break is quoted), lines ending in `\n`.
fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    // into memory: neither the writes nor the flush can fail
    let written = writer
        .write_record(header)
        .and_then(|()| rows.iter().try_for_each(|r| writer.write_record(r)));
    let bytes = match written {
        Ok(()) => writer.into_inner().unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

fn num(v: Option<f64>) -> String {
    v.map_or_else(String::new, |v| format!("{v}"))
}

/// `value,low,high` cells of an optional estimate (empty cells for missing values).
fn est_cells(e: Option<crate::schema::Estimate>) -> [String; 3] {
    [
        num(e.map(|e| e.value)),
        num(e.and_then(|e| e.low)),
        num(e.and_then(|e| e.high)),
    ]
}

fn write_tables(r: &Results, dir: &Path) -> Result<Vec<String>> {
    let mut written = Vec::new();
    let mut put = |name: &str, text: String| -> Result<()> {
        let rel = format!("tables/{name}");
        write_atomic(&dir.join(&rel), text.as_bytes())?;
        written.push(rel);
        Ok(())
    };

    let rows = test_set_rows(r);
    put(
        "test_sets.csv",
        csv(
            &[
                "test_set",
                "role",
                "scans",
                "id_slices",
                "healthy_ood_slices",
                "lesional_slices",
            ],
            &rows,
        ),
    )?;

    let mut rows = Vec::new();
    for t in &r.test_sets {
        for p in &t.pixel {
            let mut row = vec![t.name.clone(), p.method.clone(), p.baseline.to_string()];
            for e in [p.auroc, p.ap] {
                row.extend(est_cells(e));
            }
            row.push(num(p.best_dice.map(|b| b.dice)));
            row.push(num(p.best_dice.map(|b| b.threshold)));
            for e in [p.dice_at_threshold, p.healthy_fpr_at_threshold] {
                row.extend(est_cells(e));
            }
            rows.push(row);
        }
    }
    put(
        "pixel.csv",
        csv(
            &[
                "test_set",
                "method",
                "baseline",
                "auroc",
                "auroc_low",
                "auroc_high",
                "ap",
                "ap_low",
                "ap_high",
                "best_dice",
                "best_dice_threshold",
                "dice_at_threshold",
                "dice_at_threshold_low",
                "dice_at_threshold_high",
                "healthy_fpr",
                "healthy_fpr_low",
                "healthy_fpr_high",
            ],
            &rows,
        ),
    )?;

    let mut rows = Vec::new();
    for t in &r.test_sets {
        for o in &t.ood {
            for (mode, get) in MODES {
                if let Some(d) = get(o) {
                    let mut row = vec![t.name.clone(), o.statistic.clone(), mode.to_string()];
                    for e in [d.auroc, d.auprc, d.fpr_at_95_tpr] {
                        row.extend(est_cells(Some(e)));
                    }
                    rows.push(row);
                }
            }
        }
    }
    put(
        "ood.csv",
        csv(
            &[
                "test_set",
                "statistic",
                "mode",
                "auroc",
                "auroc_low",
                "auroc_high",
                "auprc",
                "auprc_low",
                "auprc_high",
                "fpr95",
                "fpr95_low",
                "fpr95_high",
            ],
            &rows,
        ),
    )?;

    let mut rows = Vec::new();
    for t in &r.test_sets {
        for d in &t.disentangling {
            let mut row = vec![t.name.clone(), d.statistic.clone()];
            row.extend(est_cells(Some(d.auroc)));
            rows.push(row);
        }
    }
    put(
        "disentangling.csv",
        csv(
            &["test_set", "statistic", "auroc", "auroc_low", "auroc_high"],
            &rows,
        ),
    )?;

    if let Some(g) = &r.gate {
        let rows: Vec<Vec<String>> = g
            .per_set
            .iter()
            .map(|s| {
                vec![
                    s.test_set.clone(),
                    s.scans.to_string(),
                    s.in_distribution.to_string(),
                    s.lesion_suspected.to_string(),
                    s.rejected.to_string(),
                ]
            })
            .collect();
        put(
            "gate.csv",
            csv(
                &[
                    "test_set",
                    "scans",
                    "in_distribution",
                    "lesion_suspected",
                    "rejected",
                ],
                &rows,
            ),
        )?;
        let rows: Vec<Vec<String>> = g
            .risk_coverage
            .iter()
            .map(|p| vec![p[0].to_string(), p[1].to_string()])
            .collect();
        put("risk_coverage.csv", csv(&["coverage", "risk"], &rows))?;
    }

    let rows: Vec<Vec<String>> = r
        .wall_times
        .iter()
        .map(|w| vec![w.step.clone(), w.seconds.to_string()])
        .collect();
    put("wall_times.csv", csv(&["step", "seconds"], &rows))?;
    Ok(written)
}

/// One row per test set for the report's table and `test_sets.csv`: name, role, scans and the
/// slice counts (ID, healthy OOD, lesional).
fn test_set_rows(r: &Results) -> Vec<Vec<String>> {
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

    #[test]
    fn inline_markup_is_escaped_then_formatted() {
        assert_eq!(
            inline("**a** <b> `c`"),
            "<strong>a</strong> &lt;b&gt; <code>c</code>"
        );
    }

    #[test]
    fn csv_quotes_fields_that_need_it() {
        assert_eq!(
            csv(&["a", "b"], &[vec!["x,y".into(), "q\"".into()]]),
            "a,b\n\"x,y\",\"q\"\"\"\n"
        );
    }
}
