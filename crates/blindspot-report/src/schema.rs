//! The `results.json` schema (see the crate docs for the file layout).

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// The schema version this crate writes and reads. Bump it on any change that an older reader
/// would misread (a renamed, removed or re-typed field); adding an optional field does not.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole outcome of one experiment: the content of `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Results {
    /// Always [`SCHEMA_VERSION`] when written by this crate.
    pub schema_version: u32,
    /// The experiment's name (`runs/<name>/`).
    pub experiment: String,
    /// The resolved configuration the run used, every default filled in.
    pub config: serde_json::Value,
    /// Wall-clock time of each pipeline step, in execution order.
    #[serde(default)]
    pub wall_times: Vec<WallTime>,
    /// How the pixel threshold was chosen.
    pub threshold: ThresholdInfo,
    /// How confidence intervals were computed; `None` when no bootstrap was run.
    #[serde(default)]
    pub bootstrap: Option<BootstrapInfo>,
    /// The slice statistics evaluated, in display order.
    #[serde(default)]
    pub statistics: Vec<StatisticInfo>,
    /// One entry per test set, in display order; the in-distribution set first by convention.
    pub test_sets: Vec<TestSetResult>,
    /// Score histograms, one per statistic, with a group per dataset split.
    #[serde(default)]
    pub histograms: Vec<Histogram>,
    /// The OOD gate's outcome; `None` when the gate was not run.
    #[serde(default)]
    pub gate: Option<GateResult>,
    /// Why a configured gate could not be fitted (for example a component that takes one value
    /// on every healthy validation scan); `None` when it was fitted or not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_error: Option<String>,
    /// Whether the models learned the anatomy; `None` for models without a reconstruction
    /// (flows) or results written before it was measured.
    #[serde(default)]
    pub adequacy: Option<AdequacyResult>,
    /// Each member's training log (losses, the KL weight, adequacy against step).
    #[serde(default)]
    pub training: Vec<TrainingCurve>,
    /// The paper's two slice-level experiments over all test sets pooled, per statistic, with
    /// scan-level bootstrap intervals (what findings 2 and 3 are judged on).
    #[serde(default)]
    pub pooled: Vec<PooledStatistic>,
    /// The best prior-knowledge statistic against the best of the paper's plain OOD scores at
    /// disentangling, as a paired difference (finding 3).
    #[serde(default)]
    pub prior_comparison: Option<PriorComparison>,
    /// Pooled disentangling with the lesional slices split by lesion size (the lesion's share
    /// of the brain in the slice), every healthy slice as negative in each bin.
    #[serde(default)]
    pub disentangling_by_size: Vec<SizeBin>,
}

/// Disentangling of the lesional slices whose lesion share lies in `(low, high]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeBin {
    /// Lower end of the lesion share (exclusive).
    pub low: f64,
    /// Upper end (inclusive).
    pub high: f64,
    /// Lesional slices in the bin.
    pub positives: usize,
    /// Disentangling AUROC per statistic (key, estimate).
    pub auroc: Vec<(String, Estimate)>,
}

/// One statistic over all test sets pooled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PooledStatistic {
    /// The statistic's key.
    pub statistic: String,
    /// OOD detection: the healthy slices of every out-of-distribution set against the healthy
    /// slices of the in-distribution sets.
    pub ood_auroc: Option<Estimate>,
    /// Disentangling: the lesional slices of every test set against the healthy slices of
    /// every test set, in- and out-of-distribution.
    pub disentangling_auroc: Option<Estimate>,
}

/// A paired comparison of two statistics' pooled disentangling AUROC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorComparison {
    /// The prior-knowledge statistic.
    pub prior: String,
    /// The plain OOD statistic it is compared with (the best of the paper's scores).
    pub plain: String,
    /// AUROC of `prior` minus AUROC of `plain`, with a paired scan-level bootstrap interval.
    pub difference: Estimate,
}

