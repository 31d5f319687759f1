//! Malformed and ambiguous requests, byte for byte on raw sockets, through runoff mirroring
//! every request to a recording backend: for each, the status the caller gets, what the
//! primary received, that the shadow received the identical request or nothing, and the
//! counter that moved. Then the header-block deadline.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::{
    fixture, next_response, one_backend_with, status_of, wait_until, Received, Runoff,
};

/// What one case expects.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    /// The statuses of the answers, in order (a pipelined case has several).
    statuses: &'static [u16],
    /// Requests the primary receives (and the shadow, identically).
    forwarded: usize,
    /// The `runoff_rejected_requests_total` reason that moves by one, if any.
    rejected: Option<&'static str>,
}

fn case(
    name: &'static str,
    request: impl Into<Vec<u8>>,
    statuses: &'static [u16],
    forwarded: usize,
    rejected: Option<&'static str>,
) -> Case {
    Case {
        name,
        request: request.into(),
        statuses,
        forwarded,
        rejected,
    }
}

fn cases() -> Vec<Case> {
    let ok: &[u16] = &[200];
    let bad: &[u16] = &[400];
    let post =
        |head: &str, body: &str| format!("POST /orders HTTP/1.1\r\nHost: a\r\n{head}\r\n{body}");
    let huge_value = "v".repeat(1_100_000);
    let many: String = (0..300).map(|i| format!("X-N{i}: 1\r\n")).collect();
    vec![
        case("plain GET", "GET /orders HTTP/1.1\r\nHost: a\r\n\r\n", ok, 1, None),
        case("Content-Length body", post("Content-Length: 5\r\n", "hello"), ok, 1, None),
        case(
            "chunked body",
            post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
            ok,
            1,
            None,
        ),
        case(
            "chunk extension, upper-case size",
            post("Transfer-Encoding: chunked\r\n", "A;ext=1\r\nhelloworld\r\n0\r\n\r\n"),
            ok,
            1,
            None,
        ),
        case(
            "Connection nominates Content-Length",
            post("Connection: Content-Length\r\nContent-Length: 5\r\n", "hello"),
            ok,
            1,
            None,
        ),
        case(
            "Connection nominates Transfer-Encoding",
            post(
                "Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n",
                "5\r\nhello\r\n0\r\n\r\n",
            ),
            ok,
            1,
            None,
        ),
        case(
            "Connection nominates the request id",
            "GET /orders HTTP/1.1\r\nHost: a\r\nX-Request-Id: caller\r\nConnection: X-Request-Id\r\n\r\n",
            ok,
            1,
            None,
        ),
        case(
            "Connection nominates Host",
            "GET /orders HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
            bad,
            0,
            Some("bad_header"),
        ),
        case(
            "Connection nominates X-Forwarded-For",
            "GET /orders HTTP/1.1\r\nHost: a\r\nConnection: X-Forwarded-For, X-Request-Id\r\n\r\n",
            bad,
            0,
            Some("bad_header"),
        ),
        case(
            "Content-Length and Transfer-Encoding",
            post(
                "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            bad,
            0,
            Some("bad_framing"),
        ),
        case(
            "Content-Length list",
            post("Content-Length: 5, 5\r\n", "hello"),
            bad,
            0,
            Some("bad_framing"),
        ),
        case(
            "Content-Length twice",
            post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"),
            bad,
            0,
            Some("bad_framing"),
        ),
        case(
            "chunked twice",
            post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"),
            bad,
            0,
            Some("bad_framing"),
        ),
        case(
            "gzip, chunked",
            post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"),
            &[501],
            0,
            Some("unsupported_coding"),
        ),
        case(
            "identity then chunked, two lines",
            post(
                "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n",
                "0\r\n\r\n",
            ),
            &[501],
            0,
            Some("unsupported_coding"),
        ),
        case(
            "xchunked (refused by Pingora's parser)",
            post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"),
            bad,
            0,
            Some("bad_framing"),
        ),
        case(
            "space before the colon (Pingora's parser)",
            post("Transfer-Encoding : chunked\r\n", "0\r\n\r\n"),
            bad,
            0,
            Some("bad_header"),
        ),
        case(
            "underscore Transfer_Encoding is dropped",
            post("Transfer_Encoding: chunked\r\n", ""),
            ok,
            1,
            None,
        ),
        case(
            "bare LF line endings",
            "GET /orders HTTP/1.1\nHost: a\n\n",
            bad,
            0,
            Some("bad_header"),
        ),
        case(
            "CR LF LF after the request line",
            "GET /orders HTTP/1.1\r\n\nHost: a\r\n\r\n",
            bad,
            0,
            Some("bad_header"),
        ),
        case(
            "no Host",
            "GET /orders HTTP/1.1\r\n\r\n",
            bad,
            0,
            Some("bad_host"),
        ),
        case(
            "empty Host",
            "GET /orders HTTP/1.1\r\nHost:\r\n\r\n",
            bad,
            0,
            Some("bad_host"),
        ),
        case(
            "Host with a path",
            "GET /orders HTTP/1.1\r\nHost: a/b?c\r\n\r\n",
            bad,
            0,
            Some("bad_host"),
        ),
        case(
            "two Hosts",
            "GET /orders HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            bad,
            0,
            Some("bad_host"),
        ),
        case(
            "bad request line (Pingora's parser)",
            "GET /orders HTTP/1.1 extra\r\nHost: a\r\n\r\n",
            bad,
            0,
            Some("bad_request_line"),
        ),
        case(
            "header block over 1 MiB (Pingora's parser)",
            format!("GET /orders HTTP/1.1\r\nHost: a\r\nX-Big: {huge_value}\r\n\r\n"),
            bad,
            0,
            Some("too_large"),
        ),
        case(
            "300 header fields (Pingora's parser)",
            format!("GET /orders HTTP/1.1\r\nHost: a\r\n{many}\r\n"),
            bad,
            0,
            Some("too_large"),
        ),
        case(
            "Expect: 100-continue",
            post("Expect: 100-continue\r\nContent-Length: 5\r\n", "hello"),
            ok,
            1,
            None,
        ),
        case(
            "Upgrade: h2c goes on as HTTP/1.1",
            "GET /orders HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            ok,
            1,
            None,
        ),
        case(
            "two pipelined requests",
            "GET /orders?n=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /orders?n=2 HTTP/1.1\r\nHost: a\r\n\r\n",
            &[200, 200],
            2,
            None,
        ),
    ]
}

/// The status of the next response on `stream`, or `None` when it closed first.
async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> Option<u16> {
    status_of(&next_response(stream, pending).await?)
}

/// A request as a backend saw it, minus what only the copy carries (the marker), with its
/// fields in a stable order.
fn seen(r: &Received) -> (String, String, Vec<(String, String)>, Vec<u8>) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .filter(|(k, _)| k != "x-runoff-shadow")
        .cloned()
        .collect();
    headers.sort();
    (r.method.clone(), r.uri.clone(), headers, r.body.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_reach_both_legs_identically_or_neither_and_every_refusal_is_counted() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let runoff = Runoff::start(|p| {
        crate::mirror::config(
            p,
            &node.addr.to_string(),
            &go.addr.to_string(),
            ", methods: [GET, POST]",
        )
    })
    .await;
    let mut forwarded = 0;
    for c in cases() {
        let before = runoff.scrape().await;
        let stream = TcpStream::connect(("127.0.0.1", runoff.ports.listen))
            .await
            .unwrap();
        // A refused request may be answered before all of it is written: write in the
        // background, read here.
        let (mut rd, mut wr) = stream.into_split();
        let request = c.request.clone();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&request).await;
            wr
        });
        let mut pending = Vec::new();
        let mut statuses = Vec::new();
        for _ in c.statuses {
            match read_response(&mut rd, &mut pending).await {
                Some(s) => statuses.push(s),
                None => break,
            }
        }
        // Refused mid-upload, a large request's connection may be reset before its 400 is
        // read: then the counter below is the evidence.
        let reset_allowed = c.request.len() > 1 << 20 && statuses.is_empty();
        if !reset_allowed {
            assert_eq!(statuses, c.statuses, "{}: statuses", c.name);
        }
        forwarded += c.forwarded;
        let name = c.name;
        wait_until(name, Duration::from_secs(10), || {
            node.count() as usize == forwarded && go.count() as usize == forwarded
        })
        .await;
        let after = runoff.scrape().await;
        for reason in [
            "bad_host",
            "bad_framing",
            "unsupported_coding",
            "bad_request_line",
            "bad_header",
            "too_large",
            "timeout",
        ] {
            let moved = after.sum("runoff_rejected_requests_total", &[("reason", reason)])
                - before.sum("runoff_rejected_requests_total", &[("reason", reason)]);
            let want = if c.rejected == Some(reason) { 1.0 } else { 0.0 };
            assert_eq!(moved, want, "{name}: rejected {{reason={reason}}}");
        }
        drop(rd);
        drop(writer.await.unwrap());
    }
    // Every forwarded request reached the shadow as the primary received it.
    let (primary, shadow) = (node.received(), go.received());
    assert_eq!(primary.len(), shadow.len());
    for p in &primary {
        let twin = shadow
            .iter()
            .find(|s| s.header("x-request-id") == p.header("x-request-id"))
            .unwrap_or_else(|| panic!("no copy of {} {}", p.method, p.uri));
        assert_eq!(seen(p), seen(twin), "{} {}", p.method, p.uri);
        assert_eq!(twin.header("x-runoff-shadow"), Some("1"));
    }
    // What the primary got in the cases that needed care.
    let by_body = |body: &[u8]| primary.iter().filter(|r| r.body == body).count();
    assert_eq!(by_body(b"helloworld"), 1);
    // Content-Length, chunked, both Connection nominations, Expect: 100-continue.
    assert_eq!(by_body(b"hello"), 5, "{primary:#?}");
    for r in &primary {
        assert_ne!(
            r.header("x-request-id"),
            Some("caller"),
            "a nominated id is hop-by-hop"
        );
        assert_eq!(r.header("upgrade"), None);
        assert!(r.headers.iter().all(|(k, _)| !k.contains('_')));
    }
    let m = runoff.scrape().await;
    crate::mirror::assert_identity(&m);
    assert_eq!(
        m.sum("runoff_mirror_dropped_total", &[("route", "orders")]),
        0.0,
        "a refused request is never a copy: {}",
        m.dump("runoff_mirror_dropped_total")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_block_slower_than_client_header_timeout_is_cut_and_counted() {
    let node = fixture("node").start().await;
    let runoff =
        Runoff::start(|p| one_backend_with(p, "client_header_timeout: 1s", "node", node.addr, ""))
            .await;
    let port = runoff.ports.listen;
    // A connection that never sends, and one that stops mid-header: both closed, unanswered.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    // A kept-alive connection idle for longer than the deadline is still served: the deadline
    // runs from a later request's first byte.
    let mut kept = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut pending = Vec::new();
    assert_eq!(read_response(&mut kept, &mut pending).await, Some(200));
    // A kept-alive connection whose second request stops mid-header: its deadline starts
    // once the rest of that header block is waited for.
    let mut later = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    later
        .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut later_pending = Vec::new();
    assert_eq!(
        read_response(&mut later, &mut later_pending).await,
        Some(200)
    );
    assert!(later_pending.is_empty(), "nothing after the first response");
    later.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    for (what, conn) in [
        ("silent", &mut silent),
        ("slow", &mut slow),
        ("later", &mut later),
    ] {
        let mut rest = Vec::new();
        let closed = timeout(Duration::from_secs(20), conn.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "{what}: still open");
        assert!(
            rest.is_empty(),
            "{what}: answered {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    kept.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut kept, &mut pending).await, Some(200));
    runoff
        .expect_metric(
            "runoff_rejected_requests_total",
            &[("reason", "timeout")],
            3.0,
        )
        .await;
    assert_eq!(node.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_reading_is_disconnected_after_send_timeout() {
    // Far more than loopback socket buffers hold, so runoff's writes to the caller block.
    let big = vec![b'x'; 48 << 20];
    let node = fixture("node")
        .when_path("/big", |b| b.body(big))
        .start()
        .await;
    let runoff =
        Runoff::start(|p| one_backend_with(p, "send_timeout: 1s", "node", node.addr, "")).await;
    let mut reader = TcpStream::connect(("127.0.0.1", runoff.ports.listen))
        .await
        .unwrap();
    reader
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 1024];
    let n = reader.read(&mut head).await.unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"));
    // Then it reads nothing more. Meanwhile others are served.
    let client = reqwest::Client::new();
    let r = client.get(runoff.url("/small")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // runoff gives up on the caller: the request ends, counted as the backend's 2xx (the
    // backend answered in full), no upstream error.
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("status_class", "2xx"), ("role", "primary")],
            2.0,
        )
        .await;
    assert_eq!(m.sum("runoff_upstream_errors_total", &[]), 0.0);
    // And the connection is closed: what is left to read ends before the whole body.
    let mut rest = Vec::new();
    let read = timeout(Duration::from_secs(20), reader.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the slow reader's connection is still open");
    assert!(n + rest.len() < 48 << 20, "the whole body was sent");
}
