//! One shadow exchange, on its own task: connect (pooled), send the copy's header, stream its
//! body as the tee feeds it, read the whole response, record it, and discard it.
//!
//! Must not: touch the caller's connection or outlive the mirror's `timeout`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::http::RequestHeader;
use pingora::protocols::http::client::HttpSession;
use pingora::Error;
use tokio::sync::mpsc::UnboundedReceiver;

use super::pair::{Completed, Outcome, Pair};
use super::tee::BodyEvent;
use super::{request, MirrorRuntime, RouteMirror};
use crate::access_log::{now_rfc3339, rfc3339_at, Entry};
use crate::analysis::tally::Side;
use crate::compare::{Captured, PairMeta};
use crate::metrics::grpc;
use crate::metrics::{DropReason, GrpcCode, Role, StatusClass};
use crate::outcome::error_kind;
use crate::pool::endpoint::Attempt;

/// One unit of a route's copies-under-way count, held from the copy's admission to its end.
pub(super) struct Reserved(Arc<RouteMirror>);

impl Reserved {
    /// Hold the unit `admit` has just counted.
    pub(super) fn new(rm: Arc<RouteMirror>) -> Reserved {
        Reserved(rm)
    }

    pub(super) fn rm(&self) -> &Arc<RouteMirror> {
        &self.0
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An admitted copy waiting for the primary's request to be final (`send`), or for the
/// primary to fail before it was (`cancel`).
pub(super) struct Pending {
    pub rt: Arc<MirrorRuntime>,
    pub body: Option<UnboundedReceiver<BodyEvent>>,
    pub pair: Arc<Pair>,
    /// When runoff saw the original request start (the primary's start too).
    pub start: Instant,
    pub reserved: Reserved,
}

impl Pending {
    fn rm(&self) -> &Arc<RouteMirror> {
        self.reserved.rm()
    }

    /// Send the copy with this header, on a task of its own.
    pub(super) fn send(self, header: RequestHeader) {
        let rm = self.rm();
        let log = self.rt.access_log.enabled();
        let facts =
            (self.pair.judged() || log).then(|| request::facts(&header, &rm.request_id_header));
        if let Some(f) = facts.as_ref().filter(|_| self.pair.judged()) {
            self.pair.name(f.clone());
        }
        let rt = Arc::clone(&self.rt);
        rt.spawn(run(Job {
            facts: facts.filter(|_| log),
            header,
            pending: self,
        }));
    }

    /// The copy will not be sent: the primary's request never went upstream.
    pub(super) fn cancel(self, reason: DropReason) {
        dropped(self.rm(), &self.pair, reason);
    }
}

struct Job {
    pending: Pending,
    header: RequestHeader,
    /// What the access log says about the request (when it is on).
    facts: Option<PairMeta>,
}

/// What a completed exchange measured.
struct Exchanged {
    status: u16,
    ttfb: Duration,
    request_bytes: u64,
    response_bytes: u64,
    /// The answer, captured when the route compares.
    answer: Option<Captured>,
    /// A gRPC answer's status (from its headers, else its trailers); `None`: not gRPC.
    grpc: Option<GrpcCode>,
}

/// Lowers the route's in-flight count and the shadow gauge when the copy ends, however.
struct Settle {
    _reserved: Reserved,
    rm: Arc<RouteMirror>,
}

impl Drop for Settle {
    fn drop(&mut self) {
        self.rm.handles.shadow.in_flight.dec();
    }
}

async fn run(job: Job) {
    let Job {
        pending:
            Pending {
                rt,
                body,
                pair,
                start,
                reserved,
            },
        header,
        facts,
    } = job;
    let rm = Arc::clone(&reserved.0);
    rm.handles.shadow.in_flight.inc();
    let settle = Settle {
        _reserved: reserved,
        rm: Arc::clone(&rm),
    };
    // The copy's own upstream clock: from here, where it starts going upstream (its
    // connection is taken or made next), not from when runoff saw the request.
    let upstream_started = Instant::now();
    // Boxed: the exchange holds Pingora's client-session futures (~12 KB); inline, they would
    // make this task's whole future that size, and a future is copied whole at every move
    // between here and tokio's task cell (~110 KB of memcpy per copy under callgrind). Boxed,
    // it is moved once, into its box, when the copy first runs.
    let exchange = Box::pin(exchange(&rt, &rm, header, body));
    let outcome = tokio::time::timeout(rm.config.timeout, exchange).await;
    let upstream = upstream_started.elapsed();
    // Settle the in-flight counts before recording, so a reader that sees the copy's final
    // count never sees it still in flight.
    drop(settle);
    let h = &rm.handles;
    let duration = start.elapsed();
    let status = match outcome {
        Ok(Ok(mut done)) => {
            // A gRPC failure is an HTTP 200: its status decides, as for the primary.
            let grpc_error = done
                .grpc
                .is_some_and(|code| code.is_error(&rm.grpc_error_codes));
            let error = done.status >= 500 || grpc_error;
            if let Some(code) = done.grpc {
                h.shadow.grpc.inc(code);
            }
            rm.shadow_latency.record_duration(upstream, error);
            pair.shadow(Outcome::Completed(Completed {
                duration: upstream,
                error,
                answer: done.answer.take(),
            }));
            if let Some(t) = &rm.tally {
                t.request(Side::Candidate, Some(upstream), error);
            }
            h.shadow.duration.observe(duration.as_secs_f64());
            h.shadow.upstream_duration.observe(upstream.as_secs_f64());
            h.shadow.ttfb.observe(done.ttfb.as_secs_f64());
            h.shadow.request_bytes.inc_by(done.request_bytes);
            h.shadow.response_bytes.inc_by(done.response_bytes);
            // Last: a reader that sees this count also sees everything above.
            h.shadow.finished(StatusClass::from_status(done.status));
            Ok(done)
        }
        Ok(Err(reason)) => {
            dropped(&rm, &pair, reason);
            Err(reason)
        }
        Err(_elapsed) => {
            dropped(&rm, &pair, DropReason::Timeout);
            Err(DropReason::Timeout)
        }
    };
    if let Some(facts) = facts {
        let (code, req_b, resp_b, error) = match &status {
            Ok(d) => (d.status, d.request_bytes, d.response_bytes, None),
            Err(r) => (0, 0, 0, Some(r.as_str())),
        };
        rt.access_log.log(&Entry {
            time: now_rfc3339(),
            request_id: &facts.request_id,
            method: &facts.method,
            path: rm.redact.path(&facts.path),
            client: None,
            route: Some(&rm.route_name),
            backend: Some(&rm.backend_name),
            role: Role::Shadow.as_str(),
            choice: None,
            status: code,
            duration_ms: duration.as_secs_f64() * 1000.0,
            request_bytes: req_b,
            response_bytes: resp_b,
            error,
            upstream_start: Some(rfc3339_at(upstream_started)),
            upstream_ms: Some(upstream.as_secs_f64() * 1000.0),
            caller_protocol: None,
            upstream_protocol: Some(rm.protocol.as_str()),
        });
    }
}

/// A copy that did not complete: counted, and settled in its pair. An upstream error or a
/// timeout is the candidate's error; any other reason says nothing about the candidate.
fn dropped(rm: &RouteMirror, pair: &Pair, reason: DropReason) {
    rm.handles.dropped(reason);
    let erred = matches!(reason, DropReason::UpstreamError | DropReason::Timeout);
    pair.shadow(if erred {
        Outcome::Failed
    } else {
        Outcome::Excluded
    });
    if let (true, Some(t)) = (erred, &rm.tally) {
        t.request(Side::Candidate, None, true);
    }
}

/// An upstream failure of the copy: counted per attempt by kind, dropped as `upstream_error`.
fn upstream(rm: &RouteMirror, e: &Error) -> DropReason {
    log::debug!("shadow copy to {} failed: {e}", rm.backend_name);
    rm.handles.shadow.error(error_kind(e));
    DropReason::UpstreamError
}

async fn exchange(
    rt: &MirrorRuntime,
    rm: &RouteMirror,
    header: RequestHeader,
    body: Option<UnboundedReceiver<BodyEvent>>,
) -> Result<Exchanged, DropReason> {
    match body {
        // No body: the exchange can be retried once on a fresh connection if a pooled one
        // turns out to be closed by the backend (the same rule the primary path follows).
        None => match attempt(rt, rm, header.clone(), None).await {
            Err(Failure::StalePooled(e)) => {
                rm.handles.shadow.error(error_kind(&e));
                attempt(rt, rm, header, None)
                    .await
                    .map_err(|f| f.reason(rm))
            }
            other => other.map_err(|f| f.reason(rm)),
        },
        Some(rx) => attempt(rt, rm, header, Some(rx))
            .await
            .map_err(|f| f.reason(rm)),
    }
}

enum Failure {
    /// A reused connection failed before any response: worth one retry.
    StalePooled(Box<Error>),
    Upstream(Box<Error>),
    Dropped(DropReason),
}

impl Failure {
    fn reason(self, rm: &RouteMirror) -> DropReason {
        match self {
            Failure::StalePooled(e) | Failure::Upstream(e) => upstream(rm, &e),
            Failure::Dropped(r) => r,
        }
    }
}

async fn attempt(
    rt: &MirrorRuntime,
    rm: &RouteMirror,
    header: RequestHeader,
    body: Option<UnboundedReceiver<BodyEvent>>,
) -> Result<Exchanged, Failure> {
    // The shadow's addresses in rotation (one of them: `admit` saw it had one), else any.
    let Some(picked) = rm.pool.pick(&[]).or_else(|| rm.pool.any()) else {
        return Err(Failure::Dropped(DropReason::Unhealthy));
    };
    let peer = &picked.0.peer;
    let (mut session, reused) = match rt.connector.get_http_session(peer).await {
        Ok(s) => s,
        Err(e) => {
            rm.pool.report(&picked, Attempt::Failed);
            return Err(Failure::Upstream(e));
        }
    };
    rm.handles
        .backend
        .connection(reused, crate::upstream::connect_time(session.digest()));
    session.set_read_timeout(peer.options.read_timeout);
    session.set_write_timeout(peer.options.write_timeout);

    // A pooled connection that fails before the answer may just have gone stale; a fresh one
    // failing is the address's fault (for outlier ejection).
    let stale = |e: Box<Error>| {
        if reused {
            Failure::StalePooled(e)
        } else {
            rm.pool.report(&picked, Attempt::Failed);
            Failure::Upstream(e)
        }
    };
    let sent_at = Instant::now();
    session
        .write_request_header(Box::new(header))
        .await
        .map_err(stale)?;

    let mut request_bytes = 0u64;
    if let Some(mut rx) = body {
        loop {
            match rx.recv().await {
                Some(BodyEvent::Chunk(chunk)) => {
                    request_bytes += chunk.bytes.len() as u64;
                    let bytes = chunk.bytes.clone();
                    drop(chunk);
                    if let Err(e) = session.write_request_body(bytes, false).await {
                        return Err(Failure::Upstream(e));
                    }
                }
                Some(BodyEvent::End) => break,
                Some(BodyEvent::Abort(reason)) => {
                    abandon(session).await;
                    return Err(Failure::Dropped(reason));
                }
                None => {
                    abandon(session).await;
                    return Err(Failure::Dropped(DropReason::ClientAborted));
                }
            }
        }
    }
    session
        .finish_request_body()
        .await
        .map_err(Failure::Upstream)?;

    let status = loop {
        let read = session.read_response_header().await;
        if let Err(e) = read {
            return Err(stale(e));
        }
        match session.response_header().map(|h| h.status) {
            Some(s) if s.is_informational() && s.as_u16() != 101 => continue,
            Some(s) => break s.as_u16(),
            None => {
                return Err(Failure::Upstream(Error::explain(
                    pingora::ErrorType::InvalidHTTPHeader,
                    "no response header",
                )))
            }
        }
    };
    let ttfb = sent_at.elapsed();
    rm.pool.report(&picked, Attempt::Answered(status));
    let mut answer = rm.judge.as_ref().and_then(|j| {
        session.response_header().map(|h| {
            let budget: Arc<dyn crate::compare::Charge> = rt.budget.clone();
            Captured::new(status, h.headers.clone(), j.body_limit()).charged(budget)
        })
    });

    let grpc_answer = session.response_header().is_some_and(|h| {
        grpc::is_grpc(
            h.headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        )
    });
    let mut grpc_code = session
        .response_header()
        .and_then(|h| h.headers.get("grpc-status"))
        .map(|v| GrpcCode::from_value(v.as_bytes()));
    let mut response_bytes = 0u64;
    while !session.response_done() {
        match session.read_response_body().await {
            Ok(Some(b)) => {
                response_bytes += b.len() as u64;
                if let Some(a) = answer.as_mut() {
                    a.push(&b);
                }
            }
            Ok(None) => break,
            Err(e) => return Err(Failure::Upstream(e)),
        }
    }
    if grpc_answer && grpc_code.is_none() {
        if let HttpSession::H2(h2) = &mut session {
            if let Ok(Some(trailers)) = h2.read_trailers().await {
                if let Some(v) = trailers.get("grpc-status") {
                    grpc_code = Some(GrpcCode::from_value(v.as_bytes()));
                    if let Some(a) = answer.as_mut() {
                        a.headers.insert("grpc-status", v.clone());
                    }
                }
            }
        }
    }
    rt.connector
        .release_http_session(session, peer, peer.options.idle_timeout)
        .await;
    Ok(Exchanged {
        status,
        ttfb,
        request_bytes,
        response_bytes,
        answer,
        grpc: grpc_answer.then_some(grpc_code.unwrap_or(GrpcCode::Absent)),
    })
}

/// Close a copy's connection mid-request: the backend sees the request cut short, never a
/// complete request with a truncated body, and the connection is not pooled.
async fn abandon(mut session: HttpSession) {
    session.shutdown().await;
}
