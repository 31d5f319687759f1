//! Forwarding is transparent: what the caller sends reaches the backend unchanged (but for
//! hop-by-hop headers and the documented additions), and the answer comes back unchanged.

use std::time::Duration;

use crate::harness::{self, fixture, RawConn, Runoff};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_responses_pass_through_unchanged() {
    let node = fixture("node")
        .status(201)
        .body("created\n")
        .header("x-backend-header", "kept")
        .header("set-cookie", "a=1")
        .header("keep-alive", "timeout=65")
        .header("connection", "x-hop-only")
        .header("x-hop-only", "1")
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let log = log_path.display().to_string();
    let runoff = Runoff::start(|p| {
        format!(
            "access_log: {log}\n{}",
            harness::one_backend(p, "node", node.addr, "")
        )
    })
    .await;

    let client = reqwest::Client::new();
    let body = vec![b'x'; 10_000];
    let resp = client
        .post(runoff.url("/api/orders?id=7&x=a%20b"))
        .header("x-custom", "v1")
        .header("x-forwarded-for", "203.0.113.9")
        .header("host", "shop.example.com:8443")
        .header("keep-alive", "timeout=5")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["x-backend-header"], "kept");
    assert_eq!(resp.headers()["set-cookie"], "a=1");
    // Hop-by-hop response fields stop at runoff.
    assert!(resp.headers().get("keep-alive").is_none());
    assert!(resp.headers().get("x-hop-only").is_none());
    assert_eq!(resp.text().await.unwrap(), "created\n");

    // A caller's own request id is kept.
    let resp = client
        .get(runoff.url("/api/a"))
        .header("x-request-id", "caller-id-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // Read whole: a caller that hangs up after the header may cut the answer short, and the
    // body bytes counted below are those of complete answers.
    assert_eq!(resp.text().await.unwrap(), "created\n");

    let got = node.received();
    assert_eq!(got.len(), 2);
    let first = &got[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.uri, "/api/orders?id=7&x=a%20b");
    assert_eq!(first.body, body);
    assert_eq!(first.header("host"), Some("shop.example.com:8443"));
    assert_eq!(first.header("x-custom"), Some("v1"));
    // Not from a trusted proxy: the caller's X-Forwarded-For is replaced, not extended.
    assert_eq!(first.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(first.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        first.header("x-forwarded-host"),
        Some("shop.example.com:8443")
    );
    assert_eq!(
        first.header("keep-alive"),
        None,
        "hop-by-hop header forwarded"
    );
    let id = first.header("x-request-id").unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(got[1].headers_named("x-request-id"), vec!["caller-id-1"]);

    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("route", "api"), ("status_class", "2xx")],
            2.0,
        )
        .await;
    assert_eq!(
        m.sum("runoff_request_body_bytes_total", &[("backend", "node")]),
        10_000.0
    );
    assert_eq!(
        m.sum("runoff_response_body_bytes_total", &[("backend", "node")]),
        16.0
    );

    // The access log: one JSON line per request, written within a second or so.
    let lines = harness::json_lines(&log_path, 2).await;
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["request_id"], id);
    assert_eq!(lines[0]["route"], "api");
    assert_eq!(lines[0]["backend"], "node");
    assert_eq!(lines[0]["role"], "primary");
    assert_eq!(lines[0]["status"], 201);
    assert_eq!(lines[0]["method"], "POST");
    assert_eq!(lines[0]["path"], "/api/orders?id=7&x=a%20b");
    assert_eq!(lines[0]["request_bytes"], 10_000);
    assert_eq!(lines[0]["response_bytes"], 8);
    assert!(lines[0]["duration_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[1]["request_id"], "caller-id-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_are_reused_both_ways() {
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", node.addr, "")).await;
    // One client connection, 20 sequential requests on it.
    let mut conn = RawConn::connect(runoff.ports.listen).await;
    for i in 0..20 {
        conn.send(format!("GET /api/{i} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        let want = "hello from node\n";
        let resp = conn.read_until(want, Duration::from_secs(5)).await;
        assert!(
            resp.ends_with(want),
            "connection closed or silent after {i} responses: {resp:?}"
        );
        assert!(resp.starts_with("HTTP/1.1 200"));
    }
    let m = runoff
        .expect_metric("runoff_requests_total", &[("status_class", "2xx")], 20.0)
        .await;
    assert_eq!(
        m.sum("runoff_upstream_connections_total", &[("reused", "false")]),
        1.0
    );
    assert_eq!(
        m.sum("runoff_upstream_connections_total", &[("reused", "true")]),
        19.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_gets_400_and_runoff_keeps_serving() {
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", node.addr, "")).await;
    let mut conn = RawConn::connect(runoff.ports.listen).await;
    conn.send(b"GARBAGE \x01\x02 NOT HTTP\r\n\r\n").await;
    let text = conn.read_to_close(Duration::from_secs(5)).await;
    // Pingora rejects an unparsable request line with 400 before any runoff hook runs.
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert_eq!(node.count(), 0);
    let r = reqwest::get(runoff.url("/ok")).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// Every hop-by-hop request field stops at runoff, whether Pingora's standard request policy
/// strips it or runoff skips that policy (a request without such fields, or with only
/// `Connection: keep-alive`) and strips `Connection` itself; and skipping it per request splits
/// nothing: one kept-alive upstream connection serves them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_request_fields_never_reach_the_backend() {
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", node.addr, "")).await;
    // (path, the caller's extra fields, the fields that must not arrive)
    let cases: &[(&str, &str, &[&str])] = &[
        ("/plain", "", &["connection"]),
        ("/ka", "Connection: keep-alive\r\n", &["connection"]),
        ("/ka-case", "Connection: Keep-Alive \r\n", &["connection"]),
        ("/keep-alive", "Keep-Alive: timeout=5\r\n", &["keep-alive"]),
        (
            "/ka-both",
            "Connection: keep-alive\r\nKeep-Alive: timeout=5\r\n",
            &["connection", "keep-alive"],
        ),
        ("/te", "TE: trailers\r\n", &["te"]),
        ("/trailer", "Trailer: X-T\r\n", &["trailer"]),
        (
            "/proxy",
            "Proxy-Authorization: Basic eA==\r\nProxy-Authenticate: Basic\r\n\
             Proxy-Connection: keep-alive\r\n",
            &[
                "proxy-authorization",
                "proxy-authenticate",
                "proxy-connection",
            ],
        ),
        (
            "/http2-settings",
            "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n",
            &["http2-settings"],
        ),
        (
            "/nominated",
            "Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\n",
            &["connection", "x-hop"],
        ),
        ("/close", "Connection: close\r\n", &["connection"]),
    ];
    let mut conn = RawConn::connect(runoff.ports.listen).await;
    let want = "hello from node\n";
    for (path, fields, _) in cases {
        conn.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-A: 1\r\n{fields}\r\n").as_bytes())
            .await;
        let resp = if *path == "/close" {
            conn.read_to_close(Duration::from_secs(5)).await
        } else {
            conn.read_until(want, Duration::from_secs(5)).await
        };
        assert!(resp.starts_with("HTTP/1.1 200"), "{path}: {resp:?}");
        assert!(resp.ends_with(want), "{path}: {resp:?}");
    }
    let got = node.received();
    assert_eq!(got.len(), cases.len());
    for (path, _, absent) in cases {
        let r = got
            .iter()
            .find(|r| r.uri == *path)
            .unwrap_or_else(|| panic!("{path} never arrived"));
        for name in *absent {
            assert_eq!(
                r.header(name),
                None,
                "{path}: {name} arrived: {:?}",
                r.headers
            );
        }
        // The rest arrives as sent, with runoff's own additions.
        assert_eq!(r.header("x-a"), Some("1"), "{path}");
        assert_eq!(r.header("host"), Some("t"), "{path}");
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"), "{path}");
    }
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("status_class", "2xx")],
            cases.len() as f64,
        )
        .await;
    assert_eq!(
        m.sum("runoff_upstream_connections_total", &[("reused", "false")]),
        1.0,
        "{}",
        m.dump("runoff_upstream_connections_total")
    );
}
