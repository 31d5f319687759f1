//! The Pingora `ProxyHttp` implementation: thin phase callbacks that read one config snapshot
//! per request, delegate every decision to `decide` (and through it `routing` and `mirror`),
//! keep timings in the request context (`context`) and record once, in `logging()`.
//!
//! Must not: hold routing, forwarding or classification rules of its own (they live in
//! `routing`, `forwarding` and `outcome`), block, or allocate label strings per request.

mod context;
mod decide;
mod websocket;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::Digest;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, HttpUpstreamRequestPolicy};
use pingora::{Error, ErrorType, Result};

use crate::caller_io::Watched;
use crate::forwarding::{self, Hops, Peer, RequestId};
use crate::metrics::grpc;
use crate::metrics::{ErrorKind, GrpcCode};
use crate::outcome::{self, error_kind, is_upstream, status_for_failure};
use crate::pool::endpoint::Attempt;
use crate::present::Present;
use crate::state::Shared;
use crate::strict;
use crate::upstream::connect_time;
use context::RequestCtx;
use decide::{decide, start_copy, CopyRequest};

/// The proxy: everything it knows lives in `Shared`.
pub(crate) struct Runoff {
    shared: Arc<Shared>,
}

impl Runoff {
    pub(crate) fn new(shared: Arc<Shared>) -> Runoff {
        Runoff { shared }
    }

    /// Record a finished request once (metrics, then its access log line); `elapsed` is
    /// caller-side.
    fn record(
        &self,
        req: &RequestHeader,
        ctx: &mut RequestCtx,
        e: Option<&Error>,
        elapsed: Duration,
    ) {
        ctx.recorded = true;
        ctx.finish(e, elapsed);
        let log = &self.shared.access_log;
        if log.enabled() {
            log.log(&ctx.access_entry(req, e, elapsed));
        }
    }
}

/// The caller stopped sending its request body: either runoff's own wait for it ran out
/// (`server.client_body_timeout`, Pingora's downstream read timeout), or the backend's
/// `read_timeout` did while the body was still unfinished (the backend was waiting for it).
/// Then a 408 for the caller, the caller's fault (nginx answers 408 too).
fn body_stalled(session: &mut Session, e: &Error) -> Option<Box<Error>> {
    let timed_out = *e.etype() == pingora::ErrorType::ReadTimedout;
    let caller_side = *e.esource() == pingora::ErrorSource::Downstream;
    let stalled = timed_out && (caller_side || !session.is_body_done());
    if !stalled {
        return None;
    }
    let mut stalled = Error::explain(
        pingora::ErrorType::HTTPStatus(408),
        "the caller stopped sending its request body",
    );
    stalled.esource = pingora::ErrorSource::Downstream;
    stalled.set_retry(false);
    Some(stalled)
}

/// The caller's connection, per request: Pingora waits forever for the next request on an
/// HTTP/1.1 keep-alive connection (the client's keep-alive makes its timeout infinite), so
/// bound it where keep-alive is on at all (not HTTP/1.0 without it, `Connection: close` or a
/// draining server); answer pipelined requests in order (RFC 9112 §9.3.2; Pingora's default
/// answers the first and closes); give a caller that pauses mid-body a 408 (`body_stalled`);
/// and disconnect one that stops reading its response (`server.send_timeout`).
fn caller_limits(session: &mut Session, shared: &Shared) {
    if session.get_keepalive().is_some() {
        // Whole seconds, at least one (the config checks).
        session.set_keepalive(Some(shared.server.keepalive_timeout.as_secs()));
    }
    session.set_pipelining_enabled(true);
    session.set_read_timeout(Some(shared.server.client_body_timeout));
    session.set_write_timeout(Some(shared.server.send_timeout));
}

fn peer_ip(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

const NO_ROUTE_BODY: &[u8] = b"runoff: no route matches this request\n";
const BACKEND_FULL_BODY: &[u8] = b"runoff: the backend is at its max_in_flight limit\n";
const UNHEALTHY_BODY: &[u8] = b"runoff: the backend has no healthy address\n";

/// Answer with runoff's own small plain-text response; the caller's connection stays open.
/// The future is boxed: inline, its state (and the WebSocket session's, boxed where it is
/// awaited) would be part of `request_filter`'s future, which `async_trait` builds and moves
/// into a box on every request: 2,648 bytes copied for these rare paths.
fn answer_plain<'a>(
    session: &'a mut Session,
    status: u16,
    body: &'static [u8],
) -> Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>> {
    Box::pin(async move {
        let mut resp = ResponseHeader::build(status, Some(3))?;
        resp.insert_header("content-type", "text/plain; charset=utf-8")?;
        resp.insert_header("content-length", body.len().to_string())?;
        resp.insert_header("server", "runoff")?;
        session.write_response_header(Box::new(resp), false).await?;
        session
            .write_response_body(Some(Bytes::from_static(body)), true)
            .await
    })
}

