//! Shadow traffic: copies of live requests sent to a candidate backend on their own tasks,
//! measured, and thrown away.
//!
//! Lives here: a route's mirror as the snapshot holds it and admitting a copy (accounting,
//! in-flight and memory bounds: this file), the copy's request (`request`), the handle that
//! sends it once the primary's request is final and feeds its body as the primary's flows
//! (`tee`), the pairing of both legs (`pair`), and the shadow exchange itself (`shadow`). Must not: block, slow or fail the primary. Nothing here
//! awaits on the primary's path; every copy ends exactly once, as completed
//! (`runoff_requests_total{role="shadow"}`) or dropped (`runoff_mirror_dropped_total{reason}`).

mod pair;
mod request;
mod shadow;
mod tee;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::header::HeaderName;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use prometheus::IntGauge;
use tokio::sync::mpsc::unbounded_channel;

use crate::access_log::AccessLogger;
use crate::analysis::tally::Tally;
use crate::analysis::{Book, Recorder, Series};
use crate::compare::Judge;
use crate::config::{Live, Mirror, Pacing, Protocol, Route};
use crate::metrics::{DropReason, Metrics, MirrorHandles, Role};
use crate::pool::Pool;
use crate::redact::Redactor;
use pair::Pair;
use tee::Budget;

pub(crate) use request::{body_plan, shadow_request, BodyPlan};
pub(crate) use tee::CopyHandle;

/// Process-wide mirroring resources: the shadow connection pool, the memory budget, and the
/// threads copies run on.
pub(crate) struct MirrorRuntime {
    connector: Connector,
    budget: Arc<Budget>,
    access_log: AccessLogger,
    /// The runtime of `server.shadow_threads`; `None`: copies run on the proxy's threads.
    threads: Option<tokio::runtime::Handle>,
}

impl MirrorRuntime {
    pub(crate) fn new(
        memory_bytes: u64,
        pool_size: usize,
        access_log: AccessLogger,
        threads: Option<tokio::runtime::Handle>,
    ) -> MirrorRuntime {
        MirrorRuntime {
            connector: Connector::new(Some(ConnectorOptions::new(pool_size))),
            budget: Arc::new(Budget::new(memory_bytes)),
            access_log,
            threads,
        }
    }

    /// Run a copy's exchange on the shadow threads (or, without them, where it is sent from).
    fn spawn(&self, copy: impl std::future::Future<Output = ()> + Send + 'static) {
        match &self.threads {
            Some(threads) => drop(threads.spawn(copy)),
            None => drop(tokio::spawn(copy)),
        }
    }
}

/// Start the `server.shadow_threads` threads shadow copies run on, and return their runtime;
/// `None` for 0 (the default: copies run on the proxy's threads). Each copy is a second
/// exchange per mirrored request: on threads of its own it never waits behind a caller's
/// request, nor a caller behind it, and it takes no more than those threads' cores (past them
/// copies wait, time out and are dropped, counted). The runtime lives as long as the process:
/// it is never dropped (a runtime may not be dropped from async code, where the last copy may
/// end).
pub(crate) fn start_shadow_threads(n: usize) -> std::io::Result<Option<tokio::runtime::Handle>> {
    if n == 0 {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .thread_name("runoff-shadow")
        .enable_all()
        .build()?;
    let runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime));
    Ok(Some(runtime.handle().clone()))
}

/// One route's mirror, as the snapshot holds it: built when a config loads.
pub(crate) struct RouteMirror {
    config: Mirror,
    handles: MirrorHandles,
    /// The shadow backend's addresses.
    pool: Arc<Pool>,
    /// What runoff speaks to the shadow backend (the copy is converted to it).
    protocol: Protocol,
    route_name: String,
    backend_name: String,
    request_id_header: HeaderName,
    /// `grpc.error_codes`: which gRPC answers of the shadow are errors.
    grpc_error_codes: Vec<u8>,
    /// What the copies' access log lines never show in the clear.
    redact: Redactor,
    /// Copies under way for this route (carried across reloads).
    in_flight: Arc<AtomicUsize>,
    /// Compares the two answers, when the route says so.
    judge: Option<Arc<Judge>>,
    /// Exact upstream-side latency of completed copies, for summaries.
    shadow_latency: Arc<Recorder>,
    /// Exact shadow ÷ primary ratios, for summaries.
    ratio: Arc<Recorder>,
    /// Every copy sent: the shadow's copies under way, and whether it ran far ahead.
    copies: Arc<Recorder>,
    /// The route's primary requests under way, per backend of its split.
    primary_in_flight: Vec<IntGauge>,
    /// The route's verdict tally (the copies are the candidate's side), with an `analysis`.
    tally: Option<Arc<Tally>>,
}

/// A copy is sent "ahead" (the shadow far ahead of the primary, so the load's shape biases
/// the comparison) when the copies under way, this one included, exceed this many times the
/// primary's requests under way...
const AHEAD_FACTOR: i64 = 4;
/// ...plus this many (so that a handful of copies at low concurrency never count).
const AHEAD_SLACK: i64 = 4;

/// What a route's mirror takes over from before a reload.
pub(crate) struct Carried {
    /// The shadow backend's pool (`None` when the route has no mirror).
    pub pool: Option<Arc<Pool>>,
    /// Copies under way.
    pub in_flight: Arc<AtomicUsize>,
}

