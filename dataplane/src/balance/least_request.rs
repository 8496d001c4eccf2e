//! Least request by the power of two random choices, weighted.
//!
//! Two targets are drawn by weight; the one with fewer requests in flight per unit of weight
//! wins (the first on a tie, so idle targets share traffic exactly by weight). Comparing two
//! random targets rather than all avoids sending every new request to the same momentarily idle
//! target, and costs the same at 3 targets as at 1,000.
//!
//! The in-flight counts live in the targets' carried state, not here: they survive table swaps.

use super::Candidates;
use super::random::AliasTable;

/// Rounds of two draws before scanning every target for the least loaded.
const ROUNDS: usize = 2;

#[derive(Debug, Clone)]
pub struct LeastRequest {
    table: AliasTable,
    weights: Box<[u32]>,
}

impl LeastRequest {
    pub fn new(weights: &[u32]) -> LeastRequest {
        LeastRequest {
            table: AliasTable::new(weights),
            weights: weights.iter().map(|&w| w.max(1)).collect(),
        }
    }

    pub fn pick(&self, candidates: &impl Candidates) -> Option<usize> {
        let count = candidates.len().min(self.weights.len());
        if count == 0 {
            return None;
        }
        let usable = |i: usize| i < count && candidates.usable(i);
        for _ in 0..ROUNDS {
            let a = self.table.sample(fastrand::u64(..));
            let b = self.table.sample(fastrand::u64(..));
            match (usable(a), usable(b)) {
                (true, true) => return Some(self.lighter(candidates, a, b)),
                (true, false) => return Some(a),
                (false, true) => return Some(b),
                (false, false) => {}
            }
        }
        // Most targets are unusable: the least loaded of those left.
        (0..count)
            .filter(|&i| candidates.usable(i))
            .reduce(|a, b| self.lighter(candidates, a, b))
    }

    /// Of `a` and `b`, the one with fewer requests in flight per unit of weight; `a` on a tie.
    fn lighter(&self, candidates: &impl Candidates, a: usize, b: usize) -> usize {
        let load_a = u128::from(candidates.in_flight(a)) * u128::from(self.weights[b]);
        let load_b = u128::from(candidates.in_flight(b)) * u128::from(self.weights[a]);
        if load_b < load_a { b } else { a }
    }
}
