//! Evaluation the paper's way (docs/method.md 4 and 5) and beyond.
//!
//! - [`detection_set`]: OOD detection of one test set against in-distribution slices in the
//!   three modes `all`, `lesional`, `healthy` ([`OodMode`]).
//! - [`disentangling_set`]: lesion detection where negatives are healthy ID plus healthy OOD
//!   slices and positives are lesional slices: a statistic that only measures OOD-ness scores
//!   near chance here, a lesion-specific one does not.
//! - [`evaluate`]: AUROC, average precision and FPR at 95 % TPR of a [`ScoredSet`], with
//!   bootstrap intervals that resample **scans** (blindspot-metrics).
//! - [`detection_table`], [`disentangling_table`], [`dose_combinations`]: the tables over test
//!   sets, modes and scorers.
//! - [`risk_coverage`]: gate then segment: lesion Dice and false-positive volume on the scans
//!   the gate accepts, against the fraction it rejects.
//!
//! Every score is oriented so that higher means more anomalous ([`Scorer::score`]). Empty
//! slices are left out, as in the paper. Slices that lack the scored statistic (for example
//! the entropy of a near-empty slice) are left out and counted in [`ScoredSet::skipped`].

use blindspot_metrics::{
    BootstrapConfig, ConfidenceInterval, PairedComparison, SubjectGroups, bootstrap_ci,
    paired_bootstrap,
};
use rand::SeedableRng;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::dose::{Dose, DoseCombine};
use crate::error::{OodError, Result};
use crate::record::{LesionRule, ScanId, SliceRecord, Statistic};

/// What a slice is scored with; always oriented so that higher is more anomalous.
#[derive(Debug, Clone)]
pub enum Scorer<'a> {
    /// One statistic, oriented by its [`crate::Direction`].
    Statistic(Statistic),
    /// DoSE over a subset of a fitted model's statistics (all when empty), negated (a low
    /// density is anomalous).
    Dose {
        /// The fitted model.
        model: &'a Dose,
        /// The statistics to combine.
        subset: Vec<Statistic>,
        /// How to combine them.
        combine: DoseCombine,
    },
}

impl Scorer<'_> {
    /// A name for tables: the statistic, or `dose[rec_err+kl]` / `dose_density_sum[...]`.
    pub fn name(&self) -> String {
        match self {
            Scorer::Statistic(s) => s.name().to_owned(),
            Scorer::Dose {
                model,
                subset,
                combine,
            } => {
                let stats: Vec<&str> = if subset.is_empty() {
                    model.statistics().map(Statistic::name).collect()
                } else {
                    subset.iter().map(|s| s.name()).collect()
                };
                format!("{}[{}]", combine.statistic().name(), stats.join("+"))
            }
        }
    }

    /// The oriented score of a record; `None` when the record lacks a needed statistic.
    ///
    /// # Errors
    /// [`OodError::InvalidParameter`] when a DoSE subset names an unfitted statistic.
    pub fn score(&self, record: &SliceRecord) -> Result<Option<f64>> {
        match self {
            Scorer::Statistic(s) => Ok(record.oriented(*s).ok()),
            Scorer::Dose {
                model,
                subset,
                combine,
            } => match model.score(record, subset, *combine) {
                Ok(v) => Ok(Some(-v)),
                Err(OodError::MissingStatistic { .. }) => Ok(None),
                Err(e) => Err(e),
            },
        }
    }
}

/// Which OOD slices are compared with the ID slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OodMode {
    /// Every OOD slice.
    All,
    /// Lesional OOD slices only.
    Lesional,
    /// Healthy OOD slices only.
    Healthy,
}

/// How many ID slices serve as negatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdNegatives {
    /// All ID slices.
    All,
    /// As many ID slices as there are positives (or all when fewer), drawn without replacement
    /// with a seeded ChaCha8: the paper's class balancing for the `lesional` and `healthy`
    /// modes and for disentangling (with the label count fixed, unlike the paper's [BUG?]).
    Matched {
        /// Seed of the draw.
        seed: u64,
    },
}

/// Scores, labels (true = positive: OOD or lesional) and the scan of each scored slice.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredSet {
    /// The scorer's name.
    pub name: String,
    /// Oriented scores.
    pub scores: Vec<f64>,
    /// Labels.
    pub labels: Vec<bool>,
    /// The scan of each element (the bootstrap unit).
    pub scans: Vec<ScanId>,
    /// Non-empty slices left out for lacking the scored statistic.
    pub skipped: usize,
}

