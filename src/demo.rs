//! Built-in demo backends for the quick start: small JSON HTTP servers that stand in for the
//! two implementations being compared, so `runoff demo` needs nothing installed.
//!
//! Lives here: the demo backends' behaviour. Must not: be used on the proxy's data path.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::config::Config;

/// The demo's two backends, placed at the addresses the example config gives `node` and `go`:
/// `node` answers in about 4 ms, `go` in about 1 ms.
pub fn backends_for(config: &Config) -> Vec<(SocketAddr, DemoBackend)> {
    [("node", 4), ("go", 1)]
        .into_iter()
        .filter_map(|(name, ms)| {
            let b = config.backends.iter().find(|b| b.name == name)?;
            Some((
                b.addr,
                DemoBackend {
                    name: name.to_string(),
                    delay: Duration::from_millis(ms),
                },
            ))
        })
        .collect()
}

/// What `runoff demo` prints before it starts.
pub fn banner(config: &Config) -> String {
    let listen = config
        .listen
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let admin = config.admin.listen;
    format!(
        "runoff demo: proxy on http://{listen}, admin on http://{admin}\n\
         \x20 demo backends: node (4 ms) on 127.0.0.1:3000, go (1 ms) on 127.0.0.1:3001\n\
         \x20 try:   curl -s http://{listen}/api/users -H 'x-user-id: 42'\n\
         \x20        curl -s http://{listen}/api/users -H 'x-runoff-backend: go'\n\
         \x20        curl -s http://{listen}/orders/7     # served by node, a copy goes to go\n\
         \x20 then:  curl -s http://{admin}/metrics | grep -E 'runoff_(requests|mirror_requests)_total'\n\
         \x20 Ctrl-C drains and stops."
    )
}

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