impl RouteMirror {
    /// The mirror of `route`, if it has one. `carried`: what outlives a config (the shadow's
    /// pool, and the count of copies under way, so a reload does not reset the limit's view).
    pub(crate) fn new(
        route: &Route,
        live: &Live,
        metrics: &Metrics,
        book: &Book,
        judge: Option<Arc<Judge>>,
        carried: Carried,
        tally: Option<Arc<Tally>>,
    ) -> Option<RouteMirror> {
        let m = route.mirror.as_ref()?;
        let backend = live.backends.get(m.to)?;
        let Carried { pool, in_flight } = carried;
        let pool = pool?;
        Some(RouteMirror {
            config: m.clone(),
            handles: metrics.mirror_handles(&route.name, &backend.name),
            pool,
            protocol: backend.protocol,
            route_name: route.name.clone(),
            backend_name: backend.name.clone(),
            request_id_header: live.forwarding.request_id_header.name().clone(),
            grpc_error_codes: live.grpc_error_codes.clone(),
            redact: Redactor::new(&live.redact, &m.strip_headers),
            in_flight,
            judge,
            shadow_latency: book.recorder(
                Series::Upstream(Role::Shadow),
                &route.name,
                &backend.name,
            ),
            ratio: book.recorder(Series::Ratio, &route.name, ""),
            copies: book.recorder(Series::Copies, &route.name, ""),
            primary_in_flight: route
                .split
                .iter()
                .filter_map(|e| live.backends.get(e.backend))
                .map(|b| {
                    metrics
                        .request_handles(&route.name, &b.name, Role::Primary)
                        .in_flight
                })
                .collect(),
            tally,
        })
    }

    /// The route's primary requests under way now (all backends of its split).
    fn primary_in_flight(&self) -> i64 {
        self.primary_in_flight.iter().map(IntGauge::get).sum()
    }

    pub(crate) fn config(&self) -> &Mirror {
        &self.config
    }

    /// The count of copies under way, to carry over to the next config.
    pub(crate) fn in_flight_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.in_flight)
    }

    /// Copies under way now.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Since start: copies dispatched, completed, dropped.
    pub(crate) fn accounting(&self) -> (u64, u64, u64) {
        (
            self.handles.requests.get(),
            self.handles.shadow.finished_total(),
            self.handles.dropped_total(),
        )
    }

    /// Since start: pairs matched, mismatched, skipped (when the route compares).
    pub(crate) fn compare_counts(&self) -> Option<(u64, u64, u64)> {
        self.judge.as_ref().map(|j| j.counts())
    }
}

/// Admit a copy of a request, before the primary goes upstream: counts it as dispatched and
/// takes its place under the route's limits. Returns the handle that sends it (once the
/// primary's request is final, `CopyHandle::send`) and feeds its body, or `None` when it was
/// dropped on the spot (and counted so). `declared_length`: the request's `Content-Length`;
/// `has_body`: whether a body follows its header.
pub(crate) fn admit(
    rt: &Arc<MirrorRuntime>,
    rm: &Arc<RouteMirror>,
    declared_length: Option<u64>,
    has_body: bool,
    start: Instant,
) -> Option<CopyHandle> {
    let h = &rm.handles;
    h.requests.inc();
    if !rm.pool.available() {
        // Ejected or failing its checks: not even a connection attempt.
        h.dropped(DropReason::Unhealthy);
        return None;
    }
    if declared_length.is_some_and(|n| n > rm.config.max_body_bytes) {
        h.dropped(DropReason::BodyTooLarge);
        return None;
    }
    // The request being copied is one of the primary's under way.
    let primary = rm.primary_in_flight().max(1);
    let before = rm.in_flight.fetch_add(1, Ordering::AcqRel);
    let reserved = shadow::Reserved::new(Arc::clone(rm));
    let refused = if before >= rm.config.max_in_flight {
        Some(DropReason::Overloaded)
    } else if rm.config.pacing == Pacing::Matched && before as i64 >= primary {
        Some(DropReason::Paced)
    } else {
        None
    };
    if let Some(reason) = refused {
        drop(reserved);
        h.dropped(reason);
        return None;
    }
    let under_way = before as i64 + 1;
    let ahead = under_way > AHEAD_FACTOR * primary + AHEAD_SLACK;
    if ahead {
        h.biased.inc();
    }
    rm.copies.record(under_way as u64, ahead);
    let pair = Arc::new(Pair::new(
        pair::Sinks {
            ratio: h.ratio.clone(),
            exact_ratio: Some(Arc::clone(&rm.ratio)),
            tally: rm.tally.clone(),
        },
        rm.judge.clone(),
    ));
    let (tx, rx) = if has_body {
        let (tx, rx) = unbounded_channel();
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    Some(CopyHandle {
        tx,
        teed: 0,
        max_body: rm.config.max_body_bytes,
        budget: Arc::clone(&rt.budget),
        pair: Arc::clone(&pair),
        pending: Some(shadow::Pending {
            rt: Arc::clone(rt),
            body: rx,
            pair,
            start,
            reserved,
        }),
    })
}
