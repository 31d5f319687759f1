//! Building a [`Summary`]: the recorders' exact figures per route, backend and role over a
//! window and since start, the counts the caller hands in (mirror accounting, comparison
//! results), the backends' process readings, and the derived comparison.
//!
//! Lives here: assembling the model from plain inputs. Must not: reach into the proxy, the
//! mirror or the running config: whoever asks for a summary describes the routes in
//! [`RouteInput`]s.

use std::collections::BTreeMap;
use std::time::Duration;

use super::figures;
use super::model::{
    BackendSummary, CompareSummary, MirrorSummary, Pace, PairStats, ProcessStats, RouteAnalysis,
    RouteSummary, Stats, Summary, WebSocketStats, WebSocketSummary,
};
use super::recorder::{Book, Series};
use super::resources::Resources;
use crate::metrics::{Direction, Role};

/// What a summary needs to know about one route, from the config and counters in force.
#[derive(Debug, Clone)]
pub struct RouteInput {
    pub name: String,
    pub baseline: String,
    pub candidate: Option<String>,
    /// The backends of the split, in order (primary role).
    pub split: Vec<String>,
    pub mirror: Option<MirrorInput>,
    /// Pairs that matched, mismatched and were skipped, since start.
    pub compare: Option<(u64, u64, u64)>,
    /// The route's verdicts, when it has an `analysis`.
    pub analysis: Option<RouteAnalysis>,
    /// What runoff speaks to each backend of the route (`http1`, `h2c`, `h2`), by name.
    pub protocols: Vec<(String, &'static str)>,
}

impl RouteInput {
    /// The route's legs: each backend of its split as a primary, then its mirror's target as
    /// the shadow.
    pub fn legs(&self) -> impl Iterator<Item = (&str, Role)> {
        self.split
            .iter()
            .map(|b| (b.as_str(), Role::Primary))
            .chain(self.mirror.as_ref().map(|m| (m.to.as_str(), Role::Shadow)))
    }
}

/// A route's mirror and its accounting since start.
#[derive(Debug, Clone)]
pub struct MirrorInput {
    pub to: String,
    pub percent: f64,
    pub copies: u64,
    pub completed: u64,
    pub dropped: u64,
}

/// The summary over the last `window` (capped at the uptime) and since start.
pub fn summarize(
    book: &Book,
    resources: &Resources,
    routes: &[RouteInput],
    window: Duration,
) -> Summary {
    let uptime = book.started.elapsed().as_secs_f64();
    let window_secs = window.as_secs_f64().min(uptime).max(f64::MIN_POSITIVE);
    let stats_of = |series: Series, route: &str, backend: &str| {
        book.existing(series, route, backend)
            .map(|r| r.stats(window, window_secs, uptime))
            .unwrap_or_default()
    };
    let processes = resources.stats(window);
    let stats = |route: &str, backend: &str, role: Role| {
        let (mut w, mut t) = stats_of(Series::Upstream(role), route, backend);
        if role == Role::Primary {
            // Every answered request counts (runoff's own answers too); latency is
            // upstream-side, and the caller-side figure is kept beside it.
            let (cw, ct) = stats_of(Series::Caller, route, backend);
            w = Stats {
                latency_ms: w.latency_ms,
                caller_latency_ms: cw.latency_ms,
                ..cw
            };
            t = Stats {
                latency_ms: t.latency_ms,
                caller_latency_ms: ct.latency_ms,
                ..ct
            };
        }
        BackendSummary {
            backend: backend.to_string(),
            role: role.as_str().to_string(),
            protocol: None,
            window: w,
            total: t,
        }
    };
    let routes = routes
        .iter()
        .map(|r| {
            let backends: Vec<BackendSummary> = r
                .legs()
                .map(|(b, role)| BackendSummary {
                    protocol: r
                        .protocols
                        .iter()
                        .find(|(name, _)| name == b)
                        .map(|(_, p)| p.to_string()),
                    ..stats(&r.name, b, role)
                })
                .collect();
            let mirror = r.mirror.as_ref().map(|m| {
                let (w, t) = book
                    .existing(Series::Ratio, &r.name, "")
                    .map(|x| x.ratio_quantiles(window))
                    .unwrap_or_default();
                let (pw, pt) = book
                    .existing(Series::Copies, &r.name, "")
                    .map(|x| x.counts(window))
                    .unwrap_or_default();
                let pace = |(copies, ahead)| Pace { copies, ahead };
                let pair = |(pairs, ratio_p50, ratio_p90)| PairStats {
                    pairs,
                    ratio_p50,
                    ratio_p90,
                };
                MirrorSummary {
                    to: m.to.clone(),
                    percent: m.percent,
                    copies: m.copies,
                    completed: m.completed,
                    dropped: m.dropped,
                    in_flight: 0,
                    window: pair(w),
                    total: pair(t),
                    pace_window: pace(pw),
                    pace_total: pace(pt),
                }
            });
            let compare = r
                .compare
                .map(|(matched, mismatched, skipped)| CompareSummary {
                    matched,
                    mismatched,
                    skipped,
                    match_rate: (matched + mismatched > 0)
                        .then(|| matched as f64 / (matched + mismatched) as f64),
                });
            RouteSummary {
                name: r.name.clone(),
                baseline: r.baseline.clone(),
                candidate: r.candidate.clone(),
                backends,
                mirror,
                compare,
                comparison: None,
                analysis: r.analysis.clone(),
                websocket: websocket_rows(book, &r.name, window, (window_secs, uptime), &processes),
                websocket_comparison: None,
            }
        })
        .collect();
    let mut summary = Summary {
        version: env!("CARGO_PKG_VERSION").to_string(),
        generated_at: crate::access_log::now_rfc3339(),
        uptime_seconds: uptime,
        window_seconds: window_secs,
        routes,
        processes,
    };
    figures::derive(&mut summary);
    summary
}

/// A route's WebSocket rows: every (backend, role) that ever had a connection on it.
fn websocket_rows(
    book: &Book,
    route: &str,
    window: Duration,
    (window_secs, uptime): (f64, f64),
    processes: &BTreeMap<String, ProcessStats>,
) -> Vec<WebSocketSummary> {
    book.all_connections()
        .into_iter()
        .filter(|((r, _, _), _)| r == route)
        .map(|((_, backend, role), (open, peak, opened))| {
            let counts = |d: Direction| {
                book.existing(Series::WsMessages(role, d), route, &backend)
                    .map(|x| x.counts(window))
                    .unwrap_or_default()
            };
            let ((up_w, _), (up_t, _)) = counts(Direction::ToBackend);
            let ((down_w, _), (down_t, _)) = counts(Direction::ToClient);
            let (lat_w, lat_t) = book
                .existing(Series::WsLatency(role), route, &backend)
                .map(|x| x.stats(window, window_secs, uptime))
                .unwrap_or_default();
            let stats = |up: u64, down: u64, secs: f64, latency: Stats| WebSocketStats {
                messages_to_backend: up,
                messages_to_client: down,
                messages_per_second_to_backend: up as f64 / secs.max(f64::MIN_POSITIVE),
                messages_per_second_to_client: down as f64 / secs.max(f64::MIN_POSITIVE),
                latency_ms: latency.latency_ms,
            };
            let process = processes.get(&backend).filter(|p| p.alive);
            let idle = process.and_then(|p| p.idle_resident_memory_bytes);
            let open_to_backend = book.open_to(&backend);
            let memory_per_connection_bytes = process
                .zip(idle)
                .filter(|_| open_to_backend > 0)
                .map(|(p, idle)| {
                    (p.resident_memory_bytes as f64 - idle as f64) / open_to_backend as f64
                });
            WebSocketSummary {
                backend: backend.clone(),
                role: role.as_str().to_string(),
                open,
                peak,
                opened,
                window: stats(up_w, down_w, window_secs, lat_w),
                total: stats(up_t, down_t, uptime, lat_t),
                memory_per_connection_bytes,
                idle_resident_memory_bytes: idle,
            }
        })
        .collect()
}