/// Model adequacy (docs/method.md, "Model adequacy"): each member's reconstruction error on
/// the healthy validation slices beside two model-free references, the mean training image at
/// the slice's position (a model that ignores its input) and the input blurred with σ = 1
/// pixel (a faithful, smooth reconstruction). `adequacy = (E_mean − E_model) / (E_mean −
/// E_blur)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdequacyResult {
    /// Error of the position-mean training image.
    pub e_mean: f64,
    /// Error of the σ = 1 blur of the input.
    pub e_blur: f64,
    /// Validation slices the errors are averaged over.
    pub slices: u64,
    /// The criterion: every member must reach at least this adequacy for the findings to be
    /// interpretable.
    pub criterion: f64,
    /// One entry per ensemble member.
    pub members: Vec<MemberAdequacy>,
}

impl AdequacyResult {
    /// Whether every member meets the criterion.
    pub fn adequate(&self) -> bool {
        !self.members.is_empty() && self.members.iter().all(|m| m.adequacy >= self.criterion)
    }
}

/// One member's reconstruction error and adequacy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAdequacy {
    /// Member index.
    pub member: usize,
    /// Its mean reconstruction error on the validation slices.
    pub e_model: f64,
    /// `(e_mean − e_model) / (e_mean − e_blur)`.
    pub adequacy: f64,
}

/// One member's training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingCurve {
    /// Member index.
    pub member: usize,
    /// The logged steps in order.
    pub points: Vec<TrainingPoint>,
}

/// One logged training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingPoint {
    /// Steps completed.
    pub step: u64,
    /// Training loss of the step's batch.
    pub loss: f64,
    /// The KL weight of the step (VAEs).
    #[serde(default)]
    pub beta: Option<f64>,
    /// Validation loss, when validated.
    #[serde(default)]
    pub val_loss: Option<f64>,
    /// Validation reconstruction error, when validated.
    #[serde(default)]
    pub val_rec_err: Option<f64>,
    /// Adequacy of `val_rec_err` against the references of the same validation slices.
    #[serde(default)]
    pub adequacy: Option<f64>,
}

/// Wall-clock duration of one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WallTime {
    /// The step (`synth`, `prepare`, `train`, `evaluate`, ...).
    pub step: String,
    /// Seconds, at least 0.
    pub seconds: f64,
}

/// The pixel threshold applied to residual maps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdInfo {
    /// The threshold value (on the post-processed residual).
    pub value: f64,
    /// The target pixel FPR on healthy calibration data (0.05 for the paper), `None` when the
    /// threshold was set by hand.
    pub target_fpr: Option<f64>,
    /// The data the threshold was calibrated on (for example `healthy site-A validation`).
    pub calibrated_on: String,
}

/// How the bootstrap intervals in the results were computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapInfo {
    /// Number of resamples.
    pub resamples: usize,
    /// Coverage of the percentile intervals, in (0, 1) (0.95 for 95 %).
    pub level: f64,
    /// What was resampled (`scan`, `subject`).
    pub unit: String,
    /// The seed of the resampling.
    pub seed: u64,
}

/// One evaluated slice statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatisticInfo {
    /// Its key, as used in [`OodDetection::statistic`] (`rec_err`, `waic`, `entropy`, ...).
    pub name: String,
    /// A human label (`Reconstruction error`, `Residual entropy H_l1`).
    pub label: String,
    /// True for statistics that encode prior knowledge about lesions (the paper's `H_l1`):
    /// the report contrasts them with the plain OOD scores.
    #[serde(default)]
    pub prior_knowledge: bool,
}

/// A point estimate with an optional bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Estimate {
    /// The estimate on the full data.
    pub value: f64,
    /// Lower end of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    /// Upper end of the interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
}

impl Estimate {
    /// An estimate without interval.
    pub fn point(value: f64) -> Self {
        Self {
            value,
            low: None,
            high: None,
        }
    }

    /// An estimate with its interval `[low, high]`.
    pub fn with_ci(value: f64, low: f64, high: f64) -> Self {
        Self {
            value,
            low: Some(low),
            high: Some(high),
        }
    }
}

/// Slice counts of a test set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceCounts {
    /// Healthy in-distribution slices.
    pub id: usize,
    /// Healthy out-of-distribution slices (domain shift without lesion).
    pub healthy_ood: usize,
    /// Lesional slices (of any distribution).
    pub lesional: usize,
}

