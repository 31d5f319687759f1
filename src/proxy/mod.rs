//! The Pingora `ProxyHttp` implementation and the per-request context.
//!
//! Lives here: thin phase callbacks that read one config snapshot per request, delegate every
//! decision to `routing` and `outcome`, keep timings in the context and record metrics once,
//! in `logging()`. Must not: hold routing or classification logic of its own, block, or
//! allocate label strings per request.

pub mod headers;

pub mod state;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use prometheus::IntGauge;
use rand::Rng;

use crate::access_log::{now_rfc3339, Entry};
use crate::compare::Captured;
use crate::metrics::{RequestHandles, StatusClass};
use crate::mirror::{self, CopyHandle};
use crate::outcome::{self, error_kind, is_upstream, status_class, status_for_failure};
use crate::routing::{self, ChoiceReason, MirrorFacts, RequestFacts};
use state::{InFlight, Shared, Snapshot};

/// The proxy: everything it knows lives in `Shared`.
pub struct Runoff {
    shared: Arc<Shared>,
}

impl Runoff {
    pub fn new(shared: Arc<Shared>) -> Runoff {
        Runoff { shared }
    }
}

/// Where a request goes, decided once in `request_filter`.
pub struct Target {
    pub route: usize,
    pub split_index: usize,
    pub backend: usize,
    pub reason: ChoiceReason,
    handles: Arc<RequestHandles>,
    latency: Arc<crate::summary::Recorder>,
}

/// Raises a gauge for as long as it lives.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: &IntGauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Holds one unit of a backend's in-flight count until dropped.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    /// Take a slot; returns it with the count including this request.
    fn take(counter: &Arc<std::sync::atomic::AtomicUsize>) -> (Slot, usize) {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        (Slot(Arc::clone(counter)), n)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Per-request state, from the request header to `logging()`.
pub struct RequestCtx {
    start: Instant,
    snapshot: Arc<Snapshot>,
    _in_flight: InFlight,
    target: Option<Target>,
    _gauge: Option<GaugeGuard>,
    /// The request id, and whether runoff generated it (then it is added upstream). A
    /// caller's id is a cheap clone of its header value.
    request_id: Option<(HeaderValue, bool)>,
    attempts: u32,
    /// Body bytes of the current attempt; replays on retry resend a prefix.
    attempt_body_bytes: u64,
    request_body_bytes: u64,
    response_body_bytes: u64,
    sent_upstream_at: Option<Instant>,
    ttfb: Option<Duration>,
    upstream_status: Option<u16>,
    /// The status the caller got.
    answered: u16,
    /// A primary upstream connection was made.
    connected: bool,
    /// The shadow copy of this request, while its body is being fed.
    mirror: Option<CopyHandle>,
    /// This request's unit of its backend's in-flight count.
    _slot: Option<Slot>,
    /// The primary's answer, kept (up to the compare limit) when the route compares.
    answer: Option<Captured>,
}

impl RequestCtx {
    /// Take the request on for `target`: it counts as in flight for its route and backend.
    /// `false` when the backend is at its `max_in_flight`: candidate protection, rather than
    /// pile onto an overloaded backend (counted as rejected and as an `error` request).
    fn admit(&mut self, target: Target) -> bool {
        self._gauge = Some(GaugeGuard::new(&target.handles.in_flight));
        // Only a backend with a limit keeps a shared count (one contended atomic less per
        // request for the others).
        let admitted = match self.snapshot.config.backends[target.backend].max_in_flight {
            None => true,
            Some(max) => {
                let (slot, under_way) =
                    Slot::take(&self.snapshot.backends[target.backend].in_flight);
                self._slot = Some(slot);
                under_way <= max
            }
        };
        if !admitted {
            target.handles.rejected.inc();
        }
        self.target = Some(target);
        admitted
    }
}

impl RequestCtx {
    /// Record the finished request once: hand the primary's outcome to its copy (for the
    /// paired ratio and the comparison), then every metric, the request count last.
    fn finish(&mut self, e: Option<&Error>, elapsed: Duration) {
        if let Some(mut copy) = self.mirror.take() {
            let completed = e.is_none() && self.upstream_status.is_some();
            let caller_gone = e.is_some_and(|e| *e.esource() == pingora::ErrorSource::Downstream);
            copy.primary_done(
                completed.then_some(elapsed),
                self.answer.take(),
                caller_gone,
            );
        }
        let Some(target) = &self.target else { return };
        let h = &target.handles;
        h.duration.observe(elapsed.as_secs_f64());
        if let Some(ttfb) = self.ttfb {
            h.ttfb.observe(ttfb.as_secs_f64());
        }
        h.request_bytes.inc_by(self.request_body_bytes);
        h.response_bytes.inc_by(self.response_body_bytes);
        self._gauge = None;
        let class = status_class(self.upstream_status, e);
        target.latency.record_duration(
            elapsed,
            matches!(class, StatusClass::ServerError | StatusClass::Error),
        );
        // Last: a reader that sees this count also sees everything above.
        h.finished(class);
    }

    /// The access log line of this request.
    fn access_entry<'a>(
        &'a self,
        req: &'a RequestHeader,
        e: Option<&Error>,
        elapsed: Duration,
    ) -> Entry<'a> {
        let config = &self.snapshot.config;
        Entry {
            time: now_rfc3339(),
            request_id: self
                .request_id
                .as_ref()
                .and_then(|(id, _)| id.to_str().ok())
                .unwrap_or(""),
            method: req.method.as_str(),
            path: req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
            route: self
                .target
                .as_ref()
                .map(|t| config.routes[t.route].name.as_str()),
            backend: self
                .target
                .as_ref()
                .map(|t| config.backends[t.backend].name.as_str()),
            role: "primary",
            choice: self.target.as_ref().map(|t| t.reason.as_str()),
            status: self.answered,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            request_bytes: self.request_body_bytes,
            response_bytes: self.response_body_bytes,
            error: e.map(|e| e.etype().as_str()),
        }
    }
}

