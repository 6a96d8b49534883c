//! The mergeable accumulator behind every ranking metric, and its sorted form.
//!
//! # Algorithm and exactness
//!
//! [`RankAccumulator`] keeps every score, split by class, as its order-preserving integer key
//! (4 bytes for `f32`, 8 for `f64`; the labels cost nothing because the class is the vector).
//! Merging two accumulators appends their vectors, so partial results over batches, volumes or
//! cluster shards combine **exactly**: the merged accumulator is the one that would have seen
//! all the scores at once, in any order.
//!
//! [`RankAccumulator::finish`] (or [`RankedScores::from_scores`] for scores already in memory)
//! ranks the keys in one of two exact ways, chosen by the data:
//!
//! - **counting**, when there are at most 4,096 distinct scores (maps on a grid, rounded
//!   scores, slice statistics with many ties): one parallel pass counts each distinct key per
//!   class in a small hash table (abandoned after a few 4,096-element blocks once more distinct
//!   keys appear), then only the distinct keys are sorted. No copy of the scores is made.
//! - **radix sort** otherwise: an MSD pass on the top 11-bit digit scatters each class into
//!   2048 buckets (threads write disjoint sub-slices), then every bucket is finished by LSD
//!   passes on the lower digits, buckets in parallel. Digits that every key of a bucket shares
//!   are skipped, and a bucket with a single varying digit is written straight from its
//!   histogram. Integer keys make it exact; no comparison of floats is involved.
//!
//! [`RankedScores::tallies`] then yields the distinct scores in decreasing order with their
//! positive and negative counts (merging the two sorted classes lazily, skipping blocks of
//! equal keys by galloping search). Every metric is one pass over these tallies with integer
//! counts: AUROC is the Mann-Whitney U with midranks for ties, summed in `u128` and divided
//! once; AP, curves and Dice use exact counts at every distinct threshold. No metric is
//! averaged per batch, and the result does not depend on the order of the input, on how it
//! was split into batches or shards, or on the number of threads.
//!
//! Memory: the keys (the size of the scores themselves; no label storage), plus while
//! sorting one scratch buffer of the same size (counting needs none).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{MetricsError, Result};
use crate::score::{Ranking, Score, rank_keys, rank_labelled};

/// Format number written into serialized accumulators.
const FORMAT: u32 = 1;

/// All scores seen so far, split by class, ready to be merged with other partial results.
///
/// Positive means lesional / anomalous / OOD, the class that should score high.
///
/// Serializes (with any serde format) as `{format, positives: [bits], negatives: [bits]}`, the
/// IEEE-754 bit patterns of the scores as unsigned integers (exact in every format, and ±inf
/// survive JSON), so shards from a cluster job array can be written out and merged exactly.
///
/// ```
/// use blindspot_metrics::RankAccumulator;
/// let mut a = RankAccumulator::<f32>::new();
/// a.push(&[0.1, 0.9], &[false, true])?;
/// let mut b = RankAccumulator::<f32>::new();
/// b.push(&[0.4, 0.3], &[true, false])?;
/// a.merge(b);
/// assert_eq!(a.finish().auroc()?, 1.0);
/// # Ok::<(), blindspot_metrics::MetricsError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankAccumulator<S: Score = f64> {
    positives: Vec<S::Key>,
    negatives: Vec<S::Key>,
}

