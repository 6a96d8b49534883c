//! Evaluation of the inferred sets: the threshold, pixel metrics, OOD detection,
//! disentangling, the pooled experiments and the gate.
//!
//! The run config reaches evaluation once, as [`EvaluationSettings`]; each step takes the
//! part of it that it reads ([`JudgingSettings`] for the statistics, [`ReportSettings`] for
//! the curves and grids, the `[gate]` through [`GateFit`]).

use std::collections::BTreeMap;
use std::path::Path;

use blindspot_metrics::{BootstrapConfig, RankAccumulator, RankedScores};
use blindspot_ood::eval::{
    IdNegatives, OodMode, ScanOutcome, Scorer, detection_set, disentangling_set, risk_coverage,
};
use blindspot_ood::{
    Decision, Dose, Gate, GateConfig, LesionRule, ScanVerdict, SliceRecord, Statistic,
};
use blindspot_report::{
    BestDice, BootstrapInfo, Curve, Curves, Detection, Disentangling, Estimate, GateGoalNumbers,
    GateResult, GateScan, GateSetResult, Histogram, OodDetection, PixelMetrics, Results,
    SliceCounts, StatisticInfo, TestSetResult, TestSetRole, ThresholdInfo,
};

use crate::config::{Role, RunConfig, ThresholdConfig, ThresholdMethod};
use crate::error::Result;
use crate::grids::slice_grid;
use crate::inference::SetData;

/// File (under the run's `model/`) holding what `blindspot score` needs beside the weights.
pub const SCORING_FILE: &str = "scoring.json";

/// What scoring a new scan needs from its run, beside the model weights: the pixel threshold,
/// the fitted gate, and the healthy validation records (DoSE is refitted on them).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ScoringState {
    /// The calibrated pixel threshold of the post-processed residual.
    pub threshold: f64,
    /// The gate fitted on healthy validation scans (absent: no `[gate]`).
    pub gate: Option<Gate>,
    /// The healthy validation slices.
    pub healthy_validation: Vec<SliceRecord>,
}

/// An estimate of a rate in [0, 1]; interval ends are clamped to it (a bootstrap of a value
/// of 1 can end at `1 + 3e-15` from floating-point sums).
pub(crate) fn estimate(value: f64, ci: Option<blindspot_metrics::ConfidenceInterval>) -> Estimate {
    match ci {
        Some(ci) => Estimate::with_ci(value, ci.lower.clamp(0.0, 1.0), ci.upper.clamp(0.0, 1.0)),
        None => Estimate::point(value),
    }
}

/// Pixel counts at `threshold` (the rule `score > threshold`): (TP, FP, FN, healthy pixels).
pub(crate) fn counts(ranked: &RankedScores<f32>, threshold: f64) -> (u64, u64, u64, u64) {
    let (mut tp, mut fp) = (0, 0);
    // Distinct scores, highest first.
    for t in ranked.tallies() {
        if t.score <= threshold {
            break;
        }
        tp += t.positives;
        fp += t.negatives;
    }
    (tp, fp, ranked.positives() - tp, ranked.negatives())
}

/// Everything the accumulators hold, pooled and ranked.
pub(crate) fn pooled(parts: &[RankAccumulator<f32>]) -> RankedScores<f32> {
    let mut all = RankAccumulator::new();
    for p in parts {
        all.merge(p.clone());
    }
    all.finish()
}

pub(crate) fn pixel_metrics(
    method: &str,
    baseline: bool,
    ranked: &RankedScores<f32>,
    threshold: f64,
    curve_points: usize,
    curves: &mut Curves,
) -> Result<PixelMetrics> {
    let (tp, fp, fneg, healthy) = counts(ranked, threshold);
    let has_lesion = tp + fneg > 0;
    let mut m = PixelMetrics {
        method: method.to_owned(),
        baseline,
        auroc: None,
        ap: None,
        best_dice: None,
        dice_at_threshold: None,
        healthy_fpr_at_threshold: (healthy > 0)
            .then(|| Estimate::point(fp as f64 / healthy as f64)),
    };
    if healthy > 0 {
        // healthy-pixel FPR above each distinct score, for every set with healthy pixels
        let negatives = ranked.negatives() as f64;
        let mut above = 0u64;
        let fvt: Vec<[f64; 2]> = ranked
            .tallies()
            .filter(|t| t.negatives > 0 && t.score.is_finite())
            .map(|t| {
                above += t.negatives;
                [t.score, above as f64 / negatives]
            })
            .collect();
        curves
            .fpr_vs_threshold
            .push(Curve::thinned(method, &fvt, curve_points));
    }
    if has_lesion && healthy > 0 {
        m.auroc = Some(Estimate::point(ranked.auroc()?));
        m.ap = Some(Estimate::point(ranked.average_precision()?));
        let best = ranked.best_dice()?;
        if best.threshold.is_finite() {
            m.best_dice = Some(BestDice {
                dice: best.dice,
                threshold: best.threshold,
            });
        }
        m.dice_at_threshold = Some(Estimate::point(
            2.0 * tp as f64 / (2 * tp + fp + fneg) as f64,
        ));
        let roc = ranked.roc_curve()?;
        let pts: Vec<[f64; 2]> = roc
            .fpr
            .iter()
            .zip(&roc.tpr)
            .map(|(&x, &y)| [x, y])
            .collect();
        curves.roc.push(Curve::thinned(method, &pts, curve_points));
        let pr = ranked.pr_curve()?;
        let pts: Vec<[f64; 2]> = pr
            .recall
            .iter()
            .zip(&pr.precision)
            .map(|(&x, &y)| [x, y])
            .collect();
        curves.pr.push(Curve::thinned(method, &pts, curve_points));
    }
    Ok(m)
}

