//! Waiting for a condition: poll it with a deadline, never sleep a fixed time and hope.

use std::time::{Duration, Instant};

/// Polls `ready` every 20 ms until it holds; fails the test after `within`, naming `what`.
pub async fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
