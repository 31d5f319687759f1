//! What the shadow receives: the same request and body, byte for byte or not at all, only for the
//! methods allowed, never a copy of a copy; the caller sees only the primary.

use super::*;
use crate::harness::{fixture, raw_chunked_post, status, Runoff};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_start_with_the_request_and_the_caller_only_sees_the_primary() {
    let go = fixture("go").body("go says something else\n").start().await;
    // The primary answers only once the shadow has its copy: a copy sent after the primary's
    // answer would make every request fail here.
    let node = fixture("node").gate(go.counter()).start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, ", strip_headers: [cookie]")).await;
    let client = reqwest::Client::new();
    for i in 0..50 {
        let resp = client
            .get(runoff.url(&format!("/orders/{i}?q=1")))
            .header("cookie", "session=secret")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-fixture"], "node");
        assert_eq!(resp.text().await.unwrap(), "hello from node\n");
    }
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "primary"), ("status_class", "2xx")],
            50.0,
        )
        .await;
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &shadow(&[("status_class", "2xx")]),
            50.0,
        )
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 50.0);
    assert_eq!(m.sum("runoff_mirror_dropped_total", ROUTE_GO), 0.0);
    assert_identity(&m);
    assert_eq!(m.sum("runoff_mirror_latency_ratio_count", ROUTE_GO), 50.0);
    assert_eq!(
        m.sum("runoff_request_duration_seconds_count", &shadow(&[])),
        50.0
    );
    assert_eq!(
        m.sum("runoff_upstream_ttfb_seconds_count", &shadow(&[])),
        50.0
    );
    assert_eq!(
        m.sum(
            "runoff_upstream_connections_total",
            &[("backend", "go"), ("role", "shadow")]
        ),
        50.0
    );
    // Shadow connections are pooled and reused like the primary's.
    assert!(
        m.sum(
            "runoff_upstream_connections_total",
            &[("backend", "go"), ("reused", "true")]
        ) > 0.0
    );
    assert_eq!(
        m.sum("runoff_response_body_bytes_total", &shadow(&[])),
        50.0 * 23.0
    );
    assert_eq!(m.sum("runoff_in_flight_requests", &shadow(&[])), 0.0);
    assert_eq!(go.count(), 50);

    let (primary, copies) = (node.received(), go.received());
    for (p, c) in primary.iter().zip(copies.iter()) {
        assert_eq!(p.uri, c.uri);
        assert_eq!(
            p.header("x-request-id"),
            c.header("x-request-id"),
            "same request id on both legs"
        );
        assert!(p.header("x-request-id").is_some());
        assert_eq!(c.header("x-runoff-shadow"), Some("1"));
        assert_eq!(p.header("x-runoff-shadow"), None);
        assert_eq!(
            c.header("cookie"),
            None,
            "stripped header reached the shadow"
        );
        assert_eq!(p.header("cookie"), Some("session=secret"));
        assert_eq!(c.header("x-forwarded-for"), Some("127.0.0.1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_reach_the_shadow_byte_for_byte_or_not_at_all() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff =
        Runoff::start(|p| config(p, &n, &g, ", methods: [POST], max_body_bytes: 1048576")).await;
    let client = reqwest::Client::new();
    let pattern = |len: usize| -> Vec<u8> { (0..len).map(|i| (i * 31 % 251) as u8).collect() };

    // 1 KiB with Content-Length.
    let small = pattern(1024);
    let r = client
        .post(runoff.url("/orders"))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    go.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(go.received()[0].body, small);

    // 512 KiB chunked, in 16 KiB pieces.
    let chunked = pattern(512 * 1024);
    let resp = raw_chunked_post(
        runoff.ports.listen,
        "/orders",
        &chunked,
        16 * 1024,
        "hello from node\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    go.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(node.received()[1].body, chunked);
    assert!(
        go.received()[1].body == chunked,
        "the shadow's chunked body differs"
    );

    // 2 MiB with Content-Length, over the cap: the primary gets all, the shadow nothing.
    let big = pattern(2 * 1024 * 1024);
    let r = client
        .post(runoff.url("/orders"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(node.received()[2].body.len(), big.len());
    assert!(node.received()[2].body == big);
    runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", "body_too_large")],
            1.0,
        )
        .await;
    let m = runoff
        .expect_metric("runoff_requests_total", &shadow(&[]), 2.0)
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 3.0);
    assert_identity(&m);
    assert_eq!(
        m.sum("runoff_request_body_bytes_total", &shadow(&[])),
        (1024 + 512 * 1024) as f64
    );
    assert_eq!(go.count(), 2, "a body over the cap reached the shadow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_cap_is_cut_off_never_completed() {
    use tokio::io::AsyncReadExt;
    // The shadow is a raw socket that keeps every byte it receives: the copy must stop
    // without the terminating chunk (an incomplete request to any HTTP parser) and the
    // connection must close.
    let node = fixture("node").start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let g = listener.local_addr().unwrap().to_string();
    let capture = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut all = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut all))
            .await
            .is_ok();
        (all, closed)
    });
    let n = node.addr.to_string();
    let runoff =
        Runoff::start(|p| config(p, &n, &g, ", methods: [POST], max_body_bytes: 1048576")).await;
    let big: Vec<u8> = (0..2 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let resp = raw_chunked_post(
        runoff.ports.listen,
        "/orders",
        &big,
        64 * 1024,
        "hello from node\n",
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        node.received()[0].body == big,
        "the primary did not get the whole body"
    );

    let (bytes, closed) = capture.await.unwrap();
    assert!(closed, "the abandoned copy's connection was left open");
    let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    let body = &bytes[head_end..];
    assert!(
        body.len() < 1024 * 1024 + 64 * 1024,
        "{} body bytes sent past a 1 MiB cap",
        body.len()
    );
    assert!(
        !body.ends_with(b"0\r\n\r\n"),
        "the truncated copy was terminated as if complete"
    );
    let m = runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", "body_too_large")],
            1.0,
        )
        .await;
    assert_identity(&m);
    assert_eq!(m.sum("runoff_requests_total", &shadow(&[])), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_methods_are_copied_and_copies_are_never_copied_again() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, "")).await;
    let client = reqwest::Client::new();
    // Default methods: GET and HEAD only.
    assert_eq!(
        status(client.post(runoff.url("/orders")).body("x")).await,
        200
    );
    assert_eq!(status(client.delete(runoff.url("/orders/1"))).await, 200);
    assert_eq!(status(client.head(runoff.url("/orders/1"))).await, 200);
    assert_eq!(status(client.get(runoff.url("/orders/1"))).await, 200);
    // Loop guard: a request that is itself a copy is not copied again.
    let r = client
        .get(runoff.url("/orders/2"))
        .header("x-runoff-shadow", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &shadow(&[("status_class", "2xx")]),
            2.0,
        )
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 2.0);
    assert_eq!(node.count(), 5);
    let methods: Vec<String> = go.received().iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods.len(), 2);
    assert!(methods.contains(&"HEAD".to_string()) && methods.contains(&"GET".to_string()));
}