/// Tell the current attempt's address how it went (for outlier ejection).
fn report_attempt(ctx: &RequestCtx, attempt: Attempt) {
    if let (Some(target), Some(picked)) = (&ctx.target, &ctx.picked) {
        ctx.snapshot.backends[target.backend]
            .pool
            .report(picked, attempt);
    }
}

/// The current attempt failed on its address: record it, and say whether to try another
/// address of the backend (one in rotation, not tried yet, within the backend's `retries`).
fn retry_elsewhere(ctx: &mut RequestCtx, attempt: Attempt) -> bool {
    report_attempt(ctx, attempt);
    let (Some(target), Some(picked)) = (&ctx.target, ctx.picked.take()) else {
        return false;
    };
    ctx.tried.push(picked.addr());
    let pool = &ctx.snapshot.backends[target.backend].pool;
    // Only attempts that failed on an address count against `retries` (not Pingora's own
    // retry of a stale pooled connection).
    let retry = ctx.tried.len() <= pool.retries() as usize && pool.has_other(&ctx.tried);
    if retry {
        pool.handles.retries.inc();
    }
    retry
}

#[async_trait]
impl ProxyHttp for Runoff {
    /// Boxed: Pingora's per-request future (moved into its own box on every request) holds the
    /// context by value in three places (an `async fn`'s arguments are kept apart from its
    /// locals). Unboxed, the 592-byte context made that future 15,152 bytes against bare
    /// Pingora's 13,376 (three copies), and was copied twice more on its way in; boxed, those
    /// 2,960 bytes copied a request are one small allocation.
    type CTX = Box<RequestCtx>;

