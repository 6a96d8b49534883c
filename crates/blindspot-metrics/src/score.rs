//! Score types (`f32`, `f64`) and their order-preserving integer sort keys.
//!
//! A finite or infinite float maps to an unsigned integer of the same width whose unsigned order
//! is the float order: flip every bit of a negative float, flip only the sign bit of a positive
//! one. `-0.0` is first turned into `+0.0` so that the two zeros tie, as they compare equal.
//! NaN never reaches this mapping (it is rejected where scores enter).

use serde::Serialize;
use serde::de::DeserializeOwned;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// The sort key of a score: an unsigned integer sorted by LSD radix sort in 11-bit digits.
///
/// Sealed: implemented for `u32` (keys of `f32`) and `u64` (keys of `f64`).
pub trait ScoreKey:
    sealed::Sealed + Copy + Ord + Send + Sync + Default + std::fmt::Debug + Serialize + DeserializeOwned
{
    /// Number of 11-bit digits (the last one may be narrower).
    #[doc(hidden)]
    const DIGITS: usize;
    /// Digit `d` (0 = least significant) as an index below 2048.
    #[doc(hidden)]
    fn digit(self, d: usize) -> usize;
    /// This key with digit `d` replaced by `v` (`v < 2048`).
    #[doc(hidden)]
    fn with_digit(self, d: usize, v: usize) -> Self;
    /// The key widened to 64 bits (for hashing).
    #[doc(hidden)]
    fn to_u64(self) -> u64;
}

impl ScoreKey for u32 {
    const DIGITS: usize = 3;
    #[inline(always)]
    fn digit(self, d: usize) -> usize {
        ((self >> (11 * d)) & 0x7ff) as usize
    }
    #[inline(always)]
    fn with_digit(self, d: usize, v: usize) -> u32 {
        (self & !(0x7ff << (11 * d))) | ((v as u32) << (11 * d))
    }
    #[inline(always)]
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
}

impl ScoreKey for u64 {
    const DIGITS: usize = 6;
    #[inline(always)]
    fn digit(self, d: usize) -> usize {
        ((self >> (11 * d)) & 0x7ff) as usize
    }
    #[inline(always)]
    fn with_digit(self, d: usize, v: usize) -> u64 {
        (self & !(0x7ff << (11 * d))) | ((v as u64) << (11 * d))
    }
    #[inline(always)]
    fn to_u64(self) -> u64 {
        self
    }
}

/// A score type the metrics accept: `f32` (anomaly maps, half the memory) or `f64`.
///
/// Sealed: implemented for `f32` and `f64` only. All results are computed in `f64`.
pub trait Score:
    sealed::Sealed
    + Copy
    + PartialOrd
    + Send
    + Sync
    + Default
    + std::fmt::Debug
    + Serialize
    + DeserializeOwned
    + 'static
{
    /// The integer sort key.
    type Key: ScoreKey;
    /// Whether this score is NaN.
    fn is_nan(self) -> bool;
    /// The sort key (the score must not be NaN; `-0.0` and `+0.0` give the same key).
    fn to_key(self) -> Self::Key;
    /// The score a key came from (`-0.0` comes back as `+0.0`).
    fn from_key(key: Self::Key) -> Self;
    /// The score as `f64` (exact).
    fn to_f64(self) -> f64;
    /// An `f64` as this type (exact for values that came from this type).
    fn from_f64(x: f64) -> Self;
    /// The IEEE-754 bit pattern (the serialized form: exact, and ±inf survive JSON).
    fn to_bits(self) -> Self::Key;
    /// The score with this IEEE-754 bit pattern.
    fn from_bits(bits: Self::Key) -> Self;
    /// The largest value of this type below `self` (`-inf` stays `-inf`).
    fn below(self) -> Self;
}