impl ScoredSet {
    fn new(name: String) -> Self {
        Self {
            name,
            scores: Vec::new(),
            labels: Vec::new(),
            scans: Vec::new(),
            skipped: 0,
        }
    }

    fn push_all<'r>(
        &mut self,
        scorer: &Scorer<'_>,
        records: impl Iterator<Item = &'r SliceRecord>,
        label: bool,
    ) -> Result<()> {
        for r in records {
            match scorer.score(r)? {
                Some(s) => {
                    self.scores.push(s);
                    self.labels.push(label);
                    self.scans.push(r.id.scan());
                }
                None => self.skipped += 1,
            }
        }
        Ok(())
    }

    /// Number of positives.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&l| l).count()
    }

    /// Number of negatives.
    pub fn negatives(&self) -> usize {
        self.labels.len() - self.positives()
    }
}

fn non_empty(records: &[SliceRecord]) -> impl Iterator<Item = &SliceRecord> {
    records.iter().filter(|r| !r.is_empty())
}

fn pick_negatives(
    id: &[SliceRecord],
    n_positive: usize,
    negatives: IdNegatives,
) -> Vec<&SliceRecord> {
    let pool: Vec<&SliceRecord> = non_empty(id).collect();
    match negatives {
        IdNegatives::All => pool,
        IdNegatives::Matched { seed } => {
            if n_positive >= pool.len() {
                return pool;
            }
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut idx = sample(&mut rng, pool.len(), n_positive).into_vec();
            idx.sort_unstable();
            idx.into_iter().map(|i| pool[i]).collect()
        }
    }
}

/// OOD detection of `test` (positives, filtered by `mode`) against `id` (negatives).
///
/// # Errors
/// The scorer's errors.
pub fn detection_set(
    id: &[SliceRecord],
    test: &[SliceRecord],
    scorer: &Scorer<'_>,
    mode: OodMode,
    rule: LesionRule,
    negatives: IdNegatives,
) -> Result<ScoredSet> {
    let positives: Vec<&SliceRecord> = non_empty(test)
        .filter(|r| match mode {
            OodMode::All => true,
            OodMode::Lesional => r.is_lesional(rule),
            OodMode::Healthy => !r.is_lesional(rule),
        })
        .collect();
    let mut set = ScoredSet::new(scorer.name());
    set.push_all(
        scorer,
        pick_negatives(id, positives.len(), negatives).into_iter(),
        false,
    )?;
    set.push_all(scorer, positives.into_iter(), true)?;
    Ok(set)
}

/// Disentangling (docs/method.md 5): negatives are healthy ID slices plus the healthy slices
/// of every test set, positives are the lesional slices of every test set.
///
/// With [`IdNegatives::Matched`] the number of ID negatives equals the number of healthy OOD
/// slices (the paper's HEAD rule).
///
/// # Errors
/// The scorer's errors.
pub fn disentangling_set(
    id: &[SliceRecord],
    tests: &[&[SliceRecord]],
    scorer: &Scorer<'_>,
    rule: LesionRule,
    negatives: IdNegatives,
) -> Result<ScoredSet> {
    let healthy_ood: Vec<&SliceRecord> = tests
        .iter()
        .flat_map(|t| non_empty(t))
        .filter(|r| !r.is_lesional(rule))
        .collect();
    let lesional: Vec<&SliceRecord> = tests
        .iter()
        .flat_map(|t| non_empty(t))
        .filter(|r| r.is_lesional(rule))
        .collect();
    let id_healthy: Vec<SliceRecord> = non_empty(id)
        .filter(|r| !r.is_lesional(rule))
        .cloned()
        .collect();
    let mut set = ScoredSet::new(scorer.name());
    set.push_all(
        scorer,
        pick_negatives(&id_healthy, healthy_ood.len(), negatives).into_iter(),
        false,
    )?;
    set.push_all(scorer, healthy_ood.into_iter(), false)?;
    set.push_all(scorer, lesional.into_iter(), true)?;
    Ok(set)
}

