//! Consistent hashing with a maglev-style lookup table (Eisenbud et al., NSDI 2016): a pick is
//! one lookup in a table of a prime number of entries, at least 100 per target (65,537 up to
//! 655 targets, then the next prime past each power of two, see [`table_size`]).
//!
//! The entries are not filled along per-target permutations as in the paper: that fill moves
//! far more than 1/N of the entries when one of N targets comes or goes once N is large
//! (measured: 1.6 times 1/N at 100 targets and 6.5 times at 1,000 with 100 entries per
//! target, still 2.8 times at 1,000 with 1,000 per target). Instead entry `i` belongs to the
//! owner of the position `i / size` of the way round a ring of weighted points (see
//! [`super::ring`]), so adding a target moves exactly the entries its points take: about 1/N.
//! The ring has more points per target than the ring-hash policy's ([`points_per_max_weight`]),
//! so shares follow weights within a few percent; only its sorted `(hash, target)` pairs are
//! built, walked once and dropped.
//!
//! A key whose entry holds an unusable target is re-hashed a few times before falling back to a
//! scan, so keys of usable targets never move when another target fails.

use super::ring::sorted_points;
use super::{Candidates, Weighted};

/// The smallest table: the first prime above 2^16, at least 100 entries per target up to 655.
pub const MIN_TABLE_SIZE: u64 = 65_537;
/// Entries per target, at least.
const ENTRIES_PER_TARGET: u64 = 100;
/// Re-hashes of a key whose target is unusable, before the scan.
const REHASHES: u64 = 8;
/// Ring points of the heaviest target up to 655 targets: a share is then within about 3% of
/// its weight's (one standard deviation; the ring-hash policy's 160 points give about 8%).
/// Halved at each doubling of the table (see [`points_per_max_weight`]).
pub const POINTS_PER_MAX_WEIGHT: u64 = 1024;
/// The fewest ring points of the heaviest target, however many targets.
const MIN_POINTS_PER_MAX_WEIGHT: u64 = 64;

#[derive(Debug, Clone)]
pub struct Maglev {
    /// Target index of each entry.
    table: Box<[u32]>,
}

impl Maglev {
    pub fn new(targets: &[Weighted<'_>]) -> Maglev {
        if targets.is_empty() {
            return Maglev {
                table: Box::default(),
            };
        }
        let size = table_size(targets.len());
        let points = sorted_points(targets, points_per_max_weight(targets.len()));
        // Entry `i` sits at `i × 2^64 / size` on the ring and belongs to the owner of the first
        // point at or after it (past the last point, the ring wraps to the first).
        let step = u64::MAX / size;
        let mut next = 0;
        let table: Vec<u32> = (0..size)
            .map(|i| {
                let position = i * step;
                while next < points.len() && points[next].0 < position {
                    next += 1;
                }
                points[next % points.len()].1
            })
            .collect();
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    pub fn table_size(&self) -> usize {
        self.table.len()
    }

    /// The target of `key`'s entry, or of a few re-hashes of the key while it is unusable.
    pub fn pick(&self, candidates: &impl Candidates, key: u64) -> Option<usize> {
        let size = self.table.len() as u64;
        if size == 0 {
            return None;
        }
        (0..=REHASHES)
            .map(|attempt| self.table[(mix(key, attempt) % size) as usize] as usize)
            .find(|&target| target < candidates.len() && candidates.usable(target))
    }

    #[cfg(test)]
    pub(super) fn entries(&self) -> &[u32] {
        &self.table
    }
}

/// `key` itself for attempt 0, else a well-mixed function of both (splitmix64's finalizer).
fn mix(key: u64, attempt: u64) -> u64 {
    if attempt == 0 {
        return key;
    }
    let mut z = key.wrapping_add(attempt.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The smallest prime above 65,536 × 2^k with at least 100 entries per target. Sizes come from
/// this ladder, not from `100 × targets` itself: a table of another size shares nothing with
/// the old one, so one target more would move every key.
fn table_size(targets: usize) -> u64 {
    next_prime((MIN_TABLE_SIZE - 1) << doublings(targets))
}

/// [`POINTS_PER_MAX_WEIGHT`], halved at each doubling of the table: past the first step every
/// target has 100 to 200 entries, and points much denser than entries only cost build time
/// (sorting targets × points is what building a table costs). Like the size, the count follows
/// the ladder, never the exact number of targets: were it to, one target more would move every
/// target's points. So keys move more than 1/N only where the size changes anyway.
fn points_per_max_weight(targets: usize) -> u64 {
    (POINTS_PER_MAX_WEIGHT >> doublings(targets)).max(MIN_POINTS_PER_MAX_WEIGHT)
}

/// The step of the ladder `targets` falls on: how many times the smallest table doubles to
/// hold at least 100 entries per target.
fn doublings(targets: usize) -> u32 {
    let wanted = ENTRIES_PER_TARGET.saturating_mul(targets as u64);
    let mut base = MIN_TABLE_SIZE - 1;
    let mut doublings = 0;
    while base < wanted {
        base *= 2;
        doublings += 1;
    }
    doublings
}

/// The smallest prime at or above `n` (trial division: runs once per config).
fn next_prime(n: u64) -> u64 {
    let is_prime = |n: u64| {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    };
    (n..).find(|&n| is_prime(n)).unwrap_or(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_size_is_a_prime_with_at_least_100_entries_per_target() {
        assert_eq!(next_prime(65_537), 65_537);
        assert_eq!(next_prime(100_000), 100_003);
        let addresses: Vec<String> = (0..1000)
            .map(|i| format!("10.0.{}.{}:80", i / 250, i % 250))
            .collect();
        let targets: Vec<Weighted<'_>> = addresses
            .iter()
            .map(|a| Weighted {
                address: a,
                weight: 1,
            })
            .collect();
        assert_eq!(Maglev::new(&targets[..3]).table_size(), 65_537);
        assert_eq!(table_size(655), 65_537);
        assert_eq!(table_size(656), next_prime(131_072));
        assert_eq!(
            Maglev::new(&targets).table_size() as u64,
            next_prime(131_072)
        );
        assert_eq!(
            table_size(1001),
            table_size(1000),
            "one target more keeps the size"
        );
        assert_eq!(points_per_max_weight(655), POINTS_PER_MAX_WEIGHT);
        assert_eq!(points_per_max_weight(1000), POINTS_PER_MAX_WEIGHT / 2);
        assert_eq!(points_per_max_weight(1001), points_per_max_weight(1000));
        assert_eq!(points_per_max_weight(1_000_000), MIN_POINTS_PER_MAX_WEIGHT);
    }

    #[test]
    fn every_entry_is_filled_and_weights_shape_the_shares() {
        let targets = [
            Weighted {
                address: "a:1",
                weight: 3,
            },
            Weighted {
                address: "b:1",
                weight: 1,
            },
        ];
        let maglev = Maglev::new(&targets);
        let mut counts = [0usize; 2];
        for &entry in maglev.entries() {
            counts[entry as usize] += 1;
        }
        assert_eq!(counts[0] + counts[1], 65_537);
        let share = counts[0] as f64 / 65_537.0;
        assert!((share - 0.75).abs() < 0.03, "{share}");
    }
}
