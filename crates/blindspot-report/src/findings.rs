//! The four findings of the quickstart, stated from the numbers in a [`Results`].
//!
//! Each finding says what was measured and whether the paper's claim holds on this run, by
//! a fixed, documented criterion (docs/method.md 5.4); a finding whose inputs are missing says
//! so instead. Where the run has bootstrap intervals, a verdict needs its interval on one side
//! of the criterion: an interval that reaches both sides makes the finding inconclusive.

use blindspot_ood::GateGoals;

use crate::schema::{Estimate, GateGoalNumbers, GateSetResult, Results, TestSetRole};

/// What a run says about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The paper's claim holds on this run by the finding's criterion.
    Holds,
    /// It does not.
    DoesNotHold,
    /// The intervals cannot tell: they reach both sides of the criterion. More test scans
    /// would narrow them.
    Inconclusive,
    /// The numbers were measured on a model that did not learn the anatomy (its adequacy is
    /// below the criterion), so they say nothing about the claim.
    NotInterpretable,
    /// The results lack the inputs.
    NotMeasured,
}

impl Verdict {
    fn judged(holds: Option<bool>) -> Self {
        match holds {
            Some(true) => Self::Holds,
            Some(false) => Self::DoesNotHold,
            None => Self::NotMeasured,
        }
    }

    /// How the report states it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::DoesNotHold => "does not hold",
            Self::Inconclusive => "inconclusive: the intervals reach both sides of the criterion",
            Self::NotInterpretable => "not interpretable: the model did not learn the anatomy",
            Self::NotMeasured => "not measured",
        }
    }
}

/// One finding: a title, a verdict and the sentence with its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Short title (`The blind spot`).
    pub title: &'static str,
    /// What the run says about the paper's claim.
    pub verdict: Verdict,
    /// The statement with its numbers.
    pub text: String,
}

/// The criterion of finding 1: the worst healthy-OOD pixel FPR is at least this multiple of
/// the calibration target.
pub const BLIND_SPOT_RATIO: f64 = 2.0;
/// Finding 2: plain OOD scores "separate" OOD from ID at a mean AUROC of at least this ...
pub const SEPARATES_AUROC: f64 = 0.7;
/// ... while their disentangling AUROC stays within this distance of chance (0.5).
pub const NEAR_CHANCE: f64 = 0.15;
/// Finding 3: the best prior-knowledge statistic beats the best plain one by at least this.
pub const PRIOR_MARGIN: f64 = 0.1;
/// Finding 4: on the scans the gate accepts, the healthy-pixel FPR is at most this multiple of
/// the calibration target ...
pub const GATE_FPR_RATIO: f64 = 1.5;
/// ... while the gate accepts at least this fraction of the in-distribution test scans.
pub const GATE_ID_ACCEPTANCE: f64 = 0.9;
/// The plain OOD scores the paper's claims are about (docs/method.md 4.1-4.3): reconstruction
/// error, the ELBO as the paper codes it, WAIC over the ensemble and DoSE. Findings 2 and 3 judge
/// these; a run's other plain statistics (the proper negative ELBO, KL, ...) are reported beside
/// them. When a run has none of them, every plain statistic is judged.
pub const PAPER_OOD_STATISTICS: [&str; 4] = ["rec_err", "coded_elbo", "waic", "dose"];

/// Whether finding 2 and 3 judge statistic `name` of `r` (see [`PAPER_OOD_STATISTICS`]).
fn judged(r: &Results, name: &str) -> bool {
    let any_paper = r
        .statistics
        .iter()
        .any(|s| !s.prior_knowledge && PAPER_OOD_STATISTICS.contains(&s.name.as_str()));
    !any_paper || PAPER_OOD_STATISTICS.contains(&name)
}

pub(crate) fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

pub(crate) fn est(e: &Estimate) -> String {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) => format!("{:.3} [{lo:.3}, {hi:.3}]", e.value),
        _ => format!("{:.3}", e.value),
    }
}

