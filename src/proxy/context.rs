//! The per-request context, from the request header to `logging()`: what was decided, the
//! timings and byte counts kept along the way, the guards that hold in-flight counts, and the
//! one place a finished request is recorded.
//!
//! Must not: record anything before the request ends (except the in-flight gauges), or
//! allocate label strings.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::HeaderName;
use pingora::http::RequestHeader;
use pingora::Error;
use prometheus::IntGauge;

use super::decide::Target;
use crate::access_log::{now_rfc3339, rfc3339_at, version_name, Entry};
use crate::compare::Captured;
use crate::forwarding::{Hops, Peer, RequestId};
use crate::metrics::{Answered, GrpcCode, Role};
use crate::mirror::CopyHandle;
use crate::outcome::status_class;
use crate::pool::endpoint::Picked;
use crate::redact::Redactor;
use crate::state::{InFlight, Snapshot};

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
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// Take a slot; returns it with the count including this request.
    fn take(counter: &Arc<AtomicUsize>) -> (Slot, usize) {
        let n = counter.fetch_add(1, Ordering::AcqRel) + 1;
        (Slot(Arc::clone(counter)), n)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Per-request state, from the request header to `logging()`.
pub(crate) struct RequestCtx {
    pub(super) start: Instant,
    pub(super) snapshot: Arc<Snapshot>,
    _in_flight: InFlight,
    pub(super) target: Option<Target>,
    gauge: Option<GaugeGuard>,
    /// Who sent the request (the peer, whether it is a trusted proxy, the client behind it).
    pub(super) peer: Peer,
    /// Whether Pingora's standard upstream request policy has work to do (else its lookups are
    /// skipped, and a lone `Connection: keep-alive` is stripped with runoff's own headers).
    pub(super) hops: Hops,
    /// The request id (the caller's when fit to keep, else a generated one).
    pub(super) request_id: Option<RequestId>,
    pub(super) attempts: u32,
    /// Body bytes of the current attempt; replays on retry resend a prefix.
    pub(super) attempt_body_bytes: u64,
    pub(super) request_body_bytes: u64,
    pub(super) response_body_bytes: u64,
    /// The first attempt started going upstream (before its connection was taken or made).
    pub(super) upstream_started: Option<Instant>,
    /// The last response byte arrived from upstream (or the final header, for a response
    /// without a body).
    pub(super) upstream_ended: Option<Instant>,
    pub(super) sent_upstream_at: Option<Instant>,
    pub(super) ttfb: Option<Duration>,
    pub(super) upstream_status: Option<u16>,
    /// The status the caller got.
    pub(super) answered: u16,
    /// A primary upstream connection was made.
    pub(super) connected: bool,
    /// The shadow copy of this request, while its body is being fed.
    pub(super) mirror: Option<CopyHandle>,
    /// This request's unit of its backend's in-flight count.
    slot: Option<Slot>,
    /// The address of the current attempt, and the ones that failed before it.
    pub(super) picked: Option<Picked>,
    pub(super) tried: Vec<SocketAddr>,
    /// A gRPC answer's status: from its headers (Trailers-Only), then its trailers; `Absent`
    /// until one is seen. `None`: not a gRPC answer.
    pub(super) grpc: Option<GrpcCode>,
    /// The primary's answer, kept (up to the compare limit) when the route compares.
    pub(super) answer: Option<Captured>,
    /// Recorded already (a WebSocket is recorded at its 101, `logging` runs at its end).
    pub(super) recorded: bool,
    /// The caller stopped sending the request body: its fault, answered 408, not counted
    /// against the backend.
    pub(super) body_timed_out: bool,
}

impl RequestCtx {
    pub(super) fn new(snapshot: Arc<Snapshot>, in_flight: InFlight) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            snapshot,
            _in_flight: in_flight,
            target: None,
            gauge: None,
            peer: Peer {
                addr: None,
                trusted: false,
                client: None,
                tls: false,
            },
            hops: Hops::Other,
            request_id: None,
            attempts: 0,
            attempt_body_bytes: 0,
            request_body_bytes: 0,
            response_body_bytes: 0,
            upstream_started: None,
            upstream_ended: None,
            sent_upstream_at: None,
            ttfb: None,
            upstream_status: None,
            answered: 0,
            connected: false,
            mirror: None,
            slot: None,
            picked: None,
            tried: Vec::new(),
            grpc: None,
            answer: None,
            body_timed_out: false,
            recorded: false,
        }
    }

    /// Take the request on for `target`: it counts as in flight for its route and backend.
    /// `false` when the backend is at its `max_in_flight`: candidate protection, rather than
    /// pile onto an overloaded backend (counted as rejected and as an `error` request).
    pub(super) fn admit(&mut self, target: Target) -> bool {
        self.gauge = Some(GaugeGuard::new(&target.handles.in_flight));
        // Only a backend with a limit keeps a shared count (one contended atomic less per
        // request for the others).
        let admitted = match self.snapshot.live.backends[target.backend].max_in_flight {
            None => true,
            Some(max) => {
                let (slot, under_way) =
                    Slot::take(&self.snapshot.backends[target.backend].in_flight);
                self.slot = Some(slot);
                under_way <= max
            }
        };
        if !admitted {
            target.handles.rejected.inc();
        }
        self.target = Some(target);
        admitted
    }

    /// Headers a caller sent that must not go upstream: the route's force header and its
    /// secret, the mirror marker unless the peer is a trusted proxy, and a lone
    /// `Connection: keep-alive` when Pingora's policy is skipped (`Hops::KeepAlive`).
    pub(super) fn strip(&self) -> impl Iterator<Item = &HeaderName> {
        static CONNECTION: HeaderName = http::header::CONNECTION;
        let connection = (self.hops == Hops::KeepAlive).then_some(&CONNECTION);
        self.target
            .iter()
            .flat_map(|target| {
                let route = &self.snapshot.routes[target.route];
                let marker = (!self.peer.trusted).then_some(&route.marker);
                route.strip.iter().chain(marker)
            })
            .chain(connection)
    }

    /// The request id runoff generated for this request, if it did (then it is added upstream).
    pub(super) fn generated_id(&self) -> Option<&http::HeaderValue> {
        self.request_id.as_ref().and_then(RequestId::to_add)
    }

    /// The primary's upstream-side duration: from its first attempt starting to go upstream
    /// to the last response byte received (to now, when it failed or has not ended).
    pub(super) fn upstream_elapsed(&self, e: Option<&Error>) -> Option<Duration> {
        let started = self.upstream_started?;
        let ended = match (e, self.upstream_ended) {
            (None, Some(at)) => at,
            _ => Instant::now(),
        };
        Some(ended.saturating_duration_since(started))
    }

    /// Record the finished request once: hand the primary's outcome to its copy (for the
    /// paired ratio and the comparison), then every metric, the request count last.
    /// `elapsed` is caller-side (since runoff saw the request).
    pub(super) fn finish(&mut self, e: Option<&Error>, elapsed: Duration) {
        let upstream = self.upstream_elapsed(e);
        let class = status_class(self.upstream_status, e);
        let completed = e.is_none() && self.upstream_status.is_some();
        // A gRPC failure is an HTTP 200: its status decides whether it is an error.
        let grpc_error = self
            .grpc
            .is_some_and(|code| code.is_error(&self.snapshot.live.grpc_error_codes));
        let error = class.is_error() || grpc_error;
        if let Some(mut copy) = self.mirror.take() {
            let caller_gone = e.is_some_and(|e| *e.esource() == pingora::ErrorSource::Downstream);
            copy.primary_done(
                upstream.filter(|_| completed),
                self.answer.take(),
                caller_gone,
                error,
            );
        }
        let Some(target) = &self.target else { return };
        if self.body_timed_out {
            // The caller's fault: its own counter, nothing against the backend.
            target.handles.body_timeouts.inc();
            self.gauge = None;
            self.slot = None;
            return;
        }
        if let (Some((tally, side)), Some(_)) = (&target.tally, self.upstream_started) {
            // Only what went upstream counts: runoff's own 503s say nothing of the backend.
            tally.request(*side, upstream.filter(|_| completed), error);
        }
        let h = &target.handles;
        h.answered(&Answered {
            elapsed,
            upstream,
            ttfb: self.ttfb,
            request_bytes: self.request_body_bytes,
            response_bytes: self.response_body_bytes,
        });
        self.gauge = None;
        // The backend's `max_in_flight` counts requests: an upgraded connection that lives on
        // past its 101 no longer holds a slot.
        self.slot = None;
        target.caller.record_duration(elapsed, error);
        if let Some(u) = upstream {
            target.latency.record_duration(u, error);
        }
        if let Some(code) = self.grpc {
            h.grpc.inc(code);
        }
        // Last: a reader that sees this count also sees everything above.
        h.finished(class);
    }

    /// What this request's route (or, before one matched, runoff) never logs in the clear.
    pub(super) fn redactor(&self) -> &Redactor {
        match &self.target {
            Some(t) => &self.snapshot.routes[t.route].redact,
            None => &self.snapshot.redact,
        }
    }

    /// The access log line of this request.
    pub(super) fn access_entry<'a>(
        &'a self,
        req: &'a RequestHeader,
        e: Option<&Error>,
        elapsed: Duration,
    ) -> Entry<'a> {
        let live = &self.snapshot.live;
        let upstream = self.upstream_elapsed(e);
        Entry {
            upstream_start: self.upstream_started.map(rfc3339_at),
            upstream_ms: upstream.map(|u| u.as_secs_f64() * 1000.0),
            time: now_rfc3339(),
            request_id: self.request_id.as_ref().map_or("", RequestId::as_str),
            method: req.method.as_str(),
            path: self
                .redactor()
                .path(req.uri.path_and_query().map_or("/", |p| p.as_str())),
            client: self.peer.client.map(|ip| ip.to_string()),
            route: self
                .target
                .as_ref()
                .map(|t| live.routes[t.route].name.as_str()),
            backend: self
                .target
                .as_ref()
                .map(|t| live.backends[t.backend].name.as_str()),
            role: Role::Primary.as_str(),
            choice: self.target.as_ref().map(|t| t.reason.as_str()),
            status: self.answered,
            duration_ms: elapsed.as_secs_f64() * 1000.0,
            request_bytes: self.request_body_bytes,
            response_bytes: self.response_body_bytes,
            error: e.map(|e| e.etype().as_str()),
            caller_protocol: Some(version_name(req.version)),
            upstream_protocol: self
                .target
                .as_ref()
                .map(|t| live.backends[t.backend].protocol.as_str()),
        }
    }
}
