//! Backends as pools of addresses: each backend's addresses (from its entries, names resolved
//! at load and again every `resolve_every`), which one a request goes to (`pick`: round robin
//! or least in flight, among the addresses in rotation), and whether the backend has any
//! address in rotation at all. The registry keeps each pool across reloads by backend name, so
//! health and ejection state survive them; `service` runs the checks and re-resolutions.
//!
//! Lives here: the pool, its registry and its view for the admin API; the per-address rules are
//! `endpoint`'s, the active checks `checks`', name resolution `dns`'.
//! Must not: block or take a lock on the request path (a pool's addresses are behind
//! `ArcSwap`), resolve names on the request path, or know about routes.

pub(crate) mod checks;
pub(crate) mod dns;
pub(crate) mod endpoint;
pub(crate) mod service;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::config::{parse_entry, Backend, Balance, Entry};
use crate::metrics::pool::PoolHandles;
use crate::metrics::Metrics;
use crate::upstream::peer_for;
use endpoint::{Attempt, Endpoint, Health, Picked, State};

/// What a pool is made of at one moment: its settings and its addresses.
pub(crate) struct View {
    pub backend: Backend,
    /// Each name's last good answer (names only), in entry order.
    pub(crate) answers: Vec<(String, Vec<SocketAddr>)>,
    pub endpoints: Vec<Arc<Endpoint>>,
}

/// One backend's addresses and their state.
pub(crate) struct Pool {
    pub name: String,
    view: ArcSwap<View>,
    next: AtomicUsize,
    pub(crate) handles: PoolHandles,
    /// A re-resolution is under way.
    resolving: AtomicBool,
    /// When the service last checked and last resolved (service-only).
    pub(crate) due: Mutex<Due>,
}

#[derive(Default)]
pub(crate) struct Due {
    pub checked: Option<Instant>,
    pub resolved: Option<Instant>,
}

impl Pool {
    fn new(backend: &Backend, metrics: &Metrics) -> Pool {
        let handles = metrics.pool_handles(&backend.name);
        let view = View::build(backend.clone(), answers_at_load(backend), &[]);
        Pool {
            name: backend.name.clone(),
            view: ArcSwap::from_pointee(view),
            next: AtomicUsize::new(0),
            handles,
            resolving: AtomicBool::new(false),
            due: Mutex::new(Due::default()),
        }
    }

    /// The pool as it is now.
    pub(crate) fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    /// Put a (re)loaded backend's settings and load-time addresses into force; the state of
    /// addresses it keeps carries over.
    fn configure(&self, backend: &Backend) {
        let old = self.view.load_full();
        if old.backend.pool.health.is_some() && backend.pool.health.is_none() {
            for e in &old.endpoints {
                e.health.checks_off();
            }
        }
        // Same entries: the answers in force are at least as fresh as the load's (a weights
        // change installs a config loaded long ago).
        let answers = if old.backend.entries == backend.entries {
            old.answers.clone()
        } else {
            answers_at_load(backend)
        };
        let view = View::build(backend.clone(), answers, &old.endpoints);
        self.view.store(Arc::new(view));
    }

    /// The backend's names resolved again: `answers` holds each name's new addresses (a name
    /// whose resolution failed keeps its last good answer). Returns whether the set changed.
    pub(crate) fn resolved(&self, answers: Vec<(String, Vec<SocketAddr>)>) -> bool {
        let old = self.view.load_full();
        let view = View::build(old.backend.clone(), answers, &old.endpoints);
        let changed = view.addrs() != old.addrs();
        if changed {
            log::info!(
                "backend {}: addresses now {:?} (were {:?})",
                self.name,
                view.addrs(),
                old.addrs()
            );
        }
        self.view.store(Arc::new(view));
        changed
    }

