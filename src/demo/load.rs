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
