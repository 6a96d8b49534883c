//! The lesion-vs-OOD gate: per scan, can its lesion map be trusted?
//!
//! Fitted on healthy **validation** scans only (never on test data), the gate turns a scan's
//! per-slice statistics into one of three [`Decision`]s, with the reasons:
//!
//! - [`Decision::OutOfDistribution`]: a global shift (scanner, modality, orientation, noise):
//!   reject, no lesion map is reported;
//! - [`Decision::LesionSuspected`]: a local anomaly (a high residual that is concentrated, i.e.
//!   low residual entropy) on otherwise in-distribution input;
//! - [`Decision::InDistribution`]: nothing unusual.
//!
//! # How the scores are built
//!
//! Each [`GateComponent`] reduces one statistic over the scan's slices ([`Aggregation`]) and
//! standardises it robustly with the median and MAD of the *fit* scans, oriented so that
//! positive values point towards its evidence ([`Side`]). The **shift score** is the largest
//! shift component (any one out of range suffices); the default is the lower quartile over
//! slices of `residual_q95`, the level 5 % of a slice's brain pixels exceed: a global shift
//! raises it on every slice, a lesion only on the slices it touches (and a quarter of the
//! slices it does not touch suffices), with the median over slices of `intensity_iqr` read on
//! its low side (a lesion adds tissue at an extreme of the intensity distribution, so it can
//! only widen it; another contrast can narrow it). The **lesion score** is the smallest
//! lesion component (all must agree); the default is the 90th percentile over slices of
//! `residual_peak`, the level a bright spot of lesion size reaches, high on the several slices
//! a lesion spans.
//! docs/study-gate.md compares these with other choices.
//!
//! # The guarantee
//!
//! The shift threshold is split-conformal ([`ConformalThreshold`]): the healthy validation
//! scans are split (seeded, by scan) into a fit part, which sets the medians and MADs, and a
//! calibration part, whose shift scores set the threshold at rank `ceil((n+1)(1-alpha))`. For a
//! healthy in-distribution test scan exchangeable with the `n` calibration scans,
//! `P(OutOfDistribution) <= alpha`, and `>= alpha - 1/(n+1)` without ties. The lesion
//! threshold is calibrated the same way on the same calibration scans, so for a healthy
//! in-distribution scan `P(LesionSuspected) <= lesion_alpha` as well.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregation, quantile_sorted};
use crate::conformal::ConformalThreshold;
use crate::error::{OodError, Result};
use crate::record::{ScanId, SliceRecord, Statistic};

/// Which tail of a component is evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Values above the healthy median are evidence.
    High,
    /// Values below the healthy median are evidence.
    Low,
    /// Values far from the healthy median on either side are evidence (a shift that can move
    /// a statistic either way, such as the input's intensity).
    Both,
}

/// One statistic, reduced over a scan's slices, read on one side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateComponent {
    /// The per-slice statistic.
    pub statistic: Statistic,
    /// How the scan's slices are reduced.
    pub aggregation: Aggregation,
    /// Which tail is evidence.
    pub side: Side,
}

/// The gate's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateConfig {
    /// Target rate of healthy in-distribution scans wrongly rejected as OOD.
    pub alpha: f64,
    /// Target rate of healthy in-distribution scans wrongly flagged as lesional.
    pub lesion_alpha: f64,
    /// Global-shift components (any one suffices).
    pub shift: Vec<GateComponent>,
    /// Local-anomaly components (all must agree).
    pub lesion: Vec<GateComponent>,
    /// Fraction of the healthy validation scans used to fit the standardisation (the rest
    /// calibrates the thresholds).
    pub fit_fraction: f64,
    /// Seed of the fit/calibration split.
    pub seed: u64,
    /// What the gate is meant to achieve on a run's test sets: the criteria the report judges
    /// it by, written into the config before the results are seen.
    pub goals: GateGoals,
}

