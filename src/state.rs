//! The running state: one consistent snapshot of the live config with its pre-built upstream
//! peers, metric handles, recorders and mirrors, behind `ArcSwap`, and what lives as long as
//! the process (metrics, the mirror runtime, recorders, comparison samples, process readings).
//!
//! Lives here: building a snapshot from a `Live` config (handles resolved, weights published),
//! swapping it in, describing it to analysis, and counting requests in flight for the drain.
//! Must not: make routing decisions, sample processes, or know about the demo.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus::IntCounter;

use crate::access_log::AccessLogger;
use crate::analysis::model::RouteAnalysis;
use crate::analysis::tally::{Side, Tally};
use crate::analysis::{verdict, Book, MirrorInput, Recorder, Resources, RouteInput, Series};
use crate::compare::store::{CompareStore, RouteSamples};
use crate::compare::Judge;
use crate::config::{defaults, Config, Force, Live, ProcessSpec, ServerSettings};
use crate::metrics::handles::PerLabel;
use crate::metrics::ConnectionRefusal;
use crate::metrics::ForceRefusal;
use crate::metrics::{BackendHandles, Metrics, RequestHandles, Role};
use crate::mirror::{Carried, MirrorRuntime, RouteMirror};
use crate::pool::{Pool, Pools};
use crate::redact::Redactor;
use crate::tls::Certs;
use crate::websocket::handshake::Dial;
use crate::websocket::shadow::WsMirror;
use crate::websocket::LazySide;
use http::header::HeaderName;

/// Per-backend state of a snapshot.
pub(crate) struct BackendState {
    /// Its addresses and their state (kept across reloads by name).
    pub pool: Arc<Pool>,
    pub primary: BackendHandles,
    /// Primary requests under way to this backend (carried across reloads by name), checked
    /// against the backend's `max_in_flight`; counted only while the backend has one (a
    /// reload that adds a limit starts from the requests admitted after it).
    pub in_flight: Arc<AtomicUsize>,
}

/// Per-route state of a snapshot.
pub(crate) struct RouteState {
    /// Primary-role handles per split entry, in split order.
    pub primary: Vec<Arc<RequestHandles>>,
    /// Primary-role upstream-side latency recorders per split entry, in split order.
    pub primary_latency: Vec<Arc<Recorder>>,
    /// Primary-role caller-side recorders per split entry, in split order.
    pub primary_caller: Vec<Arc<Recorder>>,
    /// The route's mirror, if it has one.
    pub mirror: Option<Arc<RouteMirror>>,
    /// The route's verdict tally (routes with an `analysis`), and which side each split
    /// entry's primaries count for.
    pub tally: Option<Arc<Tally>>,
    pub sides: Vec<Option<Side>>,
    /// What the route is, for telling whether a new config changed it.
    fingerprint: String,
    /// Ignored force headers, by reason.
    pub force_refused: PerLabel<ForceRefusal>,
    /// The secret `force.secret_env` names, read when the config loads (`None` when the route
    /// asks for none; empty when the variable is unset, then nothing is honoured).
    pub force_secret: Option<Vec<u8>>,
    /// Headers only runoff adds, removed from what a caller sent before it goes upstream: the
    /// force header and its secret header (the route's and the default ones).
    pub strip: Vec<HeaderName>,
    /// The mirror marker header (the route's, else the default): removed too, unless the peer
    /// is a trusted proxy.
    pub marker: HeaderName,
    /// What the route never keeps in the clear (its access log lines, its samples).
    pub redact: Arc<Redactor>,
    /// WebSocket counting per split entry (made on first use), and the WebSocket mirror.
    pub websocket: RouteWebSocket,
    /// Per split entry: requests for its backend with no healthy address answered 503, and
    /// (with `on_unhealthy.fallback`) the ones the fallback served instead.
    pub unhealthy_refused: Vec<IntCounter>,
    pub failover: Vec<Option<IntCounter>>,
    /// Where failed-over requests' latencies go: never into the summary or a verdict as the
    /// fallback's own (their traffic is not the fallback's share).
    pub failover_recorders: Option<(Arc<Recorder>, Arc<Recorder>)>,
}

/// A route's WebSocket state.
pub(crate) struct RouteWebSocket {
    pub primary: Vec<LazySide>,
    pub mirror: Option<Arc<WsMirror>>,
}