/// What evaluation reads from the run config, built once ([`EvaluationSettings::of`]); each
/// step takes the part it needs.
#[derive(Debug, Clone)]
pub(crate) struct EvaluationSettings {
    /// The experiment's name, as `results.json` records it.
    pub(crate) experiment: String,
    /// The resolved config, as `results.json` records it.
    pub(crate) config: serde_json::Value,
    /// The statistics DoSE combines (those of its inputs the model provides).
    pub(crate) dose_statistics: Vec<Statistic>,
    /// How the pixel threshold is set (`[threshold]`).
    pub(crate) threshold: ThresholdConfig,
    /// The members and their adequacy criterion.
    pub(crate) adequacy: AdequacySettings,
    /// How the slice statistics are judged.
    pub(crate) judging: JudgingSettings,
    /// What the report's curves, histograms and grids need.
    pub(crate) report: ReportSettings,
    /// `[gate]` (absent: no gate).
    pub(crate) gate: Option<GateConfig>,
}

impl EvaluationSettings {
    /// The settings of `config`.
    ///
    /// # Errors
    /// [`crate::config::ConfigError::Serialize`] (a bug: a valid config serialises).
    pub(crate) fn of(config: &RunConfig) -> Result<Self> {
        let ev = &config.evaluation;
        Ok(Self {
            experiment: config.name.clone(),
            config: config.to_json_value()?,
            dose_statistics: config.model.dose_statistics(),
            threshold: config.threshold.clone(),
            adequacy: AdequacySettings {
                members: config.ensemble.members,
                min_adequacy: ev.min_adequacy,
            },
            judging: JudgingSettings {
                statistics: ev.statistics.clone(),
                prior_knowledge: ev.prior_knowledge.clone(),
                rule: LesionRule {
                    min_pixels: u32::try_from(ev.lesional_pixels).unwrap_or(u32::MAX),
                },
                seed: config.seed,
                bootstrap: (ev.bootstrap_resamples > 0).then_some(BootstrapConfig {
                    resamples: ev.bootstrap_resamples,
                    level: ev.confidence,
                    seed: config.seed,
                }),
            },
            report: ReportSettings {
                method: format!("{} ensemble", config.model.label()),
                curve_points: config.report.curve_points,
                histogram_bins: config.report.histogram_bins,
                slice_size: config.preprocess.slice_size,
            },
            gate: config.gate.clone(),
        })
    }
}

/// The members' adequacy: how many members trained, and the criterion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdequacySettings {
    /// `ensemble.members`.
    pub(crate) members: usize,
    /// `evaluation.min_adequacy`.
    pub(crate) min_adequacy: f64,
}

/// How the slice statistics are judged (OOD detection, disentangling, histograms, the pooled
/// experiments).
#[derive(Debug, Clone)]
pub(crate) struct JudgingSettings {
    /// The statistics evaluated (`evaluation.statistics`).
    pub(crate) statistics: Vec<Statistic>,
    /// Those that use prior knowledge (`evaluation.prior_knowledge`).
    pub(crate) prior_knowledge: Vec<Statistic>,
    /// When a slice counts as lesional (`evaluation.lesional_pixels`).
    pub(crate) rule: LesionRule,
    /// The seed of the matched in-distribution negatives (the run's `seed`).
    pub(crate) seed: u64,
    /// The scan-level bootstrap (absent: point estimates only).
    pub(crate) bootstrap: Option<BootstrapConfig>,
}

/// What the report's curves, histograms and slice grids need.
#[derive(Debug, Clone)]
pub(crate) struct ReportSettings {
    /// The model's method label (`VAE ensemble`).
    pub(crate) method: String,
    /// Points per curve (`report.curve_points`).
    pub(crate) curve_points: usize,
    /// Bins per histogram (`report.histogram_bins`).
    pub(crate) histogram_bins: usize,
    /// `preprocess.slice_size`.
    pub(crate) slice_size: [usize; 2],
}

/// The pixel threshold: fixed, or the one reaching the target FPR on the healthy (negative)
/// pixels of `validation`.
pub(crate) fn calibrate(config: &ThresholdConfig, validation: &RankedScores<f32>) -> Result<f64> {
    match config.method {
        ThresholdMethod::Fixed => Ok(config.value.unwrap_or(0.0)),
        ThresholdMethod::HealthyFpr => {
            Ok(validation.threshold_for_fpr(config.target_fpr)?.threshold)
        }
    }
}

/// The calibrated pixel thresholds: the model's and the intensity baseline's.
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    model: f64,
    baseline: f64,
}

impl Thresholds {
    /// Both thresholds, which read the healthy (negative) validation pixels only (the
    /// baseline's always at the target FPR).
    fn calibrate(config: &ThresholdConfig, val: &SetData) -> Result<Self> {
        Ok(Self {
            model: calibrate(config, &pooled(&val.pixels))?,
            baseline: val
                .intensity
                .clone()
                .finish()
                .threshold_for_fpr(config.target_fpr)?
                .threshold,
        })
    }
}

/// OOD detection of `statistic` on the slices of `test` against the in-distribution slices
/// `id`, in `mode` (`None` when the sets do not allow it).
pub(crate) fn detection(
    id: &[SliceRecord],
    test: &[SliceRecord],
    statistic: Statistic,
    mode: OodMode,
    judging: &JudgingSettings,
) -> Option<Detection> {
    let negatives = match mode {
        OodMode::All => IdNegatives::All,
        _ => IdNegatives::Matched { seed: judging.seed },
    };
    let set = detection_set(
        id,
        test,
        &Scorer::Statistic(statistic),
        mode,
        judging.rule,
        negatives,
    )
    .ok()?;
    let m = blindspot_ood::eval::evaluate(&set, judging.bootstrap.as_ref()).ok()?;
    let iv = m.intervals;
    Some(Detection {
        auroc: estimate(m.auroc, iv.map(|i| i.auroc)),
        auprc: estimate(m.auprc, iv.map(|i| i.auprc)),
        fpr_at_95_tpr: estimate(m.fpr_at_95_tpr, iv.map(|i| i.fpr_at_95_tpr)),
    })
}

