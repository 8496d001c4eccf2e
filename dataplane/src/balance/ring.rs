//! Consistent hashing on a ketama-style ring.
//!
//! Each target owns points on a 64-bit ring, in number proportional to its weight
//! ([`POINTS_PER_MAX_WEIGHT`] for the heaviest); point `i` of a target is the hash of its
//! address seeded with `i`, so a target's points do not depend on the other targets or on
//! their order. A key goes to the owner of the first point at or after its hash. Adding a
//! target with the same weight as the others only adds points, so the only keys that move are
//! those the new target takes: about 1/N of them.
//!
//! A key whose target is unusable walks on clockwise to the next usable owner, which is where it
//! would go if that target were removed.

use super::{Candidates, Weighted, hash_bytes};

/// Points of the heaviest target; 160 as in ketama (load within about ±10% of the weight).
pub const POINTS_PER_MAX_WEIGHT: u64 = 160;

#[derive(Debug, Clone)]
pub struct Ring {
    /// Sorted point hashes.
    points: Box<[u64]>,
    /// The target owning each point.
    owners: Box<[u32]>,
    /// `starts[b]`: the first point whose top `bits` bits are at least `b`, so a key's search
    /// covers only its own bucket (a few points) instead of the whole ring: a binary search
    /// over 160,000 points is a cache miss per step.
    starts: Box<[u32]>,
    bits: u32,
}

/// About this many points per index bucket.
const POINTS_PER_BUCKET: usize = 4;

impl Ring {
    pub fn new(targets: &[Weighted<'_>]) -> Ring {
        let points = sorted_points(targets, POINTS_PER_MAX_WEIGHT);
        let bits = (points.len() / POINTS_PER_BUCKET)
            .max(1)
            .ilog2()
            .clamp(1, 24);
        let hashes: Box<[u64]> = points.iter().map(|p| p.0).collect();
        // One walk: the first point of each bucket is where the previous bucket's points end.
        let mut starts = Vec::with_capacity((1 << bits) + 1);
        let mut next = 0;
        for bucket in 0..(1u64 << bits) {
            while next < hashes.len() && hashes[next] >> (64 - bits) < bucket {
                next += 1;
            }
            starts.push(next as u32);
        }
        starts.push(hashes.len() as u32);
        Ring {
            points: hashes,
            owners: points.iter().map(|p| p.1).collect(),
            starts: starts.into_boxed_slice(),
            bits,
        }
    }

    /// The first point at or after `key` (`len` when there is none: the ring wraps).
    fn first_at_or_after(&self, key: u64) -> usize {
        let bucket = (key >> (64 - self.bits)) as usize;
        let (from, to) = (
            self.starts[bucket] as usize,
            self.starts[bucket + 1] as usize,
        );
        // Points of earlier buckets are below `key`, those of later ones above.
        from + self.points[from..to].partition_point(|&point| point < key)
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    #[cfg(test)]
    fn first_by_search(&self, key: u64) -> usize {
        self.points.partition_point(|&point| point < key)
    }

    /// The owner of `key`'s point, or of the next points clockwise while that one is unusable.
    pub fn pick(&self, candidates: &impl Candidates, key: u64) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let start = self.first_at_or_after(key);
        let mut last = usize::MAX;
        for step in 0..len {
            let owner = self.owners[(start + step) % len] as usize;
            if owner != last {
                if owner < candidates.len() && candidates.usable(owner) {
                    return Some(owner);
                }
                last = owner;
            }
        }
        None
    }
}

/// Every target's points, `(hash, target index)`, sorted round the ring; the heaviest target
/// has `points_per_max_weight`. Pairs of 16 bytes: sorting them is what building a ring costs.
pub(super) fn sorted_points(
    targets: &[Weighted<'_>],
    points_per_max_weight: u64,
) -> Vec<(u64, u32)> {
    let max_weight = targets.iter().map(|t| t.weight.max(1)).max().unwrap_or(1);
    let count = |target: &Weighted<'_>| {
        (points_per_max_weight * u64::from(target.weight.max(1)))
            .div_ceil(u64::from(max_weight))
            .max(1)
    };
    let total: u64 = targets.iter().map(count).sum();
    let mut points = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for (index, target) in targets.iter().enumerate() {
        let address = target.address.as_bytes();
        points.extend((0..count(target)).map(|i| (hash_bytes(address, i), index as u32)));
    }
    // Ties (practically never) are broken by address, not by config order.
    points.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0).then_with(|| {
            targets[a.1 as usize]
                .address
                .cmp(targets[b.1 as usize].address)
        })
    });
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_finds_what_a_whole_search_finds() {
        let addresses: Vec<String> = (0..300)
            .map(|i| format!("10.1.{}.{}:80", i / 250, i % 250))
            .collect();
        for n in [1, 2, 3, 300] {
            let targets: Vec<Weighted<'_>> = addresses[..n]
                .iter()
                .map(|a| Weighted {
                    address: a,
                    weight: 1 + (a.len() % 3) as u32,
                })
                .collect();
            let ring = Ring::new(&targets);
            let mut keys: Vec<u64> = (0..5000u64)
                .map(|k| hash_bytes(&k.to_le_bytes(), 9))
                .collect();
            keys.extend([0, 1, u64::MAX, u64::MAX - 1, 1 << 63]);
            keys.extend(ring.points.iter().copied());
            for key in keys {
                assert_eq!(
                    ring.first_at_or_after(key),
                    ring.first_by_search(key),
                    "key {key}"
                );
            }
        }
    }
}
