//! Polling instead of sleeping: a condition is checked until it holds or a deadline passes.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, sleep};

const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Ok`, or returns its last error once `timeout` has passed.
pub async fn poll_until<T, F, Fut>(timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.context(format!("still not true after {timeout:?}")));
            }
            Err(_) => sleep(POLL_INTERVAL).await,
        }
    }
}

/// Like [`poll_until`], but fails the test with the last error when the deadline passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    match poll_until(timeout, check).await {
        Ok(value) => value,
        Err(error) => panic!("{error:#}"),
    }
}