/// Evaluates the inferred sets (validation first): DoSE, the thresholds, every test set, the
/// histograms, the pooled experiments and the gate. Returns the results and what scoring new
/// scans needs.
pub(crate) fn evaluate_sets(
    settings: &EvaluationSettings,
    dir: &Path,
    sets: &mut [SetData],
) -> Result<(Results, ScoringState)> {
    let (val, tests) = sets
        .split_first_mut()
        .expect("the validation set comes first");
    let healthy_val = fit_dose(&settings.dose_statistics, val, tests)?;
    let thresholds = Thresholds::calibrate(&settings.threshold, val)?;
    let mut results = results_header(settings, val, thresholds.model);
    add_adequacy(&mut results, dir, val, settings.adequacy)?;
    let id = records_of(tests, Role::InDistribution);
    for t in tests.iter() {
        let result = test_set_result(settings, dir, tests, t, &id, thresholds)?;
        results.test_sets.push(result);
    }
    let bins = settings.report.histogram_bins;
    results
        .histograms
        .extend(histograms(&settings.judging, bins, tests));
    pooled_experiments(&mut results, &settings.judging, tests)?;
    let gate = match &settings.gate {
        Some(config) => {
            let bootstrap = settings.judging.bootstrap.as_ref();
            let fit = GateFit::new(config, &healthy_val, thresholds.model, bootstrap);
            fit.evaluate(&mut results, tests)?
        }
        None => None,
    };
    let scoring = ScoringState {
        threshold: thresholds.model,
        gate,
        healthy_validation: healthy_val,
    };
    Ok((results, scoring))
}

/// Fits DoSE on the statistics every non-empty slice has, on the healthy validation slices,
/// and adds its score to every set's records. Returns those healthy validation slices.
fn fit_dose(
    statistics: &[Statistic],
    val: &mut SetData,
    tests: &mut [SetData],
) -> Result<Vec<SliceRecord>> {
    let healthy_val: Vec<SliceRecord> = val
        .records
        .iter()
        .filter(|r| !r.is_empty() && r.lesion_pixels == 0)
        .cloned()
        .collect();
    let dose = Dose::fit(&healthy_val, statistics)?;
    dose.annotate(&mut val.records)?;
    for t in tests.iter_mut() {
        dose.annotate(&mut t.records)?;
    }
    Ok(healthy_val)
}

/// The results before any set is evaluated: the experiment, the threshold, the bootstrap and
/// the statistics.
fn results_header(settings: &EvaluationSettings, val: &SetData, threshold: f64) -> Results {
    let t = &settings.threshold;
    let mut results = Results::new(
        settings.experiment.clone(),
        settings.config.clone(),
        ThresholdInfo {
            value: threshold,
            target_fpr: (t.method == ThresholdMethod::HealthyFpr).then_some(t.target_fpr),
            calibrated_on: format!("healthy pixels of the validation set ({} scans)", val.scans),
        },
    );
    let judging = &settings.judging;
    results.bootstrap = judging.bootstrap.as_ref().map(|b| BootstrapInfo {
        resamples: b.resamples,
        level: b.level,
        unit: "scan".into(),
        seed: b.seed,
    });
    results.statistics = judging
        .statistics
        .iter()
        .map(|s| StatisticInfo {
            name: s.name().to_owned(),
            label: s.name().to_owned(),
            prior_knowledge: judging.prior_knowledge.contains(s),
        })
        .collect();
    results
}

/// The members' adequacy and their training curves. A model with a reconstruction error is
/// judged against the references `train` wrote (which must then be there).
fn add_adequacy(
    results: &mut Results,
    dir: &Path,
    val: &SetData,
    settings: AdequacySettings,
) -> Result<()> {
    let reconstructs = val.member_rec_err.first().is_some_and(|m| !m.is_empty());
    let refs = if reconstructs {
        Some(crate::adequacy::read_references(dir)?)
    } else {
        crate::adequacy::read_references(dir).ok()
    };
    if let Some(refs) = &refs {
        results.adequacy = crate::adequacy::member_adequacy(refs, val, settings.min_adequacy)?;
    }
    results.training = crate::adequacy::training_curves(dir, settings.members, refs.as_ref())?;
    Ok(())
}

/// Every record of the sets of `role`, in set order.
fn records_of(sets: &[SetData], role: Role) -> Vec<SliceRecord> {
    sets.iter()
        .filter(|t| t.role == Some(role))
        .flat_map(|t| t.records.iter().cloned())
        .collect()
}

/// One test set's results: pixel metrics beside the intensity baseline, OOD detection against
/// the in-distribution slices `id` (an OOD set), disentangling, slice counts and its grid.
fn test_set_result(
    settings: &EvaluationSettings,
    dir: &Path,
    tests: &[SetData],
    t: &SetData,
    id: &[SliceRecord],
    thresholds: Thresholds,
) -> Result<TestSetResult> {
    let report = &settings.report;
    let mut curves = Curves::default();
    let pixel = vec![
        pixel_metrics(
            &report.method,
            false,
            &pooled(&t.pixels),
            thresholds.model,
            report.curve_points,
            &mut curves,
        )?,
        pixel_metrics(
            "intensity threshold",
            true,
            &t.intensity.clone().finish(),
            thresholds.baseline,
            report.curve_points,
            &mut curves,
        )?,
    ];
    let ood_set = t.role == Some(Role::OutOfDistribution);
    let ood = if ood_set {
        ood_detections(&settings.judging, id, &t.records)
    } else {
        Vec::new()
    };
    Ok(TestSetResult {
        name: t.name.clone(),
        role: if ood_set {
            TestSetRole::OutOfDistribution
        } else {
            TestSetRole::InDistribution
        },
        scans: t.scans,
        slices: slice_counts(&t.records, settings.judging.rule, ood_set),
        pixel,
        ood,
        disentangling: disentangling(&settings.judging, tests, t),
        curves,
        slice_grids: slice_grid(dir, t, ood_set, thresholds.model, report.slice_size)?
            .into_iter()
            .collect(),
    })
}

