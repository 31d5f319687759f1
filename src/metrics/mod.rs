//! Every metric runoff exports: names, labels, units and buckets (`docs/METRICS.md` is the
//! reference).
//!
//! Lives here: registration of every family into a `Registry` passed in (`mod.rs`), the closed
//! label sets as types (`labels`), and the pre-resolved handles the request path records into
//! (`handles`), built when a config loads so the hot path never hashes a label or allocates.
//! Must not: decide anything about requests, or be registered twice into the same registry.

pub(crate) mod grpc;
pub(crate) mod handles;
pub(crate) mod labels;
pub(crate) mod pool;
pub(crate) mod websocket;

use std::collections::HashMap;

use prometheus::{
    exponential_buckets, CounterVec, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub(crate) use handles::{
    Answered, BackendHandles, CompareHandles, MirrorHandles, PerLabel, RequestHandles,
};
pub(crate) use labels::{
    AdminRefusal, CompareResult, ConnectionRefusal, Direction, DropReason, ErrorKind, ForceRefusal,
    FrameKind, GrpcCode, H2Goaway, Label, Part, Rejection, ReloadResult, Role, SkipReason,
    StatusClass, UpgradeFailure, WsEnd,
};
pub(crate) use websocket::WebSocketHandles;

/// Latency buckets: exponential, factor 1.25 from 0.5 ms, 51 buckets (last ≈ 35 s). Any value
/// read back from a bucket is within 25% of the truth.
pub(crate) fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 1.25, 51).unwrap_or_else(|_| vec![0.001, 0.01, 0.1, 1.0, 10.0])
}

/// Ratio buckets: factor 1.25 from 0.01 to about 100 (a quantile within 25%).
pub(crate) fn ratio_buckets() -> Vec<f64> {
    exponential_buckets(0.01, 1.25, 43).unwrap_or_else(|_| vec![0.1, 0.5, 1.0, 2.0, 10.0])
}

/// Label values by label name: call sites say which value goes with which label.
pub(crate) fn named<'a>(pairs: &[(&'a str, &'a str)]) -> HashMap<&'a str, &'a str> {
    pairs.iter().copied().collect()
}

/// The families every request records into (both roles).
pub(crate) struct RequestFamilies {
    pub(crate) requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) upstream_duration: HistogramVec,
    pub(crate) ttfb: HistogramVec,
    pub(crate) errors: IntCounterVec,
    pub(crate) in_flight: IntGaugeVec,
    pub(crate) request_bytes: IntCounterVec,
    pub(crate) response_bytes: IntCounterVec,
    pub(crate) rejected: IntCounterVec,
    pub(crate) body_timeouts: IntCounterVec,
    pub(crate) grpc: IntCounterVec,
    pub(crate) connect: HistogramVec,
    pub(crate) connections: IntCounterVec,
}

/// Shadow traffic and the comparison of its answers.
pub(crate) struct MirrorFamilies {
    pub(crate) requests: IntCounterVec,
    pub(crate) dropped: IntCounterVec,
    pub(crate) biased: IntCounterVec,
    pub(crate) ratio: HistogramVec,
    pub(crate) compare_results: IntCounterVec,
    pub(crate) compare_parts: IntCounterVec,
    pub(crate) compare_skipped: IntCounterVec,
}

/// Live control: weights in force and config reloads.
pub struct ControlMetrics {
    route_weight: IntGaugeVec,
    reloads: IntCounterVec,
    last_reload_success: Gauge,
}

/// Verdicts and ramps (routes with `analysis:` and `ramp:`).
pub struct AnalysisMetrics {
    verdict: IntGaugeVec,
    bound: GaugeVec,
    ramp_step: IntGaugeVec,
    ramp_decided: GaugeVec,
}