/// The role of a test set in the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestSetRole {
    /// Held-out in-distribution data (healthy, same site and contrast as training).
    InDistribution,
    /// Out-of-distribution data: a shift in site, contrast, orientation, or corrupted input.
    OutOfDistribution,
}

/// Everything measured on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSetResult {
    /// Its name (`site-B T2`, `T1`, `flipped`, ...), unique in the results.
    pub name: String,
    /// In- or out-of-distribution.
    pub role: TestSetRole,
    /// Scans in the set.
    pub scans: usize,
    /// Slice counts by kind.
    pub slices: SliceCounts,
    /// Pixel-level lesion detection, one entry per method (the model(s) and the intensity
    /// threshold baseline).
    #[serde(default)]
    pub pixel: Vec<PixelMetrics>,
    /// Slice-level OOD detection, one entry per statistic.
    #[serde(default)]
    pub ood: Vec<OodDetection>,
    /// Lesional-vs-healthy AUROC per statistic (negatives: healthy ID and healthy OOD slices;
    /// positives: lesional slices of this set).
    #[serde(default)]
    pub disentangling: Vec<Disentangling>,
    /// Curves, thinned for plotting.
    #[serde(default)]
    pub curves: Curves,
    /// Slice grids rendered for this set.
    #[serde(default)]
    pub slice_grids: Vec<SliceGridRef>,
}

/// Pixel-level lesion detection of one method on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PixelMetrics {
    /// The method (`vae`, `ensemble`, `intensity baseline`).
    pub method: String,
    /// True for a reference baseline rather than a learned model.
    #[serde(default)]
    pub baseline: bool,
    /// Pixel AUROC; `None` when the set has no lesion pixels.
    pub auroc: Option<Estimate>,
    /// Pixel average precision; `None` when the set has no lesion pixels.
    pub ap: Option<Estimate>,
    /// The best Dice over thresholds and the threshold reaching it.
    pub best_dice: Option<BestDice>,
    /// Dice at the calibrated threshold.
    pub dice_at_threshold: Option<Estimate>,
    /// Fraction of healthy (non-lesion, in-mask) pixels above the calibrated threshold.
    pub healthy_fpr_at_threshold: Option<Estimate>,
}

/// The best Dice over a threshold sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BestDice {
    /// The Dice score.
    pub dice: f64,
    /// The threshold that reached it.
    pub threshold: f64,
}

/// Slice-level OOD detection of one statistic on one test set, in the three modes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OodDetection {
    /// The statistic's key (see [`StatisticInfo::name`]).
    pub statistic: String,
    /// ID slices against every slice of the set.
    pub all: Option<Detection>,
    /// ID slices against the set's lesional slices.
    pub lesional: Option<Detection>,
    /// ID slices against the set's healthy slices.
    pub healthy: Option<Detection>,
}

/// Detection metrics of one scored set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    /// Area under the ROC curve.
    pub auroc: Estimate,
    /// Area under the precision-recall curve (average precision).
    pub auprc: Estimate,
    /// False-positive rate at 95 % true-positive rate.
    pub fpr_at_95_tpr: Estimate,
}

/// Disentangling AUROC of one statistic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disentangling {
    /// The statistic's key.
    pub statistic: String,
    /// AUROC of lesional against healthy slices (ID and OOD), 0.5 is chance.
    pub auroc: Estimate,
}

/// Named curves of one test set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curves {
    /// Pixel ROC curves: `x` = FPR, `y` = TPR.
    #[serde(default)]
    pub roc: Vec<Curve>,
    /// Pixel precision-recall curves: `x` = recall, `y` = precision.
    #[serde(default)]
    pub pr: Vec<Curve>,
    /// Healthy pixel FPR against threshold: `x` = threshold, `y` = FPR.
    #[serde(default)]
    pub fpr_vs_threshold: Vec<Curve>,
}

/// A named polyline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Curve {
    /// The method or series it belongs to.
    pub label: String,
    /// Its points `[x, y]`, in drawing order.
    pub points: Vec<[f64; 2]>,
}