impl<S: Score> Default for RankAccumulator<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Score> RankAccumulator<S> {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self {
            positives: Vec::new(),
            negatives: Vec::new(),
        }
    }

    /// Adds `scores` with their `labels` (`true` = positive).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`] when the lengths differ, [`MetricsError::NanScore`] for
    /// a NaN score. On error nothing from this call is kept.
    pub fn push(&mut self, scores: &[S], labels: &[bool]) -> Result<()> {
        check_len("labels", labels.len(), scores.len())?;
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore { index });
        }
        let p = labels.iter().filter(|&&l| l).count();
        self.positives.reserve(p);
        self.negatives.reserve(labels.len() - p);
        for (&s, &l) in scores.iter().zip(labels) {
            let target = if l {
                &mut self.positives
            } else {
                &mut self.negatives
            };
            target.push(s.to_key());
        }
        Ok(())
    }

    /// Adds the elements of `scores` where `mask` is true (for example the brain pixels of a
    /// slice), with their `labels`.
    ///
    /// # Errors
    /// As [`push`](Self::push), and a length mismatch of `mask`. NaN scores outside the mask
    /// are ignored.
    pub fn push_masked(&mut self, scores: &[S], labels: &[bool], mask: &[bool]) -> Result<()> {
        check_len("labels", labels.len(), scores.len())?;
        check_len("mask", mask.len(), scores.len())?;
        let (np, nn) = (self.positives.len(), self.negatives.len());
        for (i, ((&s, &l), &m)) in scores.iter().zip(labels).zip(mask).enumerate() {
            if !m {
                continue;
            }
            if s.is_nan() {
                self.positives.truncate(np);
                self.negatives.truncate(nn);
                return Err(MetricsError::NanScore { index: i });
            }
            if l {
                self.positives.push(s.to_key());
            } else {
                self.negatives.push(s.to_key());
            }
        }
        Ok(())
    }

    /// Adds scores that all belong to one class.
    ///
    /// # Errors
    /// [`MetricsError::NanScore`]; on error nothing from this call is kept.
    pub fn push_class(&mut self, scores: &[S], positive: bool) -> Result<()> {
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore { index });
        }
        let target = if positive {
            &mut self.positives
        } else {
            &mut self.negatives
        };
        target.extend(scores.iter().map(|s| s.to_key()));
        Ok(())
    }

    /// Appends everything `other` has seen (exact; order does not matter).
    pub fn merge(&mut self, other: Self) {
        self.positives.extend_from_slice(&other.positives);
        self.negatives.extend_from_slice(&other.negatives);
    }

    /// Number of positive scores.
    pub fn positives(&self) -> u64 {
        self.positives.len() as u64
    }

    /// Number of negative scores.
    pub fn negatives(&self) -> u64 {
        self.negatives.len() as u64
    }

    /// Sorts (in parallel on the rayon pool) and returns the form every metric reads.
    pub fn finish(self) -> RankedScores<S> {
        RankedScores {
            n_positives: self.positives(),
            n_negatives: self.negatives(),
            ranking: rank_keys(self.negatives, self.positives),
        }
    }
}

pub(crate) fn check_len(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(MetricsError::LengthMismatch {
            what,
            got,
            expected,
        })
    }
}

#[derive(Serialize)]
#[serde(bound = "")]
struct WireOut<'a, S: Score> {
    format: u32,
    positives: KeysAsScores<'a, S>,
    negatives: KeysAsScores<'a, S>,
}

struct KeysAsScores<'a, S: Score>(&'a [S::Key]);

impl<S: Score> Serialize for KeysAsScores<'_, S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        serializer.collect_seq(self.0.iter().map(|&k| S::from_key(k).to_bits()))
    }
}

#[derive(Deserialize)]
#[serde(bound = "", deny_unknown_fields)]
struct WireIn<S: Score> {
    format: u32,
    positives: Vec<S::Key>,
    negatives: Vec<S::Key>,
}

impl<S: Score> Serialize for RankAccumulator<S> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        WireOut::<S> {
            format: FORMAT,
            positives: KeysAsScores(&self.positives),
            negatives: KeysAsScores(&self.negatives),
        }
        .serialize(serializer)
    }
}

impl<'de, S: Score> Deserialize<'de> for RankAccumulator<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let wire = WireIn::<S>::deserialize(deserializer)?;
        if wire.format != FORMAT {
            return Err(D::Error::custom(MetricsError::Format {
                found: wire.format,
                supported: FORMAT,
            }));
        }
        let scores = |bits: Vec<S::Key>| bits.into_iter().map(S::from_bits).collect::<Vec<S>>();
        let mut acc = Self::new();
        acc.push_class(&scores(wire.positives), true)
            .and_then(|()| acc.push_class(&scores(wire.negatives), false))
            .map_err(D::Error::custom)?;
        Ok(acc)
    }
}

/// One distinct score with how many positives and negatives have exactly that score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tally {
    /// The score (`-0.0` is reported as `+0.0`).
    pub score: f64,
    /// Positives with this score.
    pub positives: u64,
    /// Negatives with this score.
    pub negatives: u64,
}

/// The sorted scores of a [`RankAccumulator`]: every ranking metric is read from here.
///
/// Compute several metrics from one `RankedScores` to sort only once.
#[derive(Debug, Clone)]
pub struct RankedScores<S: Score = f64> {
    ranking: Ranking<S::Key>,
    n_positives: u64,
    n_negatives: u64,
}

/// Points of a ROC curve, in decreasing threshold order, starting at (0, 0).
///
/// Point `i` predicts positive every score `>= thresholds[i]` (scikit-learn's convention); the
/// first point has threshold `+inf` and predicts nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False-positive rates, non-decreasing.
    pub fpr: Vec<f64>,
    /// True-positive rates, non-decreasing.
    pub tpr: Vec<f64>,
    /// Thresholds, decreasing.
    pub thresholds: Vec<f64>,
}

