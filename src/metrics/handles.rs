//! Pre-resolved series: one handle per (route, backend, role), (backend, role), route mirror
//! and route comparison, built when a config loads so the request path never looks up a label.
//!
//! Lives here: the handle types, how `Metrics` resolves them (by label name), and their typed
//! recording methods. Must not: be built per request, or expose a series by position: callers
//! name a label value, never an index.

use prometheus::{Histogram, IntCounter, IntGauge};

use super::labels::{
    CompareResult, DropReason, ErrorKind, Label, Part, Role, SkipReason, StatusClass,
};
use super::{named, Metrics};

/// One counter per value of a closed label set, addressed by value.
#[derive(Clone)]
pub(crate) struct PerLabel<L: Label> {
    series: Vec<IntCounter>,
    _label: std::marker::PhantomData<L>,
}

impl<L: Label> PerLabel<L> {
    /// Creates every series now (at 0), in `L::ALL` order.
    pub(crate) fn new(mut make: impl FnMut(L) -> IntCounter) -> PerLabel<L> {
        PerLabel {
            series: L::ALL.iter().map(|l| make(*l)).collect(),
            _label: std::marker::PhantomData,
        }
    }

    /// The series of one value, to keep as a handle.
    pub(crate) fn series(&self, value: L) -> Option<IntCounter> {
        self.series.get(value.index()).cloned()
    }

    pub(crate) fn inc(&self, value: L) {
        if let Some(c) = self.series.get(value.index()) {
            c.inc();
        }
    }

    pub(crate) fn inc_by(&self, value: L, n: u64) {
        if let Some(c) = self.series.get(value.index()) {
            c.inc_by(n);
        }
    }

    pub(crate) fn get(&self, value: L) -> u64 {
        self.series.get(value.index()).map_or(0, IntCounter::get)
    }

    /// All values together.
    pub(crate) fn total(&self) -> u64 {
        self.series.iter().map(IntCounter::get).sum()
    }
}

/// Pre-resolved per-(route, backend, role) series.
#[derive(Clone)]
pub struct RequestHandles {
    pub(super) requests: PerLabel<StatusClass>,
    /// Caller-side for the primary: runoff saw the request start to last byte sent to the
    /// caller (for a shadow: to last byte received).
    pub duration: Histogram,
    /// The leg's own upstream time: its request starts going upstream (connect included) to
    /// last response byte received. The figure legs are compared on.
    pub upstream_duration: Histogram,
    pub ttfb: Histogram,
    pub(super) errors: PerLabel<ErrorKind>,
    pub in_flight: IntGauge,
    /// Answered 503 by runoff: the backend's `max_in_flight` was reached (primary only).
    pub rejected: IntCounter,
    /// The caller stopped sending the request body: answered 408, the caller's fault.
    pub body_timeouts: IntCounter,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    /// gRPC answers by status (series made on the first one).
    pub(crate) grpc: super::grpc::LazyGrpc,
}

/// What one answered request adds to its (route, backend, role) series, but its count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answered {
    /// Caller-side (see [`RequestHandles::duration`]).
    pub elapsed: std::time::Duration,
    /// Upstream-side, when the request went upstream.
    pub upstream: Option<std::time::Duration>,
    pub ttfb: Option<std::time::Duration>,
    pub request_bytes: u64,
    pub response_bytes: u64,
}

impl RequestHandles {
    /// Durations and bytes of one request; its count comes last, with
    /// [`RequestHandles::finished`], so a reader that sees the count sees these too.
    pub fn answered(&self, a: &Answered) {
        self.duration.observe(a.elapsed.as_secs_f64());
        if let Some(u) = a.upstream {
            self.upstream_duration.observe(u.as_secs_f64());
        }
        if let Some(t) = a.ttfb {
            self.ttfb.observe(t.as_secs_f64());
        }
        self.request_bytes.inc_by(a.request_bytes);
        self.response_bytes.inc_by(a.response_bytes);
    }

    pub fn finished(&self, class: StatusClass) {
        self.requests.inc(class);
    }

    /// Requests finished so far, all classes.
    pub fn finished_total(&self) -> u64 {
        self.requests.total()
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors.inc(kind);
    }
}

/// Pre-resolved per-(backend, role) connection series.
#[derive(Clone)]
pub struct BackendHandles {
    pub(super) connect: Histogram,
    pub(super) reused: IntCounter,
    pub(super) fresh: IntCounter,
}

impl BackendHandles {
    /// An upstream connection was taken for a request; `connect` is the time a new one took
    /// to establish (`None` for a reused one, or when Pingora did not time it).
    pub fn connection(&self, reused: bool, connect: Option<std::time::Duration>) {
        if reused {
            self.reused.inc();
        } else {
            self.fresh.inc();
            if let Some(d) = connect {
                self.connect.observe(d.as_secs_f64());
            }
        }
    }
}