impl AnalysisMetrics {
    fn new() -> Result<AnalysisMetrics, prometheus::Error> {
        Ok(AnalysisMetrics {
            verdict: IntGaugeVec::new(
                Opts::new(
                    "runoff_analysis_verdict",
                    "Verdict of a criterion (or `overall`): -1 fail, 0 inconclusive, 1 pass.",
                ),
                &["route", "criterion"],
            )?,
            bound: GaugeVec::new(
                Opts::new(
                    "runoff_analysis_bound",
                    "A criterion's estimate and confidence bounds: a ratio, percentage points or a share (as the criterion says).",
                ),
                &["route", "criterion", "bound"],
            )?,
            ramp_step: IntGaugeVec::new(
                Opts::new(
                    "runoff_ramp_step",
                    "The candidate's weight in percent set by the route's ramp (0 after a rollback).",
                ),
                &["route"],
            )?,
            ramp_decided: GaugeVec::new(
                Opts::new(
                    "runoff_ramp_last_decision_timestamp_seconds",
                    "Unix time of the ramp's last decision (advance, rollback, pause, resume).",
                ),
                &["route"],
            )?,
        })
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.verdict.clone()))?;
        r.register(Box::new(self.bound.clone()))?;
        r.register(Box::new(self.ramp_step.clone()))?;
        r.register(Box::new(self.ramp_decided.clone()))
    }

    /// A criterion's (or `overall`'s) verdict as −1, 0 or 1.
    pub fn verdict(&self, route: &str, criterion: &str, score: i64) {
        self.verdict
            .with(&named(&[("route", route), ("criterion", criterion)]))
            .set(score);
    }

    /// A criterion's estimate and bounds; a figure not known (no data, no upper bound yet) has
    /// no series.
    pub fn bounds(&self, route: &str, criterion: &str, figures: [Option<f64>; 3]) {
        for (name, value) in ["estimate", "lower", "upper"].into_iter().zip(figures) {
            let labels = named(&[("route", route), ("criterion", criterion), ("bound", name)]);
            match value.filter(|v| v.is_finite()) {
                Some(v) => self.bound.with(&labels).set(v),
                None => {
                    let _ = self.bound.remove(&labels);
                }
            }
        }
    }

    /// The ramp's weight for the candidate now, and when it last decided (Unix seconds).
    pub fn ramp(&self, route: &str, weight: u32, decided_at: f64) {
        let labels = named(&[("route", route)]);
        self.ramp_step.with(&labels).set(i64::from(weight));
        self.ramp_decided.with(&labels).set(decided_at);
    }
}

/// Same-host backend processes (`process:` configured).
pub struct ResourceMetrics {
    backend_cpu: CounterVec,
    backend_rss: IntGaugeVec,
}