impl Score for f32 {
    type Key = u32;
    #[inline(always)]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn to_key(self) -> u32 {
        let bits = (self + 0.0).to_bits(); // -0.0 + 0.0 == +0.0
        if bits >> 31 == 1 {
            !bits
        } else {
            bits | 0x8000_0000
        }
    }
    #[inline(always)]
    fn from_key(key: u32) -> f32 {
        if key >> 31 == 1 {
            f32::from_bits(key & 0x7fff_ffff)
        } else {
            f32::from_bits(!key)
        }
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> f32 {
        x as f32
    }
    fn to_bits(self) -> u32 {
        self.to_bits()
    }
    fn from_bits(bits: u32) -> f32 {
        f32::from_bits(bits)
    }
    fn below(self) -> f32 {
        self.next_down()
    }
}

impl Score for f64 {
    type Key = u64;
    #[inline(always)]
    fn is_nan(self) -> bool {
        self.is_nan()
    }
    #[inline(always)]
    fn to_key(self) -> u64 {
        let bits = (self + 0.0).to_bits();
        if bits >> 63 == 1 {
            !bits
        } else {
            bits | 0x8000_0000_0000_0000
        }
    }
    #[inline(always)]
    fn from_key(key: u64) -> f64 {
        if key >> 63 == 1 {
            f64::from_bits(key & 0x7fff_ffff_ffff_ffff)
        } else {
            f64::from_bits(!key)
        }
    }
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(x: f64) -> f64 {
        x
    }
    fn to_bits(self) -> u64 {
        self.to_bits()
    }
    fn from_bits(bits: u64) -> f64 {
        f64::from_bits(bits)
    }
    fn below(self) -> f64 {
        self.next_down()
    }
}

/// Below this length a bucket is sorted by comparison sort (the radix histograms cost more).
const RADIX_MIN: usize = 256;
/// Below this length the whole sort runs on the calling thread.
const PARALLEL_MIN: usize = 1 << 15;
/// Number of buckets of an 11-bit digit.
const BUCKETS: usize = 2048;

/// Sorts `src` by its digits `0..digits` (all higher digits being equal, or already sorted by
/// the caller) with an LSD radix sort and leaves the result in `dst`; `src` is scratch. Digits
/// that every key shares are skipped, so scores rounded to a grid need one pass or none.
fn lsd_into<K: ScoreKey>(src: &mut [K], dst: &mut [K], digits: usize) {
    let n = src.len();
    debug_assert_eq!(n, dst.len());
    if n < RADIX_MIN {
        src.sort_unstable();
        dst.copy_from_slice(src);
        return;
    }
    let mut counts = vec![0usize; digits * BUCKETS];
    for &k in src.iter() {
        for d in 0..digits {
            counts[d * BUCKETS + k.digit(d)] += 1;
        }
    }
    // Digits on which the keys differ. With at most one, the keys are fully known from its
    // histogram (the others equal those of any key): write them out in order, no scatter.
    // This is the common case of scores on a grid (rounded maps) and of many ties.
    let varying: Vec<usize> = (0..digits)
        .filter(|&d| !counts[d * BUCKETS..(d + 1) * BUCKETS].contains(&n))
        .collect();
    match varying[..] {
        [] => {
            dst.fill(src[0]);
            return;
        }
        [d] => {
            let base = src[0];
            let mut start = 0;
            for (v, &c) in counts[d * BUCKETS..(d + 1) * BUCKETS].iter().enumerate() {
                if c > 0 {
                    dst[start..start + c].fill(base.with_digit(d, v));
                    start += c;
                }
            }
            return;
        }
        _ => {}
    }
    let mut in_src = true; // where the current order lives
    for d in 0..digits {
        let hist = &mut counts[d * BUCKETS..(d + 1) * BUCKETS];
        if hist.contains(&n) {
            continue; // every key has the same digit d: this pass would not move anything
        }
        let mut sum = 0;
        for c in hist.iter_mut() {
            let here = *c;
            *c = sum;
            sum += here;
        }
        let (from, to): (&[K], &mut [K]) = if in_src {
            (&*src, &mut *dst)
        } else {
            (&*dst, &mut *src)
        };
        for &k in from {
            let slot = &mut hist[k.digit(d)];
            to[*slot] = k;
            *slot += 1;
        }
        in_src = !in_src;
    }
    if in_src {
        dst.copy_from_slice(src);
    }
}

