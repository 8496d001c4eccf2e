//! Smooth weighted round robin, lock-free.
//!
//! A [`Schedule`] is computed once per config (pure, part of the table): the smooth weighted
//! round-robin sequence (nginx's algorithm, so weights 5:1:1 give `a a b a c a a`, not
//! `a a a a a b c`) when it is small, otherwise a cumulative-weight table. Picking a target is
//! one atomic increment of a cursor; when the turn falls on an unusable target, the next usable
//! one in list order takes it.
//!
//! The cursor is shared with the upstream's carried state, so a config change that leaves an
//! upstream alone does not send its traffic back to the first target.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::Candidates;

/// Beyond this many steps × targets the smooth sequence costs too much to precompute.
const MAX_SMOOTH_WORK: u64 = 1 << 18;

/// The order in which an upstream's targets take turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// One full cycle of target indexes.
    Sequence(Box<[u32]>),
    /// Upper bounds of each target's share of `0..total`; spreads by weight, less evenly.
    Cumulative(Box<[u64]>),
}

impl Schedule {
    /// `weights` are each at least 1 (validated); zero weights are treated as 1.
    pub fn new(weights: &[u32]) -> Schedule {
        let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
        let divisor = weights.iter().copied().reduce(gcd).unwrap_or(1);
        let weights: Vec<u64> = weights.iter().map(|w| w / divisor).collect();
        let total: u64 = weights.iter().sum();
        if total.saturating_mul(weights.len() as u64) <= MAX_SMOOTH_WORK {
            Schedule::Sequence(smooth_sequence(&weights, total))
        } else {
            let bounds = weights
                .iter()
                .scan(0, |sum, w| {
                    *sum += w;
                    Some(*sum)
                })
                .collect();
            Schedule::Cumulative(bounds)
        }
    }

    /// The target for turn `turn`; `None` only for an upstream without targets.
    pub fn pick(&self, turn: usize) -> Option<usize> {
        match self {
            Schedule::Sequence(sequence) => {
                let len = sequence.len();
                (len > 0).then(|| sequence[turn % len] as usize)
            }
            Schedule::Cumulative(bounds) => {
                let total = *bounds.last()?;
                let point = turn as u64 % total;
                Some(bounds.partition_point(|&bound| bound <= point))
            }
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn smooth_sequence(weights: &[u64], total: u64) -> Box<[u32]> {
    let mut current = vec![0i64; weights.len()];
    let total = total as i64;
    (0..total)
        .map(|_| {
            let mut chosen = 0;
            for (i, &weight) in weights.iter().enumerate() {
                current[i] += weight as i64;
                if current[i] > current[chosen] {
                    chosen = i;
                }
            }
            current[chosen] -= total;
            chosen as u32
        })
        .collect()
}

/// A [`Schedule`] with the cursor of its upstream.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    schedule: Schedule,
    cursor: Arc<AtomicUsize>,
}

impl RoundRobin {
    pub fn new(weights: &[u32]) -> RoundRobin {
        RoundRobin {
            schedule: Schedule::new(weights),
            cursor: Arc::default(),
        }
    }

    /// Index of the next target in turn, usable or not.
    pub fn next(&self) -> Option<usize> {
        self.schedule
            .pick(self.cursor.fetch_add(1, Ordering::Relaxed))
    }

    /// Takes a turn: the cursor's position, advanced.
    pub fn next_turn(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// The target whose turn `turn` is, or the next usable one after it.
    pub fn pick(&self, candidates: &impl Candidates, turn: usize) -> Option<usize> {
        let index = self.schedule.pick(turn)?;
        super::scan(candidates, index)
    }

    pub(super) fn cursor_mut(&mut self) -> &mut Arc<AtomicUsize> {
        &mut self.cursor
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(weights: &[u32], n: usize) -> Vec<usize> {
        let rr = RoundRobin::new(weights);
        (0..n).map(|_| rr.next().unwrap()).collect()
    }

    fn counts(weights: &[u32], n: usize) -> Vec<usize> {
        let mut counts = vec![0; weights.len()];
        for i in picks(weights, n) {
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(picks(&[1, 1, 1], 6), [0, 1, 2, 0, 1, 2]);
        assert_eq!(picks(&[100, 100], 4), [0, 1, 0, 1]);
    }

    #[test]
    fn weights_are_honoured_and_interleaved() {
        assert_eq!(picks(&[5, 1, 1], 7), [0, 0, 1, 0, 2, 0, 0]);
        assert_eq!(counts(&[3, 1], 400), [300, 100]);
        assert_eq!(counts(&[10_000, 1, 9_999], 20_000), [10_000, 1, 9_999]);
    }

    #[test]
    fn large_weight_sets_use_cumulative_bounds_and_stay_exact() {
        let weights: Vec<u32> = (1..=200).collect();
        let rr = RoundRobin::new(&weights);
        assert!(matches!(rr.schedule(), Schedule::Cumulative(_)));
        let total: u32 = weights.iter().sum();
        let got = counts(&weights, total as usize);
        let want: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn single_target_always_wins() {
        assert_eq!(picks(&[7], 3), [0, 0, 0]);
    }

    #[test]
    fn no_targets_pick_nothing() {
        assert_eq!(RoundRobin::new(&[]).next(), None);
    }
}