    /// Choose an address in rotation for one attempt, avoiding `tried`; `None` when there is
    /// none (then the backend has no healthy address, or every one was tried).
    pub(crate) fn pick(&self, tried: &[SocketAddr]) -> Option<Picked> {
        let view = self.view.load();
        let all = &view.endpoints;
        let n = all.len();
        if n == 0 {
            return None;
        }
        // A retry does not move the rotation on: the next request starts where it would have.
        let start = if tried.is_empty() {
            self.next.fetch_add(1, Ordering::Relaxed)
        } else {
            self.next.load(Ordering::Relaxed)
        };
        let mut now = None;
        let mut clock = || *now.get_or_insert_with(Instant::now);
        let usable = |e: &Arc<Endpoint>, clock: &mut dyn FnMut() -> Instant| {
            !tried.contains(&e.addr) && e.health.available(clock)
        };
        match view.backend.pool.balance {
            Balance::RoundRobin => (0..n)
                .map(|i| &all[(start + i) % n])
                .find(|e| usable(e, &mut clock))
                .map(Picked::new),
            Balance::LeastInFlight => {
                let mut best: Option<(&Arc<Endpoint>, usize)> = None;
                for i in 0..n {
                    let e = &all[(start + i) % n];
                    if !usable(e, &mut clock) {
                        continue;
                    }
                    let load = e.health.in_flight.load(Ordering::Acquire);
                    if best.is_none_or(|(_, b)| load < b) {
                        best = Some((e, load));
                    }
                }
                best.map(|(e, _)| Picked::new(e))
            }
        }
    }

    /// Any address, in turn, whatever its state: for a request already routed here whose
    /// backend lost its last healthy address in between (Envoy's panic routing).
    pub(crate) fn any(&self) -> Option<Picked> {
        let view = self.view.load();
        let n = view.endpoints.len();
        (n > 0).then(|| Picked::new(&view.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % n]))
    }

    /// Whether any address is in rotation.
    pub(crate) fn available(&self) -> bool {
        let view = self.view.load();
        let mut now = None;
        view.endpoints
            .iter()
            .any(|e| e.health.available(|| *now.get_or_insert_with(Instant::now)))
    }

    /// Whether an address in rotation other than those in `tried` remains.
    pub(crate) fn has_other(&self, tried: &[SocketAddr]) -> bool {
        let view = self.view.load();
        let mut now = None;
        view.endpoints.iter().any(|e| {
            !tried.contains(&e.addr) && e.health.available(|| *now.get_or_insert_with(Instant::now))
        })
    }

    /// Further attempts allowed after the first.
    pub(crate) fn retries(&self) -> u32 {
        self.view.load().backend.pool.retries
    }

    /// Record one attempt's outcome on `on`, ejecting it when its failures call for it and the
    /// backend's cap allows.
    pub(crate) fn report(&self, on: &Picked, attempt: Attempt) {
        let view = self.view.load();
        let rules = &view.backend.pool.outlier;
        let may_eject = || {
            let now = Instant::now();
            let n = view.endpoints.len();
            let ejected = view
                .endpoints
                .iter()
                .filter(|e| e.health.state(now) == State::Ejected)
                .count();
            ejected == 0 || (ejected + 1) * 100 <= n * rules.max_ejected_percent as usize
        };
        if let Some(backoff) = on.0.health.report(attempt, rules, Instant::now, may_eject) {
            self.handles.ejections.inc();
            log::warn!(
                "backend {}: {} ejected for {} after failing in a row",
                self.name,
                on.addr(),
                humantime::format_duration(backoff)
            );
            self.refresh_gauges();
        }
    }

    /// Publish the address counts by state.
    pub(crate) fn refresh_gauges(&self) {
        let view = self.view.load();
        let now = Instant::now();
        let mut counts = [0i64; 3];
        for e in &view.endpoints {
            counts[match e.health.state(now) {
                State::Healthy => 0,
                State::Ejected => 1,
                State::Unhealthy => 2,
            }] += 1;
        }
        self.handles.healthy.set(counts[0]);
        self.handles.ejected.set(counts[1]);
        self.handles.unhealthy.set(counts[2]);
    }

    /// Start a re-resolution unless one is under way; `false` when one is.
    pub(crate) fn begin_resolving(&self) -> bool {
        !self.resolving.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn end_resolving(&self) {
        self.resolving.store(false, Ordering::Release);
    }

    /// The per-address view for `GET /api/backends`.
    pub(crate) fn describe(&self) -> PoolView {
        let view = self.view.load();
        let now = Instant::now();
        let spec = &view.backend.pool;
        PoolView {
            entries: view.backend.entries.clone(),
            balance: spec.balance.as_str(),
            retries: spec.retries,
            health_checks: spec.health.is_some(),
            available: self.available(),
            addresses: view
                .endpoints
                .iter()
                .map(|e| AddressView {
                    address: e.addr,
                    from: e.entry.clone(),
                    state: e.health.state(now).as_str(),
                    ejected_for_ms: e
                        .health
                        .ejected_for(now)
                        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                    in_flight: e.health.in_flight.load(Ordering::Acquire),
                    attempts: e.health.attempts.load(Ordering::Relaxed),
                    failures: e.health.failures.load(Ordering::Relaxed),
                })
                .collect(),
        }
    }
}

