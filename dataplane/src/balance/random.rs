//! Weighted random picks in constant time: Vose's alias table, built once per config.
//!
//! A sample is one random `u64`: its high half chooses a column, its low half chooses between
//! the column's own target and its alias. Least request draws its two choices from here too.

use super::{Candidates, reduce};

/// Tries before giving up on random draws and scanning (when most targets are unusable).
const DRAWS: usize = 4;

/// `1 << 32`: a threshold that always keeps the column's own target.
const ALWAYS: u64 = 1 << 32;

#[derive(Debug, Clone)]
pub struct AliasTable {
    /// Out of [`ALWAYS`]: keep the column's own target when the low half is below it.
    threshold: Box<[u64]>,
    alias: Box<[u32]>,
}

impl AliasTable {
    /// `weights` are each at least 1 (0 is treated as 1).
    pub fn new(weights: &[u32]) -> AliasTable {
        let n = weights.len();
        let total: u64 = weights.iter().map(|&w| u64::from(w.max(1))).sum();
        // Each scaled weight is compared with `total`, the average of the scaled weights.
        let mut scaled: Vec<u64> = weights
            .iter()
            .map(|&w| u64::from(w.max(1)) * n as u64)
            .collect();
        let mut threshold = vec![ALWAYS; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < total);
        while let (Some(s), Some(&l)) = (small.pop(), large.last()) {
            threshold[s] = ((u128::from(scaled[s]) << 32) / u128::from(total)) as u64;
            alias[s] = l as u32;
            scaled[l] -= total - scaled[s];
            if scaled[l] < total {
                large.pop();
                small.push(l);
            }
        }
        // Whatever remains is (up to rounding) exactly average: it keeps its own column.
        AliasTable {
            threshold: threshold.into_boxed_slice(),
            alias: alias.into_boxed_slice(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.alias.is_empty()
    }

    /// A target index drawn by weight from one random value.
    pub fn sample(&self, random: u64) -> usize {
        let column = reduce(random, self.alias.len());
        if (random & 0xffff_ffff) < self.threshold[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

#[derive(Debug, Clone)]
pub struct WeightedRandom {
    table: AliasTable,
}

impl WeightedRandom {
    pub fn new(weights: &[u32]) -> WeightedRandom {
        WeightedRandom {
            table: AliasTable::new(weights),
        }
    }

    pub fn pick(&self, candidates: &impl Candidates) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        (0..DRAWS)
            .map(|_| self.table.sample(fastrand::u64(..)))
            .find(|&index| index < candidates.len() && candidates.usable(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact probabilities of the table, summed over every column, out of `n << 32`.
    fn shares(table: &AliasTable) -> Vec<u128> {
        let n = table.alias.len();
        let mut shares = vec![0u128; n];
        for column in 0..n {
            let own = u128::from(table.threshold[column]);
            shares[column] += own;
            shares[table.alias[column] as usize] += u128::from(ALWAYS) - own;
        }
        shares
    }

    #[test]
    fn table_probabilities_match_the_weights() {
        for weights in [
            vec![1, 1, 1],
            vec![5, 1, 1],
            vec![10_000, 1, 9_999],
            vec![3],
            (1..=100).collect(),
        ] {
            let table = AliasTable::new(&weights);
            let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
            let scale = (weights.len() as u128) << 32;
            for (share, &weight) in shares(&table).iter().zip(&weights) {
                let want = scale * u128::from(weight) / u128::from(total);
                assert!(share.abs_diff(want) <= weights.len() as u128, "{weights:?}");
            }
        }
    }
}
