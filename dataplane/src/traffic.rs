//! Traffic counters per route and per upstream, for the control plane's traffic view.
//!
//! A [`TrafficStats`] is a handful of atomics: requests by status class, bytes in and out, and a
//! latency histogram. A request adds to its route's and its upstream's once, when its response
//! ends (see `proxy::response`): a few relaxed atomic adds, no lock. The reporter takes (swaps
//! to zero) every counter every few seconds, so a report holds deltas.
//!
//! The histogram has four buckets per power of two of microseconds, from 64 µs to about two
//! minutes: a percentile is within about 12% of the true value, in 680 bytes per name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_proto::v1::TrafficCounters;

/// Status classes: 1xx to 5xx, then answers the gateway made without an upstream status.
pub const CLASSES: usize = 6;
/// The class of a response the gateway made itself (no route target answered).
pub const GATEWAY_CLASS: usize = 5;

const SUB_BUCKETS: u32 = 4;
/// Values below 2^6 µs share the first bucket.
const MIN_EXPONENT: u32 = 6;
const MAX_EXPONENT: u32 = 27;
const BUCKETS: usize = ((MAX_EXPONENT - MIN_EXPONENT + 1) * SUB_BUCKETS) as usize;

#[derive(Debug)]
pub struct TrafficStats {
    classes: [AtomicU64; CLASSES],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for TrafficStats {
    fn default() -> Self {
        TrafficStats {
            classes: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// One finished request, as counted.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// 0 to 4 for an upstream's 1xx to 5xx, [`GATEWAY_CLASS`] for the gateway's own answers.
    pub class: usize,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency: Duration,
}

impl TrafficStats {
    pub fn record(&self, exchange: &Exchange) {
        self.classes[exchange.class.min(CLASSES - 1)].fetch_add(1, Ordering::Relaxed);
        if exchange.bytes_in > 0 {
            self.bytes_in
                .fetch_add(exchange.bytes_in, Ordering::Relaxed);
        }
        if exchange.bytes_out > 0 {
            self.bytes_out
                .fetch_add(exchange.bytes_out, Ordering::Relaxed);
        }
        self.latency[bucket(exchange.latency)].fetch_add(1, Ordering::Relaxed);
    }

    /// Adds request body bytes counted apart from the exchange (a streamed body).
    pub fn add_bytes_in(&self, bytes: u64) {
        if bytes > 0 {
            self.bytes_in.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Everything counted since the last take, as `name`'s counters; `None` without requests.
    pub fn take(&self, name: &str) -> Option<TrafficCounters> {
        let classes: Vec<u64> = self
            .classes
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let latency: Vec<u64> = self
            .latency
            .iter()
            .map(|b| b.swap(0, Ordering::Relaxed))
            .collect();
        let bytes_in = self.bytes_in.swap(0, Ordering::Relaxed);
        let bytes_out = self.bytes_out.swap(0, Ordering::Relaxed);
        if classes.iter().all(|&c| c == 0) {
            return None;
        }
        Some(TrafficCounters {
            name: name.to_string(),
            status_classes: classes,
            bytes_in,
            bytes_out,
            latency_p50_ms: percentile(&latency, 0.50),
            latency_p99_ms: percentile(&latency, 0.99),
        })
    }
}

/// The status class index of an upstream's status.
pub fn class_of(status: http::StatusCode) -> usize {
    match status.as_u16() {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

fn bucket(latency: Duration) -> usize {
    let micros = u64::try_from(latency.as_micros())
        .unwrap_or(u64::MAX)
        .max(1);
    let exponent = u64::BITS - 1 - micros.leading_zeros();
    if exponent < MIN_EXPONENT {
        return 0;
    }
    if exponent > MAX_EXPONENT {
        return BUCKETS - 1;
    }
    // The two bits after the leading one choose the quarter of the octave.
    let quarter = (micros >> (exponent - 2)) & 0b11;
    ((exponent - MIN_EXPONENT) * SUB_BUCKETS) as usize + quarter as usize
}

/// The lower and upper bounds of a bucket, in microseconds.
fn bounds(bucket: usize) -> (f64, f64) {
    let exponent = MIN_EXPONENT + bucket as u32 / SUB_BUCKETS;
    let quarter = (bucket as u32 % SUB_BUCKETS) as f64;
    let octave = f64::from(1u32 << exponent);
    let lower = octave * (1.0 + quarter / 4.0);
    (lower, lower + octave / 4.0)
}

/// The `q` quantile in milliseconds: the middle of the bucket it falls in.
fn percentile(buckets: &[u64], q: f64) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (index, &count) in buckets.iter().enumerate() {
        seen += count;
        if seen >= rank {
            let (lower, upper) = bounds(index);
            let lower = if index == 0 { 0.0 } else { lower };
            return (lower + upper) / 2.0 / 1000.0;
        }
    }
    0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(class: usize, millis: u64) -> Exchange {
        Exchange {
            class,
            bytes_in: 10,
            bytes_out: 100,
            latency: Duration::from_millis(millis),
        }
    }

    #[test]
    fn buckets_cover_each_value_within_a_quarter_octave() {
        for micros in [64u64, 100, 1000, 1500, 12_345, 999_999, 60_000_000] {
            let (lower, upper) = bounds(bucket(Duration::from_micros(micros)));
            assert!(
                lower <= micros as f64 && (micros as f64) < upper,
                "{micros}: {lower}..{upper}"
            );
        }
        assert_eq!(bucket(Duration::from_micros(3)), 0);
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }

    #[test]
    fn take_reports_deltas_and_percentiles() {
        let stats = TrafficStats::default();
        assert!(stats.take("web").is_none(), "no traffic, no counters");
        for _ in 0..98 {
            stats.record(&exchange(1, 10));
        }
        stats.record(&exchange(4, 10));
        stats.record(&exchange(GATEWAY_CLASS, 900));
        let counters = stats.take("web").unwrap();
        assert_eq!(counters.status_classes, [0, 98, 0, 0, 1, 1]);
        assert_eq!((counters.bytes_in, counters.bytes_out), (1000, 10_000));
        assert!(
            (counters.latency_p50_ms - 10.0).abs() < 1.5,
            "{}",
            counters.latency_p50_ms
        );
        assert!(
            (counters.latency_p99_ms - 10.0).abs() < 1.5,
            "p99 of 100 is the 99th"
        );
        assert!(stats.take("web").is_none(), "taken: deltas start again");

        stats.record(&exchange(1, 900));
        let counters = stats.take("web").unwrap();
        assert!(
            (counters.latency_p99_ms - 900.0).abs() < 120.0,
            "{}",
            counters.latency_p99_ms
        );
    }

    #[test]
    fn statuses_fall_in_their_class() {
        use http::StatusCode;
        assert_eq!(class_of(StatusCode::CONTINUE), 0);
        assert_eq!(class_of(StatusCode::OK), 1);
        assert_eq!(class_of(StatusCode::FOUND), 2);
        assert_eq!(class_of(StatusCode::NOT_FOUND), 3);
        assert_eq!(class_of(StatusCode::BAD_GATEWAY), 4);
    }
}
