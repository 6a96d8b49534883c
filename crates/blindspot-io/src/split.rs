//! Subject-level train / validation / test splits.
//!
//! Slices of one subject are strongly correlated, so the paper splits by **subject** (90/10,
//! seed 42). [`SplitConfig::split`] sorts the subject ids, shuffles them with a ChaCha8 stream
//! seeded by `seed`, and cuts the shuffled list into `test`, `val` and `train` parts of
//! `round(test * n)`, `round(val * n)` and the remaining subjects. The result depends only on
//! the set of ids, the fractions and the seed (not on the input order), and no subject is in
//! two parts.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{IoError, Result};

/// Split fractions and seed (a TOML `[split]` table). Defaults: the paper's 90 / 10 / 0, seed 42.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Fraction of subjects for training.
    pub train: f64,
    /// Fraction for validation.
    pub val: f64,
    /// Fraction for testing.
    pub test: f64,
    /// Shuffle seed.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self {
            train: 0.9,
            val: 0.1,
            test: 0.0,
            seed: 42,
        }
    }
}

/// Which part a subject belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

/// The subjects of each part, each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split<T> {
    /// Training subjects.
    pub train: Vec<T>,
    /// Validation subjects.
    pub val: Vec<T>,
    /// Test subjects.
    pub test: Vec<T>,
}

impl Part {
    /// The name used in TOML (`train`, `val`, `test`).
    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Val => "val",
            Part::Test => "test",
        }
    }
}

impl<T> Split<T> {
    /// The subjects of one part.
    pub fn part(&self, part: Part) -> &[T] {
        match part {
            Part::Train => &self.train,
            Part::Val => &self.val,
            Part::Test => &self.test,
        }
    }
}

impl SplitConfig {
    /// Validate the fractions: each in `[0, 1]`, summing to 1 (within `1e-6`).
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] naming the key.
    pub fn check(&self) -> Result<()> {
        for (key, v) in [
            ("split.train", self.train),
            ("split.val", self.val),
            ("split.test", self.test),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(IoError::InvalidParameter {
                    key: key.into(),
                    value: v.to_string(),
                    expected: "a fraction from 0 to 1".into(),
                });
            }
        }
        let sum = self.train + self.val + self.test;
        if (sum - 1.0).abs() > 1e-6 {
            return Err(IoError::InvalidParameter {
                key: "split".into(),
                value: format!(
                    "train {} + val {} + test {} = {sum}",
                    self.train, self.val, self.test
                ),
                expected: "fractions that sum to 1".into(),
            });
        }
        Ok(())
    }

    /// Split `items` by subject: `id` gives each item's subject id.
    ///
    /// # Errors
    ///
    /// [`IoError::InvalidParameter`] for bad fractions or when two items share an id.
    pub fn split<T>(&self, items: Vec<T>, id: impl Fn(&T) -> &str) -> Result<Split<T>> {
        self.check()?;
        let mut items = items;
        items.sort_by(|a, b| id(a).cmp(id(b)));
        if let Some(w) = items.windows(2).find(|w| id(&w[0]) == id(&w[1])) {
            return Err(IoError::InvalidParameter {
                key: "subject id".into(),
                value: id(&w[0]).to_owned(),
                expected: "unique subject ids".into(),
            });
        }
        let n = items.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed));
        let n_test = ((self.test * n as f64).round() as usize).min(n);
        let n_val = ((self.val * n as f64).round() as usize).min(n - n_test);
        let mut part = vec![Part::Train; n];
        for &i in &order[..n_test] {
            part[i] = Part::Test;
        }
        for &i in &order[n_test..n_test + n_val] {
            part[i] = Part::Val;
        }
        let mut out = Split {
            train: Vec::new(),
            val: Vec::new(),
            test: Vec::new(),
        };
        for (item, p) in items.into_iter().zip(part) {
            match p {
                Part::Train => out.train.push(item),
                Part::Val => out.val.push(item),
                Part::Test => out.test.push(item),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("sub-{i:03}")).collect()
    }

    fn cfg(train: f64, val: f64, test: f64, seed: u64) -> SplitConfig {
        SplitConfig {
            train,
            val,
            test,
            seed,
        }
    }

    #[test]
    fn sizes_disjoint_and_complete() {
        let s = cfg(0.7, 0.2, 0.1, 7)
            .split(ids(50), |s| s.as_str())
            .unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.test.len()), (35, 10, 5));
        let mut all: Vec<&String> = s.train.iter().chain(&s.val).chain(&s.test).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 50);
        assert!(s.part(Part::Val).windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn deterministic_and_order_independent() {
        let a = cfg(0.8, 0.1, 0.1, 3)
            .split(ids(40), |s| s.as_str())
            .unwrap();
        let mut rev = ids(40);
        rev.reverse();
        let b = cfg(0.8, 0.1, 0.1, 3).split(rev, |s| s.as_str()).unwrap();
        assert_eq!(a, b);
        let c = cfg(0.8, 0.1, 0.1, 4)
            .split(ids(40), |s| s.as_str())
            .unwrap();
        assert_ne!(a.val, c.val, "another seed, another split");
    }

    #[test]
    fn invalid_fractions_and_duplicates() {
        let e = cfg(0.9, 0.2, 0.0, 1)
            .split(ids(3), |s| s.as_str())
            .unwrap_err();
        assert!(e.to_string().contains("sum to 1"), "{e}");
        let e = cfg(1.5, -0.5, 0.0, 1).check().unwrap_err();
        assert!(e.to_string().contains("split.train"), "{e}");
        let e = SplitConfig::default()
            .split(vec!["a".to_string(), "a".to_string()], |s| s.as_str())
            .unwrap_err();
        assert!(e.to_string().contains("unique"), "{e}");
        let e = toml::from_str::<SplitConfig>("trian = 0.5").unwrap_err();
        assert!(e.to_string().contains("trian"), "{e}");
    }

    #[test]
    fn tiny_and_empty_sets() {
        let s = SplitConfig::default()
            .split(ids(1), |s| s.as_str())
            .unwrap();
        assert_eq!((s.train.len(), s.val.len()), (1, 0));
        let s = SplitConfig::default()
            .split(Vec::<String>::new(), |s| s.as_str())
            .unwrap();
        assert!(s.train.is_empty());
    }
}