/// One live config and everything derived from it.
pub(crate) struct Snapshot {
    pub live: Arc<Live>,
    pub backends: Vec<BackendState>,
    pub routes: Vec<RouteState>,
    /// Redaction for requests no route matched.
    pub redact: Arc<Redactor>,
}

/// What a snapshot is built with: the process-wide parts it resolves handles from.
struct Parts<'a> {
    metrics: &'a Metrics,
    pools: &'a Pools,
    compare_store: &'a Arc<CompareStore>,
    book: &'a Book,
}

impl Snapshot {
    /// Build peers and metric handles for `live`, and publish its split weights. Counters of
    /// things under way (per-backend and per-mirror in-flight) carry over from `previous` by
    /// name, so a reload does not reset the limits' view of the world.
    fn build(live: Arc<Live>, parts: &Parts<'_>, previous: Option<&Snapshot>) -> Snapshot {
        let metrics = parts.metrics;
        let pools = parts.pools.sync(&live.backends, metrics);
        let backends: Vec<BackendState> = live
            .backends
            .iter()
            .zip(pools)
            .map(|(b, pool)| BackendState {
                pool,
                primary: metrics.backend_handles(&b.name, Role::Primary),
                in_flight: previous
                    .and_then(|p| p.backend_in_flight(&b.name))
                    .unwrap_or_default(),
            })
            .collect();
        let routes = live
            .routes
            .iter()
            .map(|r| {
                let fingerprint = fingerprint(r, &live);
                let tally = r.analysis.as_ref().map(|_| {
                    let tally = parts.book.tally(&r.name);
                    // A route that changed (a reload, an override, a ramp step) starts its
                    // analysis again: what came before was another experiment.
                    let before = previous.and_then(|p| p.fingerprint_of(&r.name));
                    if before.is_some_and(|f| f != fingerprint) {
                        tally.restart("the route changed (reload, override or ramp step)");
                    }
                    tally
                });
                let candidate = r.candidate();
                let default_force = Force {
                    header: HeaderName::from_static(defaults::FORCE_HEADER),
                    from: None,
                    secret_env: None,
                };
                let mut strip = vec![
                    default_force.header.clone(),
                    default_force.secret_header(),
                ];
                if let Some(f) = &r.force {
                    strip.push(f.header.clone());
                    strip.push(f.secret_header());
                }
                strip.dedup();
                let force_secret = r
                    .force
                    .as_ref()
                    .and_then(|f| f.secret_env.as_ref())
                    .map(|var| match std::env::var(var) {
                        Ok(s) if !s.is_empty() => s.into_bytes(),
                        _ => {
                            log::error!(
                                "route {}: force.secret_env: {var} is unset or empty; no force header will be honoured",
                                r.name
                            );
                            Vec::new()
                        }
                    });
                let sides = r
                    .split
                    .iter()
                    .map(|e| {
                        if tally.is_none() {
                            None
                        } else if e.backend == r.baseline {
                            Some(Side::Baseline)
                        } else if r.mirror.is_none() && Some(e.backend) == candidate {
                            Some(Side::Candidate)
                        } else {
                            None
                        }
                    })
                    .collect();
                let redact = Arc::new(Redactor::new(
                    &live.redact,
                    r.mirror.as_ref().map_or(&[][..], |m| &m.strip_headers),
                ));
                let judge = r.compare.as_ref().zip(r.mirror.as_ref()).map(|(c, _)| {
                    Arc::new(Judge::new(
                        c.clone(),
                        metrics.compare_handles(&r.name),
                        Arc::clone(parts.compare_store),
                        RouteSamples {
                            route: r.name.clone(),
                            capacity: c.samples,
                            redact: Arc::clone(&redact),
                        },
                        tally.clone(),
                    ))
                });
                let carried = previous
                    .and_then(|p| p.mirror_in_flight(&r.name))
                    .unwrap_or_default();
                let recorders = |series: Series| -> Vec<Arc<Recorder>> {
                    r.split
                        .iter()
                        .map(|e| {
                            let backend = &live.backends[e.backend].name;
                            parts.book.recorder(series, &r.name, backend)
                        })
                        .collect()
                };
                RouteState {
                    primary: r
                        .split
                        .iter()
                        .map(|e| {
                            let backend = &live.backends[e.backend].name;
                            metrics.control.set_route_weight(&r.name, backend, e.weight);
                            Arc::new(metrics.request_handles(&r.name, backend, Role::Primary))
                        })
                        .collect(),
                    primary_latency: recorders(Series::Upstream(Role::Primary)),
                    primary_caller: recorders(Series::Caller),
                    mirror: RouteMirror::new(
                        r,
                        &live,
                        metrics,
                        parts.book,
                        judge,
                        Carried {
                            pool: r
                                .mirror
                                .as_ref()
                                .and_then(|m| backends.get(m.to))
                                .map(|b| Arc::clone(&b.pool)),
                            in_flight: carried,
                        },
                        tally.clone(),
                    )
                    .map(Arc::new),
                    tally,
                    sides,
                    fingerprint,
                    force_refused: metrics.force_refusals(&r.name),
                    force_secret,
                    strip,
                    marker: r.mirror.as_ref().map_or_else(
                        || HeaderName::from_static(defaults::MIRROR_MARKER_HEADER),
                        |m| m.marker_header.clone(),
                    ),
                    redact,
                    websocket: RouteWebSocket {
                        primary: r.split.iter().map(|_| LazySide::default()).collect(),
                        mirror: r.mirror.as_ref().filter(|m| m.websocket).and_then(|m| {
                            let b = live.backends.get(m.to)?;
                            Some(Arc::new(WsMirror::new(
                                m,
                                Arc::clone(&backends[m.to].pool),
                                Dial {
                                    connect_timeout: b.connect_timeout,
                                    read_timeout: b.read_timeout,
                                },
                                metrics.mirror_handles(&r.name, &b.name),
                                &r.name,
                                &b.name,
                            )))
                        }),
                    },
                    unhealthy_refused: r
                        .split
                        .iter()
                        .map(|e| {
                            metrics.unhealthy_refused_handle(&r.name, &live.backends[e.backend].name)
                        })
                        .collect(),
                    failover: r
                        .split
                        .iter()
                        .map(|e| {
                            r.fallback.filter(|f| *f != e.backend).map(|f| {
                                metrics.failover_handle(
                                    &r.name,
                                    &live.backends[e.backend].name,
                                    &live.backends[f].name,
                                )
                            })
                        })
                        .collect(),
                    failover_recorders: r.fallback.map(|_| {
                        let now = std::time::Instant::now();
                        (Arc::new(Recorder::new(now)), Arc::new(Recorder::new(now)))
                    }),
                }
            })
            .collect();
        Snapshot {
            redact: Arc::new(Redactor::new(&live.redact, &[])),
            live,
            backends,
            routes,
        }
    }

