//! The running state the proxy reads per request: one consistent snapshot of the config with
//! its pre-built upstream peers and metric handles, behind `ArcSwap`.
//!
//! Lives here: building a snapshot from a `Config` (handles resolved, weights published) and the
//! shared state handed to the proxy and the drain logic. Must not: make routing decisions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;

use crate::access_log::AccessLogger;
use crate::compare::store::{CompareStore, RouteSamples};
use crate::config::{Backend, Config};
use crate::metrics::{BackendHandles, Metrics, RequestHandles, Role};
use crate::mirror::{CompareCtx, MirrorRuntime, RouteMirror};
use crate::summary::{Book, Recorder};

/// Per-backend state of a snapshot.
pub struct BackendState {
    pub peer: HttpPeer,
    pub primary: BackendHandles,
    /// Primary requests under way to this backend (carried across reloads by name), checked
    /// against the backend's `max_in_flight`; counted only while the backend has one (a
    /// reload that adds a limit starts from the requests admitted after it).
    pub in_flight: Arc<AtomicUsize>,
}

/// Per-route state of a snapshot.
pub struct RouteState {
    /// Primary-role handles per split entry, in split order.
    pub primary: Vec<Arc<RequestHandles>>,
    /// Primary-role latency recorders per split entry, in split order.
    pub primary_latency: Vec<Arc<Recorder>>,
    /// The route's mirror, if it has one.
    pub mirror: Option<Arc<RouteMirror>>,
}

/// One config and everything derived from it.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub backends: Vec<BackendState>,
    pub routes: Vec<RouteState>,
}

impl Snapshot {
    /// Build peers and metric handles for `config`, and publish its split weights. Counters
    /// of things under way (per-backend and per-mirror in-flight) carry over from `previous`
    /// by name, so a reload does not reset the limits' view of the world.
    pub fn build(
        config: Arc<Config>,
        metrics: &Metrics,
        compare_store: &Arc<CompareStore>,
        book: &Book,
        previous: Option<&Snapshot>,
    ) -> Snapshot {
        let backends = config
            .backends
            .iter()
            .map(|b| BackendState {
                peer: peer_for(b),
                primary: metrics.backend_handles(&b.name, Role::Primary),
                in_flight: previous
                    .and_then(|p| p.backend_in_flight(&b.name))
                    .unwrap_or_default(),
            })
            .collect();
        let routes = config
            .routes
            .iter()
            .map(|r| RouteState {
                primary: r
                    .split
                    .iter()
                    .map(|e| {
                        let backend = &config.backends[e.backend].name;
                        metrics.set_route_weight(&r.name, backend, e.weight);
                        Arc::new(metrics.request_handles(&r.name, backend, Role::Primary))
                    })
                    .collect(),
                primary_latency: r
                    .split
                    .iter()
                    .map(|e| book.latency(&r.name, &config.backends[e.backend].name, "primary"))
                    .collect(),
                mirror: r.mirror.as_ref().map(|m| {
                    let backend = &config.backends[m.to];
                    Arc::new(RouteMirror {
                        config: m.clone(),
                        handles: metrics.mirror_handles(&r.name, &backend.name),
                        peer: peer_for(backend),
                        route_name: r.name.clone(),
                        backend_name: backend.name.clone(),
                        request_id_header: config.forwarding.request_id_header.clone(),
                        in_flight: previous
                            .and_then(|p| p.mirror_in_flight(&r.name))
                            .unwrap_or_default(),
                        shadow_latency: book.latency(&r.name, &backend.name, "shadow"),
                        ratio: book.ratio(&r.name),
                        compare: r.compare.as_ref().map(|c| {
                            Arc::new(CompareCtx {
                                config: c.clone(),
                                handles: metrics.compare_handles(&r.name),
                                store: Arc::clone(compare_store),
                                samples: RouteSamples {
                                    route: r.name.clone(),
                                    capacity: c.samples,
                                    redact: m.strip_headers.clone(),
                                },
                            })
                        }),
                    })
                }),
            })
            .collect();
        Snapshot {
            config,
            backends,
            routes,
        }
    }

    fn backend_in_flight(&self, name: &str) -> Option<Arc<AtomicUsize>> {
        let i = self.config.backend_index(name)?;
        Some(Arc::clone(&self.backends[i].in_flight))
    }

    fn mirror_in_flight(&self, route: &str) -> Option<Arc<AtomicUsize>> {
        let i = self.config.routes.iter().position(|r| r.name == route)?;
        let m = self.routes[i].mirror.as_ref()?;
        Some(Arc::clone(&m.in_flight))
    }

    /// The (route, backend) pairs whose weights this snapshot publishes.
    fn weight_series(&self) -> Vec<(String, String)> {
        self.config
            .routes
            .iter()
            .flat_map(|r| {
                r.split
                    .iter()
                    .map(|e| (r.name.clone(), self.config.backends[e.backend].name.clone()))
            })
            .collect()
    }
}

/// An HTTP/1 plaintext peer with the backend's timeouts (Pingora's defaults are none).
fn peer_for(b: &Backend) -> HttpPeer {
    let mut peer = HttpPeer::new(b.addr, false, String::new());
    peer.options.connection_timeout = Some(b.connect_timeout);
    peer.options.read_timeout = Some(b.read_timeout);
    peer.options.write_timeout = Some(b.write_timeout);
    // Pooled upstream connections idle longer than this are closed by runoff first, which
    // avoids racing a backend's own keep-alive timeout (Node's default is 5 s).
    peer.options.idle_timeout = Some(std::time::Duration::from_secs(4));
    peer
}

/// State shared by the proxy service, the admin service and the drain logic.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLogger,
    pub mirrors: Arc<MirrorRuntime>,
    /// Mismatch samples and per-path counts, kept across reloads.
    pub compare_store: Arc<CompareStore>,
    /// Exact latency recorders for summaries, kept across reloads.
    pub book: Arc<Book>,
    /// Backend process readings (`process:` configured).
    pub resources: crate::resources::Resources,
    /// Requests under way (all routes), for draining on shutdown.
    in_flight: AtomicUsize,
}

impl Shared {
    pub fn new(config: Arc<Config>, metrics: Arc<Metrics>, access_log: AccessLogger) -> Shared {
        let mirrors = Arc::new(MirrorRuntime::new(
            config.server.mirror_memory_bytes,
            config.server.upstream_keepalive_pool_size,
            access_log.clone(),
        ));
        let compare_store = Arc::new(CompareStore::default());
        let book = Arc::new(Book::default());
        let snapshot = Snapshot::build(config, &metrics, &compare_store, &book, None);
        Shared {
            compare_store,
            book,
            resources: crate::resources::Resources::default(),
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            access_log,
            mirrors,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Put a new config into force. Requests already under way keep the snapshot they started
    /// with; the next request sees the new one.
    pub fn install(&self, config: Arc<Config>) {
        let old = self.snapshot.load_full();
        let new = Snapshot::build(
            config,
            &self.metrics,
            &self.compare_store,
            &self.book,
            Some(&old),
        );
        let keep = new.weight_series();
        for (route, backend) in old.weight_series() {
            if !keep.contains(&(route.clone(), backend.clone())) {
                self.metrics.remove_route_weight(&route, &backend);
            }
        }
        self.snapshot.store(Arc::new(new));
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Count a request as under way until the guard drops.
    pub fn track(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            shared: Arc::clone(self),
        }
    }
}

/// Decrements the in-flight count when the request's context is dropped.
pub struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
