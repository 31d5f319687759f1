//! WebSockets end to end: real WebSocket backends on loopback, the real runoff binary, real
//! clients (tokio-tungstenite, and hand-made frames on raw sockets), exact counts scraped from
//! `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{
    self, client_frame, raw_upgrade, refused_port, wait_until, ws_connect, ws_fixture, Ports,
    Runoff, WsBehaviour, WsFixture,
};

fn config(p: &Ports, backends: &[(&str, String)], routes: &str) -> String {
    let mut s = format!(
        "listen: 127.0.0.1:{}\nserver: {{ drain_timeout: 10s }}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n",
        p.listen, p.admin
    );
    for (name, rest) in backends {
        s.push_str(&format!("  {name}: {rest}\n"));
    }
    s.push_str("routes:\n");
    s.push_str(routes);
    s
}

fn at(f: &WsFixture) -> String {
    format!("{{ address: \"{}\" }}", f.addr)
}

fn ws_url(r: &Runoff, path: &str) -> String {
    format!("ws://127.0.0.1:{}{path}", r.ports.listen)
}

const PRIMARY: &[(&str, &str)] = &[("role", "primary")];

fn labels<'a>(backend: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut l = vec![("backend", backend), ("role", "primary")];
    l.extend_from_slice(extra);
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sticky_split_relays_every_message_and_counts_it_exactly() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let go = ws_fixture("go", WsBehaviour::Echo).await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[("node", at(&node)), ("go", at(&go))],
            "  - name: chat\n    split: { node: 50, go: 50 }\n    sticky: { header: x-user-id }\n",
        )
    })
    .await;
    let url = ws_url(&runoff, "/ws");
    let mut tasks = Vec::new();
    for user in 0..100u32 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("user-{user}");
            let (mut ws, headers) = ws_connect(&url, &[("x-user-id", &id)]).await;
            let backend = headers["x-fixture"].to_str().unwrap().to_string();
            let mut bytes = 0u64;
            for m in 0..100u32 {
                let text = format!("{user}:{m}:{}", "x".repeat((m % 50) as usize));
                bytes += text.len() as u64;
                ws.send(Message::text(text.clone())).await.unwrap();
                let echo = ws.next().await.unwrap().unwrap();
                assert_eq!(echo, Message::text(text), "user {user} message {m}");
            }
            ws.close(None).await.unwrap();
            while let Some(Ok(_)) = ws.next().await {}
            (id, backend, bytes)
        }));
    }
    let mut per_backend: std::collections::HashMap<String, (u64, u64, u64)> = Default::default();
    let mut chosen = Vec::new();
    for t in tasks {
        let (id, backend, bytes) = t.await.unwrap();
        let e = per_backend.entry(backend.clone()).or_default();
        e.0 += 1;
        e.1 += 100;
        e.2 += bytes;
        chosen.push((id, backend));
    }
    assert_eq!(
        per_backend.len(),
        2,
        "a 50/50 split used one backend: {per_backend:?}"
    );
    // Stickiness: the same user lands on the same backend again.
    for (id, backend) in chosen.iter().take(10) {
        let (mut ws, headers) = ws_connect(&url, &[("x-user-id", id)]).await;
        assert_eq!(headers["x-fixture"].to_str().unwrap(), backend, "{id}");
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
        per_backend.get_mut(backend).unwrap().0 += 1;
    }
    let m = runoff
        .expect_metric(
            "runoff_websocket_connections_ended_total",
            &[("role", "primary")],
            110.0,
        )
        .await;
    for (backend, (connections, messages, bytes)) in &per_backend {
        let f = |name: &str, extra: &[(&str, &str)]| m.sum(name, &labels(backend, extra));
        for direction in ["to_backend", "to_client"] {
            let d = [("direction", direction)];
            assert_eq!(
                f("runoff_websocket_messages_total", &d),
                *messages as f64,
                "{backend} {direction}"
            );
            assert_eq!(
                f("runoff_websocket_payload_bytes_total", &d),
                *bytes as f64,
                "{backend} {direction}"
            );
            assert_eq!(
                f(
                    "runoff_websocket_frames_total",
                    &[("direction", direction), ("kind", "data")]
                ),
                *messages as f64
            );
        }
        assert_eq!(
            f(
                "runoff_websocket_connections_ended_total",
                &[("cause", "client_closed")]
            ),
            *connections as f64,
            "{backend}"
        );
        assert_eq!(
            f("runoff_requests_total", &[("status_class", "1xx")]),
            *connections as f64,
            "an upgrade counts once, as 1xx"
        );
        assert_eq!(f("runoff_websocket_connections", &[]), 0.0);
        assert_eq!(f("runoff_upstream_errors_total", &[]), 0.0);
        assert_eq!(
            f("runoff_websocket_message_latency_seconds_count", &[]),
            *messages as f64,
            "each echo answers one message"
        );
    }
    let node_msgs = per_backend.get("node").map_or(0, |v| v.1);
    assert_eq!(node.messages(), node_msgs);
    assert_eq!(go.messages() + node.messages(), 10_000);
    assert_eq!(
        node.payload_bytes(),
        per_backend.get("node").map_or(0, |v| v.2)
    );
    assert_eq!(node.connections() + go.connections(), 110);
    // The summary's WebSocket table.
    let summary = runoff.get_json("/api/summary").await;
    let ws = &summary["routes"][0]["websocket"];
    assert!(ws.is_array(), "{summary}");
    let row = ws
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["backend"] == "node")
        .unwrap();
    assert_eq!(row["open"], 0);
    assert!(row["peak"].as_u64().unwrap() >= 1);
    assert_eq!(row["total"]["messages_to_backend"], node_msgs);
    assert_eq!(row["total"]["messages_to_client"], node_msgs);
    assert!(row["total"]["latency_ms"]["p50"].as_f64().unwrap() > 0.0);
    // `runoff report` prints the seed's WebSocket table for the route.
    let admin = format!("http://127.0.0.1:{}", runoff.ports.admin);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(harness::bin())
            .args(["report", "--admin", &admin, "--route", "chat"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("chat: WebSockets"), "{text}");
    assert!(text.contains("Peak connections"), "{text}");
    assert!(text.contains("Message latency P50"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_outlives_read_timeout_and_ends_at_its_own_idle_timeout() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[(
                "node",
                format!("{{ address: \"{}\", read_timeout: 1s }}", node.addr),
            )],
            "  - name: chat\n    split: { node: 1 }\n    websocket: { idle_timeout: 2s }\n",
        )
    })
    .await;
    let (mut ws, _) = ws_connect(&ws_url(&runoff, "/ws"), &[]).await;
    // Idle past the backend's read timeout: still up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ws.send(Message::text("still there?")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still there?")
    );
    // Then idle past the route's idle timeout: runoff closes both sides with 1001.
    let closed = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("closed by the idle timeout");
    match closed {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a close frame 1001, got {other:?}"),
    }
    wait_until(
        "the backend got its close frame",
        Duration::from_secs(5),
        || node.closes() == vec![Some(1001)],
    )
    .await;
    let m = runoff
        .expect_metric(
            "runoff_websocket_connections_ended_total",
            &labels("node", &[("cause", "idle_timeout")]),
            1.0,
        )
        .await;
    assert_eq!(m.sum("runoff_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &labels("node", &[("status_class", "error")])
        ),
        0.0
    );
    assert_eq!(m.sum("runoff_websocket_connections", PRIMARY), 0.0);
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

