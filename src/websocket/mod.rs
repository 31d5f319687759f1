//! WebSockets as a first-class trial: an upgrade follows the route's split like any request,
//! then runoff owns the upgraded connection — relayed both ways, frames counted as they pass,
//! its own idle timeout and close frames — and, when the route's mirror asks for it, a shadow
//! connection to the candidate fed a copy of every client byte.
//!
//! Lives here: what an upgrade request is (`mod`), the handshake with a backend
//! (`handshake`), frame counting (`frames`), the relay (`relay`) and the shadow connection
//! (`shadow`). Must not: make the caller wait for the shadow, buffer whole messages, or count
//! a WebSocket that ended normally as an upstream error.

pub(crate) mod frames;
pub(crate) mod handshake;
pub(crate) mod idle_read;
pub(crate) mod relay;
pub(crate) mod shadow;

use std::sync::{Arc, OnceLock};

use http::header::{CONNECTION, UPGRADE};
use pingora::http::RequestHeader;

use crate::analysis::recorder::Connections;
use crate::analysis::{Book, Series};
use crate::metrics::{Direction, Metrics, Role, WebSocketHandles};
use relay::Counting;

/// Where one (route, backend, role)'s WebSocket connections are counted: metrics, open and
/// peak connections, and the recorders summaries read.
pub(crate) struct WsSide {
    pub(crate) counting: Counting,
    connections: Arc<Connections>,
}

impl WsSide {
    pub(crate) fn new(
        metrics: &Metrics,
        book: &Book,
        route: &str,
        backend: &str,
        role: Role,
    ) -> WsSide {
        WsSide {
            counting: Counting {
                handles: metrics.websocket_handles(route, backend, role),
                latency: Some(book.recorder(Series::WsLatency(role), route, backend)),
                to_backend: Some(book.recorder(
                    Series::WsMessages(role, Direction::ToBackend),
                    route,
                    backend,
                )),
                to_client: Some(book.recorder(
                    Series::WsMessages(role, Direction::ToClient),
                    route,
                    backend,
                )),
            },
            connections: book.connections(route, backend, role),
        }
    }

    pub(crate) fn handles(&self) -> &WebSocketHandles {
        &self.counting.handles
    }

    /// A connection is open until the guard drops.
    pub(crate) fn open(self: &Arc<Self>) -> OpenGuard {
        self.counting.handles.open.inc();
        self.connections.open();
        OpenGuard(Arc::clone(self))
    }
}

/// Holds one open connection of a side.
pub(crate) struct OpenGuard(Arc<WsSide>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.counting.handles.open.dec();
        self.0.connections.close();
    }
}

/// A side's counting, made on its first connection (routes that never see a WebSocket export
/// no WebSocket series).
#[derive(Default)]
pub(crate) struct LazySide(OnceLock<Arc<WsSide>>);

impl LazySide {
    pub(crate) fn get(&self, make: impl FnOnce() -> WsSide) -> Arc<WsSide> {
        Arc::clone(self.0.get_or_init(|| Arc::new(make())))
    }
}

/// A WebSocket opening handshake (RFC 6455 section 4.1): `GET` with `Upgrade: websocket` and
/// `Connection: upgrade` (tokens, case-insensitive).
pub(crate) fn is_websocket(req: &RequestHeader) -> bool {
    let has_token = |name: http::header::HeaderName, token: &str| {
        req.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    req.method == http::Method::GET
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_a_websocket_upgrade() {
        let req = |method: &str, pairs: &[(&str, &str)]| {
            let mut r = RequestHeader::build(method, b"/ws", None).expect("header");
            for (k, v) in pairs {
                r.append_header(k.to_string(), *v).expect("append");
            }
            r
        };
        assert!(is_websocket(&req(
            "GET",
            &[("upgrade", "websocket"), ("connection", "Upgrade")]
        )));
        assert!(is_websocket(&req(
            "GET",
            &[
                ("Upgrade", "WebSocket"),
                ("Connection", "keep-alive, Upgrade")
            ]
        )));
        assert!(!is_websocket(&req("GET", &[("upgrade", "websocket")])));
        assert!(!is_websocket(&req(
            "POST",
            &[("upgrade", "websocket"), ("connection", "upgrade")]
        )));
        assert!(!is_websocket(&req(
            "GET",
            &[("upgrade", "h2c"), ("connection", "upgrade")]
        )));
    }
}