/// Points of a precision-recall curve, in decreasing threshold order.
///
/// Point `i` predicts positive every score `>= thresholds[i]`. The curve has one point per
/// distinct score (none for "predict nothing", where precision is 0/0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrCurve {
    /// Recall (= TPR), non-decreasing.
    pub recall: Vec<f64>,
    /// Precision TP / (TP + FP).
    pub precision: Vec<f64>,
    /// Thresholds, decreasing.
    pub thresholds: Vec<f64>,
}

impl RocCurve {
    /// At most `max_points` points (at least 2) for plotting: points collinear with their
    /// neighbours are dropped first (lossless), then points are kept at even steps of arc
    /// length along the curve; the first and last points are always kept.
    pub fn thinned(&self, max_points: usize) -> RocCurve {
        let keep = thin_indices(&self.fpr, &self.tpr, max_points);
        RocCurve {
            fpr: keep.iter().map(|&i| self.fpr[i]).collect(),
            tpr: keep.iter().map(|&i| self.tpr[i]).collect(),
            thresholds: keep.iter().map(|&i| self.thresholds[i]).collect(),
        }
    }
}

impl PrCurve {
    /// At most `max_points` points (at least 2) for plotting, as [`RocCurve::thinned`].
    pub fn thinned(&self, max_points: usize) -> PrCurve {
        let keep = thin_indices(&self.recall, &self.precision, max_points);
        PrCurve {
            recall: keep.iter().map(|&i| self.recall[i]).collect(),
            precision: keep.iter().map(|&i| self.precision[i]).collect(),
            thresholds: keep.iter().map(|&i| self.thresholds[i]).collect(),
        }
    }
}

/// Indices of the points of the polyline (x, y) to keep: see [`RocCurve::thinned`].
fn thin_indices(x: &[f64], y: &[f64], max_points: usize) -> Vec<usize> {
    let n = x.len();
    let max_points = max_points.max(2);
    if n <= 2 {
        return (0..n).collect();
    }
    // 1. Drop interior points on the straight line through their neighbours.
    let mut keep = vec![0];
    for i in 1..n - 1 {
        let (dx1, dy1) = (x[i] - x[i - 1], y[i] - y[i - 1]);
        let (dx2, dy2) = (x[i + 1] - x[i], y[i + 1] - y[i]);
        if dx1 * dy2 - dy1 * dx2 != 0.0 {
            keep.push(i);
        }
    }
    keep.push(n - 1);
    if keep.len() <= max_points {
        return keep;
    }
    // 2. Even steps of arc length.
    let mut arc = vec![0.0];
    for w in keep.windows(2) {
        let (a, b) = (w[0], w[1]);
        let last = *arc.last().expect("arc starts with 0");
        arc.push(last + (x[b] - x[a]).hypot(y[b] - y[a]));
    }
    let total = *arc.last().expect("at least two points");
    let mut out = vec![keep[0]];
    let mut j = 1;
    for k in 1..max_points - 1 {
        let target = total * k as f64 / (max_points - 1) as f64;
        while j < keep.len() - 1 && arc[j] < target {
            j += 1;
        }
        if keep[j] != *out.last().expect("starts with the first point") && j < keep.len() - 1 {
            out.push(keep[j]);
        }
    }
    out.push(keep[keep.len() - 1]);
    out
}

/// The best Dice over all thresholds and where it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BestDice {
    /// The largest Dice any threshold reaches.
    pub dice: f64,
    /// A threshold reaching it with the paper's rule `score > threshold` (the largest value of
    /// the score type below the lowest predicted score, so the prediction is exact; when that
    /// score is `-inf` no `>` threshold includes it and this is `-inf`).
    pub threshold: f64,
}

/// A threshold chosen on healthy (negative) scores for a target false-positive rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FprThreshold {
    /// The smallest threshold `t` with `#{negatives > t} / #negatives <= target`; it is one
    /// of the scores.
    pub threshold: f64,
    /// The false-positive rate it reaches on the negatives, `<= target`.
    pub fpr: f64,
}

impl<S: Score> RankedScores<S> {
    /// Ranks `scores` with their `labels` (`true` = positive) in one go: the fastest path when
    /// all scores are in memory (no intermediate copy; use a [`RankAccumulator`] to collect
    /// batches or shards).
    ///
    /// # Errors
    /// [`MetricsError::LengthMismatch`], [`MetricsError::NanScore`].
    pub fn from_scores(scores: &[S], labels: &[bool]) -> Result<Self> {
        check_len("labels", labels.len(), scores.len())?;
        if let Some(index) = scores.iter().position(|s| s.is_nan()) {
            return Err(MetricsError::NanScore { index });
        }
        let n_positives = labels.iter().filter(|&&l| l).count() as u64;
        Ok(Self {
            ranking: rank_labelled(scores, labels),
            n_positives,
            n_negatives: labels.len() as u64 - n_positives,
        })
    }