/// The disentangling sets of two scorers for a paired comparison ([`compare_auroc`]): both
/// over the slices that both score. A statistic can be undefined on a slice (the entropy of an
/// empty cleaned residual), and the two sets of [`disentangling_set`] would then differ.
///
/// # Errors
/// The scorers' errors.
pub fn paired_disentangling_sets(
    tests: &[&[SliceRecord]],
    a: &Scorer<'_>,
    b: &Scorer<'_>,
    rule: LesionRule,
    negatives: IdNegatives,
) -> Result<(ScoredSet, ScoredSet)> {
    let mut kept: Vec<Vec<SliceRecord>> = Vec::with_capacity(tests.len());
    for t in tests {
        let mut both = Vec::new();
        for r in t.iter() {
            if a.score(r)?.is_some() && b.score(r)?.is_some() {
                both.push(r.clone());
            }
        }
        kept.push(both);
    }
    let kept: Vec<&[SliceRecord]> = kept.iter().map(Vec::as_slice).collect();
    Ok((
        disentangling_set(&[], &kept, a, rule, negatives)?,
        disentangling_set(&[], &kept, b, rule, negatives)?,
    ))
}

/// Detection metrics of a scored set, with bootstrap intervals when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionMetrics {
    /// The scorer's name.
    pub name: String,
    /// Positives scored.
    pub positives: usize,
    /// Negatives scored.
    pub negatives: usize,
    /// Slices left out for lacking the statistic.
    pub skipped: usize,
    /// Area under the ROC curve (tie-aware, = scikit-learn).
    pub auroc: f64,
    /// Average precision (step definition, = scikit-learn).
    pub auprc: f64,
    /// False-positive rate at 95 % true-positive rate.
    pub fpr_at_95_tpr: f64,
    /// Scan-level bootstrap intervals of the three, when a bootstrap was asked for.
    pub intervals: Option<DetectionIntervals>,
}

/// Bootstrap intervals of [`DetectionMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetectionIntervals {
    /// Of the AUROC.
    pub auroc: ConfidenceInterval,
    /// Of the average precision.
    pub auprc: ConfidenceInterval,
    /// Of the FPR at 95 % TPR.
    pub fpr_at_95_tpr: ConfidenceInterval,
}

/// AUROC, AUPRC and FPR@95TPR of a scored set; with `bootstrap`, percentile intervals that
/// resample scans (all slices of a drawn scan count, with multiplicity).
///
/// # Errors
/// [`OodError::Metrics`] when a class is empty or a bootstrap is degenerate.
pub fn evaluate(set: &ScoredSet, bootstrap: Option<&BootstrapConfig>) -> Result<DetectionMetrics> {
    let ranked = |idx: Option<&[usize]>, groups: &SubjectGroups| {
        let acc = match idx {
            Some(idx) => groups.accumulate(idx, &set.scores, &set.labels)?,
            None => {
                let mut acc = blindspot_metrics::RankAccumulator::new();
                acc.push(&set.scores, &set.labels)?;
                acc
            }
        };
        Ok::<_, blindspot_metrics::MetricsError>(acc.finish())
    };
    let groups = SubjectGroups::new(&set.scans);
    let all = ranked(None, &groups)?;
    let intervals = match bootstrap {
        None => None,
        Some(cfg) => {
            let ci =
                |f: fn(&blindspot_metrics::RankedScores<f64>) -> blindspot_metrics::Result<f64>| {
                    bootstrap_ci(groups.subjects(), cfg, |idx| {
                        f(&ranked(Some(idx), &groups)?)
                    })
                };
            Some(DetectionIntervals {
                auroc: ci(|r| r.auroc())?,
                auprc: ci(|r| r.average_precision())?,
                fpr_at_95_tpr: ci(|r| r.fpr_at_tpr(0.95))?,
            })
        }
    };
    Ok(DetectionMetrics {
        name: set.name.clone(),
        positives: set.positives(),
        negatives: set.negatives(),
        skipped: set.skipped,
        auroc: all.auroc()?,
        auprc: all.average_precision()?,
        fpr_at_95_tpr: all.fpr_at_tpr(0.95)?,
        intervals,
    })
}