    fn backend_in_flight(&self, name: &str) -> Option<Arc<AtomicUsize>> {
        let i = self.live.backend_index(name)?;
        Some(Arc::clone(&self.backends[i].in_flight))
    }

    fn mirror_in_flight(&self, route: &str) -> Option<Arc<AtomicUsize>> {
        let i = self.live.route_index(route)?;
        Some(self.routes[i].mirror.as_ref()?.in_flight_counter())
    }

    fn fingerprint_of(&self, route: &str) -> Option<&str> {
        let i = self.live.route_index(route)?;
        Some(self.routes[i].fingerprint.as_str())
    }

    /// Each route with an `analysis`: its verdicts now (from its tally).
    pub(crate) fn verdicts(&self) -> Vec<(String, RouteAnalysis)> {
        self.live
            .routes
            .iter()
            .zip(&self.routes)
            .filter_map(|(r, rs)| Some((r.name.clone(), self.verdict(r, rs)?)))
            .collect()
    }

    /// A route's verdicts now, from its tally (routes with an `analysis`). A candidate with no
    /// healthy address fails, whatever its figures say: its traffic is being refused or served
    /// by another backend.
    fn verdict(&self, r: &crate::config::Route, rs: &RouteState) -> Option<RouteAnalysis> {
        let cfg = r.analysis.as_ref()?;
        let mut analysis =
            verdict::evaluate(cfg, r.mirror.is_some(), &rs.tally.as_ref()?.snapshot()?);
        let Some(c) = r.candidate() else {
            return Some(analysis);
        };
        if self.backends[c].pool.available() {
            return Some(analysis);
        }
        analysis.overall = crate::analysis::model::Verdict::Fail;
        analysis.explanation = format!(
            "fail: the candidate `{}` has no healthy address (ejected or failing its health checks). {}",
            self.live.backends[c].name, analysis.explanation
        );
        Some(analysis)
    }