    /// Number of positive scores.
    pub fn positives(&self) -> u64 {
        self.n_positives
    }

    /// Number of negative scores.
    pub fn negatives(&self) -> u64 {
        self.n_negatives
    }

    /// The distinct scores in decreasing order, each with its class counts.
    pub fn tallies(&self) -> Tallies<'_, S> {
        Tallies {
            inner: match &self.ranking {
                Ranking::Sorted {
                    negatives,
                    positives,
                } => TalliesInner::Sorted {
                    positives,
                    negatives,
                },
                Ranking::Counted { keys, counts } => TalliesInner::Counted { keys, counts },
            },
        }
    }

    fn need_both(&self, metric: &'static str) -> Result<(u64, u64)> {
        let (p, n) = (self.positives(), self.negatives());
        if p == 0 && n == 0 {
            return Err(MetricsError::Empty { metric });
        }
        if p == 0 || n == 0 {
            return Err(MetricsError::SingleClass {
                metric,
                positives: p,
                negatives: n,
            });
        }
        Ok((p, n))
    }

    /// Area under the ROC curve: the probability that a random positive scores above a random
    /// negative, ties counted one half (Mann-Whitney U with midranks). Equals scikit-learn's
    /// `roc_auc_score` (trapezoidal area over all distinct thresholds).
    ///
    /// # Errors
    /// [`MetricsError::Empty`] or [`MetricsError::SingleClass`] unless both classes occur.
    pub fn auroc(&self) -> Result<f64> {
        let (p, n) = self.need_both("auroc")?;
        let mut negatives_above = 0u64;
        let mut twice_u: u128 = 0;
        for t in self.tallies() {
            let below = n - negatives_above - t.negatives;
            twice_u += u128::from(t.positives) * u128::from(2 * below + t.negatives);
            negatives_above += t.negatives;
        }
        Ok(twice_u as f64 / (2.0 * p as f64 * n as f64))
    }

    /// Average precision, the step definition of scikit-learn's `average_precision_score`:
    /// `AP = sum_k (R_k - R_{k-1}) P_k` over the distinct thresholds in decreasing order.
    ///
    /// With positives only, AP is 1 (every threshold has precision 1).
    ///
    /// # Errors
    /// [`MetricsError::Empty`]; [`MetricsError::SingleClass`] when there is no positive.
    pub fn average_precision(&self) -> Result<f64> {
        let (p, n) = (self.positives(), self.negatives());
        if p == 0 {
            return Err(if n == 0 {
                MetricsError::Empty {
                    metric: "average_precision",
                }
            } else {
                MetricsError::SingleClass {
                    metric: "average_precision",
                    positives: p,
                    negatives: n,
                }
            });
        }
        let (mut tp, mut fp) = (0u64, 0u64);
        let mut ap = 0.0;
        for t in self.tallies() {
            tp += t.positives;
            fp += t.negatives;
            if t.positives > 0 {
                ap += (t.positives as f64 / p as f64) * (tp as f64 / (tp + fp) as f64);
            }
        }
        Ok(ap)
    }

    /// The ROC curve at every distinct threshold (use [`RocCurve::thinned`] for plots).
    ///
    /// # Errors
    /// As [`auroc`](Self::auroc).
    pub fn roc_curve(&self) -> Result<RocCurve> {
        let (p, n) = self.need_both("roc_curve")?;
        let mut curve = RocCurve {
            fpr: vec![0.0],
            tpr: vec![0.0],
            thresholds: vec![f64::INFINITY],
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for t in self.tallies() {
            tp += t.positives;
            fp += t.negatives;
            curve.fpr.push(fp as f64 / n as f64);
            curve.tpr.push(tp as f64 / p as f64);
            curve.thresholds.push(t.score);
        }
        Ok(curve)
    }

    /// The precision-recall curve at every distinct threshold (use [`PrCurve::thinned`]).
    ///
    /// # Errors
    /// As [`average_precision`](Self::average_precision).
    pub fn pr_curve(&self) -> Result<PrCurve> {
        let p = self.positives();
        if p == 0 {
            self.need_both("pr_curve")?;
        }
        let mut curve = PrCurve {
            recall: Vec::new(),
            precision: Vec::new(),
            thresholds: Vec::new(),
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for t in self.tallies() {
            tp += t.positives;
            fp += t.negatives;
            curve.recall.push(tp as f64 / p as f64);
            curve.precision.push(tp as f64 / (tp + fp) as f64);
            curve.thresholds.push(t.score);
        }
        Ok(curve)
    }

    /// False-positive rate at the first operating point (decreasing threshold) whose TPR is at
    /// least `tpr`, i.e. the lowest FPR any threshold reaches with that sensitivity. The usual
    /// OOD figure is `fpr_at_tpr(0.95)`.
    ///
    /// # Errors
    /// [`MetricsError::InvalidParameter`] unless `0 < tpr <= 1`; otherwise as
    /// [`auroc`](Self::auroc).
    pub fn fpr_at_tpr(&self, tpr: f64) -> Result<f64> {
        if !(tpr > 0.0 && tpr <= 1.0) {
            return Err(MetricsError::invalid("tpr", tpr, "0 < tpr <= 1"));
        }
        let (p, n) = self.need_both("fpr_at_tpr")?;
        let (mut tp, mut fp) = (0u64, 0u64);
        for t in self.tallies() {
            tp += t.positives;
            fp += t.negatives;
            if tp as f64 / p as f64 >= tpr {
                return Ok(fp as f64 / n as f64);
            }
        }
        // tp == p at the last tally and tpr <= 1, so the loop has returned.
        Ok(1.0)
    }

    /// The best Dice over all thresholds, treating every scored element as a pixel and the
    /// positives as the ground truth: an exact sweep over the distinct scores, pooled over
    /// everything pushed (Dice = 2 TP / (2 TP + FP + FN)).
    ///
    /// # Errors
    /// [`MetricsError::Empty`], or [`MetricsError::SingleClass`] when there is no positive
    /// (Dice is then 0/0 or 0 at every threshold).
    pub fn best_dice(&self) -> Result<BestDice> {
        let (p, n) = (self.positives(), self.negatives());
        if p == 0 {
            return Err(if n == 0 {
                MetricsError::Empty {
                    metric: "best_dice",
                }
            } else {
                MetricsError::SingleClass {
                    metric: "best_dice",
                    positives: p,
                    negatives: n,
                }
            });
        }
        let mut best = BestDice {
            dice: 0.0,
            threshold: f64::INFINITY,
        };
        let (mut tp, mut fp) = (0u64, 0u64);
        for t in self.tallies() {
            tp += t.positives;
            fp += t.negatives;
            let dice = 2.0 * tp as f64 / (tp + fp + p) as f64;
            if dice > best.dice {
                best.dice = dice;
                best.threshold = S::from_f64(t.score).below().to_f64();
            }
        }
        Ok(best)
    }

    /// The smallest threshold whose false-positive rate on the **negatives** is at most
    /// `target_fpr`, with the paper's rule `score > threshold`. Push only healthy-data scores
    /// (or ignore the positives: they do not enter). Exact: an order statistic, not a search.
    ///
    /// # Errors
    /// [`MetricsError::InvalidParameter`] unless `0 <= target_fpr < 1`;
    /// [`MetricsError::Empty`] when there is no negative.
    pub fn threshold_for_fpr(&self, target_fpr: f64) -> Result<FprThreshold> {
        if !(0.0..1.0).contains(&target_fpr) {
            return Err(MetricsError::invalid(
                "target_fpr",
                target_fpr,
                "0 <= target_fpr < 1",
            ));
        }
        let n = self.negatives();
        if n == 0 {
            return Err(MetricsError::Empty {
                metric: "threshold_for_fpr",
            });
        }
        // Allowed false positives: the largest k with k / n <= target, as the caller will check
        // it (floor(target * n) alone can be one short: 0.29 * 100 = 28.999...).
        let fits = |k: u64| k as f64 / n as f64 <= target_fpr;
        let mut allowed = (target_fpr * n as f64).floor() as u64;
        while allowed < n && fits(allowed + 1) {
            allowed += 1;
        }
        while allowed > 0 && !fits(allowed) {
            allowed -= 1;
        }
        let mut above = 0u64;
        let mut found = FprThreshold {
            threshold: f64::INFINITY,
            fpr: 0.0,
        };
        for t in self.tallies().filter(|t| t.negatives > 0) {
            if above > allowed {
                break;
            }
            found = FprThreshold {
                threshold: t.score,
                fpr: above as f64 / n as f64,
            };
            above += t.negatives;
        }
        Ok(found)
    }
}

/// Iterator over the distinct scores of a [`RankedScores`], highest first.
#[derive(Debug)]
pub struct Tallies<'a, S: Score> {
    inner: TalliesInner<'a, S::Key>,
}