/// The gate's goals, judged per run at scan level (docs/method.md 6). Rates are fractions of
/// scans; FPR ratios are multiples of the pixel threshold's target FPR.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateGoals {
    /// At least this share of all in-distribution test scans (healthy and lesional) accepted.
    pub id_acceptance: f64,
    /// At least this share of the lesional in-distribution test scans accepted.
    pub lesional_acceptance: f64,
    /// At least this share of the accepted lesional in-distribution scans flagged "lesion
    /// suspected" ...
    pub lesion_sensitivity: f64,
    /// ... while at most this share of the accepted healthy in-distribution scans is.
    pub healthy_flag_rate: f64,
    /// The scan-level lesion score separates lesional from healthy in-distribution scans with
    /// at least this AUROC.
    pub lesion_auroc: f64,
    /// A test set whose healthy-pixel FPR without the gate exceeds this multiple of the target
    /// is a harmful shift ...
    pub harmful_fpr_ratio: f64,
    /// ... and at least this share of its scans must be rejected.
    pub harmful_rejection: f64,
    /// On the scans the gate accepts, every set's healthy-pixel FPR is at most this multiple
    /// of the target.
    pub accepted_fpr_ratio: f64,
}

impl Default for GateGoals {
    fn default() -> Self {
        Self {
            id_acceptance: 0.95,
            lesional_acceptance: 0.90,
            lesion_sensitivity: 0.90,
            healthy_flag_rate: 0.10,
            lesion_auroc: 0.95,
            harmful_fpr_ratio: 1.5,
            harmful_rejection: 0.85,
            accepted_fpr_ratio: 1.5,
        }
    }
}

impl Default for GateConfig {
    fn default() -> Self {
        let c = |statistic, aggregation, side| GateComponent {
            statistic,
            aggregation,
            side,
        };
        Self {
            alpha: 0.05,
            lesion_alpha: 0.05,
            shift: vec![
                c(
                    Statistic::ResidualQ95,
                    Aggregation::Quantile(0.25),
                    Side::High,
                ),
                c(
                    Statistic::IntensityIqr,
                    Aggregation::Quantile(0.5),
                    Side::Low,
                ),
            ],
            lesion: vec![c(
                Statistic::ResidualPeak,
                Aggregation::Quantile(0.9),
                Side::High,
            )],
            fit_fraction: 0.5,
            seed: 0,
            goals: GateGoals::default(),
        }
    }
}

/// A per-scan decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Nothing unusual: the (empty) lesion map is reported.
    InDistribution,
    /// A local anomaly on in-distribution input: the lesion map is reported.
    LesionSuspected,
    /// A global shift: the scan is rejected and no lesion map is reported.
    OutOfDistribution,
}

impl Decision {
    /// Whether a lesion map should be reported for this scan.
    pub fn reports_lesion_map(self) -> bool {
        !matches!(self, Decision::OutOfDistribution)
    }

    /// The decision's name, as written in JSON (`in_distribution`, `lesion_suspected`,
    /// `out_of_distribution`).
    pub fn name(self) -> &'static str {
        match self {
            Decision::InDistribution => "in_distribution",
            Decision::LesionSuspected => "lesion_suspected",
            Decision::OutOfDistribution => "out_of_distribution",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Which test a reason belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A global-shift component.
    Shift,
    /// A local-anomaly component.
    Lesion,
}

/// One component's reading on a scan: which statistic, and how far out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// Shift or lesion test.
    pub role: Role,
    /// The component.
    pub component: GateComponent,
    /// The scan's aggregated value.
    pub value: f64,
    /// The healthy median of the aggregated value.
    pub healthy_median: f64,
    /// Robust z: `(value - median) / (1.4826 MAD)`, sign flipped for [`Side::Low`], its
    /// absolute value for [`Side::Both`].
    pub z: f64,
    /// Whether this component alone exceeds its test's threshold.
    pub exceeds: bool,
}

/// The gate's verdict on one scan; serialisable (the CLI writes it as JSON next to each map).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanVerdict {
    /// The scan.
    pub scan: ScanId,
    /// The decision.
    pub decision: Decision,
    /// Whether a lesion map is reported.
    pub lesion_map_reported: bool,
    /// The shift score (largest shift z).
    pub shift_score: f64,
    /// The calibrated shift threshold.
    pub shift_threshold: f64,
    /// The lesion score (smallest lesion z).
    pub lesion_score: f64,
    /// The calibrated lesion threshold.
    pub lesion_threshold: f64,
    /// The target rate of wrongly rejected healthy scans.
    pub alpha: f64,
    /// Number of healthy scans that calibrated the thresholds.
    pub calibration_scans: usize,
    /// Every component's reading, shift components first.
    pub reasons: Vec<Reason>,
}

