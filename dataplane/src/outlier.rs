//! Passive health checking (outlier detection): a target whose requests fail in a row is ejected
//! for a while, without waiting for an active check.
//!
//! Every attempt's [`Outcome`] is observed: a response below 500 resets the target's streaks; a
//! 5xx response, a reset or a response timeout extends its 5xx streak; a failed or timed-out
//! connect extends its connect-failure streak. A streak reaching its threshold ejects the target
//! for `base_ejection × n`, `n` being how many times it has been ejected (capped at
//! `max_ejection`); then a timer returns it. An ejection that would leave more than
//! `max_ejected_percent` of the upstream's targets ejected does not happen (so a lone target is
//! never ejected at the default 50%).
//!
//! Cost per request: one or two relaxed atomic operations on the target's own counters. The
//! upstream's ejection lock is taken only when a streak reaches its threshold.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::state::TargetState;
use crate::table::UpstreamPool;

/// Used when a policy says 0.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_EJECTED_PERCENT: u32 = 50;

/// A compiled `OutlierDetection`, present only when one of its thresholds is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// 0 disables.
    pub consecutive_5xx: u32,
    /// 0 disables.
    pub consecutive_connect_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub max_ejected_percent: u32,
}

/// How one attempt at a target ended, as outlier detection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response below 500.
    Success,
    /// A 5xx response, a reset before the response, or no response in time.
    ServerError,
    /// The connection could not be opened (refused, unreachable, timed out).
    ConnectFailure,
}

/// A target's streaks and ejection history; part of its carried state.
#[derive(Debug, Default)]
pub struct OutlierCounters {
    consecutive_5xx: AtomicU32,
    consecutive_connect_failures: AtomicU32,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct History {
    ejections: u32,
    returned_at: Option<Instant>,
}

impl OutlierCounters {
    fn reset(&self) {
        // Loads first: a healthy target's counters stay in shared cache lines.
        if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
        }
        if self.consecutive_connect_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_connect_failures
                .store(0, Ordering::Relaxed);
        }
    }
}

/// Records how an attempt at `target` (of `pool`) ended, ejecting it when a streak is long
/// enough. Needs a Tokio runtime when it ejects (the return is a timer).
pub fn observe(pool: &UpstreamPool, target: &Arc<TargetState>, outcome: Outcome) {
    let Some(policy) = &pool.outlier else { return };
    let counters = &target.outlier;
    let (streak, threshold, what) = match outcome {
        Outcome::Success => return counters.reset(),
        Outcome::ServerError => (
            counters.consecutive_5xx.fetch_add(1, Ordering::Relaxed) + 1,
            policy.consecutive_5xx,
            "5xx",
        ),
        Outcome::ConnectFailure => (
            counters
                .consecutive_connect_failures
                .fetch_add(1, Ordering::Relaxed)
                + 1,
            policy.consecutive_connect_failures,
            "connection failures",
        ),
    };
    if threshold == 0 || streak < threshold || target.is_ejected() {
        return;
    }
    eject(
        pool,
        policy,
        target,
        &format!("{streak} consecutive {what}"),
    );
}

fn eject(pool: &UpstreamPool, policy: &OutlierPolicy, target: &Arc<TargetState>, reason: &str) {
    let _one_at_a_time = pool
        .state
        .ejecting
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if target.is_ejected() {
        return;
    }
    let ejected = pool.targets.iter().filter(|t| t.state.is_ejected()).count();
    let allowed = pool.targets.len() * policy.max_ejected_percent as usize / 100;
    if ejected + 1 > allowed {
        tracing::debug!(upstream = %pool.name, target = %target.address, %reason, ejected, allowed, "not ejecting: too many targets of the upstream are ejected");
        return;
    }
    let duration = {
        let mut history = target
            .outlier
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A target well-behaved for a whole max_ejection since its return starts afresh.
        if history
            .returned_at
            .is_some_and(|at| at.elapsed() > policy.max_ejection)
        {
            history.ejections = 0;
        }
        history.ejections = history.ejections.saturating_add(1);
        policy
            .base_ejection
            .saturating_mul(history.ejections)
            .min(policy.max_ejection)
    };
    target.outlier.reset();
    if !target.set_ejected(true, reason) {
        return;
    }
    target
        .counters
        .ejections
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(upstream = %pool.name, target = %target.address, %reason, ejected_for = ?duration, "target ejected");
    let target = Arc::clone(target);
    tokio::spawn(async move {
        tokio::time::sleep(duration).await;
        return_target(&target, &format!("ejection of {duration:?} over"));
    });
}

/// Ends an ejection (when it expires, or when outlier detection is turned off).
pub fn return_target(target: &TargetState, reason: &str) {
    if target.set_ejected(false, reason) {
        let mut history = target
            .outlier
            .history
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        history.returned_at = Some(Instant::now());
        drop(history);
        tracing::info!(upstream = %target.upstream, target = %target.address, %reason, "ejected target returns");
    }
}

#[cfg(test)]
mod tests;