/// Keys (ascending) not yet visited; consumed from the back.
#[derive(Debug)]
enum TalliesInner<'a, K> {
    Sorted {
        positives: &'a [K],
        negatives: &'a [K],
    },
    Counted {
        keys: &'a [K],
        counts: &'a [[u64; 2]],
    },
}

/// Number of trailing elements of the ascending `run` equal to `key` (all are `<= key`).
fn trailing_equal<K: Ord + Copy>(run: &[K], key: K) -> usize {
    let len = run.len();
    if len == 0 || run[len - 1] != key {
        return 0;
    }
    // Gallop backwards: the equal block is [len - hi, len) for some hi, found in O(log) steps.
    let mut lo = 1; // run[len - lo] == key
    let mut hi = 2;
    while hi <= len && run[len - hi] == key {
        lo = hi;
        hi *= 2;
    }
    let hi = hi.min(len + 1);
    // The block starts in (len - hi, len - lo]; find the first index equal to key.
    let window = &run[len + 1 - hi..len + 1 - lo];
    let start = len + 1 - hi + window.partition_point(|&x| x < key);
    len - start
}

impl<S: Score> Iterator for Tallies<'_, S> {
    type Item = Tally;

    fn next(&mut self) -> Option<Tally> {
        match &mut self.inner {
            TalliesInner::Sorted {
                positives,
                negatives,
            } => {
                let top = match (positives.last(), negatives.last()) {
                    (Some(&p), Some(&n)) => p.max(n),
                    (Some(&p), None) => p,
                    (None, Some(&n)) => n,
                    (None, None) => return None,
                };
                let p = trailing_equal(positives, top);
                let n = trailing_equal(negatives, top);
                *positives = &positives[..positives.len() - p];
                *negatives = &negatives[..negatives.len() - n];
                Some(Tally {
                    score: S::from_key(top).to_f64(),
                    positives: p as u64,
                    negatives: n as u64,
                })
            }
            TalliesInner::Counted { keys, counts } => {
                let (&key, rest) = keys.split_last()?;
                let (&[n, p], rest_counts) = counts.split_last()?;
                *keys = rest;
                *counts = rest_counts;
                Some(Tally {
                    score: S::from_key(key).to_f64(),
                    positives: p,
                    negatives: n,
                })
            }
        }
    }
}

