//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and the JSON
//! API under `/api/` (`api`: summary, history, config, routes, mismatches, weights, mirror,
//! reload), whose answers are typed views (`views`), and the live page at `/` (`page`).
//!
//! Lives here: dispatch for the admin listener; who it obeys is `guard`. Must not: sit on the
//! proxy's data path, make readiness depend on backend health (a dead backend is something to
//! measure, not a reason to pull runoff out of a load balancer), let anyone but a token
//! holder (or, without a token, a loopback client) use `/api/*`, or block its one thread.

mod api;
mod guard;
mod page;
mod views;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;

use crate::control::Control;
use crate::state::Shared;
use views::ErrorView;

/// The admin application.
pub(crate) struct Admin {
    registry: Registry,
    /// The proxy's listen addresses; `/readyz` checks that each accepts connections.
    proxy_listen: Vec<SocketAddr>,
    control: Arc<Control>,
    shared: Arc<Shared>,
    /// Who may use `/api/*` and the pages.
    guard: guard::Guard,
}

impl Admin {
    pub(crate) fn new(
        registry: Registry,
        proxy_listen: Vec<SocketAddr>,
        (control, shared): (Arc<Control>, Arc<Shared>),
        token: Option<String>,
        admin: &crate::config::AdminSettings,
    ) -> Admin {
        Admin {
            registry,
            proxy_listen,
            control,
            shared,
            guard: guard::Guard {
                listen: admin.listen,
                allowed_hosts: admin.allowed_hosts.clone(),
                token,
            },
        }
    }

    fn metrics(&self) -> Response<Vec<u8>> {
        let mut body = Vec::new();
        let encoder = TextEncoder::new();
        match encoder.encode(&self.registry.gather(), &mut body) {
            Ok(()) => reply(StatusCode::OK, encoder.format_type(), body),
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot encode metrics: {e}\n"),
            ),
        }
    }

    async fn ready(&self) -> Response<Vec<u8>> {
        for addr in &self.proxy_listen {
            let target = connectable(*addr);
            let ok = matches!(
                tokio::time::timeout(
                    Duration::from_secs(1),
                    tokio::net::TcpStream::connect(target)
                )
                .await,
                Ok(Ok(_))
            );
            if !ok {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: proxy listener {addr} does not accept connections\n"),
                );
            }
        }
        text(StatusCode::OK, "ready\n".into())
    }
}

/// A wildcard listen address is reached through loopback.
fn connectable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    resp
}

fn text(status: StatusCode, body: String) -> Response<Vec<u8>> {
    reply(status, "text/plain; charset=utf-8", body.into_bytes())
}

fn json_reply(status: StatusCode, v: &impl Serialize) -> Response<Vec<u8>> {
    match serde_json::to_vec_pretty(v) {
        Ok(mut body) => {
            body.push(b'\n');
            reply(status, "application/json", body)
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the answer as JSON: {e}\n"),
        ),
    }
}

fn api_error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_reply(status, &ErrorView { error: message })
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let open = matches!(path.as_str(), "/metrics" | "/healthz" | "/readyz");
        if !open {
            let head = session.req_header();
            let api = path == "/api" || path.starts_with("/api/");
            if let Err(refusal) = self.guard.check(&head.method, &head.headers, api) {
                self.shared.metrics.admin_refused(refusal.reason);
                return api_error(refusal.status, &refusal.message);
            }
            if api {
                return api::dispatch(self, session).await;
            }
        }
        let method = &session.req_header().method;
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        if let Some(resp) = page::file(&path) {
            return resp;
        }
        if path == "/page-config.json" {
            // Whether the page must ask for the token before its first API call (a 401 says
            // as much; asking first keeps the browser's console clean).
            return json_reply(
                StatusCode::OK,
                &serde_json::json!({ "token_required": self.guard.token.is_some() }),
            );
        }
        match path.as_str() {
            "/metrics" => self.metrics(),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.ready().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "runoff admin: try / (the live page), /metrics, /healthz, /readyz or /api/routes\n"
                    .into(),
            ),
        }
    }
}