/// Where the keys to sort come from: one class of stored keys, or scores with labels.
trait Source<K>: Sync {
    fn len(&self) -> usize;
    /// Calls `f(class, key)` for the elements in `range`, class 0 = negative, 1 = positive.
    fn visit(&self, range: std::ops::Range<usize>, f: impl FnMut(usize, K));
}

/// Keys of one class (reported as class 0).
struct Keys<'a, K>(&'a [K]);

impl<K: ScoreKey> Source<K> for Keys<'_, K> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn visit(&self, range: std::ops::Range<usize>, mut f: impl FnMut(usize, K)) {
        for &k in &self.0[range] {
            f(0, k);
        }
    }
}

/// Scores (NaN already rejected) with their labels.
struct Labelled<'a, S>(&'a [S], &'a [bool]);

impl<S: Score> Source<S::Key> for Labelled<'_, S> {
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline]
    fn visit(&self, range: std::ops::Range<usize>, mut f: impl FnMut(usize, S::Key)) {
        for (&s, &l) in self.0[range.clone()].iter().zip(&self.1[range]) {
            f(usize::from(l), s.to_key());
        }
    }
}

/// Stored keys of both classes: indices `0..negatives.len()` are the negatives, the rest the
/// positives.
struct Classes<'a, K>(&'a [K], &'a [K]);

impl<K: ScoreKey> Source<K> for Classes<'_, K> {
    fn len(&self) -> usize {
        self.0.len() + self.1.len()
    }
    #[inline]
    fn visit(&self, range: std::ops::Range<usize>, mut f: impl FnMut(usize, K)) {
        let split = self.0.len();
        for &k in &self.0[range.start.min(split)..range.end.min(split)] {
            f(0, k);
        }
        for &k in &self.1[range.start.max(split) - split..range.end.max(split) - split] {
            f(1, k);
        }
    }
}

/// The sorted form of the scores of both classes.
#[derive(Debug, Clone)]
pub(crate) enum Ranking<K> {
    /// The keys of each class, ascending.
    Sorted {
        negatives: Vec<K>,
        positives: Vec<K>,
    },
    /// Few distinct keys: each of them ascending, with its [negative, positive] counts.
    Counted { keys: Vec<K>, counts: Vec<[u64; 2]> },
}

/// Most distinct keys the counting path handles; beyond it the keys are radix sorted.
const DISTINCT_MAX: usize = 4096;
/// Elements visited between two checks of the distinct count.
const COUNT_BLOCK: usize = 4096;
/// Slots of the counting hash table (load factor at most 1/2).
const TABLE_BITS: u32 = 14;

/// An open-addressing hash table from key to [negative, positive] counts; a slot is free
/// while both its counts are 0. One slot (key and counts) per probe keeps it to one cache line.
struct CountTable<K> {
    slots: Vec<(K, [u64; 2])>,
    len: usize,
    /// The slot of the last key added (runs of equal scores skip the hashing).
    last: Option<(K, usize)>,
}

impl<K: ScoreKey> CountTable<K> {
    fn new() -> Self {
        Self {
            slots: vec![(K::default(), [0; 2]); 1 << TABLE_BITS],
            len: 0,
            last: None,
        }
    }

    /// Adds `count > 0` elements of `class` with this key.
    #[inline]
    fn add(&mut self, key: K, class: usize, count: u64) {
        if let Some((k, i)) = self.last
            && k == key
        {
            self.slots[i].1[class] += count;
            return;
        }
        let mask = (1 << TABLE_BITS) - 1;
        let mut i =
            (key.to_u64().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - TABLE_BITS)) as usize;
        loop {
            let slot = &mut self.slots[i];
            if slot.1 == [0, 0] {
                *slot = (key, [0, 0]);
                slot.1[class] = count;
                self.len += 1;
                break;
            }
            if slot.0 == key {
                slot.1[class] += count;
                break;
            }
            i = (i + 1) & mask;
        }
        self.last = Some((key, i));
    }

    fn merge(mut self, other: Self) -> Option<Self> {
        for &(key, counts) in other.slots.iter().filter(|s| s.1 != [0, 0]) {
            for (c, &n) in counts.iter().enumerate().filter(|(_, n)| **n > 0) {
                self.add(key, c, n);
            }
            if self.len > DISTINCT_MAX {
                return None;
            }
        }
        Some(self)
    }
}

