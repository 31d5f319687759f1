//! The built-in demo backends: a small JSON API and a WebSocket echo with a latency profile, a
//! "baseline" and a faster "candidate" that differs on purpose (other latency profiles, one
//! JSON field spelled differently, rare 500s). Each connection is served by hyper (HTTP/1.1,
//! upgrades included) inside a Pingora TCP service.
//!
//! Must not: be used outside the demo, or answer anything but loopback callers (they listen on
//! the loopback ports the demo picked).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use rand::Rng;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

/// How a demo backend behaves.
#[derive(Debug, Clone)]
pub(super) struct Profile {
    /// Answer latency, drawn uniformly from this range (milliseconds).
    pub latency_ms: (u64, u64),
    /// Every `error_every`-th request is answered 500 (0: never). Deterministic, so the
    /// demo always shows some errors.
    pub error_every: u64,
    /// The candidate spells one field differently (the planted mismatch).
    pub lowercase_currency: bool,
    /// WebSocket echo delay, drawn uniformly from this range (milliseconds).
    pub message_latency_ms: (u64, u64),
}

/// A demo backend: a small JSON API with a configurable latency profile.
pub(super) struct DemoBackend {
    pub name: String,
    pub profile: Profile,
    served: AtomicU64,
}

impl DemoBackend {
    pub(super) fn baseline(name: &str) -> DemoBackend {
        DemoBackend {
            name: name.to_string(),
            profile: Profile {
                latency_ms: (6, 16),
                error_every: 0,
                lowercase_currency: false,
                message_latency_ms: (2, 4),
            },
            served: AtomicU64::new(0),
        }
    }

    pub(super) fn candidate(name: &str) -> DemoBackend {
        DemoBackend {
            name: name.to_string(),
            profile: Profile {
                latency_ms: (2, 6),
                error_every: 40,
                lowercase_currency: true,
                message_latency_ms: (0, 1),
            },
            served: AtomicU64::new(0),
        }
    }

    fn answer(&self, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let id: u64 = path
            .rsplit('/')
            .next()
            .and_then(|s| s.split('?').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let currency = if self.profile.lowercase_currency {
            "eur"
        } else {
            "EUR"
        };
        let now = crate::access_log::now_rfc3339();
        if path.starts_with("/api/orders") {
            let qty = id % 5 + 1;
            let status = if method == "POST" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return (
                status,
                serde_json::json!({
                    "order_id": id,
                    "items": [{"sku": format!("SKU-{}", id % 17), "qty": qty, "unit_price_cents": 1999}],
                    "total_cents": qty * 1999,
                    "currency": currency,
                    "generated_at": now,
                }),
            );
        }
        let users: Vec<serde_json::Value> = (0..5)
            .map(
                |i| serde_json::json!({"id": id * 10 + i, "name": format!("user-{}", id * 10 + i)}),
            )
            .collect();
        (
            StatusCode::OK,
            serde_json::json!({"page": id, "users": users, "generated_at": now}),
        )
    }
}

impl DemoBackend {
    /// One HTTP exchange of the demo API.
    async fn http(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        // The whole body is read (and dropped), as a real API would.
        let _ = body.collect().await;
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.profile.error_every > 0 && n.is_multiple_of(self.profile.error_every);
        tokio::time::sleep(draw(self.profile.latency_ms)).await;
        let (status, body) = if fail {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "internal error (planted by the demo)"}),
            )
        } else {
            self.answer(parts.method.as_str(), parts.uri.path())
        };
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = self.name.parse() {
            headers.insert("x-demo-backend", v);
        }
        resp
    }

    /// A WebSocket upgrade: 101, then every message echoed after the profile's delay.
    fn websocket(self: &Arc<Self>, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        let key = req
            .headers()
            .get(http::header::SEC_WEBSOCKET_KEY)
            .map(|k| derive_accept_key(k.as_bytes()))
            .unwrap_or_default();
        let upgraded = hyper::upgrade::on(&mut req);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let Ok(io) = upgraded.await else { return };
            let mut ws =
                WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, None).await;
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    tokio::time::sleep(draw(me.profile.message_latency_ms)).await;
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::UPGRADE,
            http::HeaderValue::from_static("websocket"),
        );
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        if let Ok(v) = key.parse() {
            headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}

/// A delay drawn uniformly from `(lo, hi)` milliseconds.
fn draw((lo, hi): (u64, u64)) -> Duration {
    Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
}

/// Each connection: HTTP/1.1 with keep-alive, served by hyper; a WebSocket upgrade is echoed.
#[async_trait]
impl ServerApp for DemoBackend {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let me = Arc::clone(self);
        let svc = service_fn(move |req: Request<Incoming>| {
            let me = Arc::clone(&me);
            async move {
                let resp = if req.headers().contains_key(http::header::SEC_WEBSOCKET_KEY) {
                    me.websocket(req)
                } else {
                    me.http(req).await
                };
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), svc)
            .with_upgrades()
            .await;
        None
    }
}
