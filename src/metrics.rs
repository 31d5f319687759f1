//! Every metric runoff exports: names, labels, units and buckets (see shared METRICS.md).
//!
//! Lives here: registration of all families into a `Registry` passed in, and pre-resolved
//! handles per (route, backend, role) and (backend, role), built when a config loads so the hot
//! path never hashes a label or allocates. Must not: decide anything about requests, or be
//! registered twice into the same registry.

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Whose answer a request's metrics describe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Its answer went to the caller (in a split: the chosen backend).
    Primary,
    /// A mirror copy.
    Shadow,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Shadow => "shadow",
        }
    }
}

/// The `status_class` label: the backend's status class, or `error` when it gave no complete
/// response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirect,
    ClientError,
    ServerError,
    Error,
}

impl StatusClass {
    pub const ALL: [StatusClass; 6] = [
        StatusClass::Informational,
        StatusClass::Success,
        StatusClass::Redirect,
        StatusClass::ClientError,
        StatusClass::ServerError,
        StatusClass::Error,
    ];

    pub fn from_status(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The `kind` label of `runoff_upstream_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ConnectRefused,
    ConnectTimeout,
    ReadTimeout,
    WriteTimeout,
    Reset,
    Tls,
    Protocol,
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ReadTimeout,
        ErrorKind::WriteTimeout,
        ErrorKind::Reset,
        ErrorKind::Tls,
        ErrorKind::Protocol,
        ErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ReadTimeout => "read_timeout",
            ErrorKind::WriteTimeout => "write_timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }

    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectTimeout | ErrorKind::ReadTimeout | ErrorKind::WriteTimeout
        )
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Latency buckets: exponential, factor 1.25 from 0.5 ms, 51 buckets (last ≈ 35 s). Any value
/// read back from a bucket is within 25% of the truth.
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 1.25, 51).unwrap_or_else(|_| vec![0.001, 0.01, 0.1, 1.0, 10.0])
}

/// All of runoff's metric families, registered into one registry.
pub struct Metrics {
    pub registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    ttfb: HistogramVec,
    connect: HistogramVec,
    connections: IntCounterVec,
    errors: IntCounterVec,
    in_flight: IntGaugeVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    route_weight: IntGaugeVec,
    mirror_requests: IntCounterVec,
    mirror_dropped: IntCounterVec,
    mirror_ratio: HistogramVec,
    rejected: IntCounterVec,
    pub backend_cpu: prometheus::CounterVec,
    pub backend_rss: IntGaugeVec,
    compare_results: IntCounterVec,
    compare_parts: IntCounterVec,
    reloads: IntCounterVec,
    pub last_reload_success: prometheus::Gauge,
    pub unrouted: IntCounter,
    pub access_log_dropped: IntCounter,
}

impl Metrics {
    /// Register every family into `registry`.
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let rbr = &["route", "backend", "role"];
        let requests = IntCounterVec::new(
            Opts::new("runoff_requests_total", "Requests finished."),
            &["route", "backend", "role", "status_class"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "runoff_request_duration_seconds",
                "Proxy saw the request start to last response byte (primary: sent to caller).",
            )
            .buckets(latency_buckets()),
            rbr,
        )?;
        let ttfb = HistogramVec::new(
            HistogramOpts::new(
                "runoff_upstream_ttfb_seconds",
                "Request sent upstream to first response header byte.",
            )
            .buckets(latency_buckets()),
            rbr,
        )?;
        let connect = HistogramVec::new(
            HistogramOpts::new(
                "runoff_upstream_connect_duration_seconds",
                "Time to establish new upstream connections.",
            )
            .buckets(latency_buckets()),
            &["backend", "role"],
        )?;
        let connections = IntCounterVec::new(
            Opts::new(
                "runoff_upstream_connections_total",
                "Upstream connections taken for a request, new or reused from the pool.",
            ),
            &["backend", "role", "reused"],
        )?;
        let errors = IntCounterVec::new(
            Opts::new(
                "runoff_upstream_errors_total",
                "Failures talking to a backend, per attempt.",
            ),
            &["route", "backend", "role", "kind"],
        )?;
        let in_flight = IntGaugeVec::new(
            Opts::new("runoff_in_flight_requests", "Requests under way now."),
            rbr,
        )?;
        let request_bytes = IntCounterVec::new(
            Opts::new(
                "runoff_request_body_bytes_total",
                "Request body bytes sent to the backend.",
            ),
            rbr,
        )?;
        let response_bytes = IntCounterVec::new(
            Opts::new(
                "runoff_response_body_bytes_total",
                "Response body bytes received from the backend.",
            ),
            rbr,
        )?;
        let route_weight = IntGaugeVec::new(
            Opts::new("runoff_route_weight", "The split weight in force now."),
            &["route", "backend"],
        )?;
        let mirror_requests = IntCounterVec::new(
            Opts::new(
                "runoff_mirror_requests_total",
                "Copies dispatched to the shadow.",
            ),
            &["route", "backend"],
        )?;
        let mirror_dropped = IntCounterVec::new(
            Opts::new(
                "runoff_mirror_dropped_total",
                "Shadow copies not completed, and why.",
            ),
            &["route", "backend", "reason"],
        )?;
        let mirror_ratio = HistogramVec::new(
            HistogramOpts::new(
                "runoff_mirror_latency_ratio",
                "Shadow duration divided by primary duration for the same request.",
            )
            .buckets(ratio_buckets()),
            &["route", "backend"],
        )?;
        let rejected = IntCounterVec::new(
            Opts::new(
                "runoff_backend_rejected_total",
                "Requests answered 503 by runoff because the backend's max_in_flight was reached.",
            ),
            &["route", "backend"],
        )?;
        let backend_cpu = prometheus::CounterVec::new(
            Opts::new(
                "runoff_backend_cpu_seconds_total",
                "CPU used by a same-host backend process and its children, when configured.",
            ),
            &["backend"],
        )?;
        let backend_rss = IntGaugeVec::new(
            Opts::new(
                "runoff_backend_resident_memory_bytes",
                "Resident memory of a same-host backend process and its children, when configured.",
            ),
            &["backend"],
        )?;
        let compare_results = IntCounterVec::new(
            Opts::new(
                "runoff_compare_total",
                "Primary/shadow response pairs compared.",
            ),
            &["route", "result"],
        )?;
        let compare_parts = IntCounterVec::new(
            Opts::new(
                "runoff_compare_mismatches_total",
                "Mismatching pairs by the part that differed.",
            ),
            &["route", "part"],
        )?;
        let reloads = IntCounterVec::new(
            Opts::new("runoff_config_reloads_total", "Config reloads."),
            &["result"],
        )?;
        for result in ["success", "error"] {
            reloads.with_label_values(&[result]);
        }
        let last_reload_success = prometheus::Gauge::new(
            "runoff_config_last_reload_success_timestamp_seconds",
            "Unix time of the last good config load (start-up or reload).",
        )?;
        let unrouted = IntCounter::new(
            "runoff_unrouted_requests_total",
            "Requests that matched no route (answered 404).",
        )?;
        let access_log_dropped = IntCounter::new(
            "runoff_access_log_dropped_total",
            "Access log lines dropped because the writer could not keep up.",
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new("runoff_build_info", "The running build (always 1)."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ttfb.clone()))?;
        registry.register(Box::new(connect.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(request_bytes.clone()))?;
        registry.register(Box::new(response_bytes.clone()))?;
        registry.register(Box::new(route_weight.clone()))?;
        registry.register(Box::new(mirror_requests.clone()))?;
        registry.register(Box::new(mirror_dropped.clone()))?;
        registry.register(Box::new(mirror_ratio.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(backend_cpu.clone()))?;
        registry.register(Box::new(backend_rss.clone()))?;
        registry.register(Box::new(compare_results.clone()))?;
        registry.register(Box::new(compare_parts.clone()))?;
        registry.register(Box::new(reloads.clone()))?;
        registry.register(Box::new(last_reload_success.clone()))?;
        registry.register(Box::new(unrouted.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            registry,
            requests,
            duration,
            ttfb,
            connect,
            connections,
            errors,
            in_flight,
            request_bytes,
            response_bytes,
            route_weight,
            mirror_requests,
            mirror_dropped,
            mirror_ratio,
            rejected,
            backend_cpu,
            backend_rss,
            compare_results,
            compare_parts,
            reloads,
            last_reload_success,
            unrouted,
            access_log_dropped,
        })
    }

    /// Handles for one (route, backend, role); every status class and error kind series is
    /// created now, at 0.
    pub fn request_handles(&self, route: &str, backend: &str, role: Role) -> RequestHandles {
        let role = role.as_str();
        let rbr = [route, backend, role];
        RequestHandles {
            requests: StatusClass::ALL.map(|c| {
                self.requests
                    .with_label_values(&[route, backend, role, c.as_str()])
            }),
            duration: self.duration.with_label_values(&rbr),
            ttfb: self.ttfb.with_label_values(&rbr),
            errors: ErrorKind::ALL.map(|k| {
                self.errors
                    .with_label_values(&[route, backend, role, k.as_str()])
            }),
            in_flight: self.in_flight.with_label_values(&rbr),
            rejected: self.rejected.with_label_values(&[route, backend]),
            request_bytes: self.request_bytes.with_label_values(&rbr),
            response_bytes: self.response_bytes.with_label_values(&rbr),
        }
    }

    /// Handles for one (backend, role).
    pub fn backend_handles(&self, backend: &str, role: Role) -> BackendHandles {
        let role = role.as_str();
        BackendHandles {
            connect: self.connect.with_label_values(&[backend, role]),
            reused: self.connections.with_label_values(&[backend, role, "true"]),
            fresh: self
                .connections
                .with_label_values(&[backend, role, "false"]),
        }
    }

    /// Handles for a route's mirror to `backend`: accounting, the paired ratio, and the
    /// shadow role's request and connection series.
    pub fn mirror_handles(&self, route: &str, backend: &str) -> MirrorHandles {
        MirrorHandles {
            requests: self.mirror_requests.with_label_values(&[route, backend]),
            dropped: DropReason::ALL.map(|r| {
                self.mirror_dropped
                    .with_label_values(&[route, backend, r.as_str()])
            }),
            ratio: self.mirror_ratio.with_label_values(&[route, backend]),
            shadow: self.request_handles(route, backend, Role::Shadow),
            backend: self.backend_handles(backend, Role::Shadow),
        }
    }

    /// Handles for a route's comparison results; every result and part exists from now, at 0.
    pub fn compare_handles(&self, route: &str) -> CompareHandles {
        CompareHandles {
            results: ["match", "mismatch", "skipped"]
                .map(|r| self.compare_results.with_label_values(&[route, r])),
            parts: ["status", "headers", "body"]
                .map(|p| self.compare_parts.with_label_values(&[route, p])),
        }
    }

    pub fn set_route_weight(&self, route: &str, backend: &str, weight: u32) {
        self.route_weight
            .with_label_values(&[route, backend])
            .set(i64::from(weight));
    }

    /// Forget a (route, backend) weight that no longer exists after a reload.
    pub fn remove_route_weight(&self, route: &str, backend: &str) {
        let _ = self.route_weight.remove_label_values(&[route, backend]);
    }

    /// Count a config reload; a good one also stamps the time.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "success" } else { "error" }])
            .inc();
        if ok {
            self.stamp_good_load();
        }
    }

    /// Record that a config was loaded successfully now.
    pub fn stamp_good_load(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_reload_success.set(now);
    }
}

/// Ratio buckets: factor 1.25 from 0.01 to about 100 (a quantile within 25%).
pub fn ratio_buckets() -> Vec<f64> {
    exponential_buckets(0.01, 1.25, 43).unwrap_or_else(|_| vec![0.1, 0.5, 1.0, 2.0, 10.0])
}

/// Why a shadow copy did not complete (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// In-flight limit or memory budget full.
    Overloaded,
    BodyTooLarge,
    Timeout,
    UpstreamError,
    ClientAborted,
    /// No body reached runoff because the primary never connected.
    PrimaryFailed,
}

impl DropReason {
    pub const ALL: [DropReason; 6] = [
        DropReason::Overloaded,
        DropReason::BodyTooLarge,
        DropReason::Timeout,
        DropReason::UpstreamError,
        DropReason::ClientAborted,
        DropReason::PrimaryFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Overloaded => "overloaded",
            DropReason::BodyTooLarge => "body_too_large",
            DropReason::Timeout => "timeout",
            DropReason::UpstreamError => "upstream_error",
            DropReason::ClientAborted => "client_aborted",
            DropReason::PrimaryFailed => "primary_failed",
        }
    }
}

/// Pre-resolved comparison series of one route.
#[derive(Clone)]
pub struct CompareHandles {
    /// match, mismatch, skipped
    pub results: [IntCounter; 3],
    /// status, headers, body
    pub parts: [IntCounter; 3],
}

/// Pre-resolved series for one route's mirror.
#[derive(Clone)]
pub struct MirrorHandles {
    pub requests: IntCounter,
    dropped: [IntCounter; 6],
    pub ratio: Histogram,
    pub shadow: RequestHandles,
    pub backend: BackendHandles,
}

impl MirrorHandles {
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason as usize].inc();
    }

    /// Copies dropped so far, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(IntCounter::get).sum()
    }
}

/// Pre-resolved per-(route, backend, role) series.
#[derive(Clone)]
pub struct RequestHandles {
    requests: [IntCounter; 6],
    pub duration: Histogram,
    pub ttfb: Histogram,
    errors: [IntCounter; 8],
    pub in_flight: IntGauge,
    /// Answered 503 by runoff: the backend's `max_in_flight` was reached (primary only).
    pub rejected: IntCounter,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
}

impl RequestHandles {
    pub fn finished(&self, class: StatusClass) {
        self.requests[class.index()].inc();
    }

    /// Requests finished so far, all classes.
    pub fn finished_total(&self) -> u64 {
        self.requests.iter().map(IntCounter::get).sum()
    }

    pub fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].inc();
    }
}

/// Pre-resolved per-(backend, role) connection series.
#[derive(Clone)]
pub struct BackendHandles {
    pub connect: Histogram,
    reused: IntCounter,
    fresh: IntCounter,
}

impl BackendHandles {
    pub fn connection(&self, reused: bool) {
        if reused {
            self.reused.inc();
        } else {
            self.fresh.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_span_half_a_millisecond_to_thirty_seconds_within_25_percent() {
        let b = latency_buckets();
        assert!((b[0] - 0.0005).abs() < 1e-12);
        assert!(*b.last().expect("buckets") >= 30.0);
        for w in b.windows(2) {
            assert!(w[1] / w[0] <= 1.25 + 1e-9);
        }
    }

    #[test]
    fn handles_create_every_class_and_kind_series_at_zero() {
        let m = Metrics::new(Registry::new()).expect("register");
        let h = m.request_handles("api", "node", Role::Primary);
        h.finished(StatusClass::Success);
        h.error(ErrorKind::Reset);
        let families = m.registry.gather();
        let requests = families
            .iter()
            .find(|f| f.name() == "runoff_requests_total")
            .expect("requests family");
        assert_eq!(requests.get_metric().len(), 6);
        let errors = families
            .iter()
            .find(|f| f.name() == "runoff_upstream_errors_total")
            .expect("errors family");
        assert_eq!(errors.get_metric().len(), 8);
        let total: f64 = requests
            .get_metric()
            .iter()
            .map(|m| m.get_counter().get_value())
            .sum();
        assert_eq!(total, 1.0);
    }

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::from_status(101).as_str(), "1xx");
        assert_eq!(StatusClass::from_status(204).as_str(), "2xx");
        assert_eq!(StatusClass::from_status(304).as_str(), "3xx");
        assert_eq!(StatusClass::from_status(404).as_str(), "4xx");
        assert_eq!(StatusClass::from_status(503).as_str(), "5xx");
        assert_eq!(StatusClass::from_status(600).as_str(), "error");
    }
}
