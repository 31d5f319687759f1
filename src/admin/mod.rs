//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`.
//!
//! Lives here: request dispatch for the admin listener. Must not: sit on the proxy's data path,
//! or make readiness depend on backend health (a dead backend is something to measure, not a
//! reason to pull runoff out of a load balancer).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};

/// The admin application.
pub struct Admin {
    registry: Registry,
    /// The proxy's listen addresses; `/readyz` checks that each accepts connections.
    proxy_listen: Vec<SocketAddr>,
}

impl Admin {
    pub fn new(registry: Registry, proxy_listen: Vec<SocketAddr>) -> Admin {
        Admin {
            registry,
            proxy_listen,
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

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != Method::GET && req.method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match req.uri.path() {
            "/metrics" => self.metrics(),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.ready().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "runoff admin: try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }
}
