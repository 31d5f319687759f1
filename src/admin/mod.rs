//! The admin HTTP endpoint: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and the JSON
//! control API under `/api/` (config, routes, weights, mirror, reload).
//!
//! Lives here: request dispatch and access control for the admin listener. Must not: sit on
//! the proxy's data path, make readiness depend on backend health (a dead backend is something
//! to measure, not a reason to pull runoff out of a load balancer), or let anyone but a token
//! holder (or, without a token, a loopback client) use `/api/*`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Method, Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use crate::control::{Control, ControlError};

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// The admin application.
pub struct Admin {
    registry: Registry,
    /// The proxy's listen addresses; `/readyz` checks that each accepts connections.
    proxy_listen: Vec<SocketAddr>,
    control: Arc<Control>,
    /// The bearer token `/api/*` requires, when `admin.token_env` names one.
    token: Option<String>,
    /// The admin listener is loopback-only (then `/api/*` works without a token).
    loopback: bool,
}

impl Admin {
    pub fn new(
        registry: Registry,
        proxy_listen: Vec<SocketAddr>,
        control: Arc<Control>,
        token: Option<String>,
        admin_listen: SocketAddr,
    ) -> Admin {
        Admin {
            registry,
            proxy_listen,
            control,
            token,
            loopback: admin_listen.ip().is_loopback(),
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

    /// Bearer token when configured (compared in constant time); otherwise only a
    /// loopback-only listener may serve the API.
    /// `Some(response)` when the caller may not use the API.
    fn denied(&self, session: &ServerSession) -> Option<Response<Vec<u8>>> {
        match &self.token {
            Some(token) => {
                let presented = session
                    .req_header()
                    .headers
                    .get(http::header::AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
                match presented {
                    None => Some(api_error(
                        StatusCode::UNAUTHORIZED,
                        "this endpoint needs `Authorization: Bearer <token>`",
                    )),
                    Some(p) if bool::from(p.ct_eq(token.as_bytes())) => None,
                    Some(_) => Some(api_error(StatusCode::FORBIDDEN, "wrong token")),
                }
            }
            None if self.loopback => None,
            None => Some(api_error(
                StatusCode::FORBIDDEN,
                "the admin API needs admin.token_env on a non-loopback listener",
            )),
        }
    }

    async fn api(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if let Some(denied) = self.denied(session) {
            return denied;
        }
        let method = session.req_header().method.clone();
        let path = session.req_header().uri.path().to_string();
        let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
        match (&method, parts.as_slice()) {
            (&Method::GET, ["config"]) => json_reply(StatusCode::OK, &self.control.config_json()),
            (&Method::GET, ["routes"]) => json_reply(StatusCode::OK, &self.control.routes_json()),
            (&Method::GET, ["summary"]) => {
                let q = query(session);
                let window = match q.get("window").map(|w| humantime::parse_duration(w)) {
                    None => Duration::from_secs(60),
                    Some(Ok(w)) if !w.is_zero() => w,
                    Some(_) => {
                        return api_error(
                            StatusCode::BAD_REQUEST,
                            "window must be a duration like 60s or 5m",
                        )
                    }
                };
                let summary = self.control.summary(window);
                match serde_json::to_value(&summary) {
                    Ok(v) => json_reply(StatusCode::OK, &v),
                    Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            (&Method::GET, ["mismatches"]) => {
                let q = query(session);
                let limit = q
                    .get("limit")
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(20)
                    .min(1000);
                match self.control.mismatches_json(q.get("route").map(String::as_str), limit) {
                    Ok(v) => json_reply(StatusCode::OK, &v),
                    Err(e) => control_error(e),
                }
            }
            (&Method::GET, ["mismatches", "paths"]) => {
                let q = query(session);
                let Some(route) = q.get("route") else {
                    return api_error(StatusCode::BAD_REQUEST, "give ?route=NAME");
                };
                match self.control.mismatch_paths_json(route) {
                    Ok(v) => json_reply(StatusCode::OK, &v),
                    Err(e) => control_error(e),
                }
            }
            (&Method::POST, ["reload"]) => {
                let control = Arc::clone(&self.control);
                match tokio::task::spawn_blocking(move || control.reload()).await {
                    Ok(Ok(report)) => json_reply(
                        StatusCode::OK,
                        &json!({"result": "success", "ignored_until_restart": report.ignored_until_restart}),
                    ),
                    Ok(Err(ControlError::Invalid(problems))) => json_reply(
                        StatusCode::BAD_REQUEST,
                        &json!({"result": "error", "error": "invalid config: the running config stays in force", "problems": problems}),
                    ),
                    Ok(Err(e)) => control_error(e),
                    Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, &format!("reload failed: {e}")),
                }
            }
            (&Method::PUT, ["routes", route, "weights"]) => {
                let route = route.to_string();
                match read_json(session).await {
                    Ok(body) => match self.control.set_weights(&route, &body) {
                        Ok(w) => json_reply(StatusCode::OK, &json!({"route": route, "weights": w, "override": true})),
                        Err(e) => control_error(e),
                    },
                    Err(resp) => resp,
                }
            }
            (&Method::PUT, ["routes", route, "mirror"]) => {
                let route = route.to_string();
                match read_json(session).await {
                    Ok(body) => match self.control.set_mirror(&route, &body) {
                        Ok(m) => json_reply(StatusCode::OK, &json!({"route": route, "mirror": m, "override": true})),
                        Err(e) => control_error(e),
                    },
                    Err(resp) => resp,
                }
            }
            (
                _,
                ["config"]
                | ["routes"]
                | ["reload"]
                | ["mismatches"]
                | ["mismatches", "paths"]
                | ["summary"]
                | ["routes", _, "weights" | "mirror"],
            ) => {
                api_error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} is not allowed here"))
            }
            _ => api_error(
                StatusCode::NOT_FOUND,
                "try GET /api/summary?window=60s, GET /api/config, GET /api/routes, GET /api/mismatches?route=NAME&limit=N, GET /api/mismatches/paths?route=NAME, PUT /api/routes/NAME/weights, PUT /api/routes/NAME/mirror, POST /api/reload",
            ),
        }
    }
}

/// The query string as key/value pairs (route names need no percent-decoding).
fn query(session: &ServerSession) -> std::collections::HashMap<String, String> {
    session
        .req_header()
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn read_json(session: &mut ServerSession) -> Result<Value, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(api_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                ))
            }
        }
    }
    serde_json::from_slice(&body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
        )
    })
}

fn control_error(e: ControlError) -> Response<Vec<u8>> {
    let status = match e {
        ControlError::NoRoute(_) => StatusCode::NOT_FOUND,
        ControlError::NoFile => StatusCode::CONFLICT,
        ControlError::Invalid(_) | ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
    };
    api_error(status, &e.to_string())
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

fn json_reply(status: StatusCode, v: &Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec_pretty(v).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn api_error(status: StatusCode, message: &str) -> Response<Vec<u8>> {
    json_reply(status, &json!({"error": message}))
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        if path == "/api" || path.starts_with("/api/") {
            return self.api(session).await;
        }
        let method = &session.req_header().method;
        if method != Method::GET && method != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match path.as_str() {
            "/metrics" => self.metrics(),
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => self.ready().await,
            _ => text(
                StatusCode::NOT_FOUND,
                "runoff admin: try /metrics, /healthz, /readyz or /api/routes\n".into(),
            ),
        }
    }
}