/// Each name's addresses as the config load resolved them.
fn answers_at_load(b: &Backend) -> Vec<(String, Vec<SocketAddr>)> {
    b.entries
        .iter()
        .zip(&b.resolved)
        .filter(|(text, _)| matches!(parse_entry(text), Ok(Entry::Name { .. })))
        .map(|(text, addrs)| (text.clone(), addrs.clone()))
        .collect()
}

impl View {
    /// The endpoints of `backend` given each name's addresses; an address already in `old`
    /// keeps its state.
    fn build(
        backend: Backend,
        answers: Vec<(String, Vec<SocketAddr>)>,
        old: &[Arc<Endpoint>],
    ) -> View {
        let entries: Vec<(String, Entry)> = backend
            .entries
            .iter()
            .filter_map(|t| parse_entry(t).ok().map(|e| (t.clone(), e)))
            .collect();
        let mut endpoints: Vec<Arc<Endpoint>> = Vec::new();
        for (text, entry) in &entries {
            let addrs: Vec<SocketAddr> = match entry {
                Entry::Literal(a) => vec![*a],
                Entry::Name { .. } => answers
                    .iter()
                    .find(|(t, _)| t == text)
                    .map(|(_, a)| a.clone())
                    .unwrap_or_default(),
            };
            for addr in addrs {
                if endpoints.iter().any(|e| e.addr == addr) {
                    continue;
                }
                let health = old
                    .iter()
                    .find(|e| e.addr == addr)
                    .map_or_else(|| Arc::new(Health::default()), |e| Arc::clone(&e.health));
                endpoints.push(Arc::new(Endpoint {
                    addr,
                    peer: peer_for(&backend, addr),
                    entry: text.clone(),
                    health,
                }));
            }
        }
        View {
            backend,
            answers,
            endpoints,
        }
    }

    fn addrs(&self) -> Vec<SocketAddr> {
        self.endpoints.iter().map(|e| e.addr).collect()
    }
}

/// Every backend's pool, by name, kept across reloads.
#[derive(Default)]
pub(crate) struct Pools {
    by_name: Mutex<HashMap<String, Arc<Pool>>>,
}

impl Pools {
    /// The pools of `backends` (made or reconfigured); pools of backends no longer configured
    /// are let go.
    pub(crate) fn sync(&self, backends: &[Backend], metrics: &Metrics) -> Vec<Arc<Pool>> {
        let mut map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let pools: Vec<Arc<Pool>> = backends
            .iter()
            .map(|b| match map.get(&b.name) {
                Some(p) => {
                    p.configure(b);
                    Arc::clone(p)
                }
                None => {
                    let p = Arc::new(Pool::new(b, metrics));
                    map.insert(b.name.clone(), Arc::clone(&p));
                    p
                }
            })
            .collect();
        map.retain(|name, _| {
            let keep = backends.iter().any(|b| &b.name == name);
            if !keep {
                metrics.forget_pool(name);
            }
            keep
        });
        for p in &pools {
            p.refresh_gauges();
        }
        pools
    }

    /// Every pool now (for the service and the admin API).
    pub(crate) fn all(&self) -> Vec<Arc<Pool>> {
        let map = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        let mut pools: Vec<Arc<Pool>> = map.values().cloned().collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    }
}

/// A backend's pool for `GET /api/backends`.
#[derive(Debug, Serialize)]
pub(crate) struct PoolView {
    pub entries: Vec<String>,
    pub balance: &'static str,
    pub retries: u32,
    pub health_checks: bool,
    /// At least one address in rotation.
    pub available: bool,
    pub addresses: Vec<AddressView>,
}

#[derive(Debug, Serialize)]
pub(crate) struct AddressView {
    pub address: SocketAddr,
    /// The entry it came from, as written.
    pub from: String,
    pub state: &'static str,
    pub ejected_for_ms: Option<u64>,
    pub in_flight: usize,
    pub attempts: u64,
    pub failures: u64,
}

