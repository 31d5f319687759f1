//! Backends as pools: several addresses, one dying under load, health checks that take an
//! address out and back, a sticky split failing over to its fallback and back on the same
//! keys, retries on another address, and a dead shadow dropped as `unhealthy` without a
//! connection attempt once it is ejected.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{fixture, load, refused_port, Ports, Runoff};

fn pool_config(p: &Ports, addresses: &[String], options: &str) -> String {
    let list: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  svc:\n    addresses: [{}]\n{options}routes:\n  - name: api\n    split: {{ svc: 1 }}\n",
        p.listen,
        p.admin,
        list.join(", ")
    )
}

/// The states of a backend's addresses, from `GET /api/backends`.
async fn states(runoff: &Runoff, backend: &str) -> HashMap<String, String> {
    let v = runoff.get_json("/api/backends").await;
    v["backends"][backend]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["address"].as_str().unwrap().to_string(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Poll `GET /api/backends` until `backend`'s addresses (address → state) satisfy `done`.
async fn wait_states(
    runoff: &Runoff,
    backend: &str,
    what: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = states(runoff, backend).await;
        if done(&s) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{backend}: never {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_state(runoff: &Runoff, backend: &str, addr: &str, want: &str) {
    let what = format!("{addr} {want}");
    wait_states(runoff, backend, &what, |s| {
        s.get(addr).map(String::as_str) == Some(want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_killed_under_load_is_ejected_and_no_request_fails() {
    let a = fixture("a").start().await;
    let b = fixture("b").start().await;
    let c = fixture("c").start().await;
    let addrs = [a.addr.to_string(), b.addr.to_string(), c.addr.to_string()];
    let runoff = Runoff::start(|p| pool_config(p, &addrs, "")).await;
    let client = reqwest::Client::new();
    let first = load(&client, &runoff.url("/orders"), 1000, 8).await;
    assert_eq!(first, HashMap::from([(200, 1000)]));
    // Round robin: each address had its share.
    for f in [&a, &b, &c] {
        assert!(f.count() > 250, "{} answered {}", f.name, f.count());
    }
    c.kill().await;
    let c_before = c.count();
    let second = load(&client, &runoff.url("/orders"), 1000, 8).await;
    assert_eq!(second, HashMap::from([(200, 1000)]), "no request fails");
    assert_eq!(
        c.count(),
        c_before,
        "the dead address answered nothing more"
    );
    assert_eq!(
        a.count() + b.count() + c.count(),
        2000,
        "every request answered exactly once"
    );
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum("runoff_outlier_ejections_total", &[("backend", "svc")]),
        1.0
    );
    assert_eq!(
        m.sum(
            "runoff_backend_addresses",
            &[("backend", "svc"), ("state", "ejected")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "runoff_backend_addresses",
            &[("backend", "svc"), ("state", "healthy")]
        ),
        2.0
    );
    let retries = m.sum("runoff_upstream_retries_total", &[("backend", "svc")]);
    let refused = m.sum(
        "runoff_upstream_errors_total",
        &[("backend", "svc"), ("kind", "connect_refused")],
    );
    let errors = m.sum("runoff_upstream_errors_total", &[("backend", "svc")]);
    assert!(retries >= 1.0, "the failed attempts were retried");
    assert_eq!(
        refused, retries,
        "each refused connection counted, and each retried on another address"
    );
    // Besides those, an idle pooled connection to the killed address that Pingora takes before
    // it has noticed the close fails too (counted) and is retried by Pingora itself (a stale
    // connection, not one of the backend's `retries`): at most one per connection the pool
    // held to it, 8 requests being under way at once.
    assert!(
        errors - refused <= 8.0,
        "only stale pooled connections fail otherwise: {errors} errors, {refused} refused"
    );
    // The requests counted once each (a request is counted just after its answer: poll).
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "svc"), ("status_class", "2xx")],
            2000.0,
        )
        .await;
    assert_eq!(states(&runoff, "svc").await[&addrs[2]], "ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_is_retried_on_another_address_even_for_a_post() {
    let dead = refused_port();
    let a = fixture("a").echo().start().await;
    let addrs = [dead.addr().to_string(), a.addr.to_string()];
    let runoff =
        Runoff::start(|p| pool_config(p, &addrs, "    outlier: { consecutive_errors: 0 }\n")).await;
    let client = reqwest::Client::new();
    for i in 0..10 {
        let resp = client
            .post(runoff.url("/orders"))
            .body(format!("order {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let got: Vec<Vec<u8>> = a.received().into_iter().map(|r| r.body).collect();
    assert_eq!(got.len(), 10, "each POST reached the live address once");
    for (i, body) in got.iter().enumerate() {
        assert_eq!(body, format!("order {i}").as_bytes());
    }
    let m = runoff.scrape().await;
    // Round robin sends every other first attempt to the dead address; never ejected here.
    assert_eq!(
        m.sum("runoff_upstream_retries_total", &[("backend", "svc")]),
        5.0
    );
    assert_eq!(
        m.sum(
            "runoff_upstream_errors_total",
            &[("backend", "svc"), ("kind", "connect_refused")]
        ),
        5.0
    );
    assert_eq!(
        m.sum("runoff_outlier_ejections_total", &[("backend", "svc")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_failing_its_health_checks_leaves_the_rotation_and_returns() {
    let health = Arc::new(AtomicU16::new(200));
    let a = fixture("a").start().await;
    let b = fixture("b")
        .when_path("/health", |f| f.status_from(health.clone()))
        .start()
        .await;
    let addrs = [a.addr.to_string(), b.addr.to_string()];
    let runoff = Runoff::start(|p| {
        pool_config(
            p,
            &addrs,
            "    health: { path: /health, interval: 100ms, timeout: 100ms, healthy_after: 2, unhealthy_after: 2 }\n",
        )
    })
    .await;
    let served_b = || b.received().iter().filter(|r| r.uri == "/orders").count();
    let client = reqwest::Client::new();

    health.store(503, Ordering::SeqCst);
    wait_state(&runoff, "svc", &addrs[1], "unhealthy").await;
    let statuses = load(&client, &runoff.url("/orders"), 100, 4).await;
    assert_eq!(statuses, HashMap::from([(200, 100)]));
    assert_eq!(served_b(), 0, "no request to an address failing its checks");
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_backend_addresses",
            &[("backend", "svc"), ("state", "unhealthy")]
        ),
        1.0
    );
    assert!(
        m.sum(
            "runoff_health_checks_total",
            &[("backend", "svc"), ("result", "fail")]
        ) >= 2.0
    );

    health.store(200, Ordering::SeqCst);
    wait_state(&runoff, "svc", &addrs[1], "healthy").await;
    let statuses = load(&client, &runoff.url("/orders"), 100, 1).await;
    assert_eq!(statuses, HashMap::from([(200, 100)]));
    assert_eq!(served_b(), 50, "back in the round robin");
}

/// The sticky keys (of `keys`) the route sent to `go`, by the `x-fixture` of each answer.
async fn keys_served_by(runoff: &Runoff, keys: &[String], who: &str) -> BTreeSet<String> {
    let client = reqwest::Client::new();
    let mut out = BTreeSet::new();
    for k in keys {
        let resp = client
            .get(runoff.url("/orders"))
            .header("x-user", k)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "key {k}");
        if resp.headers()["x-fixture"] == who {
            out.insert(k.clone());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_candidate_fails_over_to_the_fallback_and_its_keys_come_back() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let go_addr = go.addr;
    let runoff = Runoff::start(|p| {
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{n}\" }}\n  go:\n    address: \"{g}\"\n    health: {{ path: /, interval: 100ms, timeout: 100ms, healthy_after: 1, unhealthy_after: 1 }}\nroutes:\n  - name: api\n    split: {{ node: 50, go: 50 }}\n    sticky: {{ header: x-user }}\n    on_unhealthy: {{ fallback: node }}\n    analysis: {{ min_samples: 50 }}\n",
            p.listen, p.admin
        )
    })
    .await;
    let keys: Vec<String> = (0..200).map(|i| format!("user-{i}")).collect();
    let to_go = keys_served_by(&runoff, &keys, "go").await;
    assert!(
        (60..=140).contains(&to_go.len()),
        "about half the keys go to go: {}",
        to_go.len()
    );

    go.kill().await;
    wait_state(&runoff, "go", &g, "unhealthy").await;
    let during = keys_served_by(&runoff, &keys, "go").await;
    assert!(during.is_empty(), "nothing reaches a dead candidate");
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_failover_requests_total",
            &[("route", "api"), ("from", "go"), ("to", "node")]
        ),
        to_go.len() as f64,
        "exactly the keys that map to go failed over"
    );
    assert_eq!(
        m.sum("runoff_requests_total", &[("status_class", "5xx")]),
        0.0
    );
    // Failed-over requests are measured on node but are not node's own in the summary.
    // A candidate with no healthy address fails its verdict, whatever its figures.
    let analysis = runoff.get_json("/api/analysis").await;
    let route = &analysis["routes"][0];
    assert_eq!(route["overall"], "fail", "{route:#}");
    assert!(
        route["explanation"]
            .as_str()
            .unwrap()
            .contains("`go` has no healthy address"),
        "{route:#}"
    );
    let own = 2 * (keys.len() - to_go.len());
    // Node counted what it served (a request is counted just after its answer: poll).
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "node"), ("role", "primary")],
            (own + to_go.len()) as f64,
        )
        .await;
    let summary = runoff.get_json("/api/summary").await;
    let node_row = summary["routes"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "node" && b["role"] == "primary")
        .cloned()
        .unwrap();
    assert_eq!(
        node_row["total"]["requests"].as_u64(),
        Some(own as u64),
        "the summary keeps failed-over requests out of node's own"
    );

    let _go = fixture("go").start_at(go_addr).await;
    wait_state(&runoff, "go", &g, "healthy").await;
    let after = keys_served_by(&runoff, &keys, "go").await;
    assert_eq!(after, to_go, "the same keys return to the candidate");
    let analysis = runoff.get_json("/api/analysis").await;
    let explanation = analysis["routes"][0]["explanation"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!explanation.contains("no healthy address"), "{explanation}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shadow_is_dropped_as_unhealthy_without_connecting_once_ejected() {
    // A shadow that accepts and closes at once: each connection attempt is seen and counted.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let seen = accepted.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    let node = fixture("node").start().await;
    let n = node.addr.to_string();
    let runoff = Runoff::start(|p| {
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{n}\" }}\n  go:\n    address: \"{dead}\"\n    outlier: {{ consecutive_errors: 2, base_ejection: 1m }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n    mirror: {{ to: go }}\n",
            p.listen, p.admin
        )
    })
    .await;
    let client = reqwest::Client::new();
    // One at a time, each copy settled before the next request: the ejection's moment is exact.
    for i in 0..30 {
        let status = client
            .get(runoff.url(&format!("/orders/{i}")))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let settled = i as f64 + 1.0;
        let mut m = runoff.scrape().await;
        for _ in 0..200 {
            if m.sum("runoff_mirror_dropped_total", &[("backend", "go")]) == settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            m = runoff.scrape().await;
        }
        assert_eq!(
            m.sum("runoff_mirror_dropped_total", &[("backend", "go")]),
            settled
        );
    }
    let m = runoff.scrape().await;
    let failed = m.sum(
        "runoff_mirror_dropped_total",
        &[("backend", "go"), ("reason", "upstream_error")],
    );
    assert_eq!(
        failed, 2.0,
        "two failures in a row eject the shadow's address"
    );
    assert_eq!(
        m.sum(
            "runoff_mirror_dropped_total",
            &[("backend", "go"), ("reason", "unhealthy")]
        ),
        28.0
    );
    assert_eq!(
        m.sum("runoff_mirror_requests_total", &[("backend", "go")]),
        30.0
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "no connection attempt after the ejection"
    );
    assert_eq!(node.count(), 30);
    acceptor.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_healthy_address_and_no_fallback_runoff_answers_503_and_counts_it() {
    let dead = refused_port();
    let addr = dead.addr().to_string();
    let runoff = Runoff::start(|p| {
        pool_config(
            p,
            std::slice::from_ref(&addr),
            "    outlier: { consecutive_errors: 1, base_ejection: 1m }\n",
        )
    })
    .await;
    let client = reqwest::Client::new();
    let statuses = load(&client, &runoff.url("/orders"), 10, 1).await;
    // The first fails to connect (502) and ejects the only address; the rest are refused.
    assert_eq!(statuses, HashMap::from([(502, 1), (503, 9)]));
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_unhealthy_refused_total",
            &[("route", "api"), ("backend", "svc")]
        ),
        9.0
    );
    assert_eq!(
        m.sum(
            "runoff_upstream_errors_total",
            &[("backend", "svc"), ("kind", "connect_refused")]
        ),
        1.0,
        "no connection attempt while ejected"
    );
    assert_eq!(
        m.sum(
            "runoff_backend_addresses",
            &[("backend", "svc"), ("state", "ejected")]
        ),
        1.0
    );
}

/// A DNS server on loopback answering `A` queries for one name from a list the test edits
/// (TTL 0); `fail` makes it answer SERVFAIL. Anything else gets an empty answer.
struct TestDns {
    addr: std::net::SocketAddr,
    answers: Arc<std::sync::Mutex<Vec<std::net::Ipv4Addr>>>,
    fail: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn test_dns(name: &'static str) -> TestDns {
    use hickory_proto::op::{Message, OpCode, ResponseCode};
    use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let answers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (list, failing) = (answers.clone(), fail.clone());
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            reply.metadata.recursion_desired = query.metadata.recursion_desired;
            reply.metadata.recursion_available = true;
            reply.metadata.authoritative = true;
            if failing.load(Ordering::SeqCst) {
                reply.metadata.response_code = ResponseCode::ServFail;
            }
            for q in &query.queries {
                reply.add_query(q.clone());
                let asked = q.name().to_ascii().to_ascii_lowercase();
                let ours = asked.trim_end_matches('.') == name;
                if ours && q.query_type() == RecordType::A && !failing.load(Ordering::SeqCst) {
                    for ip in list.lock().unwrap().iter() {
                        reply.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(*ip))));
                    }
                }
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    TestDns {
        addr,
        answers,
        fail,
        task,
    }
}

async fn wait_addresses(runoff: &Runoff, want: usize) {
    let what = format!("{want} addresses");
    wait_states(runoff, "svc", &what, |s| s.len() == want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_is_resolved_again_and_its_addresses_follow_the_answers() {
    let dns = test_dns("svc.runoff.test").await;
    let a = fixture("a").start().await;
    let port = a.addr.port();
    // The same port on another loopback address: the name's second answer.
    let b = fixture("b")
        .start_at(format!("127.0.0.2:{port}").parse().unwrap())
        .await;
    dns.answers.lock().unwrap().push([127, 0, 0, 1].into());
    let resolver = dns.addr;
    let runoff = Runoff::start(|p| {
        format!(
            "listen: 127.0.0.1:{}\nserver: {{ resolver: [\"{resolver}\"] }}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  svc: {{ address: \"svc.runoff.test:{port}\", resolve_every: 100ms }}\nroutes:\n  - name: api\n    split: {{ svc: 1 }}\n",
            p.listen, p.admin
        )
    })
    .await;
    let client = reqwest::Client::new();
    let url = runoff.url("/orders");
    let send = |n: usize| load(&client, &url, n, 1);
    assert_eq!(send(20).await, HashMap::from([(200, 20)]));
    assert_eq!(
        (a.count(), b.count()),
        (20, 0),
        "resolved at load: one address"
    );

    dns.answers.lock().unwrap().push([127, 0, 0, 2].into());
    wait_addresses(&runoff, 2).await;
    assert_eq!(send(20).await, HashMap::from([(200, 20)]));
    assert_eq!((a.count(), b.count()), (30, 10), "both addresses in turn");

    *dns.answers.lock().unwrap() = vec![[127, 0, 0, 2].into()];
    wait_addresses(&runoff, 1).await;
    assert_eq!(
        states(&runoff, "svc").await.keys().next().unwrap(),
        &format!("127.0.0.2:{port}")
    );
    assert_eq!(send(20).await, HashMap::from([(200, 20)]));
    assert_eq!(
        (a.count(), b.count()),
        (30, 30),
        "the departed address gets nothing"
    );

    // The DNS server fails: the last good answer stays, counted.
    dns.fail.store(true, Ordering::SeqCst);
    let before = runoff.scrape().await.sum(
        "runoff_dns_resolutions_total",
        &[("backend", "svc"), ("result", "error")],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = runoff.scrape().await;
        if m.sum(
            "runoff_dns_resolutions_total",
            &[("backend", "svc"), ("result", "error")],
        ) >= before + 2.0
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no failed resolution counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(send(20).await, HashMap::from([(200, 20)]));
    assert_eq!(
        (a.count(), b.count()),
        (30, 50),
        "still the last good address"
    );
    let m = runoff.scrape().await;
    assert!(
        m.sum(
            "runoff_dns_resolutions_total",
            &[("backend", "svc"), ("result", "ok")]
        ) >= 2.0
    );
}
