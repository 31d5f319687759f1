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
    // Each backend's count exactly (a request is counted just after its answer: poll).
    for f in [&node, &go] {
        runoff
            .expect_metric(
                "runoff_requests_total",
                &[("backend", f.name.as_str()), ("status_class", "2xx")],
                f.count() as f64,
            )
            .await;
    }
    let m = runoff.scrape().await;
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
    // Counted once settled: two scrapes apart agree.
    let mut m = runoff.scrape().await;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = runoff.scrape().await;
        let total = |m: &crate::harness::Metrics| m.sum("runoff_requests_total", &[]);
        if total(&next) == total(&m) {
            break;
        }
        m = next;
    }
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
    // Each connection cut off for resetting too much is counted.
    let calm = m.sum(
        "runoff_http2_goaways_total",
        &[("reason", "enhance_your_calm")],
    );
    println!("GOAWAY ENHANCE_YOUR_CALM counted: {calm}");
    assert!(
        calm >= (connections - 1) as f64,
        "{calm} of {connections} connections"
    );
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
        .expect_metric(
            "runoff_rejected_requests_total",
            &[("reason", "timeout")],
            1.0,
        )
        .await;
}

/// What an HTTP/2 backend fixture received: method, path and query, `:authority`, version,
/// headers and body.
#[derive(Debug, Clone)]
struct H2Received {
    method: String,
    path: String,
    authority: Option<String>,
    version: http::Version,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A cleartext HTTP/2-only backend (hyper, prior knowledge): answers `hello from h2`, or
/// resets the stream for `/reset`; records what it receives.
struct H2Fixture {
    addr: std::net::SocketAddr,
    received: std::sync::Arc<std::sync::Mutex<Vec<H2Received>>>,
    connections: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type TestBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::convert::Infallible>;

/// A gRPC server's answer to `method`: `Ok` (one message, status 0 in the trailers),
/// `NotFound` (status 5), `Unavailable` (Trailers-Only: status 14 in the headers, no body),
/// `Absent` (a message, no status at all), `Stream` (three messages, then status 0).
fn grpc_answer(method: &str, differ: bool) -> http::Response<TestBody> {
    use http_body_util::{BodyExt, Full, StreamBody};
    let message = |n: u8| bytes::Bytes::from(vec![0, 0, 0, 0, 2, 8, n]);
    let trailers = |status: &str| {
        let mut t = http::HeaderMap::new();
        t.insert("grpc-status", status.parse().unwrap());
        if status != "0" {
            t.insert("grpc-message", "from the fixture".parse().unwrap());
        }
        t
    };
    let framed = |data: Vec<bytes::Bytes>, end: Option<http::HeaderMap>| -> TestBody {
        let mut frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>> =
            data.into_iter()
                .map(|d| Ok(hyper::body::Frame::data(d)))
                .collect();
        if let Some(t) = end {
            frames.push(Ok(hyper::body::Frame::trailers(t)));
        }
        StreamBody::new(futures_util::stream::iter(frames)).boxed()
    };
    let resp = http::Response::builder().header("content-type", "application/grpc");
    match method {
        "Ok" if differ => resp.body(framed(vec![message(9)], Some(trailers("13")))),
        "Ok" => resp.body(framed(vec![message(1)], Some(trailers("0")))),
        // The same message, encoded another way (a field's default value written out).
        "Encoded" if differ => resp.body(framed(
            vec![bytes::Bytes::from(vec![0, 0, 0, 0, 4, 8, 1, 16, 0])],
            Some(trailers("0")),
        )),
        "Encoded" => resp.body(framed(vec![message(1)], Some(trailers("0")))),
        "NotFound" => resp.body(framed(vec![], Some(trailers("5")))),
        "Unavailable" => resp
            .header("grpc-status", "14")
            .body(Full::new(bytes::Bytes::new()).boxed()),
        "Absent" => resp.body(framed(vec![message(2)], None)),
        _ => resp.body(framed(
            vec![message(1), message(2), message(3)],
            Some(trailers("0")),
        )),
    }
    .unwrap()
}

async fn h2_fixture() -> H2Fixture {
    h2_fixture_with(false).await
}

/// `differ`: a second implementation, answering `Ok` with INTERNAL and another message, and
/// `Encoded` with an equal message encoded otherwise.
async fn h2_fixture_with(differ: bool) -> H2Fixture {
    use http_body_util::{BodyExt, Full};
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (seen, conns) = (received.clone(), connections.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            seen.lock().unwrap().push(H2Received {
                                method: parts.method.to_string(),
                                path: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                authority: parts.uri.authority().map(|a| a.to_string()),
                                version: parts.version,
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect(),
                                body,
                            });
                            if parts.uri.path() == "/reset" {
                                return Err(std::io::Error::other("reset on purpose"));
                            }
                            if let Some(method) = parts.uri.path().strip_prefix("/grpc.Svc/") {
                                return Ok(grpc_answer(method, differ));
                            }
                            Ok(http::Response::builder()
                                .header("x-fixture", "h2")
                                .body(
                                    Full::new(bytes::Bytes::from_static(b"hello from h2\n"))
                                        .boxed(),
                                )
                                .unwrap())
                        }
                    });
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
            });
        }
    });
    H2Fixture {
        addr,
        received,
        connections,
        task,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_backend_is_reached_over_http2_from_either_protocol_and_counted() {
    let h2 = h2_fixture().await;
    let addr = h2.addr;
    let runoff = Runoff::start(|p| {
        crate::harness::one_backend(p, "grpcish", addr, ", protocol: h2c, max_streams: 50")
    })
    .await;
    let h1 = reqwest::Client::new();
    assert_eq!(
        load(&h1, &runoff.url("/orders"), 40, 4).await,
        HashMap::from([(200, 40)])
    );
    assert_eq!(
        load(&h2_client(), &runoff.url("/orders"), 40, 4).await,
        HashMap::from([(200, 40)])
    );
    for i in 0..5 {
        let r = h1
            .post(runoff.url("/orders"))
            .body(format!("order {i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), "hello from h2\n");
    }
    // Hop-by-hop fields, sent byte for byte, with Pingora's request policy applied (`Keep-Alive`,
    // `TE`) or skipped (a lone `Connection: keep-alive`: runoff strips it, and Pingora's HTTP/2
    // path removes HTTP/1 fields anyway): none reaches the HTTP/2 backend.
    let mut conn = crate::harness::RawConn::connect(runoff.ports.listen).await;
    let host = format!("127.0.0.1:{}", runoff.ports.listen);
    for field in [
        "Connection: keep-alive",
        "Keep-Alive: timeout=5",
        "TE: trailers",
    ] {
        conn.send(format!("GET /orders HTTP/1.1\r\nHost: {host}\r\n{field}\r\n\r\n").as_bytes())
            .await;
        let resp = conn
            .read_until("hello from h2\n", Duration::from_secs(5))
            .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{field}: {resp:?}");
    }
    let got = h2.received.lock().unwrap().clone();
    assert_eq!(got.len(), 88);
    let summary = runoff.get_json("/api/summary").await;
    assert_eq!(
        summary["routes"][0]["backends"][0]["protocol"], "h2c",
        "{summary:#}"
    );
    assert!(got.iter().all(|r| r.version == http::Version::HTTP_2));
    let host = format!("127.0.0.1:{}", runoff.ports.listen);
    assert!(
        got.iter()
            .all(|r| r.authority.as_deref() == Some(host.as_str())),
        "{:?}",
        got[0]
    );
    assert!(got.iter().all(|r| !r.headers.iter().any(|(k, _)| [
        "host",
        "connection",
        "keep-alive",
        "te"
    ]
    .contains(&k.as_str()))));
    let bodies: Vec<&[u8]> = got
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| r.body.as_slice())
        .collect();
    assert_eq!(bodies.len(), 5);
    assert!(bodies
        .iter()
        .enumerate()
        .all(|(i, b)| *b == format!("order {i}").as_bytes()));
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "grpcish"), ("status_class", "2xx")],
            88.0,
        )
        .await;
    // Multiplexed: a handful of connections carried 88 requests (Pingora alone: one per request
    // in flight).
    let opened = h2.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened <= 4, "{opened} connections for 88 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_to_an_h2c_shadow_is_the_primarys_request_in_http2() {
    let node = fixture("node").start().await;
    let h2 = h2_fixture().await;
    let (n, g) = (node.addr.to_string(), h2.addr.to_string());
    let runoff = Runoff::start(|p| {
        crate::mirror::config(p, &n, &g, ", methods: [GET, POST]")
            .replace("read_timeout: 60s", "read_timeout: 60s, protocol: h2c")
    })
    .await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        assert_eq!(
            client
                .get(runoff.url(&format!("/orders/{i}?q=1")))
                .header("x-custom", "v")
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            client
                .post(runoff.url("/orders"))
                .body(format!("{{\"n\":{i}}}"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "shadow"), ("status_class", "2xx")],
            10.0,
        )
        .await;
    let shadow = h2.received.lock().unwrap().clone();
    let primary = node.received();
    assert_eq!((primary.len(), shadow.len()), (10, 10));
    for p in &primary {
        let id = p.header("x-request-id").unwrap();
        let s = shadow
            .iter()
            .find(|s| {
                s.headers
                    .iter()
                    .any(|(k, v)| k == "x-request-id" && v == id)
            })
            .unwrap_or_else(|| panic!("no copy of {id}"));
        assert_eq!(
            (&s.method, &s.path, &s.body),
            (&p.method, &p.uri, &p.body),
            "{id}"
        );
        assert_eq!(
            s.authority.as_deref(),
            p.header("host"),
            "Host became :authority"
        );
        // Every field the primary got, the copy got, but Host (its authority) and the framing
        // HTTP/2 carries itself.
        for (k, v) in &p.headers {
            if matches!(k.as_str(), "host" | "transfer-encoding" | "connection") {
                continue;
            }
            assert!(
                s.headers.contains(&(k.clone(), v.clone())),
                "{id}: {k} missing from the copy"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_h2_stream_is_reset_is_not_sent_again() {
    // pingora#979: an HTTP/2 upstream may retry a request that is not idempotent.
    let h2 = h2_fixture().await;
    let addr = h2.addr;
    let runoff = Runoff::start(|p| {
        crate::harness::one_backend(
            p,
            "svc",
            addr,
            ", protocol: h2c, outlier: { consecutive_errors: 0 }",
        )
    })
    .await;
    let r = reqwest::Client::new()
        .post(runoff.url("/reset"))
        .body("once")
        .send()
        .await
        .unwrap();
    // A retry would have happened before the answer.
    assert_eq!(r.status(), 502);
    let got = h2.received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "sent once: {got:?}");
    let m = runoff
        .expect_metric("runoff_requests_total", &[("status_class", "error")], 1.0)
        .await;
    assert_eq!(m.sum("runoff_upstream_retries_total", &[]), 0.0);
    assert_eq!(h2.received.lock().unwrap().len(), 1);
}

/// One gRPC call over HTTP/2 (h2 crate, prior knowledge): the status header (if any), the
/// messages' bytes and the trailers as the caller got them.
/// An HTTP/2 connection (h2 crate, prior knowledge) to runoff's listener, driven until dropped.
struct H2Conn {
    send: h2::client::SendRequest<bytes::Bytes>,
    authority: String,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for H2Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn h2_conn(runoff: &Runoff) -> H2Conn {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
        .await
        .unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    H2Conn {
        send,
        authority: format!("127.0.0.1:{}", runoff.ports.listen),
        driver,
    }
}

async fn grpc_call(
    conn: &mut H2Conn,
    method: &str,
) -> (u16, Option<String>, Vec<u8>, Option<http::HeaderMap>) {
    let req = http::Request::post(format!("http://{}/grpc.Svc/{method}", conn.authority))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .unwrap();
    conn.send = conn.send.clone().ready().await.unwrap();
    let (resp, mut body) = conn.send.send_request(req, false).unwrap();
    body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true)
        .unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let header_status = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let mut recv = resp.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.unwrap();
        let _ = recv.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await.unwrap();
    (status, header_status, data, trailers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_passes_through_with_its_trailers_and_its_status_is_counted() {
    let h2 = h2_fixture().await;
    let addr = h2.addr;
    let runoff =
        Runoff::start(|p| crate::harness::one_backend(p, "grpc", addr, ", protocol: h2c")).await;
    let mut conn = h2_conn(&runoff).await;
    let status_of = |t: &Option<http::HeaderMap>| {
        t.as_ref()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_string())
    };

    for _ in 0..3 {
        let (code, _, data, trailers) = grpc_call(&mut conn, "Ok").await;
        assert_eq!((code, data.as_slice()), (200, &[0, 0, 0, 0, 2, 8, 1][..]));
        assert_eq!(
            status_of(&trailers).as_deref(),
            Some("0"),
            "trailers intact"
        );
    }
    for _ in 0..2 {
        let (_, _, _, trailers) = grpc_call(&mut conn, "NotFound").await;
        assert_eq!(status_of(&trailers).as_deref(), Some("5"));
        let message = trailers.as_ref().and_then(|t| t.get("grpc-message"));
        assert_eq!(
            message.map(|v| v.as_bytes()),
            Some(&b"from the fixture"[..])
        );
    }
    let (code, header_status, data, _) = grpc_call(&mut conn, "Unavailable").await;
    assert_eq!(
        (code, header_status.as_deref(), data.len()),
        (200, Some("14"), 0)
    );
    let (_, _, data, trailers) = grpc_call(&mut conn, "Absent").await;
    assert_eq!((data.len(), status_of(&trailers)), (7, None));
    let (_, _, data, trailers) = grpc_call(&mut conn, "Stream").await;
    assert_eq!(data.len(), 21, "three messages of a server stream");
    assert_eq!(status_of(&trailers).as_deref(), Some("0"));

    let grpc = |code: &'static str| [("backend", "grpc"), ("role", "primary"), ("code", code)];
    // The request count is recorded last: once it is 8, everything else is in.
    let m = runoff
        .expect_metric("runoff_requests_total", &[("status_class", "2xx")], 8.0)
        .await;
    assert_eq!(m.sum("runoff_grpc_requests_total", &grpc("OK")), 4.0);
    assert_eq!(m.sum("runoff_grpc_requests_total", &grpc("NOT_FOUND")), 2.0);
    assert_eq!(
        m.sum("runoff_grpc_requests_total", &grpc("UNAVAILABLE")),
        1.0
    );
    assert_eq!(m.sum("runoff_grpc_requests_total", &grpc("absent")), 1.0);
    // All HTTP 200; the summary's errors are the gRPC failures: UNAVAILABLE and the missing
    // status (NOT_FOUND is the caller's, like a 404).
    let summary = runoff.get_json("/api/summary").await;
    let row = &summary["routes"][0]["backends"][0]["total"];
    assert_eq!(
        (row["requests"].as_u64(), row["errors"].as_u64()),
        (Some(8), Some(2)),
        "{row:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_grpc_call_reaches_the_shadow_and_its_status_is_counted_there_too() {
    let primary = h2_fixture().await;
    let shadow = h2_fixture().await;
    let (p_addr, s_addr) = (primary.addr.to_string(), shadow.addr.to_string());
    let runoff = Runoff::start(|p| {
        crate::mirror::config(p, &p_addr, &s_addr, ", methods: [POST]")
            .replace("{ address: \"", "{ protocol: h2c, address: \"")
    })
    .await;
    let mut conn = h2_conn(&runoff).await;
    for method in ["Ok", "Ok", "Unavailable", "NotFound"] {
        let (code, _, _, _) = grpc_call(&mut conn, method).await;
        assert_eq!(code, 200);
    }
    let m = runoff
        .expect_metric("runoff_requests_total", &[("role", "shadow")], 4.0)
        .await;
    let shadow_code = |code: &'static str| [("backend", "go"), ("role", "shadow"), ("code", code)];
    assert_eq!(m.sum("runoff_grpc_requests_total", &shadow_code("OK")), 2.0);
    assert_eq!(
        m.sum("runoff_grpc_requests_total", &shadow_code("UNAVAILABLE")),
        1.0
    );
    assert_eq!(
        m.sum("runoff_grpc_requests_total", &shadow_code("NOT_FOUND")),
        1.0
    );
    let copies = shadow.received.lock().unwrap().clone();
    let originals = primary.received.lock().unwrap().clone();
    assert_eq!(copies.len(), 4);
    for (c, o) in copies.iter().zip(&originals) {
        assert_eq!((&c.path, &c.body), (&o.path, &o.body));
        assert!(
            c.headers.contains(&("te".into(), "trailers".into())),
            "{c:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_says_which_protocol_each_leg_used() {
    let node = fixture("node").start().await;
    let h2 = h2_fixture().await;
    let (n, g) = (node.addr.to_string(), h2.addr.to_string());
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_path = log.display().to_string();
    let runoff = Runoff::start(|p| {
        format!(
            "access_log: {log_path}\n{}",
            crate::mirror::config(p, &n, &g, "")
                .replace("read_timeout: 60s", "read_timeout: 60s, protocol: h2c")
        )
    })
    .await;
    let r = reqwest::Client::new()
        .get(runoff.url("/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h2_client().get(runoff.url("/b")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let lines = crate::harness::json_lines(&log, 4).await;
    let find = |path: &str, role: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path && l["role"] == role)
            .cloned()
            .unwrap_or_else(|| panic!("no {role} line for {path}: {lines:?}"))
    };
    for (path, caller) in [("/a", "http/1.1"), ("/b", "h2")] {
        let primary = find(path, "primary");
        assert_eq!(
            (
                primary["caller_protocol"].as_str(),
                primary["upstream_protocol"].as_str()
            ),
            (Some(caller), Some("http1"))
        );
        let shadow = find(path, "shadow");
        assert_eq!(shadow["upstream_protocol"], "h2c");
        assert!(shadow.get("caller_protocol").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirrored_grpc_pairs_compare_their_grpc_status_and_not_their_message_bytes() {
    let primary = h2_fixture_with(false).await;
    let shadow = h2_fixture_with(true).await;
    let (p_addr, s_addr) = (primary.addr.to_string(), shadow.addr.to_string());
    let runoff = Runoff::start(|p| {
        format!(
            "{}    compare: {{}}\n",
            crate::mirror::config(p, &p_addr, &s_addr, ", methods: [POST]")
                .replace("{ address: \"", "{ protocol: h2c, address: \"")
        )
    })
    .await;
    let mut conn = h2_conn(&runoff).await;
    for method in ["Ok", "Ok", "Encoded", "Stream"] {
        let (code, _, _, _) = grpc_call(&mut conn, method).await;
        assert_eq!(code, 200);
    }
    let m = runoff.expect_metric("runoff_compare_total", &[], 4.0).await;
    // OK against INTERNAL: a mismatch on grpc-status (the HTTP status is 200 on both sides).
    assert_eq!(
        m.sum("runoff_compare_total", &[("result", "mismatch")]),
        2.0
    );
    assert_eq!(
        m.sum("runoff_compare_mismatches_total", &[("part", "headers")]),
        2.0
    );
    // An equal message encoded otherwise, and a stream: matches (bytes not compared).
    assert_eq!(m.sum("runoff_compare_total", &[("result", "match")]), 2.0);
    assert_eq!(
        m.sum("runoff_compare_mismatches_total", &[("part", "body")]),
        0.0
    );
    let samples = runoff
        .get_json("/api/mismatches?route=orders&limit=10")
        .await;
    let text = samples.to_string();
    assert!(
        text.contains("grpc-status") && text.contains("\"13\""),
        "{text}"
    );
}