    /// The (route, backend) pairs whose weights this snapshot publishes.
    fn weight_series(&self) -> Vec<(String, String)> {
        self.live
            .routes
            .iter()
            .flat_map(|r| {
                r.split
                    .iter()
                    .map(|e| (r.name.clone(), self.live.backends[e.backend].name.clone()))
            })
            .collect()
    }

    /// The routes as analysis needs them for a summary: names, roles, counts since start.
    pub(crate) fn route_inputs(&self) -> Vec<RouteInput> {
        let live = &self.live;
        let name = |i: usize| live.backends[i].name.clone();
        live.routes
            .iter()
            .zip(&self.routes)
            .map(|(r, rs)| RouteInput {
                protocols: r
                    .split
                    .iter()
                    .map(|e| e.backend)
                    .chain(r.mirror.as_ref().map(|m| m.to))
                    .filter_map(|b| live.backends.get(b))
                    .map(|b| (b.name.clone(), b.protocol.as_str()))
                    .collect(),
                name: r.name.clone(),
                baseline: name(r.baseline),
                candidate: r.candidate().map(name),
                split: r.split.iter().map(|e| name(e.backend)).collect(),
                mirror: r.mirror.as_ref().zip(rs.mirror.as_ref()).map(|(m, rm)| {
                    let (copies, completed, dropped) = rm.accounting();
                    MirrorInput {
                        to: name(m.to),
                        percent: m.percent,
                        copies,
                        completed,
                        dropped,
                    }
                }),
                compare: rs.mirror.as_ref().and_then(|rm| rm.compare_counts()),
                analysis: self.verdict(r, rs),
            })
            .collect()
    }

    /// The backends whose process is sampled, by name.
    pub(crate) fn process_specs(&self) -> Vec<(String, ProcessSpec)> {
        self.live
            .backends
            .iter()
            .filter_map(|b| b.process.clone().map(|p| (b.name.clone(), p)))
            .collect()
    }
}

/// A route as it is routed: itself and the addresses of its backends. Two configs with the
/// same fingerprint for a route run the same experiment on it.
fn fingerprint(r: &crate::config::Route, live: &Live) -> String {
    let backends: Vec<String> = r
        .split
        .iter()
        .map(|e| e.backend)
        .chain(r.mirror.as_ref().map(|m| m.to))
        .filter_map(|b| live.backends.get(b))
        .map(|b| format!("{}={}", b.name, b.address()))
        .collect();
    format!("{r:?} {backends:?}")
}

/// State shared by the proxy service, the admin service and the drain logic.
pub(crate) struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLogger,
    pub mirrors: Arc<MirrorRuntime>,
    /// Mismatch samples and per-path counts, kept across reloads.
    pub compare_store: Arc<CompareStore>,
    /// Exact latency recorders for summaries, kept across reloads.
    pub book: Arc<Book>,
    /// Backend process readings (`process:` configured), filled by the sampling thread.
    pub resources: Arc<Resources>,
    /// Requests under way (all routes), for draining on shutdown.
    in_flight: AtomicUsize,
    /// Raised when a graceful stop begins: upgraded connections close (1001) on it.
    drain: tokio::sync::watch::Sender<bool>,
    /// The `server` settings in force (restart-only: a reload never changes them).
    pub server: ServerSettings,
    /// Callers' connections open now, bounded by `server.max_connections`.
    pub connections: Arc<Connections>,
    /// Every backend's addresses and their state, kept across reloads.
    pub pools: Arc<Pools>,
    /// The TLS listeners' certificates (read again on every reload).
    pub tls: Vec<Arc<Certs>>,
}