/// Pre-resolved series for one route's mirror.
#[derive(Clone)]
pub struct MirrorHandles {
    pub requests: IntCounter,
    pub(super) dropped: PerLabel<DropReason>,
    /// Copies dispatched while the shadow ran far ahead of the primary (see `mirror`).
    pub biased: IntCounter,
    pub ratio: Histogram,
    pub shadow: RequestHandles,
    pub backend: BackendHandles,
}

impl MirrorHandles {
    pub fn dropped(&self, reason: DropReason) {
        self.dropped.inc(reason);
    }

    /// Copies dropped so far, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.total()
    }
}

/// Pre-resolved comparison series of one route.
#[derive(Clone)]
pub struct CompareHandles {
    pub(super) results: PerLabel<CompareResult>,
    pub(super) parts: PerLabel<Part>,
    pub(super) skipped: PerLabel<SkipReason>,
}

impl CompareHandles {
    /// Count one judged pair: its result, and each part that differed.
    pub fn judged(&self, result: CompareResult, parts: &[Part]) {
        for part in parts {
            self.parts.inc(*part);
        }
        // Last: a reader that sees the pair counted also sees its parts.
        self.results.inc(result);
    }

    /// Count one pair not compared, and why.
    pub fn skipped(&self, why: SkipReason) {
        self.skipped.inc(why);
        self.results.inc(CompareResult::Skipped);
    }

    /// Pairs counted with this result so far.
    pub fn count(&self, result: CompareResult) -> u64 {
        self.results.get(result)
    }
}

impl Metrics {
    /// Handles for one (route, backend, role); every status class and error kind series is
    /// created now, at 0.
    pub fn request_handles(&self, route: &str, backend: &str, role: Role) -> RequestHandles {
        let f = &self.request;
        let rbr = named(&[
            ("route", route),
            ("backend", backend),
            ("role", role.as_str()),
        ]);
        RequestHandles {
            requests: PerLabel::new(|class: StatusClass| {
                f.requests.with(&named(&[
                    ("route", route),
                    ("backend", backend),
                    ("role", role.as_str()),
                    ("status_class", class.as_str()),
                ]))
            }),
            duration: f.duration.with(&rbr),
            upstream_duration: f.upstream_duration.with(&rbr),
            ttfb: f.ttfb.with(&rbr),
            errors: PerLabel::new(|kind: ErrorKind| {
                f.errors.with(&named(&[
                    ("route", route),
                    ("backend", backend),
                    ("role", role.as_str()),
                    ("kind", kind.as_str()),
                ]))
            }),
            in_flight: f.in_flight.with(&rbr),
            rejected: f
                .rejected
                .with(&named(&[("route", route), ("backend", backend)])),
            body_timeouts: f
                .body_timeouts
                .with(&named(&[("route", route), ("backend", backend)])),
            request_bytes: f.request_bytes.with(&rbr),
            response_bytes: f.response_bytes.with(&rbr),
            grpc: super::grpc::LazyGrpc::new(f.grpc.clone(), route, backend, role),
        }
    }

    /// Handles for one (backend, role).
    pub fn backend_handles(&self, backend: &str, role: Role) -> BackendHandles {
        let f = &self.request;
        let connections = |reused: &str| {
            f.connections.with(&named(&[
                ("backend", backend),
                ("role", role.as_str()),
                ("reused", reused),
            ]))
        };
        BackendHandles {
            connect: f
                .connect
                .with(&named(&[("backend", backend), ("role", role.as_str())])),
            reused: connections("true"),
            fresh: connections("false"),
        }
    }

    /// Handles for a route's mirror to `backend`: accounting, the paired ratio, and the
    /// shadow role's request and connection series.
    pub fn mirror_handles(&self, route: &str, backend: &str) -> MirrorHandles {
        let f = &self.mirror;
        let rb = named(&[("route", route), ("backend", backend)]);
        MirrorHandles {
            requests: f.requests.with(&rb),
            dropped: PerLabel::new(|reason: DropReason| {
                f.dropped.with(&named(&[
                    ("route", route),
                    ("backend", backend),
                    ("reason", reason.as_str()),
                ]))
            }),
            biased: f.biased.with(&rb),
            ratio: f.ratio.with(&rb),
            shadow: self.request_handles(route, backend, Role::Shadow),
            backend: self.backend_handles(backend, Role::Shadow),
        }
    }

    /// Handles for a route's comparison results; every result and part exists from now, at 0.
    pub fn compare_handles(&self, route: &str) -> CompareHandles {
        let f = &self.mirror;
        CompareHandles {
            results: PerLabel::new(|result: CompareResult| {
                f.compare_results
                    .with(&named(&[("route", route), ("result", result.as_str())]))
            }),
            parts: PerLabel::new(|part: Part| {
                f.compare_parts
                    .with(&named(&[("route", route), ("part", part.as_str())]))
            }),
            skipped: PerLabel::new(|why: SkipReason| {
                f.compare_skipped
                    .with(&named(&[("route", route), ("reason", why.as_str())]))
            }),
        }
    }
}