    fn new_ctx(&self) -> Box<RequestCtx> {
        Box::new(RequestCtx::new(
            self.shared.snapshot.load_full(),
            self.shared.track(),
        ))
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<bool> {
        if let Some(conn) = Watched::of(session.downstream_session.stream()) {
            conn.request_began();
        }
        caller_limits(session, &self.shared);
        let raw = session
            .downstream_session
            .as_http1()
            .map(|h1| h1.get_headers_raw_bytes());
        let request_id_header = ctx.snapshot.live.forwarding.request_id_header.name();
        let present = Present::of(&session.req_header().headers, request_id_header);
        ctx.hops = Hops::of(
            &session.req_header().headers,
            present.connection,
            present.hop_fields_besides_connection(),
        );
        if let Err((why, status)) = strict::check(session.req_header(), raw.as_deref(), present) {
            self.shared.metrics.rejected_requests.inc(why);
            ctx.answered = status;
            // A refused request's connection is not reused (its framing may be in doubt).
            session.set_keepalive(None);
            answer_plain(session, status, strict::refusal_body(status)).await?;
            return Ok(true);
        }
        if let (Some(conn), Some(raw)) = (Watched::of(session.downstream_session.stream()), &raw) {
            conn.request_size(crate::caller_io::wire_size(
                raw.len(),
                &session.req_header().headers,
                present,
            ));
        }
        if present.underscore && !self.shared.server.underscores_in_headers {
            for name in strict::underscore_names(session.req_header()) {
                session.req_header_mut().remove_header(&name);
            }
        }
        let has_body = !session.is_body_empty();
        // Pingora forwards only WebSocket upgrades (its default request policy): any other
        // `Upgrade` (h2c, …) is stripped and the request goes on as a plain one, as its copy does.
        let is_upgrade = present.upgrade
            && session.is_upgrade_req()
            && session
                .req_header()
                .headers
                .get(http::header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let snapshot = Arc::clone(&ctx.snapshot);
        let req = session.req_header();
        let mut peer = Peer::of(peer_ip(session), &req.headers, &snapshot.live.forwarding);
        peer.tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        ctx.peer = peer;
        let Some((target, sticky_key)) = decide(&snapshot, req, peer.client) else {
            self.shared.metrics.unrouted.inc();
            ctx.answered = 404;
            answer_plain(session, 404, NO_ROUTE_BODY).await?;
            return Ok(true);
        };
        let unhealthy = target.unhealthy.then_some((target.route, target.split));
        if !ctx.admit(target) {
            ctx.answered = 503;
            answer_plain(session, 503, BACKEND_FULL_BODY).await?;
            return Ok(true);
        }
        if let Some((route, split)) = unhealthy {
            snapshot.routes[route].unhealthy_refused[split].inc();
            ctx.answered = 503;
            answer_plain(session, 503, UNHEALTHY_BODY).await?;
            return Ok(true);
        }
        let request_id = if present.request_id {
            RequestId::of(req, snapshot.live.forwarding.request_id_header.name())
        } else {
            RequestId::generated()
        };
        if present.upgrade
            && crate::websocket::is_websocket(req)
            && session.downstream_session.as_http1().is_some()
        {
            let key = sticky_key.as_ref().map(|k| k.as_bytes().to_vec());
            ctx.request_id = Some(request_id);
            // Boxed: see `answer_plain`.
            return Box::pin(websocket::serve(self, session, ctx, key)).await;
        }
        let sticky = sticky_key.as_ref().map(|k| k.as_bytes());
        if let Some(target) = &ctx.target {
            ctx.mirror = start_copy(
                &self.shared.mirrors,
                &snapshot,
                target,
                CopyRequest {
                    header: req,
                    is_upgrade,
                    has_body,
                    sticky_key: sticky,
                    start: ctx.start,
                },
            );
        }
        ctx.request_id = Some(request_id);
        Ok(false)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = &ctx.target else {
            return Error::e_explain(ErrorType::InternalError, "upstream_peer without a route");
        };
        let backend = target.backend;
        ctx.attempts += 1;
        ctx.attempt_body_bytes = 0;
        // The primary's upstream clock starts with its first attempt, before the connection
        // is taken or made: the same point the shadow's starts at.
        ctx.upstream_started.get_or_insert_with(Instant::now);
        let pool = &ctx.snapshot.backends[backend].pool;
        // An address in rotation not yet tried; on the first attempt, any address when the
        // last healthy one went between routing and now (the request was routed here).
        let picked = match pool.pick(&ctx.tried) {
            Some(p) => p,
            None if ctx.tried.is_empty() => match pool.any() {
                Some(p) => p,
                None => {
                    return Error::e_explain(
                        ErrorType::ConnectNoRoute,
                        "the backend has no address",
                    )
                }
            },
            None => {
                return Error::e_explain(
                    ErrorType::ConnectNoRoute,
                    "no other address of the backend to retry on",
                )
            }
        };
        let mut peer = Box::new(picked.0.peer.clone());
        if !ctx.hops.need_policy() {
            // Nothing for Pingora's standard policy to do but what `strip` does (`Hops`).
            peer.options.http_upstream_request_policy = HttpUpstreamRequestPolicy::preserve();
        }
        ctx.picked = Some(picked);
        Ok(peer)
    }

    async fn connected_to_upstream(
        &self,
        _session: &mut Session,
        reused: bool,
        _peer: &HttpPeer,
        #[cfg(unix)] _fd: std::os::unix::io::RawFd,
        #[cfg(windows)] _sock: std::os::windows::io::RawSocket,
        digest: Option<&Digest>,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        ctx.connected = true;
        if let Some(target) = &ctx.target {
            ctx.snapshot.backends[target.backend]
                .primary
                .connection(reused, connect_time(digest));
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        forwarding::apply_forwarding(
            upstream_request,
            &ctx.snapshot.live.forwarding,
            &ctx.peer,
            ctx.generated_id(),
            ctx.strip(),
        )?;
        // The copy is sent now, from the request exactly as the primary's backend gets it
        // (after Pingora's normalisation), by the first attempt only.
        let sent = ctx
            .mirror
            .as_mut()
            .is_some_and(|copy| copy.send(upstream_request, !session.is_body_empty()));
        if sent && rand::random::<bool>() {
            // Which leg's request is written first is a coin toss: the copy's task runs once
            // this one yields. Left alone, the primary would always go first, and whichever
            // backend is the shadow would be measured under a systematically different
            // order (bench/fidelity.sh: role bias up to 20-45% at 500 req/s either way).
            // The primary's clock does not count the time it let the copy go first.
            let yielded = Instant::now();
            tokio::task::yield_now().await;
            let waited = yielded.elapsed();
            ctx.upstream_started = ctx.upstream_started.map(|t| t + waited);
        }
        ctx.sent_upstream_at = Some(Instant::now());
        Ok(())
    }

    async fn request_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
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
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        forwarding::strip_response_hops(upstream_response);
        let status = upstream_response.status;
        if !status.is_informational() || status.as_u16() == 101 {
            if let Some(copy) = ctx.mirror.as_ref() {
                ctx.answer = copy.capture(status.as_u16(), upstream_response.headers.clone());
            }
            if ctx.ttfb.is_none() {
                ctx.ttfb = ctx.sent_upstream_at.map(|t| t.elapsed());
            }
            ctx.upstream_status = Some(status.as_u16());
            report_attempt(ctx, Attempt::Answered(status.as_u16()));
            let headers = &upstream_response.headers;
            if grpc::is_grpc(
                headers
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| v.as_bytes()),
            ) {
                ctx.grpc = Some(
                    headers
                        .get("grpc-status")
                        .map_or(GrpcCode::Absent, |v| GrpcCode::from_value(v.as_bytes())),
                );
            }
            // A response without a body ends here; one with a body ends at its last byte.
            ctx.upstream_ended = Some(Instant::now());
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        ctx.answered = upstream_response.status.as_u16();
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<Option<Duration>> {
        if let Some(b) = body {
            ctx.response_body_bytes += b.len() as u64;
            if let Some(a) = ctx.answer.as_mut() {
                a.push(b);
            }
        }
        if end_of_stream {
            ctx.upstream_ended = Some(Instant::now());
        }
        Ok(None)
    }

    fn upstream_response_trailer_filter(
        &self,
        _session: &mut Session,
        upstream_trailers: &mut http::HeaderMap,
        ctx: &mut Box<RequestCtx>,
    ) -> Result<()> {
        if let (Some(code), Some(v)) = (ctx.grpc.as_mut(), upstream_trailers.get("grpc-status")) {
            *code = GrpcCode::from_value(v.as_bytes());
            // The comparison reads a gRPC answer's status with its headers.
            if let Some(answer) = ctx.answer.as_mut() {
                answer.headers.insert("grpc-status", v.clone());
            }
        }
        Ok(())
    }

    fn suppress_error_log(
        &self,
        _session: &Session,
        _ctx: &Box<RequestCtx>,
        error: &Error,
    ) -> bool {
        // A caller that hangs up (a load generator stopping, a browser tab closing) is not an
        // error of runoff's: it is counted in the metrics, and logging it at ERROR level drowns
        // the real problems.
        outcome::caller_went_away(error)
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Box<RequestCtx>,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(target) = &ctx.target {
            target.handles.error(error_kind(&e));
        }
        // Never the same address again; another address of the same backend when one is in
        // rotation and the backend allows retries. Nothing was sent, so any method is safe
        // (Envoy's `connect-failure`, nginx's `proxy_next_upstream error`).
        let retry = retry_elsewhere(ctx, Attempt::Failed);
        e.set_retry(retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Box<RequestCtx>,
        client_reused: bool,
    ) -> Box<Error> {
        if let Some(stalled) = body_stalled(session, &e) {
            ctx.body_timed_out = true;
            return stalled;
        }
        if is_upstream(&e) {
            if let Some(target) = &ctx.target {
                target.handles.error(error_kind(&e));
            }
        }
        // Pingora's default policy: retry only idempotent requests whose body is still
        // replayable, and `ReusedOnly` errors only on a reused (stale pooled) connection.
        let replayable = session.req_header().method.is_idempotent()
            && !session.as_ref().retry_buffer_truncated();
        let before_answer = is_upstream(&e) && ctx.upstream_status.is_none();
        let kind = error_kind(&e);
        let mut e = e.more_context(format!("Peer: {peer}"));
        if !replayable {
            e.set_retry(false);
            if before_answer && !client_reused {
                report_attempt(ctx, Attempt::Failed);
            }
        } else if before_answer && !client_reused {
            // A fresh connection failed before any answer: the address's fault. Reset or
            // closed: sent again to another address (a timeout is not: the backend may still
            // be working on it).
            let resend = matches!(kind, ErrorKind::Reset | ErrorKind::Protocol);
            if resend {
                let retry = retry_elsewhere(ctx, Attempt::Failed);
                e.set_retry(retry);
            } else {
                report_attempt(ctx, Attempt::Failed);
                e.set_retry(false);
            }
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Box<RequestCtx>,
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

    /// What Pingora's own error log lines say about a request: method, path (redacted query
    /// values) and Host.
    fn request_summary(&self, session: &Session, ctx: &Box<RequestCtx>) -> String {
        let req = session.req_header();
        let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = req
            .headers
            .get(http::header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()))
            .unwrap_or_default();
        format!("{} {}, Host: {host}", req.method, ctx.redactor().path(path))
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Box<RequestCtx>) {
        if !ctx.recorded {
            self.record(session.req_header(), ctx, e, ctx.start.elapsed());
        }
        if session.is_body_done() {
            if let Some(conn) = Watched::of(session.downstream_session.stream()) {
                conn.request_ended();
            }
        }
    }
}