impl Shared {
    /// `shadow_threads`: the runtime shadow copies run on (`mirror::start_shadow_threads`).
    pub(crate) fn new(
        config: &Config,
        metrics: Arc<Metrics>,
        access_log: AccessLogger,
        shadow_threads: Option<tokio::runtime::Handle>,
    ) -> Shared {
        let server = &config.startup.server;
        let mirrors = Arc::new(MirrorRuntime::new(
            server.mirror_memory_bytes,
            server.upstream_keepalive_pool_size,
            access_log.clone(),
            shadow_threads,
        ));
        let compare_store = Arc::new(CompareStore::default());
        let book = Arc::new(Book::default());
        let connections = Arc::new(Connections {
            max: i64::try_from(server.max_connections).unwrap_or(i64::MAX),
            gauge: metrics.downstream_connections.clone(),
            refused: metrics
                .connections_refused
                .series(ConnectionRefusal::TooManyConnections),
        });
        let pools = Arc::new(Pools::default());
        let snapshot = Snapshot::build(
            Arc::new(config.live.clone()),
            &Parts {
                metrics: &metrics,
                pools: &pools,
                compare_store: &compare_store,
                book: &book,
            },
            None,
        );
        Shared {
            compare_store,
            book,
            resources: Arc::new(Resources::default()),
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            access_log,
            mirrors,
            in_flight: AtomicUsize::new(0),
            drain: tokio::sync::watch::Sender::new(false),
            server: server.clone(),
            connections,
            pools,
            tls: config
                .startup
                .listen_tls
                .iter()
                .filter_map(|l| match Certs::load(l) {
                    Ok(c) => Some(Arc::new(c)),
                    Err(e) => {
                        // Not seen: the config's validation loaded them already.
                        log::error!("{e}; the listener is not started");
                        None
                    }
                })
                .collect(),
        }
    }

    /// Read the TLS listeners' certificates again (a reload); the first file that fails to
    /// load fails it all, and the certificates in force stay.
    pub(crate) fn reload_certs(
        &self,
        listeners: &[crate::config::TlsListener],
    ) -> Result<(), String> {
        let mut fresh = Vec::new();
        for certs in &self.tls {
            if let Some(l) = listeners.iter().find(|l| l.address == certs.address) {
                fresh.push((certs, Certs::load(l)?));
            }
        }
        for (certs, loaded) in fresh {
            certs.replace(loaded);
        }
        Ok(())
    }

    /// Watch for the start of a graceful stop.
    pub(crate) fn draining(&self) -> tokio::sync::watch::Receiver<bool> {
        self.drain.subscribe()
    }

    /// A graceful stop has begun: upgraded connections are told to close.
    pub(crate) fn start_drain(&self) {
        self.drain.send_replace(true);
    }

    /// Put a new live config into force. Requests already under way keep the snapshot they
    /// started with; the next request sees the new one.
    pub(crate) fn install(&self, live: Arc<Live>) {
        let old = self.snapshot.load_full();
        let new = Snapshot::build(
            live,
            &Parts {
                metrics: &self.metrics,
                pools: &self.pools,
                compare_store: &self.compare_store,
                book: &self.book,
            },
            Some(&old),
        );
        let keep = new.weight_series();
        for (route, backend) in old.weight_series() {
            if !keep.contains(&(route.clone(), backend.clone())) {
                self.metrics.control.remove_route_weight(&route, &backend);
            }
        }
        self.snapshot.store(Arc::new(new));
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Count a request as under way until the guard drops.
    pub(crate) fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            shared: Arc::clone(self),
        }
    }
}

/// Callers' connections open now (the `runoff_downstream_connections` gauge is the count),
/// and the bound on them.
pub(crate) struct Connections {
    max: i64,
    gauge: prometheus::IntGauge,
    refused: Option<prometheus::IntCounter>,
}

impl Connections {
    /// A slot for a newly accepted connection, or `None` (counted) when `max` are open.
    pub(crate) fn admit(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let slot = self.hold();
        if self.gauge.get() > self.max {
            drop(slot);
            if let Some(c) = &self.refused {
                c.inc();
            }
            return None;
        }
        Some(slot)
    }

    /// A slot for a connection already admitted that outlives its first holder (an upgraded
    /// WebSocket relayed in its own task): never refused.
    pub(crate) fn hold(self: &Arc<Self>) -> ConnectionSlot {
        self.gauge.inc();
        ConnectionSlot(Arc::clone(self))
    }
}

/// One open connection; released on drop.
pub(crate) struct ConnectionSlot(Arc<Connections>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.gauge.dec();
    }
}

/// Decrements the in-flight count when the request's context is dropped.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