/// OOD detection of every statistic on the slices `test` against `id`: all slices, the
/// lesional ones and the healthy ones.
fn ood_detections(
    judging: &JudgingSettings,
    id: &[SliceRecord],
    test: &[SliceRecord],
) -> Vec<OodDetection> {
    judging
        .statistics
        .iter()
        .map(|&s| OodDetection {
            statistic: s.name().to_owned(),
            all: detection(id, test, s, OodMode::All, judging),
            lesional: detection(id, test, s, OodMode::Lesional, judging),
            healthy: detection(id, test, s, OodMode::Healthy, judging),
        })
        .collect()
}

/// Disentangling of every statistic on `t`: its lesional slices against the healthy slices of
/// the other in-distribution sets (matched).
fn disentangling(judging: &JudgingSettings, tests: &[SetData], t: &SetData) -> Vec<Disentangling> {
    let others: Vec<SliceRecord> = tests
        .iter()
        .filter(|o| o.role == Some(Role::InDistribution) && o.name != t.name)
        .flat_map(|o| o.records.iter().cloned())
        .collect();
    judging
        .statistics
        .iter()
        .filter_map(|&s| {
            let set = disentangling_set(
                &others,
                &[&t.records],
                &Scorer::Statistic(s),
                judging.rule,
                IdNegatives::Matched { seed: judging.seed },
            )
            .ok()?;
            let m = blindspot_ood::eval::evaluate(&set, judging.bootstrap.as_ref()).ok()?;
            Some(Disentangling {
                statistic: s.name().to_owned(),
                auroc: estimate(m.auroc, m.intervals.map(|i| i.auroc)),
            })
        })
        .collect()
}

/// A set's non-empty slices by kind: lesional, and healthy (in-distribution or OOD by the
/// set's role).
fn slice_counts(records: &[SliceRecord], rule: LesionRule, ood_set: bool) -> SliceCounts {
    let non_empty = records.iter().filter(|r| !r.is_empty());
    let lesional = non_empty.clone().filter(|r| r.is_lesional(rule)).count();
    let healthy = non_empty.count() - lesional;
    if ood_set {
        SliceCounts {
            id: 0,
            healthy_ood: healthy,
            lesional,
        }
    } else {
        SliceCounts {
            id: healthy,
            healthy_ood: 0,
            lesional,
        }
    }
}

/// Per statistic, a histogram of its values with one group per set, split healthy /
/// lesional where the set has lesional slices.
fn histograms(judging: &JudgingSettings, bins: usize, tests: &[SetData]) -> Vec<Histogram> {
    judging
        .statistics
        .iter()
        .map(|&s| {
            let values: Vec<(String, Vec<f64>)> = tests
                .iter()
                .flat_map(|t| histogram_groups(t, s, judging.rule))
                .collect();
            let groups: Vec<(&str, &[f64])> = values
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect();
            Histogram::from_values(s.name(), &groups, bins)
        })
        .collect()
}

/// The histogram groups of one set: its values of `s`, or its healthy and its lesional
/// slices' values apart when it has lesional slices.
fn histogram_groups(t: &SetData, s: Statistic, rule: LesionRule) -> Vec<(String, Vec<f64>)> {
    let of = |lesional: bool| -> Vec<f64> {
        t.records
            .iter()
            .filter(|r| r.is_lesional(rule) == lesional)
            .filter_map(|r| r.get(s).ok())
            .collect()
    };
    let lesional = of(true);
    if lesional.is_empty() {
        vec![(t.name.clone(), of(false))]
    } else {
        vec![
            (format!("{} (healthy slices)", t.name), of(false)),
            (format!("{} (lesional slices)", t.name), lesional),
        ]
    }
}

/// Edges of the lesion-share bins of [`Results::disentangling_by_size`]: the lesion's share of
/// the slice's brain pixels.
pub(crate) const LESION_SHARE_BINS: [f64; 6] = [0.0, 0.02, 0.05, 0.1, 0.2, 1.0];

/// The paper's two slice-level experiments over every test set pooled, per statistic, and the
/// paired comparison of finding 3 (docs/method.md 5.2): OOD detection (healthy slices of the
/// out-of-distribution sets against healthy in-distribution slices) and disentangling (lesional
/// slices of every set against the healthy slices of every set), with scan-level intervals.
pub(crate) fn pooled_experiments(
    results: &mut Results,
    judging: &JudgingSettings,
    tests: &[SetData],
) -> Result<()> {
    let all: Vec<&[SliceRecord]> = tests.iter().map(|t| t.records.as_slice()).collect();
    let pooled = pooled_statistics(judging, tests, &all);
    results.pooled.extend(pooled);
    let by_size = disentangling_by_size(judging, tests);
    results.disentangling_by_size.extend(by_size);
    if let Some(comparison) = prior_comparison(&results.pooled, judging, &all)? {
        results.prior_comparison = Some(comparison);
    }
    Ok(())
}

/// The AUROC of a scored set, with its scan-level interval under `bootstrap`.
fn auroc_estimate(
    set: &blindspot_ood::eval::ScoredSet,
    bootstrap: Option<&BootstrapConfig>,
) -> Option<Estimate> {
    blindspot_ood::eval::evaluate(set, bootstrap)
        .ok()
        .map(|m| estimate(m.auroc, m.intervals.map(|i| i.auroc)))
}

