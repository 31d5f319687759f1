//! Built-in demo backends for the quick start: small JSON HTTP servers that stand in for the
//! two implementations being compared, so `runoff demo` needs nothing installed.
//!
//! Lives here: the demo backends' behaviour. Must not: be used on the proxy's data path.

use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

/// A demo backend: answers every request with a small JSON document after `delay`.
pub struct DemoBackend {
    pub name: String,
    pub delay: Duration,
}

#[async_trait]
impl ServeHttp for DemoBackend {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut received = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            received += chunk.len();
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let req = session.req_header();
        let body = serde_json::json!({
            "backend": self.name,
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "request_body_bytes": received,
        });
        let mut resp = Response::new(body.to_string().into_bytes());
        *resp.status_mut() = StatusCode::OK;
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