/// Exact counts per distinct key when there are at most [`DISTINCT_MAX`] of them (scores on a
/// grid, many ties), else `None` after a few blocks. One parallel pass, no sort of the input.
fn count_distinct<K: ScoreKey>(src: &impl Source<K>) -> Option<(Vec<K>, Vec<[u64; 2]>)> {
    use rayon::prelude::*;
    let n = src.len();
    let threads = if n < PARALLEL_MIN {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    let chunk_len = n.div_ceil(threads).max(1);
    let table = (0..n)
        .step_by(chunk_len)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|start| {
            let mut t = CountTable::new();
            let end = (start + chunk_len).min(n);
            for a in (start..end).step_by(COUNT_BLOCK) {
                src.visit(a..(a + COUNT_BLOCK).min(end), |c, k| t.add(k, c, 1));
                if t.len > DISTINCT_MAX {
                    return None;
                }
            }
            Some(t)
        })
        .reduce(
            || Some(CountTable::new()),
            |a, b| a.zip(b).and_then(|(a, b)| a.merge(b)),
        )?;
    let mut entries: Vec<(K, [u64; 2])> =
        table.slots.into_iter().filter(|s| s.1 != [0, 0]).collect();
    entries.sort_unstable_by_key(|e| e.0);
    Some(entries.into_iter().unzip())
}

/// Ranks scores with labels: exact counting when there are few distinct scores, else a radix
/// sort of each class ([`sort_labelled`]). NaN must have been rejected.
pub(crate) fn rank_labelled<S: Score>(scores: &[S], labels: &[bool]) -> Ranking<S::Key> {
    match count_distinct(&Labelled(scores, labels)) {
        Some((keys, counts)) => Ranking::Counted { keys, counts },
        None => {
            let [negatives, positives] = sort_labelled(scores, labels);
            Ranking::Sorted {
                negatives,
                positives,
            }
        }
    }
}

/// Ranks stored keys of both classes: counting when few are distinct, else radix sorts in
/// place.
pub(crate) fn rank_keys<K: ScoreKey>(mut negatives: Vec<K>, mut positives: Vec<K>) -> Ranking<K> {
    match count_distinct(&Classes(&negatives, &positives)) {
        Some((keys, counts)) => Ranking::Counted { keys, counts },
        None => {
            rayon::join(|| sort_keys(&mut negatives), || sort_keys(&mut positives));
            Ranking::Sorted {
                negatives,
                positives,
            }
        }
    }
}

