//! HTTP/2 with prior knowledge (h2c) on the plaintext listener, beside HTTP/1.1: split and
//! mirrored exactly as HTTP/1.1 is, from reqwest's and curl's HTTP/2 clients, and a client
//! opening and resetting streams as fast as it can (CVE-2023-44487, "rapid reset") neither grows
//! runoff's memory without bound nor starves another client.

use std::collections::HashMap;
use std::time::Duration;

use crate::harness::{fixture, load, Ports, Runoff};

fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap()
}

fn split_config(p: &Ports, node: &str, go: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\n  go: {{ address: \"{go}\" }}\nroutes:\n  - name: api\n    split: {{ node: 50, go: 50 }}\n",
        p.listen, p.admin
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_and_http1_share_the_port_and_are_split_and_counted_exactly() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| split_config(p, &n, &g)).await;

    let h2 = h2_client();
    let resp = h2.get(runoff.url("/orders")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    // 199 more on the same connection, 8 streams at a time, and 50 over HTTP/1.1.
    let statuses = load(&h2, &runoff.url("/orders"), 199, 8).await;
    assert_eq!(statuses, HashMap::from([(200, 199)]));
    let h1 = reqwest::Client::new();
    let statuses = load(&h1, &runoff.url("/orders"), 50, 4).await;
    assert_eq!(statuses, HashMap::from([(200, 50)]));

    assert_eq!(node.count() + go.count(), 250);
    assert!(
        node.count() > 60 && go.count() > 60,
        "{} / {}",
        node.count(),
        go.count()
    );
    let m = runoff.scrape().await;
    for f in [&node, &go] {
        assert_eq!(
            m.sum(
                "runoff_requests_total",
                &[("backend", f.name.as_str()), ("status_class", "2xx")]
            ),
            f.count() as f64,
            "{} counted exactly",
            f.name
        );
    }
    assert_eq!(
        m.sum("runoff_rejected_requests_total", &[]),
        0.0,
        "no HTTP/2 frame taken for a bad request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_request_is_mirrored_exactly_as_the_primary_was_sent_it() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff =
        Runoff::start(|p| crate::mirror::config(p, &n, &g, ", methods: [GET, POST]")).await;
    let client = h2_client();
    for i in 0..10 {
        let r = client
            .get(runoff.url(&format!("/orders/{i}?x=1")))
            .header("x-custom", format!("value-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (r.version(), r.status().as_u16()),
            (reqwest::Version::HTTP_2, 200)
        );
        let r = client
            .post(runoff.url("/orders"))
            .header("content-type", "application/json")
            .body(format!("{{\"order\":{i}}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    go.wait_for(20, Duration::from_secs(10)).await;
    let by_id = |f: &crate::harness::Fixture| -> HashMap<String, crate::harness::Received> {
        f.received()
            .into_iter()
            .map(|r| (r.header("x-request-id").unwrap().to_string(), r))
            .collect()
    };
    let (primary, shadow) = (by_id(&node), by_id(&go));
    assert_eq!(primary.len(), 20);
    for (id, p) in &primary {
        let s = shadow.get(id).unwrap_or_else(|| panic!("no copy of {id}"));
        assert_eq!(
            (&s.method, &s.uri, &s.body),
            (&p.method, &p.uri, &p.body),
            "{id}"
        );
        let mut ph: Vec<_> = p.headers.clone();
        let mut sh: Vec<_> = s
            .headers
            .iter()
            .filter(|(k, _)| k != "x-runoff-shadow")
            .cloned()
            .collect();
        ph.sort();
        sh.sort();
        assert_eq!(ph, sh, "{id}: the same headers on both legs");
        assert_eq!(
            p.header("host"),
            Some(
                runoff
                    .url("")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
            )
        );
    }
    let m = runoff.scrape().await;
    assert_eq!(m.sum("runoff_mirror_requests_total", &[]), 20.0);
    assert_eq!(m.sum("runoff_mirror_dropped_total", &[]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_speaks_h2c_with_prior_knowledge() {
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| crate::harness::one_backend(p, "node", node.addr, "")).await;
    let url = runoff.url("/orders");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "10",
                "--http2-prior-knowledge",
                "-o",
                "/dev/null",
            ])
            .args(["-w", "%{http_version} %{http_code}", &url])
            .output()
            .expect("curl (apt-get install curl)")
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "2 200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(node.count(), 1);
}

/// Resident memory of a process, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut_off_with_bounded_memory_and_others_are_served() {
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| crate::harness::one_backend(p, "node", node.addr, "")).await;
    let pid = runoff.pid();
    // Warm up: the allocator's arenas and runoff's per-route state exist before the baseline.
    let h2 = h2_client();
    assert_eq!(
        load(&h2, &runoff.url("/warm"), 200, 8).await,
        HashMap::from([(200, 200)])
    );
    let before = rss_kib(pid);

    // A well-behaved client, on its own connection, all along.
    let polite = {
        let url = runoff.url("/orders");
        tokio::spawn(async move {
            let client = h2_client();
            let mut seen: HashMap<u16, usize> = HashMap::new();
            for _ in 0..200 {
                let s = client
                    .get(&url)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                *seen.entry(s).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            seen
        })
    };

    // The attacker: up to 100,000 streams, each reset as soon as it is opened, on one
    // connection after another until each is refused.
    let mut opened = 0u64;
    let mut connections = 0u64;
    let started = std::time::Instant::now();
    while opened < 100_000 && started.elapsed() < Duration::from_secs(30) {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
            .await
            .unwrap();
        connections += 1;
        let Ok((mut send, conn)) = h2::client::handshake(tcp).await else {
            continue;
        };
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        while opened < 100_000 {
            let Ok(ready) = send.clone().ready().await else {
                break;
            };
            send = ready;
            let req = http::Request::get(runoff.url("/flood")).body(()).unwrap();
            let Ok((_resp, mut stream)) = send.send_request(req, false) else {
                break;
            };
            stream.send_reset(h2::Reason::CANCEL);
            opened += 1;
        }
        driver.abort();
    }
    let peak = rss_kib(pid);
    let polite = polite.await.unwrap();
    assert_eq!(
        polite,
        HashMap::from([(200, 200)]),
        "the other client was served throughout"
    );
    let growth_mib = peak.saturating_sub(before) as f64 / 1024.0;
    println!(
        "rapid reset: {opened} streams opened and reset over {connections} connections; RSS {before} -> {peak} KiB"
    );
    assert!(
        growth_mib < 32.0,
        "RSS grew {growth_mib:.1} MiB under the flood"
    );
    assert!(
        connections > 1,
        "runoff never closed the resetting connection ({opened} streams on one)"
    );
    // What reached the backend is bounded by what runoff accepted before cutting each
    // connection off, and each of those is counted as a request the caller abandoned.
    let m = runoff.scrape().await;
    let flood_requests = m.sum("runoff_requests_total", &[("backend", "node")]) - 400.0;
    println!(
        "flood requests counted: {flood_requests} ({} error), backend saw {}",
        m.sum("runoff_requests_total", &[("status_class", "error")]),
        node.count()
    );
    assert!(
        flood_requests < opened as f64 / 2.0,
        "most reset streams never became requests"
    );
    assert_eq!(
        m.sum("runoff_requests_total", &[("status_class", "error")]),
        flood_requests,
        "each reset stream that became a request counted as one the caller abandoned"
    );
    assert_eq!(node.count(), 400, "no reset stream reached the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_h2c_on_a_short_http1_request_is_answered_and_a_stalled_one_times_out() {
    use crate::harness::{status_of, RawConn};
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| {
        crate::harness::one_backend_with(p, "client_header_timeout: 1s", "node", node.addr, "")
    })
    .await;
    // 18 bytes: fewer than the 24 of the HTTP/2 preface, which a peek for it must not wait for.
    let mut conn = RawConn::connect(runoff.ports.listen).await;
    conn.send(b"GET / HTTP/1.0\r\n\r\n").await;
    let head = conn.read_to_close(Duration::from_secs(5)).await;
    assert_eq!(status_of(&head), Some(200), "{head:?}");
    // A first byte of the preface, then nothing: the header deadline still applies.
    let mut stalled = RawConn::connect(runoff.ports.listen).await;
    stalled.send(b"PRI").await;
    let rest = stalled.read_to_close(Duration::from_secs(5)).await;
    assert!(rest.is_empty(), "closed unanswered: {rest:?}");
    runoff
        .expect_metric("runoff_rejected_requests_total", &[("reason", "timeout")], 1.0)
        .await;
}
