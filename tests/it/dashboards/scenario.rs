//! The load scenario behind the proof: the two backends, runoff's config and the mix of
//! requests that gives every panel data.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{fixture, Fixture};

/// The baseline: answers `hello\n` as text/plain after 4 ms, and echoes WebSockets.
pub async fn node_backend() -> Fixture {
    fixture("node")
        .websocket()
        .delay(Duration::from_millis(4))
        .body("hello\n")
        .header("content-type", "text/plain")
        .start()
        .await
}

/// The candidate: answers in ~1 ms with node's body and content type (so compared pairs
/// match), except `/api/boom` (500), `/api/reset` (the connection is reset before any answer),
/// `/api/slow` (300 ms) and `/api/lag` (200 ms, within the mirror's timeout). It closes each
/// keep-alive connection after its 25th answer, so that runoff keeps opening new ones.
pub async fn go_backend() -> Fixture {
    fixture("go")
        .websocket()
        .delay(Duration::from_millis(1))
        .body("hello\n")
        .header("content-type", "text/plain")
        .when_path("/api/boom", |b| b.status(500))
        .when_path("/api/reset", |b| b.reset())
        .when_path("/api/slow", |b| b.delay(Duration::from_millis(300)))
        .when_path("/api/lag", |b| b.delay(Duration::from_millis(200)))
        .close_every(25)
        .start()
        .await
}

/// The runoff config of the proof: `api` exercises everything the dashboard shows for one
/// route (a weighted split, a mirror with timeouts and resets, 5xx, upstream errors, bodies);
/// the other routes add a pure mirror, a mirror to a refused shadow and a refused primary.
pub fn config(
    listen: u16,
    admin: u16,
    node: SocketAddr,
    go: SocketAddr,
    refused: u16,
    weights: (u32, u32),
) -> String {
    // The fixtures run in this test process: sample it as both backends' process.
    let me = std::process::id();
    format!(
        "listen: 127.0.0.1:{listen}
admin: {{ listen: 127.0.0.1:{admin} }}
backends:
  node: {{ address: \"{node}\", process: {{ pid: {me} }} }}
  go: {{ address: \"{go}\", process: {{ pid: {me} }} }}
  legacy: {{ address: \"127.0.0.1:{refused}\" }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    split: {{ node: {wn}, go: {wg} }}
    force: {{}}
    mirror: {{ to: go, percent: 100, timeout: 250ms }}
    compare: {{ status: true }}
  - name: orders
    match: {{ path_prefix: /orders }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100 }}
  - name: reports
    match: {{ path_prefix: /reports }}
    split: {{ node: 100 }}
    mirror: {{ to: legacy, percent: 100 }}
  - name: down
    match: {{ path_prefix: /down }}
    split: {{ legacy: 100 }}
",
        wn = weights.0,
        wg = weights.1,
    )
}

/// The i-th request of a load task: mostly plain GETs on the split route, with errors,
/// slow and reset requests, bodies, the other routes and unrouted paths mixed in.
pub fn request(client: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
    let k = i % 100;
    let path = match k {
        _ if k.is_multiple_of(20) => "/api/boom".to_string(),
        7 | 57 => "/api/reset".to_string(),
        13 => "/api/slow".to_string(),
        _ if k % 10 == 3 => {
            return client
                .post(format!("{base}/api/items"))
                .body(vec![b'x'; 512]);
        }
        _ if k % 25 == 4 => format!("/nowhere/{i}"),
        _ if k % 50 == 9 => "/down".to_string(),
        _ if k % 10 == 5 => format!("/orders/{i}"),
        _ if k % 50 == 11 => "/reports".to_string(),
        _ => format!("/api/users/{i}"),
    };
    client.get(format!("{base}{path}"))
}

/// WebSocket connections on route `api` that stay open (the open-connections panel reads them
/// when the queries run), each having echoed one message.
pub async fn open_websockets(ws_base: &str, n: usize) -> Vec<crate::harness::WsClient> {
    use futures_util::{SinkExt, StreamExt};
    let mut open = Vec::new();
    for i in 0..n {
        let (mut ws, _) = crate::harness::ws_connect(&format!("{ws_base}/api/ws/{i}"), &[]).await;
        ws.send(tokio_tungstenite::tungstenite::Message::text("hello"))
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
        open.push(ws);
    }
    open
}

/// WebSocket connections opened, used for a few messages and closed, over and over for
/// `duration` (the messages-per-second and connection-duration panels).
pub async fn churn_websockets(ws_base: &str, duration: Duration) -> u64 {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let until = Instant::now() + duration;
    let mut messages = 0;
    let mut i = 0u64;
    while Instant::now() < until {
        i += 1;
        let (mut ws, _) =
            crate::harness::ws_connect(&format!("{ws_base}/api/ws/churn/{i}"), &[]).await;
        for m in 0..5 {
            ws.send(Message::text(format!("{i}:{m}"))).await.unwrap();
            ws.next().await.unwrap().unwrap();
            messages += 1;
        }
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    messages
}

/// Send requests from `tasks` tasks, each paced at `pace`, until `duration` has passed or each
/// task has sent `max_per_task`. Returns how many got an answer.
pub async fn drive(
    base: &str,
    tasks: usize,
    max_per_task: usize,
    pace: Duration,
    duration: Duration,
) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let until = Instant::now() + duration;
    let answered = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, base, answered) = (client.clone(), base.to_string(), answered.clone());
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            for n in 0..max_per_task {
                if Instant::now() >= until {
                    break;
                }
                tick.tick().await;
                let i = n * tasks + t;
                if let Ok(resp) = request(&client, &base, i).send().await {
                    let _ = resp.bytes().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    // Last (so that it is inside the rate windows the queries read): a closed loop, each
    // request waiting for the previous answer as `wrk` does, on a path the shadow answers far
    // slower than the primary. Copies pile up on the shadow, which the load-shape bias panel
    // shows.
    for _ in 0..200 {
        // Forced to node, so every copy goes to go (which serves none of these itself).
        let lag = client
            .get(format!("{base}/api/lag"))
            .header("x-runoff-backend", "node");
        if let Ok(resp) = lag.send().await {
            let _ = resp.bytes().await;
            answered.fetch_add(1, Ordering::Relaxed);
        }
    }
    answered.load(Ordering::Relaxed)
}
