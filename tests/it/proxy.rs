//! The proxy end to end: real fixture backends, the real runoff binary, real `/metrics`.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{self, fixture, load, refused_port, Fixture, Metrics, Ports, Runoff};

fn backends_yaml(backends: &[(&str, String)]) -> String {
    let mut s = String::from("backends:\n");
    for (name, addr) in backends {
        s.push_str(&format!(
            "  {name}: {{ address: \"{addr}\", read_timeout: 5s }}\n"
        ));
    }
    s
}

fn config(p: &Ports, backends: &[(&str, String)], routes: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nserver: {{ threads: 2, drain_timeout: 5s }}\nadmin: {{ listen: 127.0.0.1:{} }}\n{}routes:\n{routes}",
        p.listen,
        p.admin,
        backends_yaml(backends)
    )
}

fn two(node: &Fixture, go: &Fixture) -> Vec<(&'static str, String)> {
    vec![("node", node.addr.to_string()), ("go", go.addr.to_string())]
}

const RB: &[(&str, &str)] = &[("route", "api"), ("role", "primary")];

fn labels<'a>(backend: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("route", "api"), ("backend", backend), ("role", "primary")];
    l.extend_from_slice(extra);
    l
}

/// Send `n` GETs to route `api` (backend `node`), each answered `status` by runoff itself;
/// then exactly `n` requests counted as `error` and `n` upstream errors of `kind`.
async fn failing_requests(runoff: &Runoff, n: usize, status: u16, kind: &str) -> Metrics {
    let client = reqwest::Client::new();
    for _ in 0..n {
        let r = client.get(runoff.url("/api")).send().await.unwrap();
        assert_eq!(r.status(), status);
    }
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &labels("node", &[("status_class", "error")]),
            n as f64,
        )
        .await;
    assert_eq!(
        m.sum(
            "runoff_upstream_errors_total",
            &labels("node", &[("kind", kind)])
        ),
        n as f64
    );
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_follows_weights_and_counts_match_what_backends_received() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let b = two(&node, &go);
    let runoff =
        Runoff::start(|p| config(p, &b, "  - name: api\n    split: { node: 70, go: 30 }\n")).await;

    let n = 2000usize;
    let client = reqwest::Client::new();
    let statuses = load(&client, &runoff.url("/api/items?page=1"), n, 8).await;
    assert_eq!(statuses, HashMap::from([(200, n)]));

    // Every request reached exactly one backend.
    assert_eq!(node.count() + go.count(), n as u64);
    // 30% of 2000 = 600, sd = sqrt(2000 * 0.3 * 0.7) = 20.5; allow 5 sd.
    let go_share = go.count() as f64;
    assert!(
        (go_share - 600.0).abs() < 5.0 * 20.5,
        "go got {go_share} of {n}"
    );

    let m = runoff
        .expect_metric("runoff_requests_total", RB, n as f64)
        .await;
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &labels("node", &[("status_class", "2xx")])
        ),
        node.count() as f64
    );
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &labels("go", &[("status_class", "2xx")])
        ),
        go.count() as f64
    );
    assert_eq!(
        m.sum("runoff_requests_total", &[("status_class", "error")]),
        0.0
    );
    // One duration and one TTFB observation per request, per backend.
    assert_eq!(
        m.sum(
            "runoff_request_duration_seconds_count",
            &labels("node", &[])
        ),
        node.count() as f64
    );
    assert_eq!(
        m.sum("runoff_upstream_ttfb_seconds_count", &labels("go", &[])),
        go.count() as f64
    );
    // Connections taken: one per request; at most a few dozen new ones (keep-alive pool).
    let taken = m.sum("runoff_upstream_connections_total", &[("role", "primary")]);
    assert_eq!(taken, n as f64);
    let fresh = m.sum("runoff_upstream_connections_total", &[("reused", "false")]);
    assert!(
        (2.0..=64.0).contains(&fresh),
        "{fresh} new upstream connections for {n} requests"
    );
    assert_eq!(
        m.sum("runoff_upstream_connect_duration_seconds_count", &[]),
        fresh
    );
    assert_eq!(
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "node")]
        ),
        70.0
    );
    assert_eq!(
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "go")]
        ),
        30.0
    );
    assert_eq!(m.sum("runoff_in_flight_requests", &[]), 0.0);
    assert_eq!(m.sum("runoff_build_info", &[]), 1.0);
    let body = "hello from node\n".len() as f64;
    assert_eq!(
        m.sum("runoff_response_body_bytes_total", &labels("node", &[])),
        body * node.count() as f64
    );
}