/// The AUROC of `a` minus that of `b`, two scorings of the same slices (same order, labels
/// and scans), with a paired scan-level bootstrap: both AUROCs are computed on the same
/// resampled scans, so the interval of the difference is much narrower than the two intervals
/// side by side.
///
/// # Errors
/// [`OodError::ShapeMismatch`] when the sets do not score the same slices; the metric's and
/// the bootstrap's errors (one class, fewer than 2 scans).
pub fn compare_auroc(
    a: &ScoredSet,
    b: &ScoredSet,
    bootstrap: &BootstrapConfig,
) -> Result<PairedComparison> {
    if a.labels != b.labels || a.scans != b.scans {
        return Err(OodError::ShapeMismatch {
            what: format!(
                "paired comparison of {} ({} slices) and {} ({} slices): not the same slices",
                a.name,
                a.labels.len(),
                b.name,
                b.labels.len()
            ),
            expected: a.labels.len(),
            actual: b.labels.len(),
        });
    }
    let groups = SubjectGroups::new(&a.scans);
    let auroc = |set: &ScoredSet, idx: &[usize]| {
        groups
            .accumulate(idx, &set.scores, &set.labels)?
            .finish()
            .auroc()
    };
    Ok(paired_bootstrap(
        groups.subjects(),
        bootstrap,
        |idx| auroc(a, idx),
        |idx| auroc(b, idx),
    )?)
}

/// One scan's gate score and segmentation outcome (pixel counts against the ground truth).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanOutcome {
    /// The scan.
    pub scan: ScanId,
    /// The gate's score: higher = rejected earlier (for example the shift score).
    pub gate_score: f64,
    /// Lesion pixels found.
    pub true_positives: u64,
    /// Pixels wrongly marked as lesion (the false-positive volume, in pixels).
    pub false_positives: u64,
    /// Lesion pixels missed.
    pub false_negatives: u64,
}

impl ScanOutcome {
    /// Dice `2 TP / (2 TP + FP + FN)`; 1 when the scan has no lesion and none was marked.
    pub fn dice(&self) -> f64 {
        let den = 2 * self.true_positives + self.false_positives + self.false_negatives;
        if den == 0 {
            1.0
        } else {
            2.0 * self.true_positives as f64 / den as f64
        }
    }
}

/// One operating point of the gate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskCoveragePoint {
    /// Scans with a gate score at most this are accepted.
    pub threshold: f64,
    /// Fraction of scans accepted.
    pub coverage: f64,
    /// Mean Dice over the accepted scans.
    pub mean_dice: f64,
    /// Mean false-positive pixels per accepted scan.
    pub mean_false_positives: f64,
}

/// The risk-coverage curve of "gate, then segment".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskCoverage {
    /// One point per distinct gate score, coverage increasing.
    pub points: Vec<RiskCoveragePoint>,
    /// Area under the risk-coverage curve with risk = 1 - Dice (AURC, Geifman et al.): the mean
    /// of the risk over the `n` coverage levels `1/n, ..., 1`; lower is better.
    pub aurc: f64,
    /// The same area for the mean false-positive pixels per accepted scan.
    pub false_positive_area: f64,
}

/// Risk-coverage of rejecting scans in order of decreasing gate score (ties move together).
///
/// # Errors
/// [`OodError::TooFewSamples`] for no scans, [`OodError::NonFinite`] for a NaN gate score.
pub fn risk_coverage(outcomes: &[ScanOutcome]) -> Result<RiskCoverage> {
    if outcomes.is_empty() {
        return Err(OodError::TooFewSamples {
            what: "scans for the risk-coverage curve".into(),
            needed: 1,
            got: 0,
        });
    }
    if let Some(i) = outcomes.iter().position(|o| o.gate_score.is_nan()) {
        return Err(OodError::NonFinite {
            what: format!("gate score of {}", outcomes[i].scan),
            index: i,
            value: f64::NAN,
        });
    }
    let mut order: Vec<&ScanOutcome> = outcomes.iter().collect();
    order.sort_by(|a, b| a.gate_score.total_cmp(&b.gate_score));
    let n = order.len();
    let (mut dice_sum, mut fp_sum) = (0.0, 0.0);
    let (mut aurc, mut fp_area) = (0.0, 0.0);
    let mut points = Vec::new();
    let mut i = 0;
    while i < n {
        let mut j = i;
        while j < n && order[j].gate_score == order[i].gate_score {
            dice_sum += order[j].dice();
            fp_sum += order[j].false_positives as f64;
            j += 1;
        }
        let (mean_dice, mean_fp) = (dice_sum / j as f64, fp_sum / j as f64);
        // Tied scans enter together: every coverage level inside the tie gets its risk.
        aurc += (j - i) as f64 * (1.0 - mean_dice);
        fp_area += (j - i) as f64 * mean_fp;
        points.push(RiskCoveragePoint {
            threshold: order[i].gate_score,
            coverage: j as f64 / n as f64,
            mean_dice,
            mean_false_positives: mean_fp,
        });
        i = j;
    }
    Ok(RiskCoverage {
        points,
        aurc: aurc / n as f64,
        false_positive_area: fp_area / n as f64,
    })
}