impl ScanVerdict {
    /// One line that says why: the decision, each score against its threshold, and the
    /// component that sets each score (the largest shift z, the smallest lesion z).
    pub fn summary(&self) -> String {
        let pick = |role: Role, largest: bool| {
            self.reasons
                .iter()
                .filter(|r| r.role == role)
                .reduce(|a, b| {
                    let b_wins = if largest { b.z > a.z } else { b.z < a.z };
                    if b_wins { b } else { a }
                })
                .map_or_else(String::new, |r| {
                    format!(
                        " from {} ({}) = {:.4} against a healthy median of {:.4}",
                        r.component.statistic,
                        r.component.aggregation.label(),
                        r.value,
                        r.healthy_median
                    )
                })
        };
        let decision = match self.decision {
            Decision::InDistribution => "in distribution, no lesion",
            Decision::LesionSuspected => "in distribution, lesion suspected",
            Decision::OutOfDistribution => "out of distribution, no map",
        };
        format!(
            "{decision}: shift z {:.2} (threshold {:.2}){}; lesion z {:.2} (threshold {:.2}){}",
            self.shift_score,
            self.shift_threshold,
            pick(Role::Shift, true),
            self.lesion_score,
            self.lesion_threshold,
            pick(Role::Lesion, false)
        )
    }

    /// Write the verdict as pretty JSON to `path`, atomically (a temporary file in the same
    /// directory, then a rename).
    ///
    /// # Errors
    /// [`OodError::Io`] or [`OodError::Json`], naming `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let io = |source| OodError::Io {
            path: path.to_path_buf(),
            source,
        };
        // Serialise first, so a serialisation error leaves no file and names its own cause.
        let mut json = serde_json::to_vec_pretty(self).map_err(|source| OodError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        json.push(b'\n');
        blindspot_atomic::write_atomic(path, |w| w.write_all(&json)).map_err(io)
    }
}

/// Robust standardisation of one component.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Standardiser {
    median: f64,
    scale: f64,
}

/// A fitted, calibrated gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    config: GateConfig,
    shift: Vec<Standardiser>,
    lesion: Vec<Standardiser>,
    shift_threshold: ConformalThreshold,
    lesion_threshold: ConformalThreshold,
}

impl Gate {
    /// Fit and calibrate on healthy validation slices, split by scan into a fit part and a
    /// calibration part (`config.fit_fraction`, seeded).
    ///
    /// # Errors
    /// As [`Gate::fit`].
    pub fn fit_split(healthy_validation: &[SliceRecord], config: GateConfig) -> Result<Self> {
        if !(config.fit_fraction > 0.0 && config.fit_fraction < 1.0) {
            return Err(OodError::InvalidParameter {
                name: "gate.fit_fraction",
                value: config.fit_fraction.to_string(),
                allowed: "a fraction strictly between 0 and 1",
            });
        }
        let mut scans: Vec<ScanId> = healthy_validation
            .iter()
            .filter(|r| !r.is_empty())
            .map(|r| r.id.scan())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if scans.len() < 4 {
            return Err(OodError::TooFewSamples {
                what: "healthy validation scans for the gate (split into fit and calibration)"
                    .into(),
                needed: 4,
                got: scans.len(),
            });
        }
        scans.shuffle(&mut ChaCha8Rng::seed_from_u64(config.seed));
        let n_fit =
            ((scans.len() as f64 * config.fit_fraction).round() as usize).clamp(2, scans.len() - 2);
        let fit_scans: std::collections::BTreeSet<&ScanId> = scans[..n_fit].iter().collect();
        let (fit, calibration): (Vec<SliceRecord>, Vec<SliceRecord>) = healthy_validation
            .iter()
            .cloned()
            .partition(|r| fit_scans.contains(&r.id.scan()));
        Self::fit(&fit, &calibration, config)
    }

