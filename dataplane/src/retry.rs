//! When the proxy sends a request again: a route's [`RetryPolicy`] and its retry budget.
//!
//! A failed attempt is retried when the policy lists its condition (connect failure, reset,
//! 502/503/504, any 5xx; by default connect failures and resets), attempts remain, the total
//! timeout has not passed, the request's body can be sent again (none, or small and buffered:
//! see `proxy::body`), and the route's budget allows: retries in flight may be at most
//! `budget_percent` of the route's requests in flight (but always [`MIN_RETRY_CONCURRENCY`]),
//! so a failing upstream does not get a storm of retries on top of its traffic.
//!
//! A per-try timeout counts as a reset, and also as a 504 (which it becomes if not retried).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_proto::v1;

/// Used when a policy says 0.
pub const DEFAULT_BUDGET_PERCENT: u32 = 20;
/// Retries always allowed in flight per route, whatever the budget: at low traffic a percentage
/// of a few requests would forbid every retry.
pub const MIN_RETRY_CONCURRENCY: u64 = 3;

/// A compiled `RetryPolicy` with at least one retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub attempts: u32,
    pub on: RetryOn,
    pub per_try_timeout: Option<Duration>,
    pub budget_percent: u32,
}

/// A set of retry conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryOn(u8);

impl RetryOn {
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    pub const RESET: RetryOn = RetryOn(1 << 1);
    pub const STATUS_502: RetryOn = RetryOn(1 << 2);
    pub const STATUS_503: RetryOn = RetryOn(1 << 3);
    pub const STATUS_504: RetryOn = RetryOn(1 << 4);
    pub const ANY_5XX: RetryOn = RetryOn(1 << 5);
    /// What an empty list means.
    pub const DEFAULT: RetryOn = RetryOn(Self::CONNECT_FAILURE.0 | Self::RESET.0);

    /// The conditions listed (unknown values are left out: validation rejects them).
    pub fn from_wire(on: &[i32]) -> RetryOn {
        if on.is_empty() {
            return RetryOn::DEFAULT;
        }
        let bits = on.iter().fold(0, |bits, &on| {
            bits | match v1::RetryOn::try_from(on) {
                Ok(v1::RetryOn::ConnectFailure) => Self::CONNECT_FAILURE.0,
                Ok(v1::RetryOn::Reset) => Self::RESET.0,
                Ok(v1::RetryOn::Status502) => Self::STATUS_502.0,
                Ok(v1::RetryOn::Status503) => Self::STATUS_503.0,
                Ok(v1::RetryOn::Status504) => Self::STATUS_504.0,
                Ok(v1::RetryOn::Any5xx) => Self::ANY_5XX.0,
                Ok(v1::RetryOn::Unspecified) | Err(_) => 0,
            }
        });
        RetryOn(bits)
    }

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    fn any(self, of: &[RetryOn]) -> bool {
        of.iter().any(|&c| self.contains(c))
    }

    /// Whether a response with `status` is retried.
    pub fn status(self, status: u16) -> bool {
        match status {
            502 => self.any(&[Self::STATUS_502, Self::ANY_5XX]),
            503 => self.any(&[Self::STATUS_503, Self::ANY_5XX]),
            504 => self.any(&[Self::STATUS_504, Self::ANY_5XX]),
            500..=599 => self.contains(Self::ANY_5XX),
            _ => false,
        }
    }

    pub fn connect_failure(self) -> bool {
        self.contains(Self::CONNECT_FAILURE)
    }

    /// A connection reset or closed before the response.
    pub fn reset(self) -> bool {
        self.contains(Self::RESET)
    }

    /// No response within the per-try timeout.
    pub fn per_try_timeout(self) -> bool {
        self.any(&[Self::RESET, Self::STATUS_504, Self::ANY_5XX])
    }
}

/// A route's requests and retries in flight, carried from table to table by route name.
#[derive(Debug, Default)]
pub struct RouteLoad {
    active: AtomicU64,
    retries: AtomicU64,
}

impl RouteLoad {
    /// Counts a request until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> ActiveRequest {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveRequest(Arc::clone(self))
    }

    /// A retry if the budget allows one now; it counts until the guard drops.
    pub fn try_start_retry(self: &Arc<Self>, budget_percent: u32) -> Option<ActiveRetry> {
        let active = self.active.load(Ordering::Relaxed);
        let allowed = (active * u64::from(budget_percent) / 100).max(MIN_RETRY_CONCURRENCY);
        let retries = self.retries.fetch_add(1, Ordering::Relaxed);
        if retries >= allowed {
            self.retries.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(ActiveRetry(Arc::clone(self)))
    }
}

/// A request in flight on a route.
#[derive(Debug)]
pub struct ActiveRequest(Arc<RouteLoad>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A retry in flight on a route.
#[derive(Debug)]
pub struct ActiveRetry(Arc<RouteLoad>);

impl Drop for ActiveRetry {
    fn drop(&mut self) {
        self.0.retries.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The methods whose requests may be repeated without changing what they do (RFC 9110 9.2.2).
pub fn is_idempotent(method: &http::Method) -> bool {
    use http::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_default_to_connect_failures_and_resets() {
        let on = RetryOn::from_wire(&[]);
        assert!(on.connect_failure() && on.reset() && on.per_try_timeout());
        assert!(!on.status(502) && !on.status(503));
    }

    #[test]
    fn status_conditions_match_their_codes_and_any_5xx_all() {
        let on = RetryOn::from_wire(&[v1::RetryOn::Status503 as i32]);
        assert!(on.status(503));
        assert!(!on.status(502) && !on.status(500) && !on.connect_failure() && !on.reset());
        let any = RetryOn::from_wire(&[v1::RetryOn::Any5xx as i32]);
        assert!([500, 502, 503, 504, 599].iter().all(|&s| any.status(s)));
        assert!(!any.status(404) && !any.status(200));
        assert!(any.per_try_timeout());
    }

    #[test]
    fn the_budget_caps_retries_at_a_share_of_requests_with_a_floor() {
        let load = Arc::new(RouteLoad::default());
        let requests: Vec<ActiveRequest> = (0..100).map(|_| load.start_request()).collect();
        let retries: Vec<ActiveRetry> = (0..30).filter_map(|_| load.try_start_retry(20)).collect();
        assert_eq!(retries.len(), 20, "20% of 100 requests in flight");
        drop(retries);
        drop(requests);

        let _one = load.start_request();
        let retries: Vec<ActiveRetry> = (0..10).filter_map(|_| load.try_start_retry(20)).collect();
        assert_eq!(retries.len(), 3, "at low traffic, the floor");
        drop(retries);
        assert!(
            load.try_start_retry(20).is_some(),
            "a finished retry frees its place"
        );
    }

    #[test]
    fn idempotent_methods() {
        assert!(is_idempotent(&http::Method::PUT) && is_idempotent(&http::Method::GET));
        assert!(!is_idempotent(&http::Method::POST) && !is_idempotent(&http::Method::PATCH));
    }
}