/// Bootstrap interval of the AURC, resampling scans.
///
/// # Errors
/// As [`risk_coverage`] and [`bootstrap_ci`].
pub fn bootstrap_aurc(
    outcomes: &[ScanOutcome],
    config: &BootstrapConfig,
) -> Result<ConfidenceInterval> {
    risk_coverage(outcomes)?;
    Ok(bootstrap_ci(outcomes.len(), config, |idx| {
        let drawn: Vec<ScanOutcome> = idx.iter().map(|&i| outcomes[i].clone()).collect();
        risk_coverage(&drawn).map(|rc| rc.aurc).map_err(|e| {
            blindspot_metrics::MetricsError::InvalidParameter {
                name: "risk-coverage resample",
                value: e.to_string(),
                allowed: "finite gate scores",
            }
        })
    })?)
}

/// One row of an evaluation table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    /// The test set (`"disentangling"` for the disentangling table).
    pub test_set: String,
    /// The detection mode; `None` for disentangling.
    pub mode: Option<OodMode>,
    /// The metrics (their `name` is the scorer's).
    pub metrics: DetectionMetrics,
}

/// OOD detection of every test set in every mode by every scorer, the paper's table.
///
/// `lesional` and `healthy` rows are left out for a test set that has no lesional or no
/// healthy slice (as the paper does); `all` is always computed. The `lesional` and `healthy`
/// modes use `negatives` for the ID slices, `all` uses every ID slice.
///
/// # Errors
/// As [`detection_set`] and [`evaluate`].
pub fn detection_table(
    id: &[SliceRecord],
    tests: &[(&str, &[SliceRecord])],
    scorers: &[Scorer<'_>],
    rule: LesionRule,
    negatives: IdNegatives,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<Vec<TableRow>> {
    let mut rows = Vec::new();
    for (name, test) in tests {
        let lesional = non_empty(test).filter(|r| r.is_lesional(rule)).count();
        let healthy = non_empty(test).count() - lesional;
        for mode in [OodMode::All, OodMode::Lesional, OodMode::Healthy] {
            let (modal_negatives, present) = match mode {
                OodMode::All => (IdNegatives::All, true),
                OodMode::Lesional => (negatives, lesional > 0 && healthy > 0),
                OodMode::Healthy => (negatives, lesional > 0 && healthy > 0),
            };
            if !present {
                continue;
            }
            for scorer in scorers {
                let set = detection_set(id, test, scorer, mode, rule, modal_negatives)?;
                rows.push(TableRow {
                    test_set: (*name).to_owned(),
                    mode: Some(mode),
                    metrics: evaluate(&set, bootstrap)?,
                });
            }
        }
    }
    Ok(rows)
}

/// The disentangling table: one row per scorer (see [`disentangling_set`]).
///
/// # Errors
/// As [`disentangling_set`] and [`evaluate`].
pub fn disentangling_table(
    id: &[SliceRecord],
    tests: &[&[SliceRecord]],
    scorers: &[Scorer<'_>],
    rule: LesionRule,
    negatives: IdNegatives,
    bootstrap: Option<&BootstrapConfig>,
) -> Result<Vec<TableRow>> {
    scorers
        .iter()
        .map(|scorer| {
            let set = disentangling_set(id, tests, scorer, rule, negatives)?;
            Ok(TableRow {
                test_set: "disentangling".to_owned(),
                mode: None,
                metrics: evaluate(&set, bootstrap)?,
            })
        })
        .collect()
}

/// Every non-empty subset of the DoSE model's statistics as a scorer (for the disentangling
/// table's DoSE combinations), smallest subsets first.
pub fn dose_combinations(model: &Dose, combine: DoseCombine) -> Vec<Scorer<'_>> {
    let stats: Vec<Statistic> = model.statistics().collect();
    let mut subsets: Vec<Vec<Statistic>> = (1u32..(1 << stats.len()))
        .map(|bits| {
            stats
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, s)| *s)
                .collect()
        })
        .collect();
    subsets.sort_by_key(Vec::len);
    subsets
        .into_iter()
        .map(|subset| Scorer::Dose {
            model,
            subset,
            combine,
        })
        .collect()
}