pub(crate) fn est_pct(e: &Estimate) -> String {
    match (e.low, e.high) {
        (Some(lo), Some(hi)) => format!("{} [{}, {}]", pct(e.value), pct(lo), pct(hi)),
        _ => pct(e.value),
    }
}

/// Where an estimate lies against a bound: above it (`Some(true)`), below it (`Some(false)`),
/// or its interval reaches both sides (`None`). Without an interval the point decides.
fn side(e: &Estimate, bound: f64) -> Option<bool> {
    match (e.low, e.high) {
        (Some(lo), _) if lo > bound => Some(true),
        (_, Some(hi)) if hi < bound => Some(false),
        (Some(_), Some(_)) => None,
        _ => Some(e.value >= bound),
    }
}

/// The verdict of a claim made of parts that must all hold: any part that conclusively fails
/// fails it, else any inconclusive part makes it inconclusive.
fn all_of(parts: impl IntoIterator<Item = Option<bool>>) -> Verdict {
    let mut unsure = false;
    for p in parts {
        match p {
            Some(false) => return Verdict::DoesNotHold,
            None => unsure = true,
            Some(true) => {}
        }
    }
    if unsure {
        Verdict::Inconclusive
    } else {
        Verdict::Holds
    }
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The four findings, in order: the blind spot, OOD scores do not disentangle, prior
/// knowledge does, the gate. When the run measured model adequacy and a member falls short of
/// its criterion, every measured finding is [`Verdict::NotInterpretable`]: its numbers are
/// still stated, but they were measured on a model that did not learn the anatomy.
pub fn findings(r: &Results) -> Vec<Finding> {
    let mut all = vec![blind_spot(r), ood_scores(r), prior_knowledge(r), gate(r)];
    if let Some(a) = r.adequacy.as_ref().filter(|a| !a.adequate()) {
        let worst = a
            .members
            .iter()
            .map(|m| m.adequacy)
            .fold(f64::INFINITY, f64::min);
        for f in all.iter_mut().filter(|f| f.verdict != Verdict::NotMeasured) {
            f.verdict = Verdict::NotInterpretable;
            f.text = format!(
                "Model adequacy {worst:.2} is below the criterion {:.2}, so these numbers say nothing about the claim: {}",
                a.criterion, f.text
            );
        }
    }
    all
}

fn blind_spot(r: &Results) -> Finding {
    let title = "The blind spot";
    let fpr_of = |set: &crate::schema::TestSetResult| {
        set.pixel
            .iter()
            .find(|p| !p.baseline)
            .and_then(|p| p.healthy_fpr_at_threshold)
    };
    let ood_est: Vec<(String, Estimate)> = r
        .test_sets
        .iter()
        .filter(|t| t.role == TestSetRole::OutOfDistribution)
        .filter_map(|t| fpr_of(t).map(|e| (t.name.clone(), e)))
        .collect();
    let ood: Vec<(String, f64)> = ood_est.iter().map(|(n, e)| (n.clone(), e.value)).collect();
    let id_fpr = r
        .test_sets
        .iter()
        .filter(|t| t.role == TestSetRole::InDistribution)
        .find_map(|t| fpr_of(t).map(|e| (t.name.clone(), e.value)));
    let target = r.threshold.target_fpr.or(id_fpr.as_ref().map(|x| x.1));
    let (Some(target), false) = (target, ood.is_empty()) else {
        return Finding {
            title,
            verdict: Verdict::NotMeasured,
            text: "No healthy-pixel FPR at the threshold was measured on out-of-distribution sets."
                .into(),
        };
    };
    let mut text = format!(
        "At the threshold {:.4} set for {} pixel FPR on {}, the healthy-pixel FPR is",
        r.threshold.value,
        pct(target),
        r.threshold.calibrated_on
    );
    if let Some((name, v)) = &id_fpr {
        text.push_str(&format!(" {} on held-out {name} (ID),", pct(*v)));
    }
    let parts: Vec<String> = ood_est
        .iter()
        .map(|(name, e)| {
            if target > 0.0 {
                format!("{} on {name} ({:.1}x)", est_pct(e), e.value / target)
            } else {
                format!("{} on {name}", est_pct(e))
            }
        })
        .collect();
    text.push(' ');
    text.push_str(&parts.join(", "));
    let worst = ood.iter().map(|x| x.1).fold(0.0, f64::max);
    let holds = worst >= BLIND_SPOT_RATIO * target;
    // Holds when a shifted set reaches the ratio with its interval above the target itself;
    // fails when every set's interval stays below the ratio.
    let verdict = if ood_est
        .iter()
        .any(|(_, e)| e.value >= BLIND_SPOT_RATIO * target && side(e, target) == Some(true))
    {
        Verdict::Holds
    } else if ood_est
        .iter()
        .all(|(_, e)| side(e, BLIND_SPOT_RATIO * target) == Some(false))
    {
        Verdict::DoesNotHold
    } else {
        Verdict::Inconclusive
    };
    let ratio = worst / target.max(f64::MIN_POSITIVE);
    text.push_str(&format!(
        ". {} Criterion: a shifted set at {BLIND_SPOT_RATIO}x the target or more, its interval above the target.",
        match verdict {
            Verdict::Holds => format!(
                "Healthy scans from shifted distributions are flagged as lesion far more often (worst {ratio:.1}x the target)."
            ),
            Verdict::DoesNotHold =>
                format!("No shifted set reaches {BLIND_SPOT_RATIO}x the target FPR on this run."),
            _ if holds => format!(
                "The worst shifted set reaches {ratio:.1}x the target, but its interval does not clear the target."
            ),
            _ => format!(
                "No shifted set reaches {BLIND_SPOT_RATIO}x the target, but the intervals do not rule it out (worst {ratio:.1}x)."
            ),
        }
    ));
    Finding {
        title,
        verdict,
        text,
    }
}

/// Mean OOD AUROC (healthy mode, else all) of `stat` over OOD sets, and mean disentangling
/// AUROC over sets that report it.
fn stat_summary(r: &Results, stat: &str) -> (Option<f64>, Option<f64>) {
    let ood: Vec<f64> = r
        .test_sets
        .iter()
        .filter(|t| t.role == TestSetRole::OutOfDistribution)
        .flat_map(|t| t.ood.iter().filter(|o| o.statistic == stat))
        .filter_map(|o| o.healthy.or(o.all).map(|d| d.auroc.value))
        .collect();
    let dis: Vec<f64> = r
        .test_sets
        .iter()
        .flat_map(|t| t.disentangling.iter().filter(|d| d.statistic == stat))
        .map(|d| d.auroc.value)
        .collect();
    (mean(&ood), mean(&dis))
}

const OOD_TITLE: &str = "OOD scores do not disentangle lesions from distribution shift";
const PRIOR_TITLE: &str =
    "Prior knowledge (residual entropy H_l1) separates lesional from healthy-OOD slices";

/// Finding 2 on the pooled experiments: each of the paper's scores must detect the shift (OOD
/// AUROC at least [`SEPARATES_AUROC`], its interval above chance) and fail to disentangle
/// (its disentangling interval inside chance ± [`NEAR_CHANCE`]).
fn ood_scores_pooled(r: &Results) -> Finding {
    let (mut parts, mut beside, mut judged_parts) = (Vec::new(), Vec::new(), Vec::new());
    for s in r.statistics.iter().filter(|s| !s.prior_knowledge) {
        let Some(p) = r.pooled.iter().find(|p| p.statistic == s.name) else {
            continue;
        };
        let (Some(ood), Some(dis)) = (p.ood_auroc, p.disentangling_auroc) else {
            continue;
        };
        let line = format!(
            "{}: OOD AUROC {}, disentangling AUROC {}",
            s.label,
            est(&ood),
            est(&dis)
        );
        if judged(r, &s.name) {
            let detects = if side(&ood, SEPARATES_AUROC) == Some(false) {
                Some(false)
            } else if ood.value >= SEPARATES_AUROC && side(&ood, 0.5) == Some(true) {
                Some(true)
            } else {
                None
            };
            // inside the band: above its floor and below its ceiling
            let (lo, hi) = (0.5 - NEAR_CHANCE, 0.5 + NEAR_CHANCE);
            let near_chance = match (side(&dis, lo), side(&dis, hi)) {
                (Some(true), Some(false)) => Some(true),
                (Some(false), _) | (_, Some(true)) => Some(false),
                _ => None,
            };
            let part = all_of([detects, near_chance]);
            judged_parts.push(detects);
            judged_parts.push(near_chance);
            parts.push(format!("{line} ({})", part.label()));
        } else {
            beside.push(line);
        }
    }
    if parts.is_empty() {
        return Finding {
            title: OOD_TITLE,
            verdict: Verdict::NotMeasured,
            text: "No plain OOD statistic has both pooled OOD and disentangling results.".into(),
        };
    }
    let verdict = all_of(judged_parts);
    let beside = if beside.is_empty() {
        String::new()
    } else {
        format!(
            " Beside them, not part of the criterion: {}.",
            beside.join("; ")
        )
    };
    Finding {
        title: OOD_TITLE,
        verdict,
        text: format!(
            "Over all test sets pooled (OOD: healthy slices of the shifted sets against healthy in-distribution slices; disentangling: lesional slices of every set against the healthy slices of every set), with scan-level intervals: {}. Criterion, for each of the paper's scores: OOD AUROC >= {SEPARATES_AUROC} with its interval above 0.5, and the disentangling interval inside {:.2}-{:.2}.{beside}",
            parts.join("; "),
            0.5 - NEAR_CHANCE,
            0.5 + NEAR_CHANCE
        ),
    }
}

/// Finding 3 on the paired comparison: the best prior-knowledge statistic beats the best of
/// the paper's scores at disentangling by at least [`PRIOR_MARGIN`], with the interval of the
/// difference above 0.
fn prior_knowledge_pooled(r: &Results) -> Option<Finding> {
    let c = r.prior_comparison.as_ref()?;
    let d = c.difference;
    let verdict = if d.value >= PRIOR_MARGIN {
        match side(&d, 0.0) {
            Some(true) => Verdict::Holds,
            _ => Verdict::Inconclusive,
        }
    } else {
        match side(&d, PRIOR_MARGIN) {
            Some(false) => Verdict::DoesNotHold,
            _ => Verdict::Inconclusive,
        }
    };
    let auroc = |name: &str| {
        r.pooled
            .iter()
            .find(|p| p.statistic == name)
            .and_then(|p| p.disentangling_auroc)
            .map_or_else(|| "-".into(), |e| est(&e))
    };
    Some(Finding {
        title: PRIOR_TITLE,
        verdict,
        text: format!(
            "Pooled disentangling AUROC: {} {} against {} for {}, the best of the paper's scores; the paired difference is {} (scans resampled together). Criterion: a difference of at least {PRIOR_MARGIN} with its interval above 0. {} per lesional set: {}.",
            r.statistic_label(&c.prior),
            auroc(&c.prior),
            auroc(&c.plain),
            r.statistic_label(&c.plain),
            est(&d),
            r.statistic_label(&c.prior),
            per_set(r, r.statistic_label(&c.prior))
        ),
    })
}

fn ood_scores(r: &Results) -> Finding {
    if !r.pooled.is_empty() {
        return ood_scores_pooled(r);
    }
    let title = OOD_TITLE;
    let (mut parts, mut beside) = (Vec::new(), Vec::new());
    let mut all_hold = true;
    for s in r.statistics.iter().filter(|s| !s.prior_knowledge) {
        let (ood, dis) = stat_summary(r, &s.name);
        let (Some(ood), Some(dis)) = (ood, dis) else {
            continue;
        };
        let line = format!(
            "{}: OOD AUROC {ood:.3}, disentangling AUROC {dis:.3}",
            s.label
        );
        if judged(r, &s.name) {
            let holds = ood >= SEPARATES_AUROC && (dis - 0.5).abs() <= NEAR_CHANCE;
            all_hold &= holds;
            parts.push(format!(
                "{line} ({})",
                if holds { "meets both" } else { "misses" }
            ));
        } else {
            beside.push(line);
        }
    }
    if parts.is_empty() {
        return Finding {
            title,
            verdict: Verdict::NotMeasured,
            text: "No plain OOD statistic has both OOD and disentangling results.".into(),
        };
    }
    let beside = if beside.is_empty() {
        String::new()
    } else {
        format!(
            " Beside them, not part of the criterion: {}.",
            beside.join("; ")
        )
    };
    let text = format!(
        "Mean over the OOD sets (healthy-OOD vs ID slices) and over the lesional sets (lesional vs healthy slices): {}. Criterion: OOD AUROC >= {SEPARATES_AUROC} and disentangling AUROC within {NEAR_CHANCE} of chance, for each of the paper's scores; {}.{beside}",
        parts.join("; "),
        if all_hold {
            "it holds for every one"
        } else {
            "it fails for at least one"
        }
    );
    Finding {
        title,
        verdict: Verdict::judged(Some(all_hold)),
        text,
    }
}

fn prior_knowledge(r: &Results) -> Finding {
    if let Some(f) = prior_knowledge_pooled(r) {
        return f;
    }
    let title = PRIOR_TITLE;
    let best = |prior: bool| {
        r.statistics
            .iter()
            .filter(|s| s.prior_knowledge == prior && (prior || judged(r, &s.name)))
            .filter_map(|s| stat_summary(r, &s.name).1.map(|d| (s.label.clone(), d)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    match (best(true), best(false)) {
        (Some((pl, pd)), Some((ol, od))) => {
            let holds = pd >= od + PRIOR_MARGIN;
            Finding {
                title,
                verdict: Verdict::judged(Some(holds)),
                text: format!(
                    "Mean disentangling AUROC: {pl} {pd:.3} against {od:.3} for the best of the paper's plain OOD scores ({ol}); a margin of {:+.3} (criterion: at least {PRIOR_MARGIN}). {pl} per lesional set: {}.",
                    pd - od,
                    per_set(r, &pl)
                ),
            }
        }
        _ => Finding {
            title,
            verdict: Verdict::NotMeasured,
            text:
                "Disentangling results for a prior-knowledge and a plain statistic are both needed."
                    .into(),
        },
    }
}

/// `set value` of the disentangling AUROC of the statistic labelled `label`, set by set.
fn per_set(r: &Results, label: &str) -> String {
    let Some(name) = r
        .statistics
        .iter()
        .find(|s| s.label == label)
        .map(|s| &s.name)
    else {
        return String::new();
    };
    r.test_sets
        .iter()
        .flat_map(|t| {
            t.disentangling
                .iter()
                .filter(|d| &d.statistic == name)
                .map(|d| format!("{} {:.3}", t.name, d.auroc.value))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One of the gate's goals as the report states it.
#[derive(Debug, Clone, PartialEq)]
pub struct GoalCheck {
    /// The goal (`in-distribution scans accepted`).
    pub goal: String,
    /// Its criterion, in words.
    pub criterion: String,
    /// What the run measured, with intervals.
    pub measured: String,
    /// Whether it holds.
    pub verdict: Verdict,
}

fn at_least(e: &Estimate, bound: f64) -> Option<bool> {
    match (e.low, e.high) {
        (Some(lo), _) if lo >= bound => Some(true),
        (_, Some(hi)) if hi < bound => Some(false),
        (Some(_), Some(_)) => None,
        _ => Some(e.value >= bound),
    }
}

fn at_most(e: &Estimate, bound: f64) -> Option<bool> {
    match (e.low, e.high) {
        (_, Some(hi)) if hi <= bound => Some(true),
        (Some(lo), _) if lo > bound => Some(false),
        (Some(_), Some(_)) => None,
        _ => Some(e.value <= bound),
    }
}

fn verdict_of(part: Option<Option<bool>>) -> Verdict {
    match part {
        None => Verdict::NotMeasured,
        Some(Some(true)) => Verdict::Holds,
        Some(Some(false)) => Verdict::DoesNotHold,
        Some(None) => Verdict::Inconclusive,
    }
}

/// The gate's goals (docs/method.md 6), each judged on scan-level intervals as the findings
/// are: acceptance of in-distribution scans (all, lesional), the lesion flag (sensitivity on
/// accepted lesional scans, rate on accepted healthy ones, the lesion score's AUROC), harmful
/// shifts rejected, and the FPR kept on the accepted scans of every set. Empty when the run
/// has no gate or was written before the goals existed.
pub fn gate_goals(r: &Results) -> Vec<GoalCheck> {
    let Some(g) = &r.gate else {
        return Vec::new();
    };
    let (Some(c), Some(n)) = (&g.criteria, &g.goals) else {
        return Vec::new();
    };
    let mut out = vec![
        rate_goal(
            "1a. in-distribution scans accepted",
            n.id_acceptance.as_ref(),
            c.id_acceptance,
            true,
        ),
        rate_goal(
            "1b. lesional in-distribution scans accepted",
            n.lesional_acceptance.as_ref(),
            c.lesional_acceptance,
            true,
        ),
        rate_goal(
            "2a. accepted lesional ID scans flagged \"lesion suspected\"",
            n.lesion_sensitivity.as_ref(),
            c.lesion_sensitivity,
            true,
        ),
        rate_goal(
            "2b. accepted healthy ID scans flagged",
            n.healthy_flag_rate.as_ref(),
            c.healthy_flag_rate,
            false,
        ),
        lesion_score_goal(c, n),
    ];
    // goals 3 and 4 are multiples of the target FPR
    let Some(target) = r.threshold.target_fpr else {
        return out;
    };
    out.push(harmful_shifts_goal(&g.per_set, c, target));
    out.push(accepted_fpr_goal(&g.per_set, c, target));
    out
}

/// A goal on a rate `e`: at least (`min`) or at most `bound`.
fn rate_goal(goal: &str, e: Option<&Estimate>, bound: f64, min: bool) -> GoalCheck {
    let judged = e.map(|e| {
        if min {
            at_least(e, bound)
        } else {
            at_most(e, bound)
        }
    });
    GoalCheck {
        goal: goal.into(),
        criterion: format!(
            "{} {}",
            if min { "at least" } else { "at most" },
            pct(bound)
        ),
        measured: e.map_or_else(|| "n/a".into(), est_pct),
        verdict: verdict_of(judged),
    }
}

/// Goal 2c: the scan-level lesion score's AUROC, lesional against healthy ID scans.
fn lesion_score_goal(c: &GateGoals, n: &GateGoalNumbers) -> GoalCheck {
    GoalCheck {
        goal: "2c. scan-level lesion score, AUROC lesional vs healthy ID scans".into(),
        criterion: format!("at least {:.2}", c.lesion_auroc),
        measured: n.lesion_auroc.as_ref().map_or_else(|| "n/a".into(), est),
        verdict: verdict_of(n.lesion_auroc.as_ref().map(|e| at_least(e, c.lesion_auroc))),
    }
}

/// Goal 3: every set whose FPR without the gate (point estimate) exceeds the harm ratio times
/// `target` is rejected often enough.
fn harmful_shifts_goal(per_set: &[GateSetResult], c: &GateGoals, target: f64) -> GoalCheck {
    let harmful: Vec<_> = per_set
        .iter()
        .filter(|s| {
            s.healthy_fpr_all
                .is_some_and(|e| e.value > c.harmful_fpr_ratio * target)
        })
        .collect();
    let parts: Vec<Option<bool>> = harmful
        .iter()
        .map(|s| {
            s.rejection
                .map_or(Some(false), |e| at_least(&e, c.harmful_rejection))
        })
        .collect();
    GoalCheck {
        goal: "3. harmful shifts rejected".into(),
        criterion: format!(
            "at least {} of the scans of every set whose healthy-pixel FPR without the gate exceeds {}x the target ({})",
            pct(c.harmful_rejection),
            c.harmful_fpr_ratio,
            pct(c.harmful_fpr_ratio * target)
        ),
        measured: if harmful.is_empty() {
            "no such set".into()
        } else {
            harmful
                .iter()
                .map(|s| {
                    format!(
                        "{} {}",
                        s.test_set,
                        s.rejection.as_ref().map_or_else(|| "n/a".into(), est_pct)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        },
        verdict: all_of(parts),
    }
}

/// Goal 4: on the accepted scans of every set, the healthy-pixel FPR stays within the accepted
/// ratio times `target`; the measurement names the highest.
fn accepted_fpr_goal(per_set: &[GateSetResult], c: &GateGoals, target: f64) -> GoalCheck {
    let bound = c.accepted_fpr_ratio * target;
    let parts: Vec<Option<bool>> = per_set
        .iter()
        .filter_map(|s| s.healthy_fpr_accepted.map(|e| at_most(&e, bound)))
        .collect();
    let worst = per_set
        .iter()
        .filter_map(|s| s.healthy_fpr_accepted.map(|e| (s.test_set.as_str(), e)))
        .max_by(|a, b| a.1.value.total_cmp(&b.1.value));
    GoalCheck {
        goal: "4. FPR on the accepted scans, every set".into(),
        criterion: format!(
            "at most {}x the target ({}) in every set",
            c.accepted_fpr_ratio,
            pct(bound)
        ),
        measured: worst.map_or_else(
            || "no set has accepted scans".into(),
            |(name, e)| format!("highest: {name} {}", est_pct(&e)),
        ),
        verdict: if parts.is_empty() {
            Verdict::NotMeasured
        } else {
            all_of(parts)
        },
    }
}

fn gate(r: &Results) -> Finding {
    let title = "The gate";
    let Some(g) = &r.gate else {
        return Finding {
            title,
            verdict: Verdict::NotMeasured,
            text: "The gate was not run.".into(),
        };
    };
    let goals = gate_goals(r);
    if !goals.is_empty() {
        let held = goals.iter().filter(|x| x.verdict == Verdict::Holds).count();
        let failed: Vec<&str> = goals
            .iter()
            .filter(|x| x.verdict == Verdict::DoesNotHold)
            .map(|x| x.goal.as_str())
            .collect();
        let unsure: Vec<&str> = goals
            .iter()
            .filter(|x| matches!(x.verdict, Verdict::Inconclusive | Verdict::NotMeasured))
            .map(|x| x.goal.as_str())
            .collect();
        let mut text = format!(
            "The gate meets {held} of its {} goals (table \"The gate's goals\").",
            goals.len()
        );
        if !failed.is_empty() {
            text.push_str(&format!(" Not met: {}.", failed.join("; ")));
        }
        if !unsure.is_empty() {
            text.push_str(&format!(" Undecided: {}.", unsure.join("; ")));
        }
        if let (Some(acc), Some(all)) = (g.healthy_fpr_accepted, g.healthy_fpr_all) {
            text.push_str(&format!(
                " Pooled over every test scan, the healthy-pixel FPR is {} on the accepted scans against {} on all.",
                pct(acc),
                pct(all)
            ));
        }
        if let (Some(a), Some(all)) = (g.dice_accepted, g.dice_all) {
            text.push_str(&format!(
                " Dice on accepted lesional scans {} against {} without the gate.",
                est(&a),
                est(&all)
            ));
        }
        let verdict = all_of(goals.iter().map(|x| match x.verdict {
            Verdict::Holds => Some(true),
            Verdict::DoesNotHold => Some(false),
            _ => None,
        }));
        return Finding {
            title,
            verdict,
            text,
        };
    }
    legacy_gate(r, g)
}

/// Finding 4 of results written before the gate's goals existed: the pooled FPR of the
/// accepted scans and the in-distribution acceptance.
fn legacy_gate(r: &Results, g: &crate::schema::GateResult) -> Finding {
    let title = "The gate";
    let per_set: Vec<String> = g
        .per_set
        .iter()
        .map(|s| format!("{} {}/{}", s.test_set, s.rejected, s.scans))
        .collect();
    let mut text = format!(
        "The gate rejects {} of all test scans (rejected per set: {}).",
        pct(g.fraction_rejected),
        per_set.join(", ")
    );
    // The goal: on the scans it accepts, the healthy-pixel FPR stays within GATE_FPR_RATIO of
    // the calibration target, while it accepts at least GATE_ID_ACCEPTANCE of the
    // in-distribution scans.
    if let (Some(fpr), Some(target), Some(acc)) = (
        g.healthy_fpr_accepted,
        r.threshold.target_fpr,
        g.id_acceptance,
    ) {
        let fpr_ok = fpr <= GATE_FPR_RATIO * target;
        let acc_ok = acc >= GATE_ID_ACCEPTANCE;
        text.push_str(&format!(
            " Healthy-pixel FPR on accepted scans {} against {} on all scans ({:.2}x the target {}); it accepts {} of the in-distribution scans. Pixel AP {} on accepted scans against {} on all.",
            pct(fpr),
            g.healthy_fpr_all.map_or_else(|| "-".into(), pct),
            fpr / target.max(f64::MIN_POSITIVE),
            pct(target),
            pct(acc),
            g.pixel_ap_accepted.map_or_else(|| "-".into(), |v| format!("{v:.3}")),
            g.pixel_ap_all.map_or_else(|| "-".into(), |v| format!("{v:.3}")),
        ));
        if let (Some(a), Some(all)) = (g.dice_accepted, g.dice_all) {
            text.push_str(&format!(
                " Dice on accepted lesional scans {} against {} without the gate.",
                est(&a),
                est(&all)
            ));
        }
        if let Some(aurc) = &g.aurc {
            text.push_str(&format!(
                " Area under the risk-coverage curve {}.",
                est(aurc)
            ));
        }
        text.push_str(&format!(
            " Criterion: FPR on accepted scans at most {GATE_FPR_RATIO}x the target while accepting at least {} of the in-distribution scans.",
            pct(GATE_ID_ACCEPTANCE)
        ));
        return Finding {
            title,
            verdict: Verdict::judged(Some(fpr_ok && acc_ok)),
            text,
        };
    }
    let holds = match (g.dice_accepted, g.dice_all) {
        (Some(a), Some(all)) => {
            text.push_str(&format!(
                " Dice on accepted lesional scans {} against {} without the gate.",
                est(&a),
                est(&all)
            ));
            Some(a.value > all.value)
        }
        (Some(a), None) => {
            text.push_str(&format!(" Dice on accepted lesional scans {}.", est(&a)));
            None
        }
        _ => None,
    };
    if let Some(aurc) = &g.aurc {
        text.push_str(&format!(
            " Area under the risk-coverage curve {}.",
            est(aurc)
        ));
    }
    Finding {
        title,
        verdict: Verdict::judged(holds),
        text,
    }
}