impl Curve {
    /// A curve thinned to at most `max_points` points (first and last kept, the rest evenly
    /// spaced by index), so that results files stay small.
    pub fn thinned(label: impl Into<String>, points: &[[f64; 2]], max_points: usize) -> Self {
        let max_points = max_points.max(2);
        let points = if points.len() <= max_points {
            points.to_vec()
        } else {
            let last = points.len() - 1;
            let mut out: Vec<[f64; 2]> = (0..max_points)
                .map(|i| points[i * last / (max_points - 1)])
                .collect();
            out.dedup();
            out
        };
        Self {
            label: label.into(),
            points,
        }
    }
}

/// Where a test set's examples are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GridKind {
    /// Healthy in-distribution examples.
    InDistribution,
    /// Lesional examples.
    Lesional,
    /// Healthy out-of-distribution examples.
    OutOfDistribution,
}

/// A reference to a slice-grid PNG written beside the results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceGridRef {
    /// What the examples are.
    pub kind: GridKind,
    /// Path relative to the directory of `results.json` (for example `grids/t1-ood.png`).
    pub path: String,
    /// A caption.
    pub caption: String,
}

/// A score histogram: one statistic, several groups on shared bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Histogram {
    /// The statistic's key.
    pub statistic: String,
    /// Bin edges, strictly increasing, `bins + 1` values.
    pub edges: Vec<f64>,
    /// One group per dataset split (`site-B T2 healthy`, `site-B T2 lesional`).
    pub groups: Vec<HistogramGroup>,
}

/// The counts of one group of a [`Histogram`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramGroup {
    /// The group's label.
    pub label: String,
    /// Counts per bin, `edges.len() - 1` values.
    pub counts: Vec<u64>,
}

impl Histogram {
    /// Bins every group's finite values on `bins` shared, equal-width bins spanning all of
    /// them (non-finite values are left out). Groups without values get zero counts.
    ///
    /// # Panics
    /// When `bins` is 0 (a programmer error).
    pub fn from_values(
        statistic: impl Into<String>,
        groups: &[(&str, &[f64])],
        bins: usize,
    ) -> Self {
        assert!(bins > 0, "a histogram needs at least one bin");
        let finite = || {
            groups
                .iter()
                .flat_map(|(_, v)| v.iter().copied())
                .filter(|v| v.is_finite())
        };
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() {
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            }
        } else {
            (0.0, 1.0)
        };
        let width = (hi - lo) / bins as f64;
        let edges = (0..=bins)
            .map(|i| if i == bins { hi } else { lo + width * i as f64 })
            .collect();
        let groups = groups
            .iter()
            .map(|(label, values)| {
                let mut counts = vec![0u64; bins];
                for &v in values.iter().filter(|v| v.is_finite()) {
                    let bin = (((v - lo) / width) as usize).min(bins - 1);
                    counts[bin] += 1;
                }
                HistogramGroup {
                    label: (*label).to_string(),
                    counts,
                }
            })
            .collect();
        Self {
            statistic: statistic.into(),
            edges,
            groups,
        }
    }
}

/// The outcome of the OOD gate over all test scans.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateResult {
    /// The gate's decisions per test set.
    pub per_set: Vec<GateSetResult>,
    /// Fraction of all test scans rejected as out of distribution.
    pub fraction_rejected: f64,
    /// Mean Dice over the lesional scans the gate accepted.
    pub dice_accepted: Option<Estimate>,
    /// Mean Dice over all lesional scans (no gate), for comparison.
    pub dice_all: Option<Estimate>,
    /// Risk-coverage curve: `x` = coverage, `y` = risk (1 - Dice), coverage increasing.
    pub risk_coverage: Vec<[f64; 2]>,
    /// Area under the risk-coverage curve (lower is better).
    pub aurc: Option<Estimate>,
    /// Healthy-pixel FPR at the calibrated threshold, pooled over the scans the gate accepts.
    #[serde(default)]
    pub healthy_fpr_accepted: Option<f64>,
    /// The same over every test scan (no gate).
    #[serde(default)]
    pub healthy_fpr_all: Option<f64>,
    /// Pixel average precision (lesion pixels positive), pooled over the accepted scans.
    #[serde(default)]
    pub pixel_ap_accepted: Option<f64>,
    /// The same over every test scan.
    #[serde(default)]
    pub pixel_ap_all: Option<f64>,
    /// Fraction of the in-distribution test scans (healthy and lesional) the gate accepts.
    #[serde(default)]
    pub id_acceptance: Option<f64>,
    /// Every test scan's verdict with its true kind: the confusion table's rows.
    #[serde(default)]
    pub scans: Vec<GateScan>,
    /// The goals the gate is judged by, as the run's `[gate.goals]` set them.
    #[serde(default)]
    pub criteria: Option<blindspot_ood::GateGoals>,
    /// The pooled in-distribution numbers the goals read, with scan-level intervals.
    #[serde(default)]
    pub goals: Option<GateGoalNumbers>,
}

