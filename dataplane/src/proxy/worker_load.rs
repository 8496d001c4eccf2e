//! Spreads client connections evenly over the proxy workers.
//!
//! Every worker accepts on the same listening socket (a duplicate, so a hand-off to a
//! successor passes one socket per address). The kernel wakes them all for a new connection and
//! the first to call `accept` takes it; a worker already running takes a whole burst (a load
//! balancer or a benchmark opening its pool at once), leaving the other workers, and their
//! cores, idle for the life of those connections: measured with two workers and 50 connections,
//! one worker ran 0 of 285 CPU ticks.
//!
//! So a worker holding more connections than the least loaded one by more than [`SLACK`] waits
//! [`HANDICAP`] before it accepts: the others, woken for the same connection, take it first. If
//! they are stuck, it accepts anyway once the handicap has passed, so no connection waits on a
//! stalled worker. The cost is two relaxed atomic operations per connection and a scan of one
//! counter per worker per accept, never anything per request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_utils::CachePadded;

/// How many connections a worker may hold above the least loaded one before it defers.
const SLACK: usize = 1;

/// How long a worker ahead of the others waits before it accepts a connection they left.
pub const HANDICAP: Duration = Duration::from_millis(1);

/// Open client connections per worker, shared by all workers of a process.
#[derive(Debug)]
pub struct WorkerLoad {
    // Padded: each worker writes its own counter on every accept and close.
    open: Box<[CachePadded<AtomicUsize>]>,
}

impl WorkerLoad {
    pub fn new(workers: usize) -> Arc<WorkerLoad> {
        Arc::new(WorkerLoad {
            open: (0..workers.max(1))
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
        })
    }

    /// Whether `worker` holds more connections than another worker by more than [`SLACK`],
    /// and should leave the next connection to the others for a moment.
    pub fn is_ahead(&self, worker: usize) -> bool {
        let Some(own) = self.open.get(worker) else {
            return false;
        };
        let own = own.load(Ordering::Relaxed);
        self.open
            .iter()
            .any(|other| other.load(Ordering::Relaxed) + SLACK < own)
    }

    /// Counts a connection on `worker` until the returned guard is dropped.
    pub fn opened(self: &Arc<Self>, worker: usize) -> OpenOnWorker {
        let worker = worker.min(self.open.len() - 1);
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        OpenOnWorker {
            load: Arc::clone(self),
            worker,
        }
    }
}

/// One open connection on a worker; dropping it (the connection closed) uncounts it.
#[derive(Debug)]
pub struct OpenOnWorker {
    load: Arc<WorkerLoad>,
    worker: usize,
}

impl Drop for OpenOnWorker {
    fn drop(&mut self) {
        self.load.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(load: &WorkerLoad) -> Vec<usize> {
        load.open
            .iter()
            .map(|o| o.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn a_worker_defers_only_when_it_is_ahead_of_another_by_more_than_the_slack() {
        let load = WorkerLoad::new(3);
        assert!(!load.is_ahead(0), "all idle");
        let first = load.opened(0);
        assert!(!load.is_ahead(0), "one ahead is within the slack");
        let second = load.opened(0);
        assert!(load.is_ahead(0));
        assert!(
            !load.is_ahead(1) && !load.is_ahead(2),
            "the others are behind"
        );
        let _on_1 = load.opened(1);
        assert!(load.is_ahead(0), "worker 2 is still two behind");
        let _on_2 = load.opened(2);
        assert!(!load.is_ahead(0));
        drop((first, second));
        assert_eq!(open(&load), [0, 1, 1]);
        assert!(
            !load.is_ahead(1),
            "one ahead of worker 0 is within the slack"
        );
    }

    #[test]
    fn a_single_worker_or_an_unknown_one_never_defers() {
        let load = WorkerLoad::new(1);
        let _open: Vec<_> = (0..10).map(|_| load.opened(0)).collect();
        assert!(!load.is_ahead(0));
        assert!(!load.is_ahead(7));
        // A thread that is no proxy worker counts as the last worker.
        let _stray = load.opened(7);
        assert_eq!(open(&load), [11]);
    }
}
