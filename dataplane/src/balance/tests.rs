//! Property tests of the balancers: weights are honoured, consistent hashing moves about 1/N of
//! the keys when one of N targets comes or goes, least request avoids busy targets, and a pick
//! fails only when nothing is usable. The thread's random generator is seeded from each case,
//! so a failing case replays exactly.

use proptest::prelude::*;

use super::*;

/// A test view of the targets.
struct View {
    usable: Vec<bool>,
    in_flight: Vec<u64>,
}

impl View {
    fn all(n: usize) -> View {
        View {
            usable: vec![true; n],
            in_flight: vec![0; n],
        }
    }
}

impl Candidates for View {
    fn len(&self) -> usize {
        self.usable.len()
    }
    fn usable(&self, index: usize) -> bool {
        self.usable[index]
    }
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight[index]
    }
}

fn addresses(n: usize, salt: u8) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{salt}.{}.{}:8080", i / 250, i % 250))
        .collect()
}

fn weighted<'a>(addresses: &'a [String], weights: &[u32]) -> Vec<Weighted<'a>> {
    addresses
        .iter()
        .zip(weights)
        .map(|(address, &weight)| Weighted { address, weight })
        .collect()
}

fn counts(balancer: &Balancer, view: &View, picks: usize, keyed: bool) -> Vec<usize> {
    let mut counts = vec![0; view.len()];
    for _ in 0..picks {
        let key = keyed.then(|| fastrand::u64(..));
        counts[balancer.pick(view, key).unwrap()] += 1;
    }
    counts
}

/// Each count is within `sigmas` binomial standard deviations of its weight's share.
fn assert_shares(counts: &[usize], weights: &[u32], sigmas: f64) {
    let picks: usize = counts.iter().sum();
    let total: u32 = weights.iter().sum();
    for (i, (&count, &weight)) in counts.iter().zip(weights).enumerate() {
        let p = f64::from(weight) / f64::from(total);
        let expected = picks as f64 * p;
        let spread = sigmas * (picks as f64 * p * (1.0 - p)).sqrt() + 1.0;
        assert!(
            (count as f64 - expected).abs() <= spread,
            "target {i}: {count} picks, expected {expected:.0} ± {spread:.0} (weights {weights:?}, counts {counts:?})"
        );
    }
}

/// The address each key goes to.
fn assignments(balancer: &Balancer, addresses: &[String], keys: &[u64]) -> Vec<String> {
    let view = View::all(addresses.len());
    keys.iter()
        .map(|&key| addresses[balancer.pick(&view, Some(key)).unwrap()].clone())
        .collect()
}