fn ranked(scores: &[f64], labels: &[bool]) -> Result<RankedScores<f64>> {
    RankedScores::from_scores(scores, labels)
}

/// AUROC of `scores` against `labels` (`true` = positive): see [`RankedScores::auroc`].
///
/// ```
/// let auroc = blindspot_metrics::auroc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])?;
/// assert_eq!(auroc, 0.75);
/// # Ok::<(), blindspot_metrics::MetricsError>(())
/// ```
///
/// # Errors
/// Length mismatch, NaN, one class only, empty input.
pub fn auroc(scores: &[f64], labels: &[bool]) -> Result<f64> {
    ranked(scores, labels)?.auroc()
}

/// Average precision (step definition): see [`RankedScores::average_precision`].
///
/// # Errors
/// Length mismatch, NaN, no positive, empty input.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Result<f64> {
    ranked(scores, labels)?.average_precision()
}

/// FPR at the first operating point reaching TPR `tpr` (0.95 for FPR95): see
/// [`RankedScores::fpr_at_tpr`].
///
/// # Errors
/// Length mismatch, NaN, one class only, empty input, `tpr` outside (0, 1].
pub fn fpr_at_tpr(scores: &[f64], labels: &[bool], tpr: f64) -> Result<f64> {
    ranked(scores, labels)?.fpr_at_tpr(tpr)
}

/// The ROC curve: see [`RankedScores::roc_curve`].
///
/// # Errors
/// As [`auroc`].
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Result<RocCurve> {
    ranked(scores, labels)?.roc_curve()
}

/// The precision-recall curve: see [`RankedScores::pr_curve`].
///
/// # Errors
/// As [`average_precision`].
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Result<PrCurve> {
    ranked(scores, labels)?.pr_curve()
}

/// The best Dice over all thresholds of `scores` against the ground truth `truth`, pooled over
/// all elements: see [`RankedScores::best_dice`].
///
/// # Errors
/// Length mismatch, NaN, empty input, no true element.
pub fn best_dice(scores: &[f64], truth: &[bool]) -> Result<BestDice> {
    ranked(scores, truth)?.best_dice()
}

