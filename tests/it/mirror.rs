//! Shadow traffic end to end: copies reach the candidate, the caller only ever sees the
//! primary, and every copy is accounted for exactly.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{
    self, fixture, load, raw_chunked_post, refused_port, status, Metrics, Ports, RawConn, Runoff,
};

/// node serves the caller; go gets the copies.
fn config(p: &Ports, node: &str, go: &str, mirror: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\n  go: {{ address: \"{go}\", read_timeout: 60s }}\nroutes:\n  - name: orders\n    split: {{ node: 100 }}\n    mirror: {{ to: go{mirror} }}\n",
        p.listen, p.admin
    )
}

const ROUTE_GO: &[(&str, &str)] = &[("route", "orders"), ("backend", "go")];

fn shadow<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("route", "orders"), ("backend", "go"), ("role", "shadow")];
    l.extend_from_slice(extra);
    l
}

/// mirror_requests = completed + dropped, exactly.
fn assert_identity(m: &Metrics) {
    let sent = m.sum("runoff_mirror_requests_total", ROUTE_GO);
    let completed = m.sum("runoff_requests_total", &shadow(&[]));
    let drops = m.sum("runoff_mirror_dropped_total", ROUTE_GO);
    assert_eq!(
        sent,
        completed + drops,
        "sent {sent} != completed {completed} + dropped {drops}"
    );
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &shadow(&[("status_class", "error")])
        ),
        0.0
    );
}

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
    let runoff = Runoff::start(|p| config(p, &n, &go_addr, extra)).await;
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