    /// Fit the standardisation on `fit` and calibrate the thresholds on `calibration`, two
    /// disjoint sets of healthy validation scans.
    ///
    /// # Errors
    /// [`OodError::InvalidParameter`] for bad rates or empty component lists,
    /// [`OodError::TooFewSamples`] when a part has fewer than 2 scans or the calibration part
    /// is too small for `alpha` (at least `ceil(1/alpha) - 1` scans),
    /// [`OodError::Degenerate`] when a component does not vary over the fit scans, and
    /// [`OodError::MissingStatistic`] when a scan has no value of a component.
    pub fn fit(
        fit: &[SliceRecord],
        calibration: &[SliceRecord],
        config: GateConfig,
    ) -> Result<Self> {
        for (name, v) in [
            ("gate.alpha", config.alpha),
            ("gate.lesion_alpha", config.lesion_alpha),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(OodError::InvalidParameter {
                    name,
                    value: v.to_string(),
                    allowed: "a rate strictly between 0 and 1",
                });
            }
        }
        for (name, list) in [
            ("gate.shift", &config.shift),
            ("gate.lesion", &config.lesion),
        ] {
            if list.is_empty() {
                return Err(OodError::InvalidParameter {
                    name,
                    value: "[]".into(),
                    allowed: "at least one component",
                });
            }
        }
        let fit_scans = group(fit);
        let cal_scans = group(calibration);
        if let Some(scan) = fit_scans.keys().find(|s| cal_scans.contains_key(*s)) {
            return Err(OodError::InvalidParameter {
                name: "calibration",
                value: format!("scan {scan} is also in the fit set"),
                allowed: "calibration scans disjoint from the fit scans (split-conformal)",
            });
        }
        for (what, n) in [("fit", fit_scans.len()), ("calibration", cal_scans.len())] {
            if n < 2 {
                return Err(OodError::TooFewSamples {
                    what: format!("gate {what} scans"),
                    needed: 2,
                    got: n,
                });
            }
        }
        let fit_part = |components: &[GateComponent]| -> Result<Vec<Standardiser>> {
            components
                .iter()
                .map(|c| {
                    let values = fit_scans
                        .iter()
                        .map(|(scan, recs)| aggregate(scan, recs, c))
                        .collect::<Result<Vec<f64>>>()?;
                    standardiser(c, values)
                })
                .collect()
        };
        let shift = fit_part(&config.shift)?;
        let lesion = fit_part(&config.lesion)?;
        let mut shift_scores = Vec::with_capacity(cal_scans.len());
        let mut lesion_scores = Vec::with_capacity(cal_scans.len());
        for (scan, recs) in &cal_scans {
            let (s, l, _) = raw_scores(scan, recs, &config, &shift, &lesion)?;
            shift_scores.push(s);
            lesion_scores.push(l);
        }
        let calibrate = |scores: &[f64], alpha: f64| -> Result<ConformalThreshold> {
            let t = ConformalThreshold::calibrate(scores, alpha)?;
            if t.threshold.is_none() {
                return Err(OodError::TooFewSamples {
                    what: format!("gate calibration scans for a rate of {alpha}"),
                    needed: ((1.0 / alpha).ceil() as usize).saturating_sub(1),
                    got: scores.len(),
                });
            }
            Ok(t)
        };
        let shift_threshold = calibrate(&shift_scores, config.alpha)?;
        let lesion_threshold = calibrate(&lesion_scores, config.lesion_alpha)?;
        Ok(Self {
            config,
            shift,
            lesion,
            shift_threshold,
            lesion_threshold,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// The calibrated shift (OOD rejection) threshold.
    pub fn shift_threshold(&self) -> &ConformalThreshold {
        &self.shift_threshold
    }

    /// The calibrated lesion threshold.
    pub fn lesion_threshold(&self) -> &ConformalThreshold {
        &self.lesion_threshold
    }

    /// The verdict on one scan from its slice records.
    ///
    /// # Errors
    /// [`OodError::TooFewSamples`] for no records, [`OodError::InvalidParameter`] when the
    /// records belong to more than one scan, [`OodError::MissingStatistic`] when no slice has
    /// a component's statistic.
    pub fn decide(&self, scan_records: &[SliceRecord]) -> Result<ScanVerdict> {
        let first = scan_records
            .first()
            .ok_or_else(|| OodError::TooFewSamples {
                what: "slices of the scan to decide on".into(),
                needed: 1,
                got: 0,
            })?;
        let scan = first.id.scan();
        if let Some(other) = scan_records.iter().find(|r| r.id.scan() != scan) {
            return Err(OodError::InvalidParameter {
                name: "scan_records",
                value: format!("slices of {scan} and of {}", other.id.scan()),
                allowed: "the slices of one scan (use decide_all for several)",
            });
        }
        let recs: Vec<&SliceRecord> = scan_records.iter().filter(|r| !r.is_empty()).collect();
        if recs.is_empty() {
            return Err(OodError::TooFewSamples {
                what: format!("non-empty slices of scan {scan}"),
                needed: 1,
                got: 0,
            });
        }
        let (shift_score, lesion_score, mut reasons) =
            raw_scores(&scan, &recs, &self.config, &self.shift, &self.lesion)?;
        let shift_t = self.shift_threshold.threshold.unwrap_or(f64::INFINITY);
        let lesion_t = self.lesion_threshold.threshold.unwrap_or(f64::INFINITY);
        for r in &mut reasons {
            r.exceeds = match r.role {
                Role::Shift => r.z > shift_t,
                Role::Lesion => r.z > lesion_t,
            };
        }
        let decision = if self.shift_threshold.rejects(shift_score) {
            Decision::OutOfDistribution
        } else if self.lesion_threshold.rejects(lesion_score) {
            Decision::LesionSuspected
        } else {
            Decision::InDistribution
        };
        Ok(ScanVerdict {
            scan,
            decision,
            lesion_map_reported: decision.reports_lesion_map(),
            shift_score,
            shift_threshold: shift_t,
            lesion_score,
            lesion_threshold: lesion_t,
            alpha: self.config.alpha,
            calibration_scans: self.shift_threshold.n,
            reasons,
        })
    }

    /// Verdicts on every scan of `records` (grouped by scan, in scan order).
    ///
    /// # Errors
    /// As [`Gate::decide`].
    pub fn decide_all(&self, records: &[SliceRecord]) -> Result<Vec<ScanVerdict>> {
        group(records)
            .into_values()
            .map(|recs| {
                let owned: Vec<SliceRecord> = recs.into_iter().cloned().collect();
                self.decide(&owned)
            })
            .collect()
    }
}

/// Non-empty slices grouped by scan (scans with no brain at all are left out).
fn group(records: &[SliceRecord]) -> BTreeMap<ScanId, Vec<&SliceRecord>> {
    let mut m: BTreeMap<ScanId, Vec<&SliceRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.is_empty()) {
        m.entry(r.id.scan()).or_default().push(r);
    }
    m
}

fn aggregate(scan: &ScanId, recs: &[&SliceRecord], c: &GateComponent) -> Result<f64> {
    let values: Vec<f64> = recs
        .iter()
        .filter_map(|r| r.values.get(&c.statistic).copied())
        .collect();
    if values.is_empty() {
        return Err(match recs.first() {
            Some(r) => OodError::MissingStatistic {
                id: r.id.clone(),
                statistic: c.statistic,
            },
            None => OodError::TooFewSamples {
                what: format!("non-empty slices of scan {scan}"),
                needed: 1,
                got: 0,
            },
        });
    }
    c.aggregation.apply(&values)
}

fn standardiser(c: &GateComponent, mut values: Vec<f64>) -> Result<Standardiser> {
    values.sort_by(f64::total_cmp);
    let median = quantile_sorted(&values, 0.5);
    let mut dev: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mut scale = 1.4826 * quantile_sorted(&dev, 0.5);
    if scale <= 0.0 {
        // More than half the scans share one value: fall back to the standard deviation.
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        scale = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>()
            / (values.len() - 1) as f64)
            .sqrt();
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return Err(OodError::Degenerate {
            what: format!("gate component {} ({:?})", c.statistic, c.aggregation),
            reason: format!("takes the value {median} on every fit scan"),
        });
    }
    Ok(Standardiser { median, scale })
}

