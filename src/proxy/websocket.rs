//! A WebSocket upgrade, from `request_filter`: the handshake on runoff's own connection to the
//! chosen backend, then either its refusal relayed as an ordinary response, or the `101`
//! relayed, the request recorded (its duration is the time to the 101), the caller's
//! connection taken from Pingora and relayed by `websocket::relay` in a task of its own (so
//! Pingora's request state is freed at once; the task counts as in flight for the drain),
//! with a shadow connection when the route's mirror asks for one.
//!
//! Must not: hold WebSocket rules of its own (they live in `websocket`), or record the request
//! twice (`logging` skips one recorded here).

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::context::RequestCtx;
use super::Runoff;
use crate::forwarding::{self, nominated};
use crate::metrics::{RequestHandles, Role, UpgradeFailure, WsEnd};
use crate::outcome::error_kind;
use crate::pool::endpoint::Attempt;
use crate::routing;
use crate::state::{ConnectionSlot, InFlight};
use crate::websocket::handshake::{handshake, Answer, Dial};
use crate::websocket::relay::{relay, Drain, Tap};
use crate::websocket::shadow::{Accepted, Feed};
use crate::websocket::{OpenGuard, WsSide};

/// Serve a WebSocket upgrade; `Ok(true)`: answered (Pingora proxies nothing more).
pub(super) async fn serve(
    proxy: &Runoff,
    session: &mut Session,
    ctx: &mut RequestCtx,
    sticky_key: Option<Vec<u8>>,
) -> Result<bool> {
    let shared = &proxy.shared;
    let snapshot = Arc::clone(&ctx.snapshot);
    let Some(target) = ctx.target.as_ref() else {
        return Error::e_explain(ErrorType::InternalError, "a WebSocket without a route");
    };
    let (route_i, backend_i, split_i) = (target.route, target.backend, target.split);
    let request_handles = Arc::clone(&target.handles);
    let route = &snapshot.live.routes[route_i];
    let backend = &snapshot.live.backends[backend_i];
    let side = snapshot.routes[route_i].websocket.primary[split_i].get(|| {
        WsSide::new(
            &shared.metrics,
            &shared.book,
            &route.name,
            &backend.name,
            Role::Primary,
        )
    });

    let mut upstream = session.req_header().clone();
    upgrade_request(&mut upstream);
    forwarding::apply_forwarding(
        &mut upstream,
        &snapshot.live.forwarding,
        &ctx.peer,
        ctx.generated_id(),
        ctx.strip(),
    )?;
    ctx.attempts = 1;
    let now = Instant::now();
    ctx.upstream_started = Some(now);
    ctx.sent_upstream_at = Some(now);
    let pool = &snapshot.backends[backend_i].pool;
    let Some(picked) = pool.pick(&[]).or_else(|| pool.any()) else {
        return Error::e_explain(ErrorType::ConnectNoRoute, "the backend has no address");
    };
    let dial = Dial {
        connect_timeout: backend.connect_timeout,
        read_timeout: backend.read_timeout,
    };
    let h = handshake(dial, picked.addr(), &upstream).await;
    pool.report(
        &picked,
        match &h {
            Ok(h) => Attempt::Answered(h.status()),
            Err(_) => Attempt::Failed,
        },
    );
    let h = match h {
        Ok(h) => h,
        Err(e) => {
            request_handles.error(error_kind(&e));
            side.handles().upgrade_failures.inc(UpgradeFailure::Failed);
            return Err(e);
        }
    };
    snapshot.backends[backend_i]
        .primary
        .connection(false, Some(h.connect));
    ctx.connected = true;
    ctx.ttfb = Some(h.ttfb);
    let (head, io) = match h.answer {
        Answer::Refused { head, body } => {
            side.handles()
                .upgrade_failures
                .inc(UpgradeFailure::Rejected);
            relay_refusal(session, ctx, &head, body).await?;
            return Ok(true);
        }
        Answer::Upgraded { head, io } => (head, io),
    };

    // The 101 goes to the caller, and the request is recorded now: its duration is the time
    // to the upgrade, not the connection's life.
    ctx.upstream_status = Some(101);
    ctx.upstream_ended = Some(Instant::now());
    session
        .write_response_header(Box::new(response_header(&head)?), false)
        .await?;
    ctx.answered = 101;
    proxy.record(session.req_header(), ctx, None, ctx.start.elapsed());

    let feed = snapshot.routes[route_i]
        .websocket
        .mirror
        .as_ref()
        .filter(|_| {
            route.mirror.as_ref().is_some_and(|m| {
                routing::should_mirror_websocket(
                    m,
                    backend_i,
                    session.req_header().headers.contains_key(&m.marker_header),
                    sticky_key.as_deref(),
                    rand::random,
                )
            })
        })
        .and_then(|m| {
            let accepted = Accepted::of(&head.headers);
            let request = m.request(&upstream, &accepted)?;
            m.start(
                |r, b| WsSide::new(&shared.metrics, &shared.book, r, b, Role::Shadow),
                request,
                accepted,
            )
        });

    let preread = preread(session);
    let client = take_stream(session).await?;
    // The relay runs as a task of its own, so that Pingora's request (its session, buffers
    // and task) ends now rather than living as long as the connection. The drain still waits
    // for it: it counts as in flight until it ends.
    let relayed = Relayed {
        in_flight: shared.track(),
        _connection: shared.connections.hold(),
        open: side.open(),
        side,
        request_handles,
        feed,
        route: route.name.clone(),
        backend: backend.name.clone(),
        idle_timeout: route.websocket_idle_timeout,
        drain: shared.draining(),
    };
    tokio::spawn(relayed.run(client, io, preread));
    Ok(true)
}