/// The caller's request id (kept), or a new one (then added upstream).
fn request_id(session: &Session, header: &http::HeaderName) -> Option<(HeaderValue, bool)> {
    match session.req_header().headers.get(header) {
        Some(v) => Some((v.clone(), false)),
        None => HeaderValue::from_str(&headers::new_request_id())
            .ok()
            .map(|v| (v, true)),
    }
}

/// Decide the route and backend for a request. `None`: no route matches.
pub fn decide(
    snapshot: &Snapshot,
    req: &RequestHeader,
    client_ip: Option<IpAddr>,
) -> Option<Target> {
    let config = &snapshot.config;
    let host = req
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.host())
        .map(routing::host_without_port);
    let facts = RequestFacts {
        method: &req.method,
        host,
        path: req.uri.path(),
    };
    let route_index = routing::find_route(&config.routes, &facts)?;
    let route = &config.routes[route_index];
    let forced = route
        .force_header
        .as_ref()
        .and_then(|h| req.headers.get(h))
        .map(HeaderValue::as_bytes);
    let key = route
        .sticky
        .as_ref()
        .and_then(|s| routing::sticky_key(s, &req.headers, client_ip));
    let choice = routing::choose_backend(
        &route.split,
        |b| config.backends[b].name.as_str(),
        forced,
        key.as_ref().map(|k| k.as_bytes()),
        || rand::rng().random(),
    )?;
    Some(Target {
        route: route_index,
        split_index: choice.split_index,
        backend: route.split[choice.split_index].backend,
        reason: choice.reason,
        handles: Arc::clone(&snapshot.routes[route_index].primary[choice.split_index]),
        latency: Arc::clone(&snapshot.routes[route_index].primary_latency[choice.split_index]),
    })
}

/// The request id runoff generated for this request, if it did (then it is added upstream).
fn generated_id(ctx: &RequestCtx) -> Option<&HeaderValue> {
    match &ctx.request_id {
        Some((id, true)) => Some(id),
        _ => None,
    }
}

/// Dispatch a shadow copy of the request when its route mirrors and the request qualifies.
fn start_copy(
    shared: &Shared,
    session: &Session,
    ctx: &RequestCtx,
    ip: Option<IpAddr>,
) -> Option<CopyHandle> {
    let target = ctx.target.as_ref()?;
    let rm = ctx.snapshot.routes[target.route].mirror.as_ref()?;
    let req = session.req_header();
    let facts = MirrorFacts {
        serving_backend: target.backend,
        method: &req.method,
        has_marker: req.headers.contains_key(&rm.config.marker_header),
        is_upgrade: session.is_upgrade_req(),
    };
    let route = &ctx.snapshot.config.routes[target.route];
    let key = route
        .sticky
        .as_ref()
        .and_then(|s| routing::sticky_key(s, &req.headers, ip));
    let sampled = routing::should_mirror(
        &rm.config,
        &facts,
        key.as_ref().map(|k| k.as_bytes()),
        || rand::rng().random(),
    );
    if !sampled {
        return None;
    }
    let fwd = &ctx.snapshot.config.forwarding;
    match headers::shadow_request(req, fwd, &rm.config, ip, generated_id(ctx)) {
        Ok(header) => mirror::dispatch(
            &shared.mirrors,
            rm,
            header,
            headers::body_plan(req),
            ctx.start,
        ),
        Err(e) => {
            log::warn!(
                "cannot build a shadow copy of {} {}: {e}",
                req.method,
                req.uri
            );
            None
        }
    }
}

fn client_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

const NO_ROUTE_BODY: &[u8] = b"runoff: no route matches this request\n";
const BACKEND_FULL_BODY: &[u8] = b"runoff: the backend is at its max_in_flight limit\n";

