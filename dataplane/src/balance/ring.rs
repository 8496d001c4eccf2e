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
}

impl Ring {
    pub fn new(targets: &[Weighted<'_>]) -> Ring {
        let max_weight = targets.iter().map(|t| t.weight.max(1)).max().unwrap_or(1);
        let mut points: Vec<(u64, &str, u32)> = Vec::new();
        for (index, target) in targets.iter().enumerate() {
            let count = (POINTS_PER_MAX_WEIGHT * u64::from(target.weight.max(1)))
                .div_ceil(u64::from(max_weight))
                .max(1);
            points.extend((0..count).map(|i| {
                (
                    hash_bytes(target.address.as_bytes(), i),
                    target.address,
                    index as u32,
                )
            }));
        }
        // Ties (practically never) are broken by address, not by config order.
        points.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        Ring {
            points: points.iter().map(|p| p.0).collect(),
            owners: points.iter().map(|p| p.2).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The owner of `key`'s point, or of the next points clockwise while that one is unusable.
    pub fn pick(&self, candidates: &impl Candidates, key: u64) -> Option<usize> {
        let len = self.points.len();
        if len == 0 {
            return None;
        }
        let start = self.points.partition_point(|&point| point < key);
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