fn three(p: &Ports, node: &str, go: &str, cand: &str, route_extra: &str, mirror: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\n  go: {{ address: \"{go}\" }}\n  cand: {{ address: \"{cand}\" }}\nroutes:\n  - name: orders\n    split: {{ node: 50, go: 50 }}\n{route_extra}    mirror: {{ to: {mirror} }}\n",
        p.listen, p.admin
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_by_key_is_exact_and_independent_of_the_split() {
    use runoff::routing::hash::{sample_point, sampled};
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let cand = fixture("cand").start().await;
    let (n, g, c) = (
        node.addr.to_string(),
        go.addr.to_string(),
        cand.addr.to_string(),
    );
    let runoff = Runoff::start(|p| {
        three(
            p,
            &n,
            &g,
            &c,
            "    sticky: { header: x-user-id }\n",
            "cand, percent: 50",
        )
    })
    .await;
    let client = reqwest::Client::new();
    let keys = 1000;
    let mut expected: u32 = 0;
    // (served, mirrored) per side.
    let mut side: HashMap<String, (u32, u32)> = HashMap::new();
    for k in 0..keys {
        let key = format!("user-{k}");
        let before = cand.count();
        let resp = client
            .get(runoff.url("/o"))
            .header("x-user-id", &key)
            .send()
            .await
            .unwrap();
        let served = resp.headers()["x-fixture"].to_str().unwrap().to_string();
        assert_eq!(resp.status(), 200);
        let should = sampled(sample_point(key.as_bytes()), 50.0);
        if should {
            expected += 1;
            cand.wait_for(before + 1, Duration::from_secs(10)).await;
        }
        let e = side.entry(served).or_default();
        e.0 += 1;
        e.1 += u32::from(should);
    }
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "shadow")],
            f64::from(expected),
        )
        .await;
    assert_eq!(cand.count(), u64::from(expected));
    assert_eq!(
        m.sum("runoff_mirror_requests_total", &[("backend", "cand")]),
        f64::from(expected)
    );
    // Half of each side is mirrored: the sampling hash (seed 1) is not the split's (seed 0).
    for (name, (served, mirrored)) in side {
        let share = f64::from(mirrored) / f64::from(served);
        let sd = (0.25 / f64::from(served)).sqrt();
        assert!(
            (share - 0.5).abs() < 5.0 * sd,
            "{name}: {mirrored} of {served} mirrored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sampling_follows_percent_and_the_target_is_never_copied_to_itself() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let cand = fixture("cand").start().await;
    let (n, g, c) = (
        node.addr.to_string(),
        go.addr.to_string(),
        cand.addr.to_string(),
    );
    // Mirror to go, which also serves half the traffic: only node's half is copied, at 30%.
    let runoff = Runoff::start(|p| three(p, &n, &g, &c, "", "go, percent: 30")).await;
    let client = reqwest::Client::new();
    let total = 2000usize;
    let statuses = load(&client, &runoff.url("/o"), total, 8).await;
    assert_eq!(statuses, HashMap::from([(200, total)]));
    let node_served = node.count() as f64;
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "primary")],
            total as f64,
        )
        .await;
    let copies = m.sum("runoff_mirror_requests_total", &[("backend", "go")]);
    let sd = (node_served * 0.3 * 0.7).sqrt();
    assert!(
        (copies - 0.3 * node_served).abs() < 5.0 * sd,
        "{copies} copies of {node_served} node requests"
    );
    // go received its own primary share plus exactly the completed copies.
    let m = runoff
        .expect_metric("runoff_requests_total", &[("role", "shadow")], copies)
        .await;
    assert_eq!(
        go.count() as f64,
        m.sum(
            "runoff_requests_total",
            &[("backend", "go"), ("role", "primary")]
        ) + copies
    );
    assert_eq!(cand.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_never_connects_drops_a_copy_with_a_body_as_primary_failed() {
    let go = fixture("go").start().await;
    let refused = refused_port();
    let (n, g) = (refused.addr().to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, ", methods: [GET, POST]")).await;
    let client = reqwest::Client::new();
    // The body only flows once the primary is connected, so this copy never gets one.
    let r = client
        .post(runoff.url("/orders"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // A copy without a body does not need the primary at all.
    let r = client.get(runoff.url("/orders")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    runoff
        .expect_metric(
            "runoff_mirror_dropped_total",
            &[("reason", "primary_failed")],
            1.0,
        )
        .await;
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &shadow(&[("status_class", "2xx")]),
            1.0,
        )
        .await;
    assert_eq!(m.sum("runoff_mirror_requests_total", ROUTE_GO), 2.0);
    assert_identity(&m);
    // No ratio for a pair whose primary failed.
    assert_eq!(m.sum("runoff_mirror_latency_ratio_count", ROUTE_GO), 0.0);
    assert_eq!(go.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_both_legs_under_one_request_id() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let (n, g, log) = (
        node.addr.to_string(),
        go.addr.to_string(),
        log_path.display().to_string(),
    );
    let runoff = Runoff::start(|p| format!("access_log: {log}\n{}", config(p, &n, &g, ""))).await;
    let r = reqwest::get(runoff.url("/orders/9?x=1")).await.unwrap();
    assert_eq!(r.status(), 200);
    let lines = harness::json_lines(&log_path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let primary = lines.iter().find(|l| l["role"] == "primary").unwrap();
    let copy = lines.iter().find(|l| l["role"] == "shadow").unwrap();
    assert_eq!(primary["request_id"], copy["request_id"]);
    assert_eq!(copy["backend"], "go");
    assert_eq!(copy["path"], "/orders/9?x=1");
    assert_eq!(copy["status"], 200);
    assert_eq!(copy["response_bytes"], 14);
}

/// A caller's request id is kept only when it is fit to keep (1 to 200 visible ASCII bytes);
/// otherwise runoff replaces it with its own, the same on both legs and in the access log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_request_id_is_replaced_on_both_legs_and_in_the_access_log() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let (n, g, log) = (
        node.addr.to_string(),
        go.addr.to_string(),
        log_path.display().to_string(),
    );
    let runoff = Runoff::start(|p| format!("access_log: {log}\n{}", config(p, &n, &g, ""))).await;
    let too_long = "a".repeat(201);
    let at_limit = "b".repeat(200);
    let cases: [(&str, &[u8], bool); 4] = [
        ("too long", too_long.as_bytes(), false),
        ("a space", b"has space", false),
        ("a non-ASCII byte", b"caf\xc3\xa9", false),
        ("200 bytes", at_limit.as_bytes(), true),
    ];
    let client = reqwest::Client::new();
    for (i, (what, id, kept)) in cases.iter().enumerate() {
        let value = reqwest::header::HeaderValue::from_bytes(id).unwrap();
        let path = format!("/orders/{i}");
        let r = client
            .get(runoff.url(&path))
            .header("x-request-id", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        go.wait_for(i as u64 + 1, Duration::from_secs(10)).await;
        let lines = harness::json_lines(&log_path, 2 * (i + 1)).await;
        let primary = node.received()[i].clone();
        let copy = go.received()[i].clone();
        let sent_up = primary.headers_named("x-request-id");
        assert_eq!(sent_up.len(), 1, "{what}: one id upstream, {sent_up:?}");
        let id_up = sent_up[0].to_string();
        assert_eq!(
            copy.headers_named("x-request-id"),
            vec![id_up.as_str()],
            "{what}: the shadow gets the primary's id"
        );
        let logged: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["path"] == path.as_str())
            .collect();
        assert_eq!(logged.len(), 2, "{what}: {lines:?}");
        for l in logged {
            assert_eq!(l["request_id"], id_up.as_str(), "{what}: {l}");
        }
        if *kept {
            assert_eq!(id_up.as_bytes(), *id, "{what}: kept as sent");
        } else {
            assert_ne!(id_up.as_bytes(), *id, "{what}: replaced");
            assert_eq!(id_up.len(), 32, "{what}: a generated id, {id_up}");
            assert!(id_up.bytes().all(|b| b.is_ascii_hexdigit()), "{id_up}");
        }
    }
}