/// All of runoff's metric families, registered into one registry.
pub struct Metrics {
    pub registry: Registry,
    pub(crate) request: RequestFamilies,
    pub(crate) mirror: MirrorFamilies,
    pub(crate) websocket: websocket::WebSocketFamilies,
    pub(crate) pool: pool::PoolFamilies,
    pub control: ControlMetrics,
    pub resources: ResourceMetrics,
    pub analysis: AnalysisMetrics,
    pub unrouted: IntCounter,
    pub access_log_dropped: IntCounter,
    force_refused: IntCounterVec,
    admin_refused: handles::PerLabel<AdminRefusal>,
    /// Callers' connections open now (upgraded WebSockets included).
    pub downstream_connections: IntGauge,
    pub(crate) connections_refused: handles::PerLabel<ConnectionRefusal>,
    pub(crate) rejected_requests: handles::PerLabel<Rejection>,
    pub(crate) h2_goaways: handles::PerLabel<H2Goaway>,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

fn histogram(
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
}

const RBR: &[&str] = &["route", "backend", "role"];

impl RequestFamilies {
    fn new() -> Result<RequestFamilies, prometheus::Error> {
        Ok(RequestFamilies {
            requests: counter(
                "runoff_requests_total",
                "Requests finished.",
                &["route", "backend", "role", "status_class"],
            )?,
            duration: histogram(
                "runoff_request_duration_seconds",
                "Proxy saw the request start to last response byte (primary: sent to caller).",
                latency_buckets(),
                RBR,
            )?,
            upstream_duration: histogram(
                "runoff_upstream_duration_seconds",
                "The leg's own request starts going upstream (connect included) to last response byte received.",
                latency_buckets(),
                RBR,
            )?,
            ttfb: histogram(
                "runoff_upstream_ttfb_seconds",
                "Request sent upstream to first response header byte.",
                latency_buckets(),
                RBR,
            )?,
            errors: counter(
                "runoff_upstream_errors_total",
                "Failures talking to a backend, per attempt.",
                &["route", "backend", "role", "kind"],
            )?,
            in_flight: IntGaugeVec::new(
                Opts::new("runoff_in_flight_requests", "Requests under way now."),
                RBR,
            )?,
            request_bytes: counter(
                "runoff_request_body_bytes_total",
                "Request body bytes sent to the backend.",
                RBR,
            )?,
            response_bytes: counter(
                "runoff_response_body_bytes_total",
                "Response body bytes received from the backend.",
                RBR,
            )?,
            rejected: counter(
                "runoff_backend_rejected_total",
                "Requests answered 503 by runoff because the backend's max_in_flight was reached.",
                &["route", "backend"],
            )?,
            body_timeouts: counter(
                "runoff_request_body_timeouts_total",
                "Requests whose caller stopped sending the body (answered 408); not counted against the backend.",
                &["route", "backend"],
            )?,
            grpc: counter(
                "runoff_grpc_requests_total",
                "gRPC responses by grpc-status (from the trailers, or the headers of a Trailers-Only response; `absent` when there is none).",
                &["route", "backend", "role", "code"],
            )?,
            connect: histogram(
                "runoff_upstream_connect_duration_seconds",
                "Time to establish new upstream connections.",
                latency_buckets(),
                &["backend", "role"],
            )?,
            connections: counter(
                "runoff_upstream_connections_total",
                "Upstream connections taken for a request, new or reused from the pool.",
                &["backend", "role", "reused"],
            )?,
        })
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.requests.clone()))?;
        r.register(Box::new(self.duration.clone()))?;
        r.register(Box::new(self.upstream_duration.clone()))?;
        r.register(Box::new(self.ttfb.clone()))?;
        r.register(Box::new(self.connect.clone()))?;
        r.register(Box::new(self.connections.clone()))?;
        r.register(Box::new(self.errors.clone()))?;
        r.register(Box::new(self.in_flight.clone()))?;
        r.register(Box::new(self.request_bytes.clone()))?;
        r.register(Box::new(self.response_bytes.clone()))?;
        r.register(Box::new(self.rejected.clone()))?;
        r.register(Box::new(self.body_timeouts.clone()))?;
        r.register(Box::new(self.grpc.clone()))
    }
}

impl MirrorFamilies {
    fn new() -> Result<MirrorFamilies, prometheus::Error> {
        Ok(MirrorFamilies {
            requests: counter(
                "runoff_mirror_requests_total",
                "Copies dispatched to the shadow.",
                &["route", "backend"],
            )?,
            dropped: counter(
                "runoff_mirror_dropped_total",
                "Shadow copies not completed, and why.",
                &["route", "backend", "reason"],
            )?,
            biased: counter(
                "runoff_mirror_biased_total",
                "Copies dispatched while the shadow's copies under way ran far above the primary's requests under way (over 4x plus 4).",
                &["route", "backend"],
            )?,
            ratio: histogram(
                "runoff_mirror_latency_ratio",
                "Shadow upstream duration divided by primary upstream duration for the same request.",
                ratio_buckets(),
                &["route", "backend"],
            )?,
            compare_results: counter(
                "runoff_compare_total",
                "Primary/shadow response pairs compared.",
                &["route", "result"],
            )?,
            compare_parts: counter(
                "runoff_compare_mismatches_total",
                "Mismatching pairs by the part that differed.",
                &["route", "part"],
            )?,
            compare_skipped: counter(
                "runoff_compare_skipped_total",
                "Pairs not compared (counted skipped in runoff_compare_total), and why.",
                &["route", "reason"],
            )?,
        })
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.requests.clone()))?;
        r.register(Box::new(self.dropped.clone()))?;
        r.register(Box::new(self.biased.clone()))?;
        r.register(Box::new(self.ratio.clone()))?;
        r.register(Box::new(self.compare_results.clone()))?;
        r.register(Box::new(self.compare_parts.clone()))?;
        r.register(Box::new(self.compare_skipped.clone()))
    }
}

