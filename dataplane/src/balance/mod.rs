//! Picking one target of an upstream: round robin, weighted random, least request, ring hash and
//! maglev.
//!
//! A [`Balancer`] is built once per config, from the targets' addresses and weights (pure, part
//! of the table). A pick sees the targets through [`Candidates`]: which may take this request now
//! (healthy, not ejected, not already tried by it) and how busy each is. Per-pick cost is a few
//! random numbers or one hash lookup: no allocation and no lock.
//!
//! Invariants:
//! - [`Balancer::pick`] returns `None` only when no candidate is usable, whatever the policy:
//!   after a policy's own bounded tries comes one scan of all targets.
//! - Consistent hashing depends on the targets' addresses and weights, never on their order in
//!   the config, so every data plane sends a key to the same target, and adding or removing one
//!   of N targets moves about 1/N of the keys.
//! - What must outlive a table (the round-robin cursor, requests in flight) is not stored here:
//!   the cursor is adopted from the upstream's carried state, in-flight counts are read through
//!   [`Candidates`].

mod key;
mod least_request;
mod maglev;
mod random;
mod ring;
mod round_robin;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

pub use key::HashKey;
pub use least_request::LeastRequest;
pub use maglev::Maglev;
pub use random::WeightedRandom;
pub use ring::Ring;
pub use round_robin::{RoundRobin, Schedule};

/// The targets as one pick sees them.
pub trait Candidates {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// May the target at `index` take this request?
    fn usable(&self, index: usize) -> bool;
    /// Requests in flight to the target (read by least request only).
    fn in_flight(&self, index: usize) -> u64;
}

/// The configured policy, as the balancer needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    Random,
    LeastRequest,
    RingHash,
    Maglev,
}

impl Policy {
    /// Whether picks depend on a request key.
    pub fn is_hashing(self) -> bool {
        matches!(self, Policy::RingHash | Policy::Maglev)
    }
}

/// Drawn once per pick (see [`Balancer::seed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed {
    key: Option<u64>,
    turn: usize,
}

/// A target as a balancer is built from it.
#[derive(Debug, Clone, Copy)]
pub struct Weighted<'a> {
    pub address: &'a str,
    /// Validated to 1..=10000; 0 is treated as 1.
    pub weight: u32,
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    Random(WeightedRandom),
    LeastRequest(LeastRequest),
    RingHash(Ring),
    Maglev(Maglev),
}

impl Balancer {
    pub fn new(policy: Policy, targets: &[Weighted<'_>]) -> Balancer {
        let weights: Vec<u32> = targets.iter().map(|t| t.weight.max(1)).collect();
        match policy {
            Policy::RoundRobin => Balancer::RoundRobin(RoundRobin::new(&weights)),
            Policy::Random => Balancer::Random(WeightedRandom::new(&weights)),
            Policy::LeastRequest => Balancer::LeastRequest(LeastRequest::new(&weights)),
            Policy::RingHash => Balancer::RingHash(Ring::new(targets)),
            Policy::Maglev => Balancer::Maglev(Maglev::new(targets)),
        }
    }

    pub fn policy(&self) -> Policy {
        match self {
            Balancer::RoundRobin(_) => Policy::RoundRobin,
            Balancer::Random(_) => Policy::Random,
            Balancer::LeastRequest(_) => Policy::LeastRequest,
            Balancer::RingHash(_) => Policy::RingHash,
            Balancer::Maglev(_) => Policy::Maglev,
        }
    }

    /// What one pick draws once, however many passes it makes over the targets (usable ones,
    /// then maybe any in panic mode): the round-robin turn, and the hash key (for hashing
    /// policies a random one when the request has none, so that the passes agree).
    pub fn seed(&self, key: Option<u64>) -> Seed {
        match self {
            Balancer::RoundRobin(rr) => Seed {
                key: None,
                turn: rr.next_turn(),
            },
            Balancer::RingHash(_) | Balancer::Maglev(_) => Seed {
                key: Some(key.unwrap_or_else(|| fastrand::u64(..))),
                turn: 0,
            },
            Balancer::Random(_) | Balancer::LeastRequest(_) => Seed { key: None, turn: 0 },
        }
    }

    /// A usable target's index, or `None` when there is none. `key` is the request's hash for
    /// the consistent-hashing policies; without one they pick at random (by weight).
    pub fn pick(&self, candidates: &impl Candidates, key: Option<u64>) -> Option<usize> {
        self.pick_seeded(candidates, &self.seed(key))
    }

    /// One pass of a pick over the candidates.
    pub fn pick_seeded(&self, candidates: &impl Candidates, seed: &Seed) -> Option<usize> {
        let count = candidates.len();
        if count == 0 {
            return None;
        }
        let key = seed.key.unwrap_or(0);
        let picked = match self {
            Balancer::RoundRobin(rr) => rr.pick(candidates, seed.turn),
            Balancer::Random(random) => random.pick(candidates),
            Balancer::LeastRequest(lr) => lr.pick(candidates),
            Balancer::RingHash(ring) => ring.pick(candidates, key),
            Balancer::Maglev(maglev) => maglev.pick(candidates, key),
        };
        picked.or_else(|| {
            // Hashing policies start from the key so that a key keeps its fallback target.
            let start = match seed.key {
                Some(key) => (key % count as u64) as usize,
                None => fastrand::usize(..count),
            };
            scan(candidates, start)
        })
    }

    /// The round-robin cursor to replace with the one carried from earlier tables.
    pub fn cursor_mut(&mut self) -> Option<&mut Arc<AtomicUsize>> {
        match self {
            Balancer::RoundRobin(rr) => Some(rr.cursor_mut()),
            _ => None,
        }
    }
}

/// The first usable target from `start` on, wrapping around.
fn scan(candidates: &impl Candidates, start: usize) -> Option<usize> {
    let count = candidates.len();
    (0..count)
        .map(|offset| (start + offset) % count)
        .find(|&index| candidates.usable(index))
}

/// A well-mixed 64-bit hash, stable across builds and machines (xxh3).
pub fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// Maps a 64-bit random value onto `0..n` without a division (Lemire's multiply-shift).
fn reduce(random: u64, n: usize) -> usize {
    ((u128::from(random) * n as u128) >> 64) as usize
}

#[cfg(test)]
mod tests;
