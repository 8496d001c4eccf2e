//! Consistent hashing with a maglev lookup table (Eisenbud et al., NSDI 2016), weighted as in
//! Envoy.
//!
//! The table has a prime number of entries, at least 100 per target (65,537 up to 655 targets,
//! then the next prime past each power of two):
//! each target fills entries along its own permutation (keyed by its address, see
//! [`Permutation`]), taking turns in address order, a lighter target skipping turns in
//! proportion to its weight. A pick is one table lookup. Adding or removing one of N targets changes a little
//! over 1/N of the entries (typically 1.0 to 1.3 times 1/N at 65,537 entries; a ring moves
//! exactly the new target's share, but a pick there is a binary search).
//!
//! A key whose entry holds an unusable target is re-hashed a few times before falling back to a
//! scan, so keys of usable targets never move when another target fails.

use super::{Candidates, Weighted, hash_bytes};

/// The smallest table: the first prime above 2^16, at least 100 entries per target up to 655.
pub const MIN_TABLE_SIZE: u64 = 65_537;
/// Entries per target, at least.
const ENTRIES_PER_TARGET: u64 = 100;
/// Re-hashes of a key whose target is unusable, before the scan.
const REHASHES: u64 = 8;

const PERMUTATION_SEED: u64 = 0x6d61_676c_6576_7065; // "maglevpe"

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
        let mut order: Vec<usize> = (0..targets.len()).collect();
        order.sort_by_key(|&i| targets[i].address);
        let max_weight = u64::from(targets.iter().map(|t| t.weight.max(1)).max().unwrap_or(1));
        struct Filler {
            index: u32,
            permutation: Permutation,
            weight: u64,
            /// Position in its permutation.
            next: u64,
            /// Entries placed so far.
            placed: u64,
        }
        let mut fillers: Vec<Filler> = order
            .iter()
            .map(|&i| Filler {
                index: i as u32,
                permutation: Permutation::new(targets[i].address, size),
                weight: u64::from(targets[i].weight.max(1)),
                next: 0,
                placed: 0,
            })
            .collect();
        let mut table = vec![u32::MAX; size as usize];
        let mut filled = 0u64;
        let mut round = 1u64;
        while filled < size {
            for filler in &mut fillers {
                if filled == size {
                    break;
                }
                // A target of the heaviest weight places one entry per round; one of half that
                // weight every other round.
                if round * filler.weight < filler.placed * max_weight {
                    continue;
                }
                loop {
                    let entry = filler.permutation.at(filler.next) as usize;
                    filler.next += 1;
                    if table[entry] == u32::MAX {
                        table[entry] = filler.index;
                        break;
                    }
                }
                filler.placed += 1;
                filled += 1;
            }
            round += 1;
        }
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

/// A target's order of preference over the table's entries: a keyed bijection of the
/// power-of-two range just above the table size, walked until it lands inside the table (cycle
/// walking keeps it a bijection of `0..size`).
///
/// The paper's `offset + j × skip` permutations are cheaper, but two targets whose skips collide
/// (likely past a few dozen targets: the birthday bound over `size` skips) walk the same cycle
/// and fight over the same entries, so one target more moved up to twice the 1/N of keys.
#[derive(Debug, Clone, Copy)]
struct Permutation {
    size: u64,
    mask: u64,
    shift: u32,
    keys: [u64; 4],
}

impl Permutation {
    fn new(address: &str, size: u64) -> Permutation {
        let bits = u64::BITS - (size - 1).leading_zeros();
        let seed = hash_bytes(address.as_bytes(), PERMUTATION_SEED);
        Permutation {
            size,
            mask: (1 << bits) - 1,
            shift: bits.div_ceil(2),
            keys: [seed, mix(seed, 1) | 1, mix(seed, 2), mix(seed, 3) | 1],
        }
    }

    /// The `j`-th preferred entry.
    fn at(&self, j: u64) -> u64 {
        let mut x = j % self.size;
        loop {
            x = self.round(x);
            if x < self.size {
                return x;
            }
        }
    }

    /// One bijection of `0..=mask`: xor, odd multiply and xor-shift are each invertible.
    fn round(&self, x: u64) -> u64 {
        let mut x = (x ^ self.keys[0]) & self.mask;
        x = x.wrapping_mul(self.keys[1]) & self.mask;
        x ^= x >> self.shift;
        x = (x ^ self.keys[2]).wrapping_mul(self.keys[3]) & self.mask;
        x ^ (x >> self.shift)
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
    let wanted = ENTRIES_PER_TARGET.saturating_mul(targets as u64);
    let mut base = MIN_TABLE_SIZE - 1;
    while base < wanted {
        base *= 2;
    }
    next_prime(base)
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
    }

    #[test]
    fn permutations_visit_every_entry_once() {
        for size in [7, 65_537] {
            let permutation = Permutation::new("10.0.0.1:80", size);
            let mut seen = vec![false; size as usize];
            for j in 0..size {
                let entry = permutation.at(j) as usize;
                assert!(!seen[entry], "entry {entry} twice");
                seen[entry] = true;
            }
        }
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
        assert!((share - 0.75).abs() < 0.01, "{share}");
    }
}