/// One test scan's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateScan {
    /// Its test set.
    pub test_set: String,
    /// The scan (subject id).
    pub scan: String,
    /// Whether it has lesion pixels.
    pub lesional: bool,
    /// The gate's decision (`in_distribution`, `lesion_suspected`, `out_of_distribution`).
    pub decision: blindspot_ood::Decision,
    /// The shift score and the lesion score (largest and smallest component z).
    pub shift_score: f64,
    /// See `shift_score`.
    pub lesion_score: f64,
    /// Healthy pixels above the calibrated pixel threshold ...
    pub false_positives: u64,
    /// ... of this many healthy (brain, non-lesion) pixels.
    pub healthy_pixels: u64,
}

impl GateScan {
    /// Whether the gate reports a lesion map for it.
    pub fn accepted(&self) -> bool {
        self.decision.reports_lesion_map()
    }

    /// Whether the gate flags it "lesion suspected".
    pub fn flagged(&self) -> bool {
        self.decision == blindspot_ood::Decision::LesionSuspected
    }
}

/// The in-distribution test scans pooled, as the gate's goals read them (scan-level
/// bootstrap intervals).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateGoalNumbers {
    /// Share of the in-distribution scans accepted.
    pub id_acceptance: Option<Estimate>,
    /// Share of the lesional in-distribution scans accepted.
    pub lesional_acceptance: Option<Estimate>,
    /// Share of the accepted lesional in-distribution scans flagged "lesion suspected".
    pub lesion_sensitivity: Option<Estimate>,
    /// Share of the accepted healthy in-distribution scans flagged.
    pub healthy_flag_rate: Option<Estimate>,
    /// AUROC of the scan-level lesion score, lesional against healthy in-distribution scans.
    pub lesion_auroc: Option<Estimate>,
    /// Its ROC curve (`[fpr, tpr]`).
    #[serde(default)]
    pub lesion_roc: Vec<[f64; 2]>,
}

/// The gate's decisions on one test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSetResult {
    /// The test set's name.
    pub test_set: String,
    /// Scans decided.
    pub scans: usize,
    /// Scans judged in distribution without lesion.
    pub in_distribution: usize,
    /// Scans judged in distribution with a suspected lesion (the lesion map is reported).
    pub lesion_suspected: usize,
    /// Scans rejected as out of distribution.
    pub rejected: usize,
    /// Scans with lesion pixels.
    #[serde(default)]
    pub lesional_scans: usize,
    /// Share of the scans rejected, with a scan-level interval.
    #[serde(default)]
    pub rejection: Option<Estimate>,
    /// Healthy-pixel FPR at the pixel threshold over all the set's scans (no gate) ...
    #[serde(default)]
    pub healthy_fpr_all: Option<Estimate>,
    /// ... and over the scans the gate accepts (`None`: it accepts none).
    #[serde(default)]
    pub healthy_fpr_accepted: Option<Estimate>,
}