/// How many times the process's `runoff-shadow` threads have gone to sleep and been woken, in
/// all (`voluntary_ctxt_switches`: a thread parked with nothing to do stays at its count);
/// `None` when it has no such thread.
fn shadow_wakeups(pid: u32) -> Option<u64> {
    let woken: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            if name.trim() != "runoff-shadow" {
                return None;
            }
            let status = std::fs::read_to_string(dir.join("status")).ok()?;
            status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    (!woken.is_empty()).then(|| woken.iter().sum())
}

/// Copies run on the proxy's threads by default (`server.shadow_threads: 0`); with 1 on a
/// thread of their own, never queued with callers' requests: that thread, asleep while
/// nothing is copied, is woken by the copies. Both deliver every copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_run_on_a_thread_of_their_own_when_told_to() {
    for (server, own_thread) in [("", false), ("server: { shadow_threads: 1 }\n", true)] {
        let go = fixture("go").start().await;
        let node = fixture("node").start().await;
        let (n, g) = (node.addr.to_string(), go.addr.to_string());
        let runoff = Runoff::start(|p| format!("{server}{}", config(p, &n, &g, ""))).await;
        let before = shadow_wakeups(runoff.pid());
        assert_eq!(before.is_some(), own_thread, "{server:?}");
        let client = reqwest::Client::new();
        for i in 0..20 {
            let resp = client
                .get(runoff.url(&format!("/orders/{i}")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.text().await.unwrap(), "hello from node\n");
        }
        let m = runoff
            .expect_metric(
                "runoff_requests_total",
                &shadow(&[("status_class", "2xx")]),
                20.0,
            )
            .await;
        assert_eq!(m.sum("runoff_mirror_dropped_total", ROUTE_GO), 0.0);
        assert_identity(&m);
        go.wait_for(20, Duration::from_secs(10)).await;
        let after = shadow_wakeups(runoff.pid());
        match (before, after) {
            (Some(b), Some(a)) => assert!(a > b, "the shadow thread did the copying: {b} -> {a}"),
            (None, None) => {}
            other => panic!("{server:?}: shadow threads came or went: {other:?}"),
        }
    }
}
