//! [`Shard`]: one of `n` parts of a step (`prepare`, `train`, `evaluate --shard i/n`), each
//! owning every `n`-th item.

use crate::error::{Result, RunError};

/// One part of a job split over `count` processes (`--shard index/count`): this process takes
/// the datasets (`prepare`) or ensemble members (`train`) whose position modulo `count` is
/// `index`. Shards share one run directory, so their outputs merge there; `evaluate` then
/// reads them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// The number of shards, at least 1.
    pub count: usize,
}

impl Shard {
    /// The whole job in one process.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether item `i` belongs to this shard.
    pub fn owns(self, i: usize) -> bool {
        i % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = RunError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || RunError::Unsupported {
            key: "--shard".into(),
            value: format!("{text:?}"),
            allowed: "`i/n` with 0 <= i < n, for example 0/2 and 1/2",
        };
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_partition_items() {
        let s: Shard = "1/3".parse().unwrap();
        assert_eq!(s, Shard { index: 1, count: 3 });
        let owned: Vec<usize> = (0..7).filter(|&i| s.owns(i)).collect();
        assert_eq!(owned, [1, 4]);
        assert!((0..5).all(|i| Shard::ALL.owns(i)));
        for bad in ["3/3", "0/0", "1", "a/2", "-1/2", ""] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.is_config(), "{bad}");
            assert!(err.to_string().contains("--shard"), "{err}");
        }
    }
}