/// The backend a response came from, by the fixture's own header.
async fn served_by(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()
        .get("x-fixture")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

fn expected_backend(key: &str, weights: &[(&str, u32)]) -> String {
    use runoff::config::SplitEntry;
    let split: Vec<SplitEntry> = weights
        .iter()
        .enumerate()
        .map(|(i, (_, w))| SplitEntry {
            backend: i,
            weight: *w,
        })
        .collect();
    let i = runoff::routing::hash::index_for_point(
        &split,
        runoff::routing::hash::sticky_point(key.as_bytes()),
    )
    .unwrap();
    weights[i].0.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_keys_reach_the_same_backend_across_requests_and_processes() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let b = two(&node, &go);
    let routes =
        "  - name: api\n    split: { node: 50, go: 50 }\n    sticky: { header: x-user-id }\n";
    let a = Runoff::start(|p| config(p, &b, routes)).await;
    let bb = Runoff::start(|p| config(p, &b, routes)).await;
    let client = reqwest::Client::new();
    let mut on_go = 0;
    for k in 0..100 {
        let key = format!("user-{k}");
        let h = [("x-user-id", key.as_str())];
        let first = served_by(&client, &a.url("/api/x"), &h).await;
        for _ in 0..2 {
            assert_eq!(
                served_by(&client, &a.url("/api/x"), &h).await,
                first,
                "{key} moved within a process"
            );
        }
        assert_eq!(
            served_by(&client, &bb.url("/api/y"), &h).await,
            first,
            "{key} differs across processes"
        );
        assert_eq!(
            first,
            expected_backend(&key, &[("node", 50), ("go", 50)]),
            "{key} not where the hash says"
        );
        if first == "go" {
            on_go += 1;
        }
    }
    // Both cohorts are populated (binomial(100, 0.5): 20..80 is beyond 6 sd).
    assert!((20..=80).contains(&on_go), "{on_go} of 100 keys on go");
    // A published vector, end to end: user-1 hashes to 0.486, so node under 50/50.
    assert_eq!(
        served_by(&client, &a.url("/api"), &[("x-user-id", "user-1")]).await,
        "node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_canary_weight_keeps_its_keys() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let b = two(&node, &go);
    let at = |w: u32| {
        format!("  - name: api\n    split: {{ node: {}, go: {w} }}\n    sticky: {{ cookie: session }}\n", 100 - w)
    };
    let (r10, r20) = (at(10), at(20));
    let ten = Runoff::start(|p| config(p, &b, &r10)).await;
    let twenty = Runoff::start(|p| config(p, &b, &r20)).await;
    let client = reqwest::Client::new();
    let (mut canary10, mut canary20) = (0, 0);
    for k in 0..300 {
        let cookie = format!("theme=dark; session=s{k}");
        let h = [("cookie", cookie.as_str())];
        let before = served_by(&client, &ten.url("/"), &h).await;
        let after = served_by(&client, &twenty.url("/"), &h).await;
        if before == "go" {
            canary10 += 1;
            assert_eq!(
                after, "go",
                "session s{k} drifted off the canary when its weight rose"
            );
        }
        if after == "go" {
            canary20 += 1;
        }
    }
    assert!(
        canary20 > canary10,
        "the ramp moved no one: {canary10} -> {canary20}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_header_picks_a_backend_of_the_split() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let b = two(&node, &go);
    let runoff = Runoff::start(|p| {
        config(p, &b, "  - name: api\n    split: { node: 100, go: 0 }\n    force: {}\n  - name: plain\n    match: { path_prefix: /plain }\n    split: { node: 100 }\n    force_header: false\n")
    })
    .await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(
            served_by(&client, &runoff.url("/x"), &[("x-runoff-backend", "go")]).await,
            "go"
        );
        assert_eq!(served_by(&client, &runoff.url("/x"), &[]).await, "node");
        // Not a backend of the split: ignored.
        assert_eq!(
            served_by(&client, &runoff.url("/x"), &[("x-runoff-backend", "rust")]).await,
            "node"
        );
    }
    assert_eq!(go.count(), 20);
    assert_eq!(node.count(), 40);
    runoff
        .expect_metric("runoff_requests_total", &labels("go", &[]), 20.0)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_requests_get_404_and_are_counted() {
    let node = fixture("node").start().await;
    let b = vec![("node", node.addr.to_string())];
    let runoff = Runoff::start(|p| config(p, &b, "  - name: api\n    match: { path_prefix: /api, methods: [GET] }\n    split: { node: 1 }\n")).await;
    let client = reqwest::Client::new();
    for _ in 0..7 {
        let r = client.get(runoff.url("/elsewhere")).send().await.unwrap();
        assert_eq!(r.status(), 404);
    }
    let r = client
        .post(runoff.url("/api/x"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client.get(runoff.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    runoff
        .expect_metric("runoff_requests_total", &[], 1.0)
        .await;
    let m = runoff
        .expect_metric("runoff_unrouted_requests_total", &[], 8.0)
        .await;
    assert_eq!(node.count(), 1);
    assert_eq!(m.sum("runoff_requests_total", &[]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_backend_gives_502_counted_as_connect_refused() {
    let refused = refused_port();
    let b = vec![("node", refused.addr().to_string())];
    // Passive ejection off: every request tries (with it on, the fourth is answered 503
    // without a connection attempt; see pools.rs).
    let runoff = Runoff::start(|p| {
        config(p, &b, "  - name: api\n    split: { node: 1 }\n").replace(
            "read_timeout: 5s",
            "read_timeout: 5s, outlier: { consecutive_errors: 0 }",
        )
    })
    .await;
    // One attempt per request (a backend of one address has no other to retry on).
    let m = failing_requests(&runoff, 5, 502, "connect_refused").await;
    assert_eq!(m.sum("runoff_upstream_errors_total", &[]), 5.0);
    assert_eq!(m.sum("runoff_requests_total", &[]), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_times_out_gives_504_counted_as_read_timeout() {
    let slow = fixture("node").delay(Duration::from_secs(3)).start().await;
    let runoff =
        Runoff::start(|p| harness::one_backend(p, "node", slow.addr, ", read_timeout: 200ms"))
            .await;
    failing_requests(&runoff, 3, 504, "read_timeout").await;
    // Idempotent GETs are not retried on a fresh connection's timeout.
    assert_eq!(slow.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_timeout_gives_504_counted_as_connect_timeout() {
    // A backend that never completes a handshake: a listener with a backlog of 1 that never
    // accepts, its accept queue filled, so that further SYNs are dropped.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    let mut full = false;
    for _ in 0..512 {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_millis(50), connect).await {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("connect to {addr}: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(
        full,
        "{} connections and the accept queue is not full",
        fillers.len()
    );
    let runoff =
        Runoff::start(|p| harness::one_backend(p, "node", addr, ", connect_timeout: 200ms")).await;
    failing_requests(&runoff, 1, 504, "connect_timeout").await;
    drop((fillers, listener));
}