impl Results {
    /// An empty result for `experiment` with the current schema version.
    pub fn new(
        experiment: impl Into<String>,
        config: serde_json::Value,
        threshold: ThresholdInfo,
    ) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            experiment: experiment.into(),
            config,
            wall_times: Vec::new(),
            threshold,
            bootstrap: None,
            statistics: Vec::new(),
            test_sets: Vec::new(),
            histograms: Vec::new(),
            gate: None,
            gate_error: None,
            adequacy: None,
            training: Vec::new(),
            pooled: Vec::new(),
            prior_comparison: None,
            disentangling_by_size: Vec::new(),
        }
    }

    /// The label of a statistic key, the key itself when it is not listed.
    pub fn statistic_label<'a>(&'a self, name: &'a str) -> &'a str {
        self.statistics
            .iter()
            .find(|s| s.name == name)
            .map_or(name, |s| s.label.as_str())
    }

    /// Checks the rules the type system cannot: schema version, finite numbers, probabilities
    /// in [0, 1], unique test-set names, consistent histogram shapes, relative image paths.
    ///
    /// # Errors
    /// [`ReportError::Invalid`] naming the first offending key, or
    /// [`ReportError::SchemaVersion`] (with an empty path) for a foreign version.
    pub fn validate(&self) -> Result<()> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(ReportError::SchemaVersion {
                path: Default::default(),
                found: u64::from(self.schema_version),
                supported: SCHEMA_VERSION,
            });
        }
        check_name("experiment", &self.experiment)?;
        check_wall_times(&self.wall_times)?;
        finite("threshold.value", self.threshold.value)?;
        check_pooled(&self.pooled)?;
        check_size_bins(&self.disentangling_by_size)?;
        if let Some(c) = &self.prior_comparison {
            check_prior_comparison(c)?;
        }
        if let Some(a) = &self.adequacy {
            check_adequacy(a)?;
        }
        if let Some(t) = self.threshold.target_fpr {
            unit("threshold.target_fpr", t)?;
        }
        if let Some(b) = self
            .bootstrap
            .as_ref()
            .filter(|b| !(b.level > 0.0 && b.level < 1.0))
        {
            return invalid(
                "bootstrap.level",
                b.level,
                "a coverage strictly between 0 and 1",
            );
        }
        for (i, t) in self.test_sets.iter().enumerate() {
            check_test_set(&format!("test_sets[{i}]"), t, &self.test_sets[..i])?;
        }
        for (i, h) in self.histograms.iter().enumerate() {
            check_histogram(&format!("histograms[{i}]"), h)?;
        }
        if let Some(g) = &self.gate {
            check_gate(g)?;
        }
        Ok(())
    }
}

/// Every step's wall time is a finite number of seconds, not negative.
fn check_wall_times(wall_times: &[WallTime]) -> Result<()> {
    for (i, w) in wall_times.iter().enumerate() {
        if !(w.seconds.is_finite() && w.seconds >= 0.0) {
            return invalid(
                format!("wall_times[{i}].seconds"),
                w.seconds,
                "a finite number of seconds >= 0",
            );
        }
    }
    Ok(())
}

/// The pooled AUROCs are estimates in [0, 1].
fn check_pooled(pooled: &[PooledStatistic]) -> Result<()> {
    for (i, p) in pooled.iter().enumerate() {
        opt_unit_est(&format!("pooled[{i}].ood_auroc"), p.ood_auroc)?;
        opt_unit_est(
            &format!("pooled[{i}].disentangling_auroc"),
            p.disentangling_auroc,
        )?;
    }
    Ok(())
}

/// The AUROCs of every lesion-size bin are estimates in [0, 1].
fn check_size_bins(bins: &[SizeBin]) -> Result<()> {
    for (i, b) in bins.iter().enumerate() {
        for (name, e) in &b.auroc {
            unit_est(&format!("disentangling_by_size[{i}].auroc.{name}"), *e)?;
        }
    }
    Ok(())
}

/// A difference of two AUROCs, and its interval, lies in [-1, 1].
fn check_prior_comparison(c: &PriorComparison) -> Result<()> {
    for v in [
        Some(c.difference.value),
        c.difference.low,
        c.difference.high,
    ]
    .into_iter()
    .flatten()
    {
        if !(-1.0..=1.0).contains(&v) {
            return invalid(
                "prior_comparison.difference",
                v,
                "a difference of AUROCs in [-1, 1]",
            );
        }
    }
    Ok(())
}