/// The smallest threshold with at most `target_fpr` of the `healthy` scores above it: see
/// [`RankedScores::threshold_for_fpr`].
///
/// # Errors
/// NaN, empty input, `target_fpr` outside [0, 1).
pub fn threshold_for_fpr(healthy: &[f64], target_fpr: f64) -> Result<FprThreshold> {
    let mut acc = RankAccumulator::<f64>::new();
    acc.push_class(healthy, false)?;
    acc.finish().threshold_for_fpr(target_fpr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_equal_counts_blocks() {
        let run = [1, 2, 2, 3, 3, 3, 3, 3];
        assert_eq!(trailing_equal(&run, 3), 5);
        assert_eq!(trailing_equal(&run[..3], 2), 2);
        assert_eq!(trailing_equal(&run[..1], 1), 1);
        assert_eq!(trailing_equal(&run, 4), 0);
        let all = [7u32; 37];
        assert_eq!(trailing_equal(&all, 7), 37);
        let mut long = vec![0u32; 10];
        long.extend([5; 100]);
        assert_eq!(trailing_equal(&long, 5), 100);
    }

    #[test]
    fn hand_computed_auroc_and_ap() {
        // Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs: (0.35>0.1) (0.35<0.4) (0.8>both):
        // U = 3 of 4.
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        assert_eq!(auroc(&s, &l).unwrap(), 0.75);
        // Descending: 0.8(P) P=1/1 R=.5; 0.4(N); 0.35(P) P=2/3 R=1 -> AP = .5*1 + .5*2/3.
        let ap = average_precision(&s, &l).unwrap();
        assert!((ap - (0.5 + 1.0 / 3.0)).abs() < 1e-15);
        // Ties: one positive and one negative at 0.5 count one half.
        assert_eq!(auroc(&[0.5, 0.5], &[true, false]).unwrap(), 0.5);
        assert_eq!(auroc(&[0.5, 0.5, 0.9], &[true, false, true]).unwrap(), 0.75);
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        assert!(matches!(auroc(&[], &[]), Err(MetricsError::Empty { .. })));
        assert!(matches!(
            auroc(&[0.1, 0.2], &[true, true]),
            Err(MetricsError::SingleClass {
                positives: 2,
                negatives: 0,
                ..
            })
        ));
        assert!(matches!(
            auroc(&[0.1, f64::NAN], &[true, false]),
            Err(MetricsError::NanScore { index: 1 })
        ));
        assert!(matches!(
            auroc(&[0.1], &[true, false]),
            Err(MetricsError::LengthMismatch { .. })
        ));
        assert!(matches!(
            average_precision(&[0.1, 0.2], &[false, false]),
            Err(MetricsError::SingleClass { .. })
        ));
        assert_eq!(average_precision(&[0.1, 0.2], &[true, true]).unwrap(), 1.0);
        assert!(matches!(
            fpr_at_tpr(&[0.1, 0.2], &[true, false], 0.0),
            Err(MetricsError::InvalidParameter { name: "tpr", .. })
        ));
    }

    #[test]
    fn nan_push_keeps_nothing() {
        let mut acc = RankAccumulator::<f32>::new();
        acc.push(&[0.5], &[true]).unwrap();
        assert!(
            acc.push(&[0.1, 0.2, f32::NAN], &[true, false, true])
                .is_err()
        );
        assert_eq!((acc.positives(), acc.negatives()), (1, 0));
    }

    #[test]
    fn fpr_at_tpr_hand_case() {
        // Positives 0.9 0.8 0.3 0.2; negatives 0.85 0.5 0.1 0.05.
        let s = [0.9, 0.8, 0.3, 0.2, 0.85, 0.5, 0.1, 0.05];
        let l = [true, true, true, true, false, false, false, false];
        // TPR reaches 0.5 at 0.8 with one negative (0.85) above: FPR 1/4.
        assert_eq!(fpr_at_tpr(&s, &l, 0.5).unwrap(), 0.25);
        // TPR 0.75 at 0.3: negatives above 0.85, 0.5: FPR 2/4.
        assert_eq!(fpr_at_tpr(&s, &l, 0.75).unwrap(), 0.5);
        assert_eq!(fpr_at_tpr(&s, &l, 1.0).unwrap(), 0.5);
    }

    #[test]
    fn curves_and_best_dice_hand_case() {
        let s = [0.9, 0.8, 0.3, 0.85, 0.5];
        let l = [true, true, true, false, false];
        let roc = roc_curve(&s, &l).unwrap();
        assert_eq!(
            roc.thresholds,
            vec![f64::INFINITY, 0.9, 0.85, 0.8, 0.5, 0.3]
        );
        assert_eq!(roc.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0, 1.0]);
        assert_eq!(roc.tpr[3], 2.0 / 3.0);
        let pr = pr_curve(&s, &l).unwrap();
        assert_eq!(pr.precision[2], 2.0 / 3.0);
        // Predict {0.9, 0.85, 0.8}: TP 2, FP 1, P 3 -> 4/6; {0.9}: 2/4; all: 6/8 = 0.75 best.
        let mut acc = RankAccumulator::<f64>::new();
        acc.push(&s, &l).unwrap();
        let best = acc.finish().best_dice().unwrap();
        assert_eq!(best.dice, 0.75);
        assert_eq!(best.threshold, 0.3f64.next_down());
    }

    #[test]
    fn threshold_for_fpr_is_the_order_statistic() {
        let healthy: Vec<f64> = (1..=20).map(f64::from).collect();
        // 5 % of 20 = 1 allowed above: t = 19 (only 20 is > 19).
        let t = threshold_for_fpr(&healthy, 0.05).unwrap();
        assert_eq!((t.threshold, t.fpr), (19.0, 0.05));
        // 0 allowed: t = 20.
        assert_eq!(threshold_for_fpr(&healthy, 0.0).unwrap().threshold, 20.0);
        // 0.07 * 20 = 1.4 -> 1 allowed.
        assert_eq!(threshold_for_fpr(&healthy, 0.07).unwrap().threshold, 19.0);
        // Ties: [1, 2, 2, 2]: 25 % allows one above -> t = 2 gives 0 above; t = 1 gives 3.
        let t = threshold_for_fpr(&[1.0, 2.0, 2.0, 2.0], 0.25).unwrap();
        assert_eq!((t.threshold, t.fpr), (2.0, 0.0));
        assert!(threshold_for_fpr(&healthy, 1.0).is_err());
        // 0.29 * 100 is 28.999... in floating point; 29 of 100 above is still allowed.
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        let t = threshold_for_fpr(&hundred, 0.29).unwrap();
        assert_eq!((t.threshold, t.fpr), (71.0, 0.29));
    }

    #[test]
    fn serde_round_trip_is_exact() {
        let mut acc = RankAccumulator::<f32>::new();
        acc.push(
            &[0.1, -0.0, 3.5e-8, f32::INFINITY],
            &[true, false, true, false],
        )
        .unwrap();
        let json = serde_json::to_string(&acc).unwrap();
        let back: RankAccumulator<f32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, acc);
        let bad = r#"{"format":9,"positives":[],"negatives":[]}"#;
        let err = serde_json::from_str::<RankAccumulator<f32>>(bad).unwrap_err();
        assert!(err.to_string().contains("format 9"), "{err}");
    }

    #[test]
    fn thinning_keeps_shape_and_ends() {
        // Staircase ROC of 1,001 points: collinear runs collapse, then arc-length thinning.
        let n = 1000;
        let s: Vec<f64> = (0..n).map(f64::from).collect();
        let l: Vec<bool> = (0..n).map(|i| (i * 7919) % 13 < 6).collect();
        let roc = roc_curve(&s, &l).unwrap();
        assert_eq!(roc.fpr.len(), 1001);
        let thin = roc.thinned(50);
        assert!(
            thin.fpr.len() <= 50 && thin.fpr.len() >= 10,
            "{}",
            thin.fpr.len()
        );
        assert_eq!((thin.fpr[0], thin.tpr[0]), (0.0, 0.0));
        assert_eq!(
            (*thin.fpr.last().unwrap(), *thin.tpr.last().unwrap()),
            (1.0, 1.0)
        );
        assert!(thin.fpr.windows(2).all(|w| w[0] <= w[1]));
        assert!(thin.thresholds.windows(2).all(|w| w[0] > w[1]));
        // A straight diagonal (alternating labels on distinct scores is not straight, but
        // a curve with all points collinear is): only the ends remain.
        let line = thin_indices(&[0.0, 0.25, 0.5, 1.0], &[0.0, 0.25, 0.5, 1.0], 10);
        assert_eq!(line, vec![0, 3]);
        // Collinear points dropped, corners kept.
        let corner = thin_indices(&[0.0, 0.0, 0.0, 0.5, 1.0], &[0.0, 0.5, 1.0, 1.0, 1.0], 10);
        assert_eq!(corner, vec![0, 2, 4]);
        let pr = pr_curve(&s, &l).unwrap().thinned(20);
        assert!(pr.recall.len() <= 20);
        assert_eq!(*pr.recall.last().unwrap(), 1.0);
    }
}
