//! A shadow that hangs, refuses, resets, times out or is full changes nothing for the caller, and
//! every copy it loses is counted with its reason.

use super::*;
use crate::harness::{fixture, load, refused_port, RawConn, Runoff};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_shadow_never_holds_up_keep_alive_requests() {
    let node = fixture("node").start().await;
    let go = fixture("go").delay(Duration::from_secs(60)).start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, ", timeout: 50s")).await;
    let mut conn = RawConn::connect(runoff.ports.listen).await;
    for i in 0..20 {
        conn.send(format!("GET /orders/{i} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        let resp = conn
            .read_until("hello from node\n", Duration::from_secs(10))
            .await;
        assert!(
            resp.ends_with("hello from node\n"),
            "connection closed or silent after {i} responses: {resp:?}"
        );
    }
    assert_eq!(node.count(), 20);
    let m = runoff
        .expect_metric("runoff_in_flight_requests", &shadow(&[]), 20.0)
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 20.0);
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "primary"), ("status_class", "2xx")],
            20.0,
        )
        .await;
    go.wait_for(20, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_in_flight_copies_are_dropped_as_overloaded() {
    let node = fixture("node").start().await;
    let go = fixture("go").delay(Duration::from_secs(60)).start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, ", max_in_flight: 8, timeout: 50s")).await;
    let client = reqwest::Client::new();
    let statuses = load(&client, &runoff.url("/orders"), 30, 4).await;
    assert_eq!(statuses, HashMap::from([(200, 30)]));
    let m = runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", "overloaded")],
            22.0,
        )
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 30.0);
    assert_eq!(m.sum("runoff_in_flight_requests", &shadow(&[])), 8.0);
    go.wait_for(8, Duration::from_secs(10)).await;
}

async fn failing_shadow(go_addr: String, extra: &str, reason: &str, kind: Option<&str>) {
    let node = fixture("node").start().await;
    let n = node.addr.to_string();
    // Passive ejection off: every copy is attempted and fails for itself (with it on, copies
    // after the third failure in a row are dropped `unhealthy`; see pools.rs).
    let runoff = Runoff::start(|p| {
        config(p, &n, &go_addr, extra).replace(
            "read_timeout: 60s",
            "read_timeout: 60s, outlier: { consecutive_errors: 0 }",
        )
    })
    .await;
    let client = reqwest::Client::new();
    let total = 500usize;
    let statuses = load(&client, &runoff.url("/orders"), total, 8).await;
    assert_eq!(
        statuses,
        HashMap::from([(200, total)]),
        "the primary failed"
    );
    assert_eq!(node.count(), total as u64);
    let m = runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", reason)],
            total as f64,
        )
        .await;
    assert_eq!(
        m.sum("runoff_mirror_requests_total", ROUTE_GO),
        total as f64
    );
    assert_identity(&m);
    // Primary counts are recorded after the response is sent: wait for them too.
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "primary"), ("status_class", "2xx")],
            total as f64,
        )
        .await;
    if let Some(kind) = kind {
        assert_eq!(
            m.sum("runoff_upstream_errors_total", &shadow(&[("kind", kind)])),
            total as f64,
            "{}\n{}",
            m.dump("runoff_upstream_errors_total"),
            runoff
                .stderr()
                .lines()
                .filter(|l| l.contains("DEBUG"))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(
        m.sum("runoff_upstream_errors_total", &[("role", "primary")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_shadow_changes_nothing_for_the_caller() {
    let refused = refused_port();
    failing_shadow(
        refused.addr().to_string(),
        "",
        "upstream_error",
        Some("connect_refused"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resetting_shadow_changes_nothing_for_the_caller() {
    let go = fixture("go").reset().start().await;
    failing_shadow(go.addr.to_string(), "", "upstream_error", Some("reset")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_shadow_times_out_and_changes_nothing_for_the_caller() {
    let go = fixture("go").delay(Duration::from_secs(3)).start().await;
    failing_shadow(go.addr.to_string(), ", timeout: 100ms", "timeout", None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_never_connects_sends_no_copy_and_drops_it_as_primary_failed() {
    let go = fixture("go").start().await;
    let refused = refused_port();
    let (n, g) = (refused.addr().to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, ", methods: [GET, POST]")).await;
    let client = reqwest::Client::new();
    // A copy is sent with the primary's request as it goes upstream: a primary that cannot
    // connect sends nothing, and neither does its copy, with a body or without.
    let r = client
        .post(runoff.url("/orders"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let r = client.get(runoff.url("/orders")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    let m = runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", "primary_failed")],
            2.0,
        )
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 2.0);
    assert_eq!(m.sum("runoff_requests_total", &shadow(&[])), 0.0);
    assert_identity(&m);
    // No ratio for a pair whose primary failed.
    assert_eq!(m.sum("runoff_mirror_latency_ratio_count", ROUTE_GO), 0.0);
    assert_eq!(go.count(), 0);
}