impl ControlMetrics {
    fn new() -> Result<ControlMetrics, prometheus::Error> {
        let reloads = counter(
            "runoff_config_reloads_total",
            "Config reloads.",
            &["result"],
        )?;
        for result in ReloadResult::ALL {
            reloads.with(&named(&[("result", result.as_str())]));
        }
        Ok(ControlMetrics {
            route_weight: IntGaugeVec::new(
                Opts::new("runoff_route_weight", "The split weight in force now."),
                &["route", "backend"],
            )?,
            reloads,
            last_reload_success: Gauge::new(
                "runoff_config_last_reload_success_timestamp_seconds",
                "Unix time of the last good config load (start-up or reload).",
            )?,
        })
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.route_weight.clone()))?;
        r.register(Box::new(self.reloads.clone()))?;
        r.register(Box::new(self.last_reload_success.clone()))
    }

    pub fn set_route_weight(&self, route: &str, backend: &str, weight: u32) {
        self.route_weight
            .with(&named(&[("route", route), ("backend", backend)]))
            .set(i64::from(weight));
    }

    /// Forget a (route, backend) weight that no longer exists after a reload.
    pub fn remove_route_weight(&self, route: &str, backend: &str) {
        let _ = self
            .route_weight
            .remove(&named(&[("route", route), ("backend", backend)]));
    }

    /// Count a config reload; a good one also stamps the time.
    pub fn reload(&self, result: ReloadResult) {
        self.reloads
            .with(&named(&[("result", result.as_str())]))
            .inc();
        if result == ReloadResult::Success {
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

impl ResourceMetrics {
    fn new() -> Result<ResourceMetrics, prometheus::Error> {
        Ok(ResourceMetrics {
            backend_cpu: CounterVec::new(
                Opts::new(
                    "runoff_backend_cpu_seconds_total",
                    "CPU used by a same-host backend process and its children, when configured.",
                ),
                &["backend"],
            )?,
            backend_rss: IntGaugeVec::new(
                Opts::new(
                    "runoff_backend_resident_memory_bytes",
                    "Resident memory of a same-host backend process and its children, when configured.",
                ),
                &["backend"],
            )?,
        })
    }

    fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.backend_cpu.clone()))?;
        r.register(Box::new(self.backend_rss.clone()))
    }

    /// One sample of a backend's process: CPU used since the last sample (adding 0 still makes
    /// the series exist) and resident memory now.
    pub fn sampled(&self, backend: &str, cpu_seconds: f64, resident_bytes: u64) {
        let labels = named(&[("backend", backend)]);
        self.backend_cpu.with(&labels).inc_by(cpu_seconds.max(0.0));
        self.backend_rss
            .with(&labels)
            .set(i64::try_from(resident_bytes).unwrap_or(i64::MAX));
    }
}