/// The adequacy references, criterion and every member's numbers are finite.
fn check_adequacy(a: &AdequacyResult) -> Result<()> {
    finite("adequacy.e_mean", a.e_mean)?;
    finite("adequacy.e_blur", a.e_blur)?;
    finite("adequacy.criterion", a.criterion)?;
    for (i, m) in a.members.iter().enumerate() {
        finite(&format!("adequacy.members[{i}].e_model"), m.e_model)?;
        finite(&format!("adequacy.members[{i}].adequacy"), m.adequacy)?;
    }
    Ok(())
}

/// Test set `t` (at `key`): a name none of the `earlier` sets has, then its pixel metrics, OOD
/// detection, disentangling, curves and slice-grid paths.
fn check_test_set(key: &str, t: &TestSetResult, earlier: &[TestSetResult]) -> Result<()> {
    check_name(&format!("{key}.name"), &t.name)?;
    if earlier.iter().any(|o| o.name == t.name) {
        return Err(ReportError::Invalid {
            key: format!("{key}.name"),
            value: t.name.clone(),
            allowed: "test-set names must be unique",
        });
    }
    check_pixel(key, &t.pixel)?;
    check_ood(key, &t.ood)?;
    for (j, d) in t.disentangling.iter().enumerate() {
        unit_est(&format!("{key}.disentangling[{j}].auroc"), d.auroc)?;
    }
    check_curves(key, &t.curves)?;
    check_slice_grids(key, &t.slice_grids)
}

/// A test set's pixel metrics lie in [0, 1]; the best Dice's threshold is finite.
fn check_pixel(key: &str, pixel: &[PixelMetrics]) -> Result<()> {
    for (j, p) in pixel.iter().enumerate() {
        let k = format!("{key}.pixel[{j}]");
        opt_unit_est(&format!("{k}.auroc"), p.auroc)?;
        opt_unit_est(&format!("{k}.ap"), p.ap)?;
        opt_unit_est(&format!("{k}.dice_at_threshold"), p.dice_at_threshold)?;
        opt_unit_est(
            &format!("{k}.healthy_fpr_at_threshold"),
            p.healthy_fpr_at_threshold,
        )?;
        if let Some(b) = p.best_dice {
            unit(&format!("{k}.best_dice.dice"), b.dice)?;
            finite(&format!("{k}.best_dice.threshold"), b.threshold)?;
        }
    }
    Ok(())
}

/// A test set's OOD detection lies in [0, 1] in every mode that was measured.
fn check_ood(key: &str, ood: &[OodDetection]) -> Result<()> {
    for (j, o) in ood.iter().enumerate() {
        for (mode, d) in [
            ("all", o.all),
            ("lesional", o.lesional),
            ("healthy", o.healthy),
        ] {
            if let Some(d) = d {
                let k = format!("{key}.ood[{j}].{mode}");
                unit_est(&format!("{k}.auroc"), d.auroc)?;
                unit_est(&format!("{k}.auprc"), d.auprc)?;
                unit_est(&format!("{k}.fpr_at_95_tpr"), d.fpr_at_95_tpr)?;
            }
        }
    }
    Ok(())
}

/// Every point of a test set's ROC, PR and FPR-against-threshold curves is finite.
fn check_curves(key: &str, curves: &Curves) -> Result<()> {
    for (kind, curves) in [
        ("roc", &curves.roc),
        ("pr", &curves.pr),
        ("fpr_vs_threshold", &curves.fpr_vs_threshold),
    ] {
        for (j, c) in curves.iter().enumerate() {
            if let Some(p) = c
                .points
                .iter()
                .find(|p| !(p[0].is_finite() && p[1].is_finite()))
            {
                return invalid(
                    format!("{key}.curves.{kind}[{j}].points"),
                    format!("{p:?}"),
                    "finite points",
                );
            }
        }
    }
    Ok(())
}