/// Read and drop everything a raw socket receives until `want` bytes came, or it closes.
async fn drain_socket(mut r: tokio::net::tcp::OwnedReadHalf, want: usize) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < want {
        match tokio::time::timeout(Duration::from_secs(30), r.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got += n,
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_every_shape_are_counted_and_a_64_mib_message_passes_in_bounded_memory() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[("node", at(&node))],
            "  - name: chat\n    split: { node: 1 }\n",
        )
    })
    .await;
    let (stream, head) = raw_upgrade(runoff.ports.listen, "/ws").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (r, mut w) = stream.into_split();
    // Fragmented text with a ping between its fragments, a 16-bit and a 64-bit length.
    let mut frames = client_frame(false, 0x1, b"hel");
    frames.extend(client_frame(true, 0x9, b"ping"));
    frames.extend(client_frame(false, 0x0, b"lo "));
    frames.extend(client_frame(true, 0x0, b"world"));
    frames.extend(client_frame(true, 0x2, &[7u8; 200]));
    frames.extend(client_frame(true, 0x2, &[9u8; 70_000]));
    // Sent a byte at a time for the first frames: headers split across reads.
    for b in &frames[..40] {
        w.write_all(&[*b]).await.unwrap();
    }
    w.write_all(&frames[40..]).await.unwrap();
    // Echoes: 11 + 200 + 70,000 payload bytes and their headers, and the pong (6 bytes).
    let reader = tokio::spawn(drain_socket(r, 11 + 2 + 200 + 4 + 70_000 + 10 + 6));
    let m = runoff
        .expect_metric(
            "runoff_websocket_messages_total",
            &labels("node", &[("direction", "to_client")]),
            3.0,
        )
        .await;
    let f = |extra: &[(&str, &str)]| m.sum("runoff_websocket_frames_total", &labels("node", extra));
    assert_eq!(f(&[("direction", "to_backend"), ("kind", "data")]), 5.0);
    assert_eq!(f(&[("direction", "to_backend"), ("kind", "control")]), 1.0);
    assert_eq!(f(&[("direction", "to_client"), ("kind", "data")]), 3.0);
    assert_eq!(f(&[("direction", "to_client"), ("kind", "control")]), 1.0);
    assert_eq!(
        m.sum(
            "runoff_websocket_messages_total",
            &labels("node", &[("direction", "to_backend")])
        ),
        3.0,
        "a fragmented message counts once"
    );
    assert_eq!(
        m.sum(
            "runoff_websocket_payload_bytes_total",
            &labels("node", &[("direction", "to_backend")])
        ),
        70_211.0
    );
    assert!(reader.await.unwrap() >= 70_211);

    // 64 MiB in one message: runoff relays it without holding it.
    let (stream, _) = raw_upgrade(runoff.ports.listen, "/ws").await;
    let (r, mut w) = stream.into_split();
    let big = client_frame(true, 0x2, &vec![0x5au8; 64 << 20]);
    let pid = runoff.pid();
    let before = rss(pid);
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let reader = tokio::spawn(drain_socket(r, (64 << 20) + 10));
    w.write_all(&big).await.unwrap();
    assert!(
        reader.await.unwrap() >= 64 << 20,
        "the echo came back whole"
    );
    sampling.abort();
    let growth = peak
        .load(std::sync::atomic::Ordering::SeqCst)
        .saturating_sub(before);
    assert!(
        growth < 8 << 20,
        "runoff's RSS grew by {} KiB relaying 64 MiB",
        growth >> 10
    );
    runoff
        .expect_metric(
            "runoff_websocket_payload_bytes_total",
            &labels("node", &[("direction", "to_client")]),
            70_211.0 + (64u64 << 20) as f64,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_websocket_with_default_settings_lives_past_65_seconds() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[("node", at(&node))],
            "  - name: chat\n    split: { node: 1 }\n",
        )
    })
    .await;
    let (mut ws, _) = ws_connect(&ws_url(&runoff, "/ws"), &[]).await;
    // Past Pingora's 60 s downstream read timeout and the backend's 30 s read timeout.
    tokio::time::sleep(Duration::from_secs(65)).await;
    ws.send(Message::text("after 65 s")).await.unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("an echo")
        .unwrap()
        .unwrap();
    assert_eq!(echo, Message::text("after 65 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_websocket_copies_every_client_byte_and_never_holds_up_the_primary() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let record = ws_fixture("record", WsBehaviour::Record).await;
    let never = ws_fixture("never", WsBehaviour::NeverRead).await;
    let early = ws_fixture("early", WsBehaviour::CloseAfter(Duration::from_millis(200))).await;
    let twin = ws_fixture("twin", WsBehaviour::Echo).await;
    let down = refused_port();
    let route = |name: &str, to: &str, extra: &str| {
        format!(
            "  - name: {name}\n    match: {{ path_prefix: /{name} }}\n    split: {{ node: 100 }}\n    mirror: {{ to: {to}, websocket: true{extra} }}\n"
        )
    };
    let routes = [
        route("rec", "record", ""),
        route("never", "never", ", websocket_queue_bytes: 65536"),
        route("down", "down", ""),
        route("early", "early", ""),
        route("twin", "twin", ""),
    ]
    .concat();
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[
                ("node", at(&node)),
                ("record", at(&record)),
                ("never", at(&never)),
                ("early", at(&early)),
                ("twin", at(&twin)),
                ("down", format!("{{ address: \"{}\" }}", down.addr())),
            ],
            &routes,
        )
    })
    .await;

    // The recording shadow receives exactly the client's bytes.
    let (stream, _) = raw_upgrade(runoff.ports.listen, "/rec").await;
    let (r, mut w) = stream.into_split();
    let mut sent = Vec::new();
    for i in 0..20u8 {
        sent.extend(client_frame(true, 0x1, format!("message {i}").as_bytes()));
    }
    sent.extend(client_frame(false, 0x2, &[1u8; 3000]));
    sent.extend(client_frame(true, 0x9, b""));
    sent.extend(client_frame(true, 0x0, &[2u8; 100_000]));
    w.write_all(&sent).await.unwrap();
    let echoes = tokio::spawn(drain_socket(r, 20 * 12 + 103_000));
    assert!(
        echoes.await.unwrap() >= 103_000,
        "the primary's echoes came back"
    );
    let mut close = client_frame(true, 0x8, &1000u16.to_be_bytes());
    w.write_all(&close).await.unwrap();
    sent.append(&mut close);
    drop(w);
    wait_until("the shadow got every byte", Duration::from_secs(10), || {
        record
            .raw()
            .first()
            .is_some_and(|got| got.len() >= sent.len())
    })
    .await;
    assert!(
        record.raw()[0] == sent,
        "the shadow's bytes differ from the client's"
    );
    // The shadow was offered the same request, marked.
    let req = &record.requests()[0];
    assert!(req.iter().any(|(k, v)| k == "x-runoff-shadow" && v == "1"));

    // Shadows that never read, are down, or close early: every echo still comes back.
    // A shadow that behaves like the primary (echoes, answers the close) ends with it.
    for path in ["/never", "/down", "/early", "/twin"] {
        let (mut ws, _) = ws_connect(&ws_url(&runoff, path), &[]).await;
        let chunk = vec![b'z'; 64 * 1024];
        let rounds = if path == "/never" { 200 } else { 20 };
        for i in 0..rounds {
            ws.send(Message::binary(chunk.clone())).await.unwrap();
            let echo = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .unwrap_or_else(|_| panic!("{path}: echo {i} held up"))
                .unwrap()
                .unwrap();
            assert_eq!(echo.len(), chunk.len(), "{path} echo {i}");
            if path == "/early" && i == 0 {
                // Let the shadow close first.
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
        }
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    }
    // Each copy settles once its shadow has ended.
    let mut m = runoff.scrape().await;
    let settled = |m: &harness::Metrics, route: &str| {
        m.sum(
            "runoff_requests_total",
            &[("route", route), ("role", "shadow")],
        ) + m.sum("runoff_mirror_dropped_total", &[("route", route)])
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while ["rec", "never", "down", "early", "twin"]
        .iter()
        .any(|r| settled(&m, r) < 1.0)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "copies not settled:\n{}",
            m.dump("runoff_mirror")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        m = runoff.scrape().await;
    }
    let dropped = |route: &str, reason: &str| {
        m.sum(
            "runoff_mirror_dropped_total",
            &[("route", route), ("reason", reason)],
        )
    };
    assert_eq!(dropped("early", "closed_early"), 1.0);
    assert_eq!(dropped("never", "overloaded"), 1.0);
    assert_eq!(dropped("down", "upstream_error"), 1.0);
    assert_eq!(
        m.sum("runoff_mirror_dropped_total", &[("route", "twin")]),
        0.0,
        "an echoing shadow closed by the client is complete, not dropped:\n{}",
        m.dump("runoff_mirror")
    );
    for direction in ["to_backend", "to_client"] {
        assert_eq!(
            m.sum(
                "runoff_websocket_messages_total",
                &[
                    ("route", "twin"),
                    ("role", "shadow"),
                    ("direction", direction)
                ]
            ),
            20.0,
            "twin {direction}"
        );
    }
    for route in ["rec", "never", "down", "early", "twin"] {
        let copies = m.sum("runoff_mirror_requests_total", &[("route", route)]);
        let completed = m.sum(
            "runoff_requests_total",
            &[("route", route), ("role", "shadow")],
        );
        let all_dropped = m.sum("runoff_mirror_dropped_total", &[("route", route)]);
        assert_eq!(copies, 1.0, "{route}");
        assert_eq!(
            completed + all_dropped,
            copies,
            "{route}: every copy accounted for"
        );
        // The primary saw nothing wrong.
        assert_eq!(
            m.sum(
                "runoff_requests_total",
                &[
                    ("route", route),
                    ("role", "primary"),
                    ("status_class", "1xx")
                ]
            ),
            1.0
        );
    }
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &[
                ("route", "rec"),
                ("role", "shadow"),
                ("status_class", "1xx")
            ]
        ),
        1.0,
        "the recording shadow stayed open until the primary closed: completed"
    );
    assert_eq!(
        m.sum(
            "runoff_websocket_messages_total",
            &[
                ("route", "rec"),
                ("role", "shadow"),
                ("direction", "to_backend")
            ]
        ),
        21.0,
        "20 texts and one fragmented binary message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_or_failed_upgrade_is_an_ordinary_answer_and_counted() {
    let refuse = ws_fixture("refuse", WsBehaviour::Refuse(403)).await;
    let down = refused_port();
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[
                ("refuse", at(&refuse)),
                ("down", format!("{{ address: \"{}\" }}", down.addr())),
            ],
            "  - name: r\n    match: { path_prefix: /r }\n    split: { refuse: 1 }\n  - name: d\n    split: { down: 1 }\n",
        )
    })
    .await;
    let (mut s, head) = raw_upgrade(runoff.ports.listen, "/r").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let mut body = vec![0u8; 8];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(body, b"refused\n");
    let (mut s, head) = raw_upgrade(runoff.ports.listen, "/d").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let _ = s.shutdown().await;
    let m = runoff
        .expect_metric(
            "runoff_websocket_upgrade_failures_total",
            &[("route", "r"), ("reason", "rejected")],
            1.0,
        )
        .await;
    assert_eq!(
        m.sum(
            "runoff_websocket_upgrade_failures_total",
            &[("route", "d"), ("reason", "failed")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &[("route", "r"), ("status_class", "4xx")]
        ),
        1.0
    );
    assert_eq!(
        m.sum(
            "runoff_upstream_errors_total",
            &[("route", "d"), ("kind", "connect_refused")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_websockets_with_1001_and_exits_0() {
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let mut runoff = Runoff::start_with(
        |p| {
            config(
                p,
                &[("node", at(&node))],
                "  - name: chat\n    split: { node: 1 }\n",
            )
        },
        &[],
        &[("RUST_LOG", "info")],
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = ws_connect(&ws_url(&runoff, "/ws"), &[]).await;
        ws.send(Message::text("hi")).await.unwrap();
        ws.next().await.unwrap().unwrap();
        clients.push(ws);
    }
    runoff.signal("-TERM");
    for mut ws in clients {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                assert_eq!(u16::from(frame.code), 1001)
            }
            other => panic!("expected a close frame 1001, got {other:?}"),
        }
    }
    let status = runoff.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
    wait_until(
        "the backend got three 1001s",
        Duration::from_secs(5),
        || node.closes() == vec![Some(1001); 3],
    )
    .await;
    let stderr = runoff.stderr();
    assert_eq!(
        stderr.matches("websocket closed: drain").count(),
        3,
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_to_an_h2c_backend_still_goes_in_http1() {
    // An HTTP/2 upstream strips `Upgrade` (RFC 9113 §8.2.2): runoff makes the upgrade over
    // HTTP/1.1 to the same address, as servers that speak h2c (Go's, Envoy's) take both.
    let node = ws_fixture("node", WsBehaviour::Echo).await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &[(
                "node",
                format!("{{ address: \"{}\", protocol: h2c }}", node.addr),
            )],
            "  - name: chat\n    split: { node: 1 }\n",
        )
    })
    .await;
    let (mut ws, _) = ws_connect(&ws_url(&runoff, "/ws"), &[]).await;
    ws.send(Message::text("over http/1.1")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("over http/1.1")
    );
    assert_eq!(node.connections(), 1);
}