/// Answer with runoff's own small plain-text response; the caller's connection stays open.
async fn answer_plain(session: &mut Session, status: u16, body: &'static [u8]) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(3))?;
    resp.insert_header("content-type", "text/plain; charset=utf-8")?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("server", "runoff")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from_static(body)), true)
        .await
}

#[async_trait]
impl ProxyHttp for Runoff {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot: self.shared.snapshot.load_full(),
            _in_flight: self.shared.track(),
            target: None,
            _gauge: None,
            request_id: None,
            attempts: 0,
            attempt_body_bytes: 0,
            request_body_bytes: 0,
            response_body_bytes: 0,
            sent_upstream_at: None,
            ttfb: None,
            upstream_status: None,
            answered: 0,
            connected: false,
            mirror: None,
            _slot: None,
            answer: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let ip = client_ip(session);
        let Some(target) = decide(&ctx.snapshot, session.req_header(), ip) else {
            self.shared.metrics.unrouted.inc();
            ctx.answered = 404;
            answer_plain(session, 404, NO_ROUTE_BODY).await?;
            return Ok(true);
        };
        if !ctx.admit(target) {
            ctx.answered = 503;
            answer_plain(session, 503, BACKEND_FULL_BODY).await?;
            return Ok(true);
        }
        ctx.request_id = request_id(session, &ctx.snapshot.config.forwarding.request_id_header);
        ctx.mirror = start_copy(&self.shared, session, ctx, ip);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = &ctx.target else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        ctx.attempts += 1;
        ctx.attempt_body_bytes = 0;
        Ok(Box::new(ctx.snapshot.backends[target.backend].peer.clone()))
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.connected = true;
        if let Some(target) = &ctx.target {
            let handles = &ctx.snapshot.backends[target.backend].primary;
            handles.connection(reused);
            if !reused {
                let connect = digest
                    .and_then(|d| d.timing_digest.first())
                    .and_then(Option::as_ref)
                    .and_then(|t| t.establishment_duration);
                if let Some(d) = connect {
                    handles.connect.observe(d.as_secs_f64());
                }
            }
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::apply_forwarding(
            upstream_request,
            &ctx.snapshot.config.forwarding,
            client_ip(session),
            generated_id(ctx),
        )?;
        ctx.sent_upstream_at = Some(Instant::now());
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if session.was_upgraded() {
            return Ok(());
        }
        if let Some(b) = body {
            ctx.attempt_body_bytes += b.len() as u64;
            ctx.request_body_bytes = ctx.request_body_bytes.max(ctx.attempt_body_bytes);
        }
        if let Some(copy) = ctx.mirror.as_mut() {
            copy.tee(body.as_ref(), ctx.attempt_body_bytes, end_of_stream);
        }
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        headers::strip_response_hops(upstream_response);
        let status = upstream_response.status;
        if !status.is_informational() || status.as_u16() == 101 {
            if let Some(limit) = ctx.mirror.as_ref().and_then(CopyHandle::compares) {
                ctx.answer = Some(Captured::new(
                    status.as_u16(),
                    upstream_response.headers.clone(),
                    limit,
                ));
            }
            if ctx.ttfb.is_none() {
                ctx.ttfb = ctx.sent_upstream_at.map(|t| t.elapsed());
            }
            ctx.upstream_status = Some(status.as_u16());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.answered = upstream_response.status.as_u16();
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.response_body_bytes += b.len() as u64;
            if let Some(a) = ctx.answer.as_mut() {
                a.push(b);
            }
        }
        Ok(None)
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, error: &Error) -> bool {
        // A caller that hangs up (a load generator stopping, a browser tab closing) is not an
        // error of runoff's: it is counted in the metrics, and logging it at ERROR level drowns
        // the real problems.
        outcome::caller_went_away(error)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(target) = &ctx.target {
            target.handles.error(error_kind(&e));
        }
        // One backend per decision: retrying a refused or timed-out connect to the same
        // backend only multiplies the wait (nginx and Envoy do not by default either).
        e.set_retry(false);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        if is_upstream(&e) {
            if let Some(target) = &ctx.target {
                target.handles.error(error_kind(&e));
            }
        }
        // Pingora's default policy: retry only idempotent requests whose body is still
        // replayable, and `ReusedOnly` errors only on a reused (stale pooled) connection.
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = status_for_failure(e);
        if code > 0 {
            if session.response_written().is_none() {
                ctx.answered = code;
            }
            if let Err(write_err) = session.respond_error(code).await {
                log::debug!("could not send {code} to the caller: {write_err}");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let elapsed = ctx.start.elapsed();
        ctx.finish(e, elapsed);
        let log = &self.shared.access_log;
        if log.enabled() {
            log.log(&ctx.access_entry(session.req_header(), e, elapsed));
        }
    }
}