/// Every slice grid lies inside the results directory: a relative path without `..`.
fn check_slice_grids(key: &str, grids: &[SliceGridRef]) -> Result<()> {
    for (j, g) in grids.iter().enumerate() {
        let path = std::path::Path::new(&g.path);
        if g.path.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(ReportError::Invalid {
                key: format!("{key}.slice_grids[{j}].path"),
                value: g.path.clone(),
                allowed: "a relative path inside the results directory (no `..`, not absolute)",
            });
        }
    }
    Ok(())
}

/// A histogram (at `key`) has at least two finite, strictly increasing edges and one count per
/// bin in every group.
fn check_histogram(key: &str, h: &Histogram) -> Result<()> {
    if h.edges.len() < 2
        || h.edges.windows(2).any(|w| w[0] >= w[1])
        || h.edges.iter().any(|e| !e.is_finite())
    {
        return invalid(
            format!("{key}.edges"),
            format!("{:?}", h.edges),
            "at least two finite, strictly increasing edges",
        );
    }
    for (j, g) in h.groups.iter().enumerate() {
        if g.counts.len() + 1 != h.edges.len() {
            return invalid(
                format!("{key}.groups[{j}].counts"),
                format!("{} counts", g.counts.len()),
                "one count per bin (edges.len() - 1)",
            );
        }
    }
    Ok(())
}

/// The gate's shares and estimates lie in [0, 1], each set's decisions add up to its scans,
/// and the risk-coverage points are finite.
fn check_gate(g: &GateResult) -> Result<()> {
    unit("gate.fraction_rejected", g.fraction_rejected)?;
    opt_unit_est("gate.dice_accepted", g.dice_accepted)?;
    opt_unit_est("gate.dice_all", g.dice_all)?;
    opt_unit_est("gate.aurc", g.aurc)?;
    for (key, v) in [
        ("gate.healthy_fpr_accepted", g.healthy_fpr_accepted),
        ("gate.healthy_fpr_all", g.healthy_fpr_all),
        ("gate.pixel_ap_accepted", g.pixel_ap_accepted),
        ("gate.pixel_ap_all", g.pixel_ap_all),
        ("gate.id_acceptance", g.id_acceptance),
    ] {
        if let Some(v) = v {
            unit(key, v)?;
        }
    }
    for (j, s) in g.per_set.iter().enumerate() {
        if s.in_distribution + s.lesion_suspected + s.rejected != s.scans {
            return invalid(
                format!("gate.per_set[{j}]"),
                format!(
                    "{} + {} + {} vs {} scans",
                    s.in_distribution, s.lesion_suspected, s.rejected, s.scans
                ),
                "in_distribution + lesion_suspected + rejected == scans",
            );
        }
    }
    if let Some(p) = g
        .risk_coverage
        .iter()
        .find(|p| !(p[0].is_finite() && p[1].is_finite()))
    {
        return invalid("gate.risk_coverage", format!("{p:?}"), "finite points");
    }
    Ok(())
}

fn invalid(
    key: impl Into<String>,
    value: impl std::fmt::Display,
    allowed: &'static str,
) -> Result<()> {
    Err(ReportError::Invalid {
        key: key.into(),
        value: value.to_string(),
        allowed,
    })
}

fn check_name(key: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return invalid(key, format!("{name:?}"), "a non-empty name");
    }
    Ok(())
}

fn finite(key: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        invalid(key, v, "a finite number")
    }
}

fn unit(key: &str, v: f64) -> Result<()> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        invalid(key, v, "a number in [0, 1]")
    }
}

fn unit_est(key: &str, e: Estimate) -> Result<()> {
    unit(key, e.value)?;
    match (e.low, e.high) {
        (None, None) => Ok(()),
        (Some(lo), Some(hi))
            if (0.0..=1.0).contains(&lo) && (0.0..=1.0).contains(&hi) && lo <= hi =>
        {
            Ok(())
        }
        (lo, hi) => invalid(
            key,
            format!("interval {lo:?}..{hi:?}"),
            "both interval ends in [0, 1] with low <= high, or neither",
        ),
    }
}

fn opt_unit_est(key: &str, e: Option<Estimate>) -> Result<()> {
    e.map_or(Ok(()), |e| unit_est(key, e))
}
