//! The built-in demo backends: a small JSON API with a latency profile, a "baseline" and a
//! faster "candidate" that differs on purpose (another latency profile, one JSON field spelled
//! differently, rare 500s).
//!
//! Must not: be used outside the demo, or answer anything but loopback callers (they listen on
//! the loopback ports the demo picked).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use rand::Rng;

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

#[async_trait]
impl ServeHttp for DemoBackend {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        while let Ok(Some(_chunk)) = session.read_request_body().await {}
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.profile.error_every > 0 && n.is_multiple_of(self.profile.error_every);
        let delay = {
            let (lo, hi) = self.profile.latency_ms;
            Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
        };
        tokio::time::sleep(delay).await;
        let req = session.req_header();
        let (status, body) = if fail {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "internal error (planted by the demo)"}),
            )
        } else {
            self.answer(req.method.as_str(), req.uri.path())
        };
        let mut resp = Response::new(body.to_string().into_bytes());
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
}