impl Metrics {
    /// Register every family into `registry`.
    pub fn new(registry: Registry) -> Result<Metrics, prometheus::Error> {
        let request = RequestFamilies::new()?;
        let mirror = MirrorFamilies::new()?;
        let websocket = websocket::WebSocketFamilies::new()?;
        let control = ControlMetrics::new()?;
        let resources = ResourceMetrics::new()?;
        let analysis = AnalysisMetrics::new()?;
        let pool = pool::PoolFamilies::new()?;
        let unrouted = IntCounter::new(
            "runoff_unrouted_requests_total",
            "Requests that matched no route (answered 404).",
        )?;
        let access_log_dropped = IntCounter::new(
            "runoff_access_log_dropped_total",
            "Access log lines dropped because the writer could not keep up.",
        )?;
        let force_refused = counter(
            "runoff_force_refused_total",
            "Requests whose force header was ignored (routed by weight instead), and why.",
            &["route", "reason"],
        )?;
        let admin_refused_vec = counter(
            "runoff_admin_refused_total",
            "Requests the admin listener refused, and why.",
            &["reason"],
        )?;
        let admin_refused = handles::PerLabel::new(|r: AdminRefusal| {
            admin_refused_vec.with(&named(&[("reason", r.as_str())]))
        });
        let downstream_connections = IntGauge::new(
            "runoff_downstream_connections",
            "Callers' connections open now (upgraded WebSockets included).",
        )?;
        let connections_refused_vec = counter(
            "runoff_connections_refused_total",
            "Callers' connections closed as soon as they were accepted, and why.",
            &["reason"],
        )?;
        let connections_refused = handles::PerLabel::new(|r: ConnectionRefusal| {
            connections_refused_vec.with(&named(&[("reason", r.as_str())]))
        });
        let rejected_vec = counter(
            "runoff_rejected_requests_total",
            "Requests refused before routing (by Pingora's parser or runoff's RFC 9112 checks), and why.",
            &["reason"],
        )?;
        let rejected_requests = handles::PerLabel::new(|r: Rejection| {
            rejected_vec.with(&named(&[("reason", r.as_str())]))
        });
        let goaway_vec = counter(
            "runoff_http2_goaways_total",
            "Callers' HTTP/2 connections runoff closed with an error (GOAWAY), by its code.",
            &["reason"],
        )?;
        let h2_goaways = handles::PerLabel::new(|r: H2Goaway| {
            goaway_vec.with(&named(&[("reason", r.as_str())]))
        });
        let build_info = IntGaugeVec::new(
            Opts::new("runoff_build_info", "The running build (always 1)."),
            &["version"],
        )?;
        build_info
            .with(&named(&[("version", env!("CARGO_PKG_VERSION"))]))
            .set(1);

        request.register(&registry)?;
        mirror.register(&registry)?;
        websocket.register(&registry)?;
        pool.register(&registry)?;
        control.register(&registry)?;
        resources.register(&registry)?;
        analysis.register(&registry)?;
        registry.register(Box::new(unrouted.clone()))?;
        registry.register(Box::new(access_log_dropped.clone()))?;
        registry.register(Box::new(force_refused.clone()))?;
        registry.register(Box::new(admin_refused_vec))?;
        registry.register(Box::new(downstream_connections.clone()))?;
        registry.register(Box::new(connections_refused_vec))?;
        registry.register(Box::new(rejected_vec))?;
        registry.register(Box::new(goaway_vec))?;
        registry.register(Box::new(build_info))?;

        Ok(Metrics {
            registry,
            request,
            mirror,
            websocket,
            pool,
            control,
            resources,
            analysis,
            unrouted,
            access_log_dropped,
            force_refused,
            admin_refused,
            downstream_connections,
            connections_refused,
            rejected_requests,
            h2_goaways,
        })
    }

    /// The admin listener refused a request.
    pub fn admin_refused(&self, why: AdminRefusal) {
        self.admin_refused.inc(why);
    }

    /// Handles counting a route's ignored force headers, every reason at 0 from now.
    pub(crate) fn force_refusals(&self, route: &str) -> handles::PerLabel<ForceRefusal> {
        handles::PerLabel::new(|r: ForceRefusal| {
            self.force_refused
                .with(&named(&[("route", route), ("reason", r.as_str())]))
        })
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
    fn named_labels_land_on_the_right_series() {
        let m = Metrics::new(Registry::new()).expect("register");
        let c = m.compare_handles("orders");
        c.judged(CompareResult::Mismatch, &[Part::Body, Part::Status]);
        c.judged(CompareResult::Match, &[]);
        assert_eq!(c.count(CompareResult::Mismatch), 1);
        assert_eq!(c.count(CompareResult::Match), 1);
        assert_eq!(c.count(CompareResult::Skipped), 0);
        let text = {
            let mut out = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &m.registry.gather(),
                &mut out,
            )
            .expect("encode");
            String::from_utf8(out).expect("utf-8")
        };
        assert!(text.contains(r#"runoff_compare_mismatches_total{part="body",route="orders"} 1"#));
        assert!(
            text.contains(r#"runoff_compare_mismatches_total{part="headers",route="orders"} 0"#)
        );
    }
}
