//! The backend pool metric families (addresses by state, health checks, ejections, DNS,
//! retries, failovers and refusals for want of a healthy address) and their pre-resolved
//! handles, one set per backend (and per route and backend pair for failovers).
//!
//! Must not: carry an address as a label value (a per-address view is the admin API's
//! `GET /api/backends`), or be resolved per request.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::{counter, named, Metrics};

pub(crate) struct PoolFamilies {
    addresses: IntGaugeVec,
    checks: IntCounterVec,
    ejections: IntCounterVec,
    resolutions: IntCounterVec,
    retries: IntCounterVec,
    failovers: IntCounterVec,
    unhealthy: IntCounterVec,
}

impl PoolFamilies {
    pub(super) fn new() -> Result<PoolFamilies, prometheus::Error> {
        Ok(PoolFamilies {
            addresses: IntGaugeVec::new(
                Opts::new(
                    "runoff_backend_addresses",
                    "A backend's addresses now, by state: healthy (in rotation), ejected (passive outlier ejection, for a backoff), unhealthy (failing its active health checks).",
                ),
                &["backend", "state"],
            )?,
            checks: counter(
                "runoff_health_checks_total",
                "Active health checks of a backend's addresses, by result (pass or fail).",
                &["backend", "result"],
            )?,
            ejections: counter(
                "runoff_outlier_ejections_total",
                "Addresses of a backend taken out of rotation by passive outlier ejection.",
                &["backend"],
            )?,
            resolutions: counter(
                "runoff_dns_resolutions_total",
                "Resolutions of a backend's names while running, by result (ok, or error: the last good answer is kept).",
                &["backend", "result"],
            )?,
            retries: counter(
                "runoff_upstream_retries_total",
                "Requests sent again to another address of the same backend after a connection failure.",
                &["backend"],
            )?,
            failovers: counter(
                "runoff_failover_requests_total",
                "Requests whose backend had no healthy address, served by the route's `on_unhealthy.fallback` instead.",
                &["route", "from", "to"],
            )?,
            unhealthy: counter(
                "runoff_unhealthy_refused_total",
                "Requests answered 503 because their backend had no healthy address and no healthy fallback.",
                &["route", "backend"],
            )?,
        })
    }

    pub(super) fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.addresses.clone()))?;
        r.register(Box::new(self.checks.clone()))?;
        r.register(Box::new(self.ejections.clone()))?;
        r.register(Box::new(self.resolutions.clone()))?;
        r.register(Box::new(self.retries.clone()))?;
        r.register(Box::new(self.failovers.clone()))?;
        r.register(Box::new(self.unhealthy.clone()))
    }
}

/// One backend's pool series.
#[derive(Clone)]
pub(crate) struct PoolHandles {
    pub healthy: IntGauge,
    pub ejected: IntGauge,
    pub unhealthy: IntGauge,
    pub check_pass: IntCounter,
    pub check_fail: IntCounter,
    pub ejections: IntCounter,
    pub resolved_ok: IntCounter,
    pub resolved_error: IntCounter,
    pub retries: IntCounter,
}

impl Metrics {
    pub(crate) fn pool_handles(&self, backend: &str) -> PoolHandles {
        let f = &self.pool;
        let state = |s: &str| {
            f.addresses
                .with(&named(&[("backend", backend), ("state", s)]))
        };
        let result =
            |v: &IntCounterVec, r: &str| v.with(&named(&[("backend", backend), ("result", r)]));
        PoolHandles {
            healthy: state("healthy"),
            ejected: state("ejected"),
            unhealthy: state("unhealthy"),
            check_pass: result(&f.checks, "pass"),
            check_fail: result(&f.checks, "fail"),
            ejections: f.ejections.with(&named(&[("backend", backend)])),
            resolved_ok: result(&f.resolutions, "ok"),
            resolved_error: result(&f.resolutions, "error"),
            retries: f.retries.with(&named(&[("backend", backend)])),
        }
    }

    /// Failovers on `route` from `from` (no healthy address) to `to`.
    pub(crate) fn failover_handle(&self, route: &str, from: &str, to: &str) -> IntCounter {
        self.pool
            .failovers
            .with(&named(&[("route", route), ("from", from), ("to", to)]))
    }

    /// Refusals on `route` of requests for `backend` with no healthy address.
    pub(crate) fn unhealthy_refused_handle(&self, route: &str, backend: &str) -> IntCounter {
        self.pool
            .unhealthy
            .with(&named(&[("route", route), ("backend", backend)]))
    }

    /// A backend left the config: its address gauges go (its counters stay, as counters do).
    pub(crate) fn forget_pool(&self, backend: &str) {
        for s in ["healthy", "ejected", "unhealthy"] {
            let _ = self
                .pool
                .addresses
                .remove(&named(&[("backend", backend), ("state", s)]));
        }
    }
}
