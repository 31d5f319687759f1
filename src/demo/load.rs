//! The demo's synthetic load: an open loop at a fixed rate (at most 256 requests waiting), a
//! request mix per kind of backend, and the counts of what it saw.
//!
//! Must not: send to anything but the proxy's own loopback listener, or run unbounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

use super::Backends;

/// What the load generator saw.
#[derive(Default)]
pub(super) struct LoadCounts {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub server_errors: AtomicU64,
    pub failed: AtomicU64,
    /// Not sent because too many requests were already waiting (the load stays bounded).
    pub skipped: AtomicU64,
    /// WebSocket messages echoed, and connections that failed.
    pub ws_messages: AtomicU64,
    pub ws_failed: AtomicU64,
}

/// Send requests to the proxy at `rps` for `duration` (open loop, at most 256 in flight).
pub(super) async fn generate_load(
    proxy: SocketAddr,
    rps: u32,
    duration: Duration,
    counts: Arc<LoadCounts>,
    backends: Backends,
) {
    let connector = Arc::new(Connector::new(None));
    let mut peer = HttpPeer::new(proxy, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(1));
    peer.options.read_timeout = Some(Duration::from_secs(10));
    peer.options.idle_timeout = Some(Duration::from_secs(30));
    let peer = Arc::new(peer);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rps.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = Instant::now() + duration;
    let mut n: u64 = 0;
    while Instant::now() < end {
        ticker.tick().await;
        n += 1;
        if in_flight.load(Ordering::Acquire) >= 256 {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let (connector, peer, counts, in_flight) = (
            Arc::clone(&connector),
            Arc::clone(&peer),
            Arc::clone(&counts),
            Arc::clone(&in_flight),
        );
        tokio::spawn(async move {
            let outcome = one_request(&connector, &peer, n, backends).await;
            match outcome {
                Some(s) if s >= 500 => counts.server_errors.fetch_add(1, Ordering::Relaxed),
                Some(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                None => counts.failed.fetch_add(1, Ordering::Relaxed),
            };
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
    // Let the last requests finish (bounded).
    let settle = Instant::now() + Duration::from_secs(5);
    while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// WebSocket connections the demo keeps open through its load, and how often each sends.
const WS_CONNECTIONS: usize = 20;
const WS_EVERY: Duration = Duration::from_millis(200);

/// An open WebSocket of the demo's load.
pub(super) type DemoSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open `WS_CONNECTIONS` WebSockets through the proxy (path `path`), each sending a message
/// every 200 ms and waiting for its echo, for `duration`. The connections are handed back
/// open (the report reads memory per connection while they are), to be closed with
/// [`close_websockets`].
pub(super) async fn generate_websocket_load(
    proxy: SocketAddr,
    path: &'static str,
    duration: Duration,
    counts: Arc<LoadCounts>,
) -> Vec<DemoSocket> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let end = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..WS_CONNECTIONS {
        let counts = Arc::clone(&counts);
        tasks.push(tokio::spawn(async move {
            let url = format!("ws://{proxy}{path}");
            let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(url.as_str()),
            )
            .await
            else {
                counts.ws_failed.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            let mut tick = tokio::time::interval(WS_EVERY);
            let mut m = 0u64;
            while Instant::now() < end {
                tick.tick().await;
                m += 1;
                let text = format!("{{\"conn\":{c},\"msg\":{m}}}");
                let echoed = async {
                    ws.send(Message::text(text)).await.ok()?;
                    ws.next().await?.ok()
                };
                match tokio::time::timeout(Duration::from_secs(5), echoed).await {
                    Ok(Some(_)) => counts.ws_messages.fetch_add(1, Ordering::Relaxed),
                    _ => {
                        counts.ws_failed.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                };
            }
            Some(ws)
        }));
    }
    let mut open = Vec::new();
    for t in tasks {
        if let Ok(Some(ws)) = t.await {
            open.push(ws);
        }
    }
    open
}

/// Close the demo's WebSockets (a close frame each, then the close handshake, bounded).
pub(super) async fn close_websockets(open: Vec<DemoSocket>) {
    use futures_util::StreamExt;
    let closing = open.into_iter().map(|mut ws| async move {
        let _ = ws.close(None).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    });
    futures_util::future::join_all(closing).await;
}

/// A request of the demo's mix: method, path, body.
type Request = (&'static str, String, Option<&'static [u8]>);

/// The demo's request mix: for the built-in backends users pages (sticky user id) and order
/// reads and creates; for the example apps their real API (filtered user lists, orders, and a
/// CPU-heavy report now and then).
fn request_mix(backends: Backends, n: u64) -> Request {
    match (backends, n % 20) {
        (Backends::Builtin, 0..=11) => ("GET", format!("/api/users/{}", n % 50), None),
        (Backends::Builtin, 12..=17) => ("GET", format!("/api/orders/{}", n % 1000), None),
        (Backends::Builtin, _) => (
            "POST",
            format!("/api/orders/{}", n % 1000),
            Some(br#"{"sku":"SKU-1","qty":2}"#),
        ),
        (Backends::Examples, 0..=13) => {
            const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "BR", "JP", "IN"];
            let country = COUNTRIES[(n % 6) as usize];
            let min_age = 18 + n % 40;
            let offset = n % 40;
            (
                "GET",
                format!("/api/users?country={country}&min_age={min_age}&limit=20&offset={offset}"),
                None,
            )
        }
        (Backends::Examples, 14..=18) => (
            "POST",
            "/api/orders".to_string(),
            Some(br#"{"user_id":7,"items":[{"sku":"AB-1","qty":2,"unit_price_cents":1999}]}"#),
        ),
        (Backends::Examples, _) => ("GET", "/api/report?rounds=2".to_string(), None),
    }
}

/// One request of the demo's mix.
async fn one_request(
    connector: &Connector,
    peer: &HttpPeer,
    n: u64,
    backends: Backends,
) -> Option<u16> {
    let (method, path, body) = request_mix(backends, n);
    let mut req = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    req.insert_header("host", "demo.runoff").ok()?;
    req.insert_header("x-user-id", format!("user-{}", n % 200))
        .ok()?;
    if let Some(b) = body {
        req.insert_header("content-type", "application/json").ok()?;
        req.insert_header("content-length", b.len().to_string())
            .ok()?;
    }
    crate::client::exchange(connector, peer, req, body.map(Bytes::from_static))
        .await
        .ok()
        .map(|(status, _)| status)
}