/// The MSD pass: histograms of the top digit per chunk and class, then every chunk scatters
/// its keys into its own sub-slice of each bucket of its class's scratch buffer (chunks in
/// parallel, no shared writes). Returns the scratch buffers and the bucket sizes per class.
fn msd_scatter<K: ScoreKey>(src: &impl Source<K>) -> [(Vec<K>, Vec<usize>); 2] {
    use rayon::prelude::*;
    let n = src.len();
    let top = K::DIGITS - 1;
    let threads = if n < PARALLEL_MIN {
        1
    } else {
        rayon::current_num_threads().max(1)
    };
    let chunk_len = n.div_ceil(threads).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..n)
        .step_by(chunk_len)
        .map(|a| a..(a + chunk_len).min(n))
        .collect();
    let hists: Vec<Vec<usize>> = ranges
        .par_iter()
        .map(|r| {
            let mut h = vec![0usize; 2 * BUCKETS];
            src.visit(r.clone(), |c, k| h[c * BUCKETS + k.digit(top)] += 1);
            h
        })
        .collect();
    let mut totals = [vec![0usize; BUCKETS], vec![0usize; BUCKETS]];
    for h in &hists {
        for c in 0..2 {
            for (t, x) in totals[c].iter_mut().zip(&h[c * BUCKETS..(c + 1) * BUCKETS]) {
                *t += x;
            }
        }
    }
    let mut scratch: [Vec<K>; 2] = [0, 1].map(|c| vec![K::default(); totals[c].iter().sum()]);
    // slots[chunk][c * BUCKETS + b]: chunk's part of bucket b of class c.
    let mut slots: Vec<Vec<&mut [K]>> = hists
        .iter()
        .map(|_| Vec::with_capacity(2 * BUCKETS))
        .collect();
    for (c, buf) in scratch.iter_mut().enumerate() {
        let mut rest: &mut [K] = buf;
        for b in 0..BUCKETS {
            for (chunk, h) in hists.iter().enumerate() {
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(h[c * BUCKETS + b]);
                slots[chunk].push(head);
                rest = tail;
            }
        }
    }
    ranges
        .into_par_iter()
        .zip(slots.into_par_iter())
        .for_each(|(r, mut slots)| {
            let mut pos = vec![0usize; 2 * BUCKETS];
            src.visit(r, |c, k| {
                let b = c * BUCKETS + k.digit(top);
                slots[b][pos[b]] = k;
                pos[b] += 1;
            });
        });
    let [t0, t1] = totals;
    let [s0, s1] = scratch;
    [(s0, t0), (s1, t1)]
}

/// Finishes every bucket of `scratch` into the same range of `out` by [`lsd_into`] on the
/// lower digits, buckets in parallel.
fn finish_buckets<K: ScoreKey>(scratch: &mut [K], out: &mut [K], totals: &[usize]) {
    use rayon::prelude::*;
    let mut pairs = Vec::new();
    let (mut src_rest, mut dst_rest): (&mut [K], &mut [K]) = (scratch, out);
    for &t in totals.iter().filter(|&&t| t > 0) {
        let (src, s_tail) = std::mem::take(&mut src_rest).split_at_mut(t);
        let (dst, d_tail) = std::mem::take(&mut dst_rest).split_at_mut(t);
        pairs.push((src, dst));
        src_rest = s_tail;
        dst_rest = d_tail;
    }
    pairs
        .into_par_iter()
        .for_each(|(src, dst)| lsd_into(src, dst, K::DIGITS - 1));
}

/// Sorts `keys` ascending in place: an MSD pass on the top 11-bit digit scatters the keys into
/// 2048 buckets of a scratch buffer (in parallel, each thread writing its own sub-slice of
/// every bucket), then every bucket is finished back into `keys` by [`lsd_into`] on the lower
/// digits, buckets in parallel on the rayon pool. Within a bucket (one sign, a few exponents)
/// the low digits of rounded scores are constant and skipped. Extra memory: one scratch buffer
/// of `keys.len()`.
fn sort_keys<K: ScoreKey>(keys: &mut [K]) {
    let [(mut scratch, totals), _] = msd_scatter(&Keys(&*keys));
    finish_buckets(&mut scratch, keys, &totals);
}