fn moved(before: &[String], after: &[String]) -> usize {
    before.iter().zip(after).filter(|(a, b)| a != b).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_and_least_request_honour_weights(
        weights in prop::collection::vec(1u32..=20, 1..=8),
        seed in any::<u64>(),
    ) {
        fastrand::seed(seed);
        let addresses = addresses(weights.len(), 1);
        let targets = weighted(&addresses, &weights);
        let view = View::all(weights.len());
        for policy in [Policy::Random, Policy::LeastRequest] {
            let balancer = Balancer::new(policy, &targets);
            assert_shares(&counts(&balancer, &view, 20_000, false), &weights, 6.0);
        }
    }

    #[test]
    fn round_robin_honours_weights_exactly(weights in prop::collection::vec(1u32..=20, 1..=8)) {
        let addresses = addresses(weights.len(), 2);
        let balancer = Balancer::new(Policy::RoundRobin, &weighted(&addresses, &weights));
        let total: u32 = weights.iter().sum();
        let got = counts(&balancer, &View::all(weights.len()), total as usize * 3, false);
        let want: Vec<usize> = weights.iter().map(|&w| w as usize * 3).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn maglev_honours_weights(weights in prop::collection::vec(1u32..=8, 2..=8), seed in any::<u64>()) {
        fastrand::seed(seed);
        let addresses = addresses(weights.len(), 3);
        let balancer = Balancer::new(Policy::Maglev, &weighted(&addresses, &weights));
        let got = counts(&balancer, &View::all(weights.len()), 20_000, true);
        // The table follows a ring of weighted points: a target with m points owns a share
        // within about 1/sqrt(m) of its weight's (one standard deviation), so allow 4 of them,
        // plus the sampling of 20,000 picks.
        let total: u32 = weights.iter().sum();
        let heaviest = f64::from(*weights.iter().max().unwrap());
        for (&count, &weight) in got.iter().zip(&weights) {
            let want = 20_000.0 * f64::from(weight) / f64::from(total);
            let points = super::maglev::POINTS_PER_MAX_WEIGHT as f64 * f64::from(weight) / heaviest;
            prop_assert!((count as f64 - want).abs() <= 4.0 * want / points.sqrt() + 6.0 * want.sqrt(),
                "{got:?} for {weights:?}");
        }
    }

    #[test]
    fn ring_hash_and_maglev_move_about_one_nth_of_keys(
        n in 3usize..=40,
        salt in any::<u8>(),
        seed in any::<u64>(),
    ) {
        fastrand::seed(seed);
        let keys: Vec<u64> = (0..20_000).map(|_| fastrand::u64(..)).collect();
        let all = addresses(n + 1, salt);
        let ones = vec![1; n + 1];
        for policy in [Policy::RingHash, Policy::Maglev] {
            let before = Balancer::new(policy, &weighted(&all[..n], &ones));
            let after = Balancer::new(policy, &weighted(&all, &ones));
            let (old, new) = (assignments(&before, &all[..n], &keys), assignments(&after, &all, &keys));
            // Adding one target to n: about 1/(n+1) of the keys move, all of them to it.
            let share = moved(&old, &new) as f64 / keys.len() as f64;
            let ideal = 1.0 / (n + 1) as f64;
            prop_assert!(share > 0.5 * ideal && share < 1.6 * ideal,
                "{policy:?}: {share:.4} of keys moved adding a target to {n}, ideal {ideal:.4}");
            let to_new = old.iter().zip(&new).filter(|(a, b)| a != b && **b == all[n]).count();
            prop_assert_eq!(to_new, moved(&old, &new), "keys moved between old targets");

            // Removing it again restores every key (the structures depend only on the targets).
            let again = Balancer::new(policy, &weighted(&all[..n], &ones));
            prop_assert_eq!(assignments(&again, &all[..n], &keys), old);
        }
    }

    #[test]
    fn consistent_hashing_ignores_target_order(n in 2usize..=20, salt in any::<u8>(), key in any::<u64>()) {
        let forward = addresses(n, salt);
        let mut backward = forward.clone();
        backward.reverse();
        let ones = vec![1; n];
        for policy in [Policy::RingHash, Policy::Maglev] {
            let a = Balancer::new(policy, &weighted(&forward, &ones));
            let b = Balancer::new(policy, &weighted(&backward, &ones));
            prop_assert_eq!(
                assignments(&a, &forward, &[key]),
                assignments(&b, &backward, &[key])
            );
        }
    }

    #[test]
    fn a_pick_is_usable_and_none_means_nothing_is(
        usable in prop::collection::vec(any::<bool>(), 1..=12),
        key in proptest::option::of(any::<u64>()),
        seed in any::<u64>(),
    ) {
        fastrand::seed(seed);
        let addresses = addresses(usable.len(), 4);
        let weights: Vec<u32> = (1..=usable.len() as u32).collect();
        let targets = weighted(&addresses, &weights);
        let view = View { in_flight: vec![0; usable.len()], usable };
        for policy in [Policy::RoundRobin, Policy::Random, Policy::LeastRequest, Policy::RingHash, Policy::Maglev] {
            let balancer = Balancer::new(policy, &targets);
            for _ in 0..20 {
                match balancer.pick(&view, key) {
                    Some(index) => prop_assert!(view.usable[index], "{policy:?} picked an unusable target"),
                    None => prop_assert!(view.usable.iter().all(|u| !u), "{policy:?} found nothing"),
                }
            }
        }
    }

    #[test]
    fn least_request_prefers_idle_targets(n in 2usize..=10, busy in any::<prop::sample::Index>(), seed in any::<u64>()) {
        fastrand::seed(seed);
        let busy = busy.index(n);
        let addresses = addresses(n, 5);
        let balancer = Balancer::new(Policy::LeastRequest, &weighted(&addresses, &vec![1; n]));
        let mut view = View::all(n);
        view.in_flight[busy] = 50;
        let picks = 10_000;
        let got = counts(&balancer, &view, picks, false);
        // The busy target wins only when both choices fall on it: 1/n² of the time.
        let p = 1.0 / (n * n) as f64;
        let bound = picks as f64 * p + 6.0 * (picks as f64 * p).sqrt() + 1.0;
        prop_assert!((got[busy] as f64) <= bound, "busy target got {} of {picks} ({got:?})", got[busy]);
    }
}

#[test]
fn least_request_weighs_load_by_weight() {
    fastrand::seed(7);
    let addresses = addresses(2, 6);
    let balancer = Balancer::new(Policy::LeastRequest, &weighted(&addresses, &[3, 1]));
    // 6 in flight on a weight-3 target is lighter than 3 on a weight-1 target.
    let view = View {
        usable: vec![true, true],
        in_flight: vec![6, 3],
    };
    let got = counts(&balancer, &view, 1000, false);
    assert!(got[0] > 900, "{got:?}");
}

#[test]
fn ring_hash_shares_follow_weights() {
    fastrand::seed(11);
    let addresses = addresses(4, 7);
    let weights = [1, 2, 3, 4];
    let balancer = Balancer::new(Policy::RingHash, &weighted(&addresses, &weights));
    let got = counts(&balancer, &View::all(4), 100_000, true);
    for (&count, &weight) in got.iter().zip(&weights) {
        let want = 100_000.0 * f64::from(weight) / 10.0;
        assert!((count as f64 - want).abs() < 0.3 * want, "{got:?}");
    }
}

#[test]
fn hashing_sends_a_key_to_the_same_target_and_unusable_targets_pass_keys_on() {
    let addresses = addresses(5, 8);
    for policy in [Policy::RingHash, Policy::Maglev] {
        let balancer = Balancer::new(policy, &weighted(&addresses, &[1; 5]));
        let mut view = View::all(5);
        let keys: Vec<u64> = (0..2000u64)
            .map(|k| hash_bytes(&k.to_le_bytes(), 0))
            .collect();
        let first: Vec<usize> = keys
            .iter()
            .map(|&k| balancer.pick(&view, Some(k)).unwrap())
            .collect();
        let again: Vec<usize> = keys
            .iter()
            .map(|&k| balancer.pick(&view, Some(k)).unwrap())
            .collect();
        assert_eq!(first, again, "{policy:?}");
        view.usable[2] = false;
        for (&key, &was) in keys.iter().zip(&first) {
            let now = balancer.pick(&view, Some(key)).unwrap();
            if was == 2 {
                assert_ne!(now, 2, "{policy:?}");
            } else {
                assert_eq!(now, was, "{policy:?}: a key of a usable target moved");
            }
        }
    }
}

#[test]
fn without_a_key_hashing_spreads_at_random() {
    let addresses = addresses(4, 9);
    for policy in [Policy::RingHash, Policy::Maglev] {
        let balancer = Balancer::new(policy, &weighted(&addresses, &[1; 4]));
        let got = counts(&balancer, &View::all(4), 4000, false);
        assert!(got.iter().all(|&c| c > 600), "{policy:?}: {got:?}");
    }
}

#[test]
fn no_targets_no_pick() {
    for policy in [
        Policy::RoundRobin,
        Policy::Random,
        Policy::LeastRequest,
        Policy::RingHash,
        Policy::Maglev,
    ] {
        let balancer = Balancer::new(policy, &[]);
        assert_eq!(balancer.pick(&View::all(0), Some(1)), None);
    }
}

/// At 3, 100 and 1,000 targets, adding one target or removing one moves about 1/N of the keys
/// (within 40%: the ring's own spread of shares plus sampling), and only keys of the target
/// that came or went.
#[test]
fn ring_hash_and_maglev_move_about_one_nth_of_keys_up_to_1000_targets() {
    fastrand::seed(21);
    let keys: Vec<u64> = (0..200_000).map(|_| fastrand::u64(..)).collect();
    for n in [3usize, 100, 1000] {
        let all = addresses(n + 1, 10);
        let ones = vec![1; n + 1];
        for policy in [Policy::RingHash, Policy::Maglev] {
            let small = Balancer::new(policy, &weighted(&all[..n], &ones));
            let large = Balancer::new(policy, &weighted(&all, &ones));
            let (old, new) = (
                assignments(&small, &all[..n], &keys),
                assignments(&large, &all, &keys),
            );
            let share = moved(&old, &new) as f64 / keys.len() as f64;
            let ratio = share * (n + 1) as f64;
            assert!(
                (0.6..1.4).contains(&ratio),
                "{policy:?}: adding one to {n} targets moved {ratio:.2} × 1/N of the keys"
            );
            let to_new = old
                .iter()
                .zip(&new)
                .filter(|(a, b)| a != b && **b == all[n])
                .count();
            assert_eq!(
                to_new,
                moved(&old, &new),
                "{policy:?} at {n}: keys moved between old targets"
            );

            // Removing the first target instead: only its keys move.
            let without_first = Balancer::new(policy, &weighted(&all[1..], &ones));
            let rest = assignments(&without_first, &all[1..], &keys);
            let all_keys = assignments(&large, &all, &keys);
            let moved_away = moved(&all_keys, &rest);
            let ratio = moved_away as f64 / keys.len() as f64 * (n + 1) as f64;
            assert!(
                (0.6..1.4).contains(&ratio),
                "{policy:?}: removing one of {} targets moved {ratio:.2} × 1/N of the keys",
                n + 1
            );
            let of_first = all_keys.iter().filter(|a| **a == all[0]).count();
            assert_eq!(
                moved_away, of_first,
                "{policy:?} at {n}: keys of other targets moved"
            );
        }
    }
}