/// Per statistic, pooled OOD detection (healthy OOD slices against healthy ID slices) and
/// pooled disentangling (over `all`, every test set's records).
fn pooled_statistics(
    judging: &JudgingSettings,
    tests: &[SetData],
    all: &[&[SliceRecord]],
) -> Vec<blindspot_report::PooledStatistic> {
    let rule = judging.rule;
    let bootstrap = judging.bootstrap.as_ref();
    let id_healthy: Vec<SliceRecord> = records_of(tests, Role::InDistribution)
        .into_iter()
        .filter(|r| !r.is_lesional(rule))
        .collect();
    let ood = records_of(tests, Role::OutOfDistribution);
    judging
        .statistics
        .iter()
        .map(|&s| {
            let scorer = Scorer::Statistic(s);
            let ood_auroc = detection_set(
                &id_healthy,
                &ood,
                &scorer,
                OodMode::Healthy,
                rule,
                IdNegatives::All,
            )
            .ok()
            .and_then(|set| auroc_estimate(&set, bootstrap));
            let disentangling_auroc = disentangling_set(&[], all, &scorer, rule, IdNegatives::All)
                .ok()
                .and_then(|set| auroc_estimate(&set, bootstrap));
            blindspot_report::PooledStatistic {
                statistic: s.name().to_owned(),
                ood_auroc,
                disentangling_auroc,
            }
        })
        .collect()
}

/// Disentangling against lesion size: the lesional slices split by the lesion's share of the
/// slice's brain ([`LESION_SHARE_BINS`]), each bin against every healthy slice, for the
/// prior-knowledge statistics and the paper's (a bin without lesional slices is left out).
fn disentangling_by_size(
    judging: &JudgingSettings,
    tests: &[SetData],
) -> Vec<blindspot_report::SizeBin> {
    let plotted: Vec<Statistic> = judging
        .statistics
        .iter()
        .copied()
        .filter(|s| {
            judging.prior_knowledge.contains(s)
                || blindspot_report::findings::PAPER_OOD_STATISTICS.contains(&s.name())
        })
        .collect();
    LESION_SHARE_BINS
        .windows(2)
        .filter_map(|w| size_bin(judging, tests, &plotted, w[0], w[1]))
        .collect()
}

/// One bin of [`disentangling_by_size`]: the lesional slices whose lesion share is in
/// `(low, high]` against every healthy slice (`None` without such slices).
fn size_bin(
    judging: &JudgingSettings,
    tests: &[SetData],
    plotted: &[Statistic],
    low: f64,
    high: f64,
) -> Option<blindspot_report::SizeBin> {
    let rule = judging.rule;
    let share = |r: &SliceRecord| f64::from(r.lesion_pixels) / f64::from(r.mask_pixels.max(1));
    let kept: Vec<Vec<SliceRecord>> = tests
        .iter()
        .map(|t| {
            t.records
                .iter()
                .filter(|r| !r.is_lesional(rule) || (share(r) > low && share(r) <= high))
                .cloned()
                .collect()
        })
        .collect();
    let kept: Vec<&[SliceRecord]> = kept.iter().map(Vec::as_slice).collect();
    let positives = kept
        .iter()
        .flat_map(|t| t.iter())
        .filter(|r| !r.is_empty() && r.is_lesional(rule))
        .count();
    if positives == 0 {
        return None;
    }
    let auroc = plotted
        .iter()
        .filter_map(|&s| {
            let set = disentangling_set(&[], &kept, &Scorer::Statistic(s), rule, IdNegatives::All)
                .ok()?;
            Some((
                s.name().to_owned(),
                auroc_estimate(&set, judging.bootstrap.as_ref())?,
            ))
        })
        .collect();
    Some(blindspot_report::SizeBin {
        low,
        high,
        positives,
        auroc,
    })
}

/// Finding 3: the paired comparison (on the slices both score) of the best prior-knowledge
/// statistic's pooled disentangling against the best of the paper's scores. `None` without a
/// bootstrap, without both statistics, or when the comparison fails (a warning says why: the
/// report then judges finding 3 on the mean of the per-set AUROCs and says so).
fn prior_comparison(
    pooled: &[blindspot_report::PooledStatistic],
    judging: &JudgingSettings,
    all: &[&[SliceRecord]],
) -> Result<Option<blindspot_report::PriorComparison>> {
    let (Some(prior), Some(plain), Some(b)) = (
        best_disentangling(pooled, judging, true),
        best_disentangling(pooled, judging, false),
        judging.bootstrap.as_ref(),
    ) else {
        return Ok(None);
    };
    let named = |name: &str| {
        judging
            .statistics
            .iter()
            .copied()
            .find(|s| s.name() == name)
    };
    let (Some(p), Some(q)) = (named(&prior), named(&plain)) else {
        return Ok(None);
    };
    let (a, c) = blindspot_ood::eval::paired_disentangling_sets(
        all,
        &Scorer::Statistic(p),
        &Scorer::Statistic(q),
        judging.rule,
        IdNegatives::All,
    )?;
    match blindspot_ood::eval::compare_auroc(&a, &c, b) {
        Ok(cmp) => Ok(Some(blindspot_report::PriorComparison {
            prior,
            plain,
            difference: Estimate {
                value: cmp.difference.estimate,
                low: Some(cmp.difference.lower),
                high: Some(cmp.difference.upper),
            },
        })),
        Err(e) => {
            eprintln!("warning: no paired comparison of {prior} and {plain} for finding 3: {e}");
            Ok(None)
        }
    }
}

/// The statistic with the highest pooled disentangling AUROC among the prior-knowledge ones
/// (`prior`) or among the paper's scores.
fn best_disentangling(
    pooled: &[blindspot_report::PooledStatistic],
    judging: &JudgingSettings,
    prior: bool,
) -> Option<String> {
    pooled
        .iter()
        .filter(|p| {
            let is_prior = judging
                .prior_knowledge
                .iter()
                .any(|s| s.name() == p.statistic);
            is_prior == prior
                && (prior
                    || blindspot_report::findings::PAPER_OOD_STATISTICS
                        .contains(&p.statistic.as_str()))
        })
        .filter_map(|p| {
            p.disentangling_auroc
                .map(|e| (p.statistic.clone(), e.value))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(name, _)| name)
}

/// The gate of `[gate]`, to be fitted on the healthy validation scans and evaluated on the
/// test sets at the pixel `threshold`.
struct GateFit<'a> {
    config: &'a GateConfig,
    healthy_val: &'a [SliceRecord],
    threshold: f64,
    bootstrap: Option<&'a BootstrapConfig>,
}