/// One upgraded connection's relay and what it needs after the request has ended.
struct Relayed {
    in_flight: InFlight,
    /// The caller's connection counts against `server.max_connections` until it closes.
    _connection: ConnectionSlot,
    open: OpenGuard,
    side: Arc<WsSide>,
    request_handles: Arc<RequestHandles>,
    feed: Option<Feed>,
    route: String,
    backend: String,
    idle_timeout: std::time::Duration,
    drain: Drain,
}

impl Relayed {
    async fn run(
        mut self,
        client: pingora::protocols::Stream,
        backend: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send,
        preread: Bytes,
    ) {
        let opened = Instant::now();
        let end = relay(
            client,
            backend,
            preread,
            self.idle_timeout,
            self.drain,
            &self.side.counting,
            self.feed.as_mut().map(|f| f as &mut dyn Tap),
        )
        .await;
        // The shadow learns that the primary closed.
        drop(self.feed);
        drop(self.open);
        let handles = self.side.handles();
        handles.duration.observe(opened.elapsed().as_secs_f64());
        handles.ended.inc(end.cause);
        let line = format!(
            "websocket closed: {} (route {}, backend {}, open {:.1} s)",
            end.cause,
            self.route,
            self.backend,
            opened.elapsed().as_secs_f64()
        );
        match end.cause {
            WsEnd::ClientClosed | WsEnd::BackendClosed => log::debug!("{line}"),
            _ => log::info!("{line}"),
        }
        self.request_handles
            .request_bytes
            .inc_by(end.to_backend_bytes);
        self.request_handles
            .response_bytes
            .inc_by(end.to_client_bytes);
        drop(self.in_flight);
    }
}

/// The caller's request as the backend gets it for an upgrade: `Connection: Upgrade` and
/// `Upgrade` kept, the other hop-by-hop fields removed (the forwarding headers are added by
/// the caller of this).
fn upgrade_request(req: &mut RequestHeader) {
    for name in nominated(&req.headers, &["upgrade", "close", "keep-alive"]) {
        req.remove_header(name.as_str());
    }
    for name in ["keep-alive", "proxy-connection", "te", "trailer"] {
        req.remove_header(name);
    }
    let _ = req.insert_header(http::header::CONNECTION, "Upgrade");
}

/// The backend's answer head as Pingora writes it to the caller (hop-by-hop fields removed;
/// a 101 keeps `Upgrade` and `Connection: Upgrade`).
fn response_header(head: &http::response::Parts) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build(head.status, Some(head.headers.len()))?;
    for (name, value) in &head.headers {
        resp.append_header(name.clone(), value.clone())?;
    }
    forwarding::strip_response_hops(&mut resp);
    if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
        resp.insert_header(http::header::CONNECTION, "Upgrade")?;
    }
    Ok(resp)
}

/// A backend that did not upgrade: its answer goes to the caller as an ordinary response.
async fn relay_refusal(
    session: &mut Session,
    ctx: &mut RequestCtx,
    head: &http::response::Parts,
    mut body: hyper::body::Incoming,
) -> Result<()> {
    let status = head.status.as_u16();
    ctx.upstream_status = Some(status);
    let mut resp = response_header(head)?;
    // hyper has undone the backend's framing; Pingora frames what it writes.
    resp.remove_header(&http::header::TRANSFER_ENCODING);
    if resp.headers.get(http::header::CONTENT_LENGTH).is_none() {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    session.write_response_header(Box::new(resp), false).await?;
    ctx.answered = status;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            let mut err = Error::explain(ErrorType::ReadError, format!("refusal body: {e}"));
            err.esource = pingora::ErrorSource::Upstream;
            err
        })?;
        if let Ok(data) = frame.into_data() {
            ctx.response_body_bytes += data.len() as u64;
            session.write_response_body(Some(data), false).await?;
        }
    }
    ctx.upstream_ended = Some(Instant::now());
    session.write_response_body(None, true).await
}

/// Client bytes Pingora already holds (read with the request head): polled once, never
/// waited for. Copied out: Pingora's `Bytes` is a view of its 64 KiB body buffer, which would
/// otherwise live as long as the connection.
fn preread(session: &mut Session) -> Bytes {
    let mut read = std::pin::pin!(session.downstream_session.read_request_body());
    match read.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(Some(bytes))) if !bytes.is_empty() => Bytes::copy_from_slice(&bytes),
        _ => Bytes::new(),
    }
}

/// Take the caller's connection from Pingora, leaving it a stand-in session holding the same
/// request (for `logging`) that closes without touching the network.
async fn take_stream(session: &mut Session) -> Result<pingora::protocols::Stream> {
    let raw = session.downstream_session.to_h1_raw();
    let mut stand_in = ServerSession::new_http1(Box::new(std::io::Cursor::new(raw.to_vec())));
    stand_in.read_request().await?;
    stand_in.set_keepalive(None);
    match std::mem::replace(&mut *session.downstream_session, stand_in) {
        ServerSession::H1(h1) => Ok(h1.into_inner()),
        other => {
            *session.downstream_session = other;
            Error::e_explain(
                ErrorType::InternalError,
                "a WebSocket upgrade on a connection that is not HTTP/1",
            )
        }
    }
}
