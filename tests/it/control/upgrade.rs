//! A binary upgrade (SIGQUIT + run --upgrade) under load hands the listeners over without a failed
//! request.

use super::*;
use crate::harness::{fixture, wait_until, Runoff};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_under_load_fails_no_request() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let mut old = Runoff::start(|p| config(p, &node, &go, 50, 50)).await;
    // Fresh connections, so every request is accepted by whichever process holds the
    // listening socket at that moment.
    let load = Load::start(old.url("/api/up"), 3, true);
    let received = || node.count() + go.count();
    // The load is under way on the old process before the upgrade starts.
    wait_until(
        "the load reaches the old process",
        Duration::from_secs(20),
        || received() >= 30,
    )
    .await;

    let mut new = old.spawn_upgrade();
    let sock = old.ports.dir.join("upgrade.sock");
    wait_until(
        &format!("the new process opens {}", sock.display()),
        Duration::from_secs(20),
        || sock.exists(),
    )
    .await;
    old.signal("-QUIT");
    let exit = old.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "old process: {exit}\n{}", old.stderr());
    // Keep the load on the new process for a moment, then stop.
    let before = received();
    wait_until("traffic after the handoff", Duration::from_secs(20), || {
        received() >= before + 50
    })
    .await;
    let served = only_200(&load.finish().await);
    assert!(served > 50);
    // The new process owns the admin listener now and has served requests.
    let m = new.scrape().await;
    assert!(m.sum("runoff_requests_total", &[("status_class", "2xx")]) > 0.0);
    assert_eq!(
        m.sum("runoff_requests_total", &[("status_class", "error")]),
        0.0
    );
    assert!(
        new.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the new process exited"
    );
}
