//! A lock-free histogram with fixed bucket bounds, in seconds.
//!
//! `prometheus-client`'s histogram takes a mutex per observation; this one is an array of atomic
//! counters, so requests on a busy route never wait on each other: an observation is two relaxed
//! atomic adds (its bucket and the sum). The count is the sum of the buckets, read at scrape.
//! Snapshots taken a few seconds apart give the quantiles of that window (the traffic report).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Bounds for request durations: 1 ms to 60 s.
pub const REQUEST_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound, plus the overflow bucket (above the last bound).
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// The counters of a histogram at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// Per bucket, not cumulative; one more than the bounds (the overflow bucket).
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, duration: Duration) {
        let seconds = duration.as_secs_f64();
        let bucket = self.bounds.partition_point(|bound| *bound < seconds);
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// What happened between `earlier` and `self` (counters only grow).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .enumerate()
                .map(|(i, c)| c.saturating_sub(earlier.counts.get(i).copied().unwrap_or(0)))
                .collect(),
            sum_seconds: (self.sum_seconds - earlier.sum_seconds).max(0.0),
        }
    }

    /// `(upper bound, count)` per finite bucket, not cumulative, as the encoder wants them.
    pub fn buckets(&self, bounds: &[f64]) -> Vec<(f64, u64)> {
        bounds
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
            .collect()
    }

    /// The `q` quantile in seconds, interpolated linearly inside its bucket (as Prometheus'
    /// `histogram_quantile` does); the overflow bucket answers its lower bound. 0 when empty.
    pub fn quantile(&self, bounds: &[f64], q: f64) -> f64 {
        let total = self.count();
        if total == 0 {
            return 0.0;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut seen = 0u64;
        for (i, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (seen + count) as f64 >= rank {
                let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
                let Some(&upper) = bounds.get(i) else {
                    return lower;
                };
                let within = (rank - seen as f64) / count as f64;
                return lower + (upper - lower) * within;
            }
            seen += count;
        }
        bounds.last().copied().unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_whose_bound_is_at_or_above_them() {
        let h = Histogram::new(&[0.01, 0.1, 1.0]);
        h.observe(Duration::from_millis(10)); // le 0.01
        h.observe(Duration::from_millis(50)); // le 0.1
        h.observe(Duration::from_secs(5)); // overflow
        let s = h.snapshot();
        assert_eq!(s.counts, vec![1, 1, 0, 1]);
        assert_eq!(s.count(), 3);
        assert!((s.sum_seconds - 5.06).abs() < 1e-9);
        assert_eq!(s.buckets(h.bounds()), vec![(0.01, 1), (0.1, 1), (1.0, 0)]);
    }

    #[test]
    fn quantiles_of_a_window_interpolate_within_buckets() {
        let h = Histogram::new(REQUEST_BUCKETS);
        for _ in 0..100 {
            h.observe(Duration::from_millis(200)); // (0.1, 0.25]
        }
        let before = h.snapshot();
        for _ in 0..99 {
            h.observe(Duration::from_micros(500)); // (0, 0.001]
        }
        h.observe(Duration::from_secs(3)); // (2.5, 5]
        let window = h.snapshot().since(&before);
        assert_eq!(window.count(), 100);
        let p50 = window.quantile(REQUEST_BUCKETS, 0.5);
        assert!(p50 > 0.0 && p50 <= 0.001, "{p50}");
        let p99 = window.quantile(REQUEST_BUCKETS, 0.99);
        assert!(p99 <= 0.001, "{p99}");
        let max = window.quantile(REQUEST_BUCKETS, 1.0);
        assert!((2.5..=5.0).contains(&max), "{max}");
        assert_eq!(
            HistogramSnapshot::default().quantile(REQUEST_BUCKETS, 0.5),
            0.0
        );
    }
}