/// The sorted keys of the negatives and of the positives, straight from scores and labels
/// (NaN must have been rejected): one histogram pass and one scatter pass over the input,
/// then one pass per bucket, with no intermediate copy of the keys.
fn sort_labelled<S: Score>(scores: &[S], labels: &[bool]) -> [Vec<S::Key>; 2] {
    debug_assert_eq!(scores.len(), labels.len());
    msd_scatter(&Labelled(scores, labels)).map(|(mut scratch, totals)| {
        let mut out = vec![S::Key::default(); scratch.len()];
        finish_buckets(&mut scratch, &mut out, &totals);
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_preserve_order_and_tie_zeros() {
        let xs = [
            f64::NEG_INFINITY,
            -1e300,
            -2.5,
            -f64::MIN_POSITIVE,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1.0,
            1.5,
            f64::INFINITY,
        ];
        for w in xs.windows(2) {
            let (a, b) = (w[0].to_key(), w[1].to_key());
            if w[0] == w[1] {
                assert_eq!(a, b);
            } else {
                assert!(a < b, "{} !< {}", w[0], w[1]);
            }
        }
        for &x in &xs {
            assert_eq!(f64::from_key(x.to_key()), x);
            assert_eq!(f32::from_key((x as f32).to_key()), x as f32);
        }
        assert!(f64::from_key((-0.0f64).to_key()).is_sign_positive());
    }

    #[test]
    fn radix_sort_matches_comparison_sort() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for n in [0, 1, 10, 600, 5000, 70_000] {
            let mut keys: Vec<u64> = (0..n)
                .map(|_| (rng.random::<f64>() * 8.0 - 3.0).to_key())
                .collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            sort_keys(&mut keys);
            assert_eq!(keys, expected);
            let mut keys32: Vec<u32> = (0..n)
                .map(|_| ((rng.random::<f32>() * 256.0).round() / 256.0).to_key())
                .collect();
            let mut expected32 = keys32.clone();
            expected32.sort_unstable();
            sort_keys(&mut keys32);
            assert_eq!(keys32, expected32);
            // Straight from labelled scores: each class sorted.
            let scores: Vec<f32> = keys32.iter().map(|&k| f32::from_key(k)).collect();
            let labels: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
            let [neg, pos] = sort_labelled(&scores, &labels);
            let mut want_pos: Vec<u32> = (0..n)
                .filter(|i| labels[*i])
                .map(|i| scores[i].to_key())
                .collect();
            want_pos.sort_unstable();
            assert_eq!(pos, want_pos);
            assert_eq!(neg.len() + pos.len(), n);
            assert!(neg.windows(2).all(|w| w[0] <= w[1]));
        }
    }

    /// Run-length (key, [negatives, positives]) of a ranking, ascending.
    fn runs<K: ScoreKey>(r: &Ranking<K>) -> Vec<(K, [u64; 2])> {
        match r {
            Ranking::Counted { keys, counts } => {
                keys.iter().copied().zip(counts.iter().copied()).collect()
            }
            Ranking::Sorted {
                negatives,
                positives,
            } => {
                let mut all: Vec<(K, [u64; 2])> = Vec::new();
                for (c, keys) in [(0, negatives), (1, positives)] {
                    for &k in keys.iter() {
                        let mut e = (k, [0, 0]);
                        e.1[c] = 1;
                        all.push(e);
                    }
                }
                all.sort_by_key(|e| e.0);
                let mut out: Vec<(K, [u64; 2])> = Vec::new();
                for (k, c) in all {
                    match out.last_mut() {
                        Some(last) if last.0 == k => {
                            last.1[0] += c[0];
                            last.1[1] += c[1];
                        }
                        _ => out.push((k, c)),
                    }
                }
                out
            }
        }
    }

    #[test]
    fn counting_and_sorting_paths_agree() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        // 3,000 distinct values: counting path; 50,000: sorting path (parallel MSD above
        // PARALLEL_MIN elements).
        for (grid, n) in [(3000.0f32, 60_000), (50_000.0, 60_000), (7.0, 100)] {
            let scores: Vec<f32> = (0..n)
                .map(|_| (rng.random::<f32>() * grid).round() / grid - 0.5)
                .collect();
            let labels: Vec<bool> = (0..n).map(|_| rng.random::<f64>() < 0.3).collect();
            let counted = rank_labelled(&scores, &labels);
            let [negatives, positives] = sort_labelled(&scores, &labels);
            let sorted = Ranking::Sorted {
                negatives,
                positives,
            };
            assert_eq!(runs(&counted), runs(&sorted), "grid {grid}");
            let is_counted = matches!(counted, Ranking::Counted { .. });
            assert_eq!(is_counted, grid < 4000.0, "grid {grid}");
            // The stored-keys path gives the same.
            let neg: Vec<u32> = (0..n)
                .filter(|&i| !labels[i])
                .map(|i| scores[i].to_key())
                .collect();
            let pos: Vec<u32> = (0..n)
                .filter(|&i| labels[i])
                .map(|i| scores[i].to_key())
                .collect();
            assert_eq!(runs(&rank_keys(neg, pos)), runs(&sorted), "grid {grid}");
        }
    }
}