/// (shift score, lesion score, reasons with `exceeds` unset).
fn raw_scores(
    scan: &ScanId,
    recs: &[&SliceRecord],
    config: &GateConfig,
    shift: &[Standardiser],
    lesion: &[Standardiser],
) -> Result<(f64, f64, Vec<Reason>)> {
    let mut reasons = Vec::with_capacity(shift.len() + lesion.len());
    let mut read = |role, comps: &[GateComponent], stds: &[Standardiser]| -> Result<Vec<f64>> {
        comps
            .iter()
            .zip(stds)
            .map(|(c, s)| {
                let value = aggregate(scan, recs, c)?;
                let z = match c.side {
                    Side::High => (value - s.median) / s.scale,
                    Side::Low => (s.median - value) / s.scale,
                    Side::Both => (value - s.median).abs() / s.scale,
                };
                reasons.push(Reason {
                    role,
                    component: *c,
                    value,
                    healthy_median: s.median,
                    z,
                    exceeds: false,
                });
                Ok(z)
            })
            .collect()
    };
    let shift_z = read(Role::Shift, &config.shift, shift)?;
    let lesion_z = read(Role::Lesion, &config.lesion, lesion)?;
    let shift_score = shift_z.into_iter().fold(f64::NEG_INFINITY, f64::max);
    let lesion_score = lesion_z.into_iter().fold(f64::INFINITY, f64::min);
    Ok((shift_score, lesion_score, reasons))
}