/// How long until something of a pool is due, at most.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// The default spec, for tests elsewhere.
#[cfg(test)]
pub(crate) fn test_spec() -> crate::config::PoolSpec {
    use crate::config::{defaults, Outlier, PoolSpec};
    PoolSpec {
        resolve_every: defaults::RESOLVE_EVERY,
        balance: Balance::RoundRobin,
        retries: defaults::RETRIES,
        health: None,
        outlier: Outlier {
            consecutive_errors: defaults::OUTLIER_CONSECUTIVE_ERRORS,
            consecutive_5xx: 0,
            base_ejection: defaults::OUTLIER_BASE_EJECTION,
            max_ejection: defaults::OUTLIER_MAX_EJECTION,
            max_ejected_percent: defaults::OUTLIER_MAX_EJECTED_PERCENT,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn pool(options: &str) -> Arc<Pool> {
        let yaml = format!(
            "listen: 127.0.0.1:8080\nbackends:\n  go: {{ addresses: [\"127.0.0.1:1\", \"127.0.0.2:1\", \"127.0.0.3:1\"]{options} }}\nroutes:\n  - name: api\n    split: {{ go: 1 }}\n"
        );
        let config = Config::from_yaml(&yaml).expect("config");
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        Pools::default()
            .sync(&config.live.backends, &metrics)
            .remove(0)
    }

    fn last_octet(p: &Picked) -> u8 {
        match p.addr().ip() {
            std::net::IpAddr::V4(v4) => v4.octets()[3],
            std::net::IpAddr::V6(_) => 0,
        }
    }

    #[test]
    fn round_robin_takes_turns_and_skips_what_was_tried() {
        let p = pool("");
        let order: Vec<u8> = (0..6)
            .map(|_| last_octet(&p.pick(&[]).expect("pick")))
            .collect();
        assert_eq!(order, vec![1, 2, 3, 1, 2, 3]);
        let tried = [p.view().endpoints[0].addr, p.view().endpoints[1].addr];
        assert_eq!(last_octet(&p.pick(&tried).expect("pick")), 3);
        assert!(p.has_other(&tried[..1]));
        let all: Vec<SocketAddr> = p.view().endpoints.iter().map(|e| e.addr).collect();
        assert!(p.pick(&all).is_none());
        assert!(!p.has_other(&all));
    }

    #[test]
    fn least_in_flight_prefers_the_idlest() {
        let p = pool(", balance: least_in_flight");
        let a = p.pick(&[]).expect("pick");
        let b = p.pick(&[]).expect("pick");
        assert_ne!(a.addr(), b.addr());
        let c = p.pick(&[]).expect("pick");
        let busy = [a.addr(), b.addr()];
        assert!(!busy.contains(&c.addr()));
        drop(b);
        // b's address is idle again: the next request goes there.
        assert_eq!(p.pick(&[]).expect("pick").addr(), busy[1]);
    }

    #[test]
    fn the_ejection_cap_keeps_addresses_in_rotation() {
        // 50% of 3: one may be ejected; a second is refused by the cap.
        let p = pool(", outlier: { consecutive_errors: 1 }");
        let eps = p.view().endpoints.clone();
        p.report(&Picked::new(&eps[0]), Attempt::Failed);
        p.report(&Picked::new(&eps[1]), Attempt::Failed);
        let states: Vec<State> = eps.iter().map(|e| e.health.state(Instant::now())).collect();
        assert_eq!(states, vec![State::Ejected, State::Healthy, State::Healthy]);
        assert_eq!(p.handles.ejections.get(), 1);
        assert_eq!(p.handles.ejected.get(), 1);
        assert!(p.available());
        // Never picked while ejected.
        for _ in 0..6 {
            assert_ne!(p.pick(&[]).expect("pick").addr(), eps[0].addr);
        }
        // A single-address backend may lose its only address: then none is available.
        let yaml = "listen: 127.0.0.1:8080\nbackends:\n  go: { address: \"127.0.0.1:1\", outlier: { consecutive_errors: 1 } }\nroutes:\n  - name: api\n    split: { go: 1 }\n";
        let config = Config::from_yaml(yaml).expect("config");
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        let one = Pools::default()
            .sync(&config.live.backends, &metrics)
            .remove(0);
        let only = one.pick(&[]).expect("pick");
        one.report(&only, Attempt::Failed);
        assert!(!one.available());
        assert!(one.pick(&[]).is_none());
        assert!(one.any().is_some(), "panic routing still has an address");
    }
}