impl<'a> GateFit<'a> {
    fn new(
        config: &'a GateConfig,
        healthy_val: &'a [SliceRecord],
        threshold: f64,
        bootstrap: Option<&'a BootstrapConfig>,
    ) -> Self {
        Self {
            config,
            healthy_val,
            threshold,
            bootstrap,
        }
    }

    /// Fits the gate and puts its evaluation in `results`; returns the fitted gate. A gate that
    /// cannot be fitted (a component constant over the fit scans, as with a barely trained
    /// model) must not throw away the rest of the evaluation: `results` then says why.
    fn evaluate(&self, results: &mut Results, tests: &[SetData]) -> Result<Option<Gate>> {
        match Gate::fit_split(self.healthy_val, self.config.clone()) {
            Ok(fitted) => {
                results.gate = Some(run_gate(&fitted, tests, self.threshold, self.bootstrap)?);
                Ok(Some(fitted))
            }
            Err(e) => {
                eprintln!("warning: the gate is not fitted, so no scan is gated: {e}");
                results.gate_error = Some(e.to_string());
                Ok(None)
            }
        }
    }
}

/// The fitted gate on every test set: its verdicts, the Dice and pixel numbers of the
/// accepted scans against all scans, risk-coverage and the goals' numbers.
pub(crate) fn run_gate(
    gate: &Gate,
    tests: &[SetData],
    threshold: f64,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<GateResult> {
    let mut tally = GateTally::default();
    for t in tests {
        tally.add_set(gate, t, threshold, bootstrap)?;
    }
    tally.finish(gate, threshold, bootstrap)
}

/// What [`run_gate`] gathers over the test sets.
#[derive(Default)]
struct GateTally {
    per_set: Vec<GateSetResult>,
    outcomes: Vec<ScanOutcome>,
    scans: Vec<GateScan>,
    /// The Dice of each lesional scan that was accepted, and of every lesional scan.
    dice_accepted: Vec<f64>,
    dice_all: Vec<f64>,
    /// Scans rejected, and scans decided on.
    rejected: usize,
    decided: usize,
    /// Pixels of the accepted scans and of all scans.
    pixels_accepted: Vec<RankAccumulator<f32>>,
    pixels_all: Vec<RankAccumulator<f32>>,
    /// The in-distribution scans' verdicts, which the goals read.
    id_scans: Vec<GateScan>,
}

impl GateTally {
    /// Adds the gate's verdicts on the scans of `t` and the set's row.
    fn add_set(
        &mut self,
        gate: &Gate,
        t: &SetData,
        threshold: f64,
        bootstrap: Option<&BootstrapConfig>,
    ) -> Result<()> {
        let verdicts = gate.decide_all(&t.records)?;
        for v in &verdicts {
            if let Some(k) = t.subjects.iter().position(|s| *s == v.scan.volume) {
                self.pixels_all.push(t.pixels[k].clone());
                if v.decision.reports_lesion_map() {
                    self.pixels_accepted.push(t.pixels[k].clone());
                }
            }
        }
        // Pixel counts per scan at the calibrated threshold.
        let per_scan: BTreeMap<&str, (u64, u64, u64, u64)> = t
            .subjects
            .iter()
            .zip(&t.pixels)
            .map(|(scan, acc)| (scan.as_str(), counts(&acc.clone().finish(), threshold)))
            .collect();
        let mut row = GateSetResult {
            test_set: t.name.clone(),
            scans: verdicts.len(),
            in_distribution: 0,
            lesion_suspected: 0,
            rejected: 0,
            lesional_scans: 0,
            rejection: None,
            healthy_fpr_all: None,
            healthy_fpr_accepted: None,
        };
        let first_scan = self.scans.len();
        for v in &verdicts {
            let pixels = per_scan
                .get(v.scan.volume.as_str())
                .copied()
                .unwrap_or_default();
            self.add_scan(&mut row, t, v, pixels);
        }
        set_rates(&mut row, &self.scans[first_scan..], bootstrap);
        self.rejected += row.rejected;
        self.decided += row.scans;
        self.per_set.push(row);
        Ok(())
    }

    /// Adds one scan's verdict `v` (with its pixel counts at the threshold: TP, FP, FN,
    /// healthy pixels) to its set's `row` and to the tally.
    fn add_scan(
        &mut self,
        row: &mut GateSetResult,
        t: &SetData,
        v: &ScanVerdict,
        (tp, fp, fneg, healthy): (u64, u64, u64, u64),
    ) {
        match v.decision {
            Decision::InDistribution => row.in_distribution += 1,
            Decision::LesionSuspected => row.lesion_suspected += 1,
            Decision::OutOfDistribution => row.rejected += 1,
        }
        let lesional = tp + fneg > 0;
        row.lesional_scans += usize::from(lesional);
        let scan = GateScan {
            test_set: t.name.clone(),
            scan: v.scan.volume.clone(),
            lesional,
            decision: v.decision,
            shift_score: v.shift_score,
            lesion_score: v.lesion_score,
            false_positives: fp,
            healthy_pixels: healthy,
        };
        if t.role == Some(Role::InDistribution) {
            self.id_scans.push(scan.clone());
        }
        self.scans.push(scan);
        let outcome = ScanOutcome {
            scan: v.scan.clone(),
            gate_score: if v.shift_score.is_finite() {
                v.shift_score
            } else {
                f64::MAX
            },
            true_positives: tp,
            false_positives: fp,
            false_negatives: fneg,
        };
        // The Dice means cover lesional scans (a healthy scan has no lesion to find).
        if tp + fneg > 0 {
            self.dice_all.push(outcome.dice());
            if v.decision.reports_lesion_map() {
                self.dice_accepted.push(outcome.dice());
            }
        }
        self.outcomes.push(outcome);
    }

    /// The gate's result over every set added.
    fn finish(
        self,
        gate: &Gate,
        threshold: f64,
        bootstrap: Option<&BootstrapConfig>,
    ) -> Result<GateResult> {
        let mean = |v: &[f64]| {
            (!v.is_empty()).then(|| Estimate::point(v.iter().sum::<f64>() / v.len() as f64))
        };
        let goals = goal_numbers(&self.id_scans, bootstrap);
        let (healthy_fpr_accepted, pixel_ap_accepted) =
            pixel_summary(&self.pixels_accepted, threshold);
        let (healthy_fpr_all, pixel_ap_all) = pixel_summary(&self.pixels_all, threshold);
        let rc = risk_coverage(&self.outcomes)?;
        let aurc_ci = match bootstrap {
            Some(b) => blindspot_ood::eval::bootstrap_aurc(&self.outcomes, b).ok(),
            None => None,
        };
        Ok(GateResult {
            per_set: self.per_set,
            fraction_rejected: if self.decided == 0 {
                0.0
            } else {
                self.rejected as f64 / self.decided as f64
            },
            dice_accepted: mean(&self.dice_accepted),
            dice_all: mean(&self.dice_all),
            risk_coverage: rc
                .points
                .iter()
                .map(|p| [p.coverage, 1.0 - p.mean_dice])
                .collect(),
            aurc: Some(estimate(rc.aurc, aurc_ci)),
            healthy_fpr_accepted,
            healthy_fpr_all,
            pixel_ap_accepted,
            pixel_ap_all,
            id_acceptance: goals.id_acceptance.map(|e| e.value),
            scans: self.scans,
            criteria: Some(gate.config().goals),
            goals: Some(goals),
        })
    }
}

/// The healthy-pixel FPR at `threshold` and the pixel AP over the pooled scans `parts`
/// (`None` for no scans).
fn pixel_summary(parts: &[RankAccumulator<f32>], threshold: f64) -> (Option<f64>, Option<f64>) {
    if parts.is_empty() {
        return (None, None);
    }
    let ranked = pooled(parts);
    let (_, fp, _, negatives) = counts(&ranked, threshold);
    let fpr = (negatives > 0).then(|| fp as f64 / negatives as f64);
    (fpr, ranked.average_precision().ok())
}

/// A statistic of a group of scans with its scan-level bootstrap interval (a point estimate
/// without a bootstrap, or when the resamples cannot give one); `None` when the statistic is
/// undefined on the scans themselves.
fn scan_estimate<F>(n: usize, bootstrap: Option<&BootstrapConfig>, stat: F) -> Option<Estimate>
where
    F: Fn(&[usize]) -> Option<f64> + Sync,
{
    let all: Vec<usize> = (0..n).collect();
    let value = stat(&all)?;
    let ci = bootstrap.filter(|_| n >= 2).and_then(|b| {
        blindspot_metrics::bootstrap_ci(n, b, |idx| {
            stat(idx).ok_or(blindspot_metrics::MetricsError::InvalidParameter {
                name: "resample",
                value: "a draw without the scans the statistic needs".into(),
                allowed: "draws with them (such resamples are left out)",
            })
        })
        .ok()
    });
    Some(match ci {
        Some(ci) => Estimate::with_ci(value, ci.lower, ci.upper),
        None => Estimate::point(value),
    })
}

/// The share of `items` (over the resampled indices) for which `hit` holds, among those for
/// which `counted` holds.
fn share<T>(
    items: &[T],
    idx: &[usize],
    counted: impl Fn(&T) -> bool,
    hit: impl Fn(&T) -> bool,
) -> Option<f64> {
    let (mut n, mut k) = (0usize, 0usize);
    for &i in idx {
        let it = &items[i];
        if counted(it) {
            n += 1;
            k += usize::from(hit(it));
        }
    }
    (n > 0).then(|| k as f64 / n as f64)
}

/// A set's rejection rate and its healthy-pixel FPR before and after the gate, with scan-level
/// intervals (the FPR pools the resampled scans' pixels).
fn set_rates(row: &mut GateSetResult, scans: &[GateScan], bootstrap: Option<&BootstrapConfig>) {
    let n = scans.len();
    row.rejection = scan_estimate(n, bootstrap, |idx| {
        share(scans, idx, |_| true, |s| !s.accepted())
    });
    let fpr = |idx: &[usize], only_accepted: bool| {
        let (mut fp, mut healthy) = (0u64, 0u64);
        for &i in idx {
            let s = &scans[i];
            if !only_accepted || s.accepted() {
                fp += s.false_positives;
                healthy += s.healthy_pixels;
            }
        }
        (healthy > 0).then(|| fp as f64 / healthy as f64)
    };
    row.healthy_fpr_all = scan_estimate(n, bootstrap, |idx| fpr(idx, false));
    row.healthy_fpr_accepted = scan_estimate(n, bootstrap, |idx| fpr(idx, true));
}

/// The pooled in-distribution numbers of the gate's goals from the ID scans' verdicts.
fn goal_numbers(id: &[GateScan], bootstrap: Option<&BootstrapConfig>) -> GateGoalNumbers {
    let n = id.len();
    let accepted = |s: &GateScan| s.accepted();
    let flagged = |s: &GateScan| s.flagged();
    let auroc = |idx: &[usize]| {
        let scores: Vec<f64> = idx.iter().map(|&i| id[i].lesion_score).collect();
        let labels: Vec<bool> = idx.iter().map(|&i| id[i].lesional).collect();
        if scores.iter().any(|v| !v.is_finite()) {
            return None;
        }
        blindspot_metrics::auroc(&scores, &labels).ok()
    };
    // the ROC needs every score finite (a lesion score is infinite without lesion components)
    let lesion_roc = if id.iter().all(|s| s.lesion_score.is_finite()) {
        let scores: Vec<f64> = id.iter().map(|s| s.lesion_score).collect();
        let labels: Vec<bool> = id.iter().map(|s| s.lesional).collect();
        blindspot_metrics::roc_curve(&scores, &labels)
            .map(|roc| {
                roc.fpr
                    .iter()
                    .zip(&roc.tpr)
                    .map(|(&x, &y)| [x, y])
                    .collect()
            })
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    GateGoalNumbers {
        id_acceptance: scan_estimate(n, bootstrap, |idx| share(id, idx, |_| true, accepted)),
        lesional_acceptance: scan_estimate(n, bootstrap, |idx| {
            share(id, idx, |s| s.lesional, accepted)
        }),
        lesion_sensitivity: scan_estimate(n, bootstrap, |idx| {
            share(id, idx, |s| s.lesional && s.accepted(), flagged)
        }),
        healthy_flag_rate: scan_estimate(n, bootstrap, |idx| {
            share(id, idx, |s| !s.lesional && s.accepted(), flagged)
        }),
        lesion_auroc: scan_estimate(n, bootstrap, auroc),
        lesion_roc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_goals_count_scans_by_kind_and_verdict() {
        let scan = |lesional, decision, lesion_score, fp, healthy| GateScan {
            test_set: "s".into(),
            scan: "x".into(),
            lesional,
            decision,
            shift_score: 0.0,
            lesion_score,
            false_positives: fp,
            healthy_pixels: healthy,
        };
        use Decision::{InDistribution, LesionSuspected, OutOfDistribution};
        // (lesional, decision, lesion score) of five ID scans
        let id = [
            scan(true, LesionSuspected, 3.0, 0, 1),
            scan(true, InDistribution, 0.5, 0, 1),
            scan(true, OutOfDistribution, 2.0, 0, 1),
            scan(false, InDistribution, 1.0, 0, 1),
            scan(false, LesionSuspected, 0.2, 0, 1),
        ];
        let n = goal_numbers(&id, None);
        let v = |e: Option<Estimate>| e.unwrap().value;
        assert_eq!(v(n.id_acceptance), 4.0 / 5.0);
        assert_eq!(v(n.lesional_acceptance), 2.0 / 3.0);
        // of the accepted: lesional 1 of 2 flagged, healthy 1 of 2
        assert_eq!(v(n.lesion_sensitivity), 0.5);
        assert_eq!(v(n.healthy_flag_rate), 0.5);
        // lesion scores 3.0, 0.5, 2.0 against 1.0, 0.2: 5 of 6 pairs ordered
        assert!((v(n.lesion_auroc) - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(n.lesion_roc.first(), Some(&[0.0, 0.0]));
        assert_eq!(n.lesion_roc.last(), Some(&[1.0, 1.0]));
        // with a bootstrap every rate gets an interval around its value
        let b = BootstrapConfig {
            resamples: 200,
            level: 0.9,
            seed: 3,
        };
        let e = goal_numbers(&id, Some(&b)).id_acceptance.unwrap();
        assert!(e.low.unwrap() <= 0.8 && e.high.unwrap() >= 0.8 && e.high.unwrap() <= 1.0);

        // a set's FPR pools its scans' pixels, with and without the rejected ones
        let scans = [
            scan(false, InDistribution, 0.0, 5, 100),
            scan(false, OutOfDistribution, 0.0, 30, 100),
            scan(false, LesionSuspected, 0.0, 10, 200),
        ];
        let mut row = GateSetResult {
            test_set: "s".into(),
            scans: 3,
            in_distribution: 1,
            lesion_suspected: 1,
            rejected: 1,
            lesional_scans: 0,
            rejection: None,
            healthy_fpr_all: None,
            healthy_fpr_accepted: None,
        };
        set_rates(&mut row, &scans, None);
        assert_eq!(v(row.rejection), 1.0 / 3.0);
        assert_eq!(v(row.healthy_fpr_all), 45.0 / 400.0);
        assert_eq!(v(row.healthy_fpr_accepted), 15.0 / 300.0);
        // a set with every scan rejected has no accepted FPR
        set_rates(&mut row, &scans[1..2], None);
        assert!(row.healthy_fpr_accepted.is_none());
    }

    #[test]
    fn pooled_pixel_counts_at_a_threshold() {
        let scores = [0.1f32, 0.9, 0.6, 0.2, 0.7];
        let lesion = [false, true, true, true, false];
        // Split over two accumulators, as two scans or two shards would be.
        let mut a = RankAccumulator::new();
        a.push(&scores[..2], &lesion[..2]).unwrap();
        let mut b = RankAccumulator::new();
        b.push(&scores[2..], &lesion[2..]).unwrap();
        let ranked = pooled(&[a, b]);
        // > 0.5: TP = 2 (0.9, 0.6), FP = 1 (0.7), FN = 1 (0.2), healthy = 2.
        assert_eq!(counts(&ranked, 0.5), (2, 1, 1, 2));
        // Ties at the threshold are not above it.
        assert_eq!(counts(&ranked, f64::from(0.6f32)), (1, 1, 2, 2));
        let mut curves = Curves::default();
        let m = pixel_metrics("m", false, &ranked, 0.5, 50, &mut curves).unwrap();
        assert_eq!(m.dice_at_threshold.unwrap().value, 4.0 / 6.0);
        assert_eq!(m.healthy_fpr_at_threshold.unwrap().value, 0.5);
        // Lesion scores 0.9, 0.6, 0.2 vs healthy 0.1, 0.7: 4 of 6 pairs ordered.
        assert!((m.auroc.unwrap().value - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(curves.roc.len(), 1);
        // Without lesions only the FPR is defined.
        let healthy = RankedScores::from_scores(&scores, &[false; 5]).unwrap();
        let m = pixel_metrics("m", false, &healthy, 0.5, 50, &mut curves).unwrap();
        assert!(m.auroc.is_none() && m.dice_at_threshold.is_none());
        assert_eq!(m.healthy_fpr_at_threshold.unwrap().value, 3.0 / 5.0);
    }
}
