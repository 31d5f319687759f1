//! Live control: reloading the config file, and runtime overrides of split weights and mirror
//! sampling set through the admin API.
//!
//! Lives here: what a reload may change live and what waits for a restart, the overrides and
//! how they combine with the file, and the JSON views of the running config. Must not: touch
//! requests (the proxy picks up a new snapshot on its next request), or let a bad file replace
//! a good config: an invalid reload changes nothing but the error counter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{AccessLog, Config, Mirror, StickyKey};
use crate::proxy::state::Shared;
use crate::summary::model::{
    BackendSummary, CompareSummary, MirrorSummary, PairStats, RouteSummary, Summary,
};
use std::time::Duration;

/// Why a control action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("runoff was started without a config file, so there is nothing to reload")]
    NoFile,
    #[error("invalid config: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("no route named `{0}`")]
    NoRoute(String),
    #[error("{0}")]
    BadRequest(String),
}

/// A runtime override of one route, in force until the next file reload.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RouteOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<IndexMap<String, u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorOverride>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MirrorOverride {
    pub to: String,
    pub percent: f64,
}

/// What a successful reload reports.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Settings that changed in the file but only apply after a restart.
    pub ignored_until_restart: Vec<String>,
}

struct State {
    /// The config as last loaded from the file (restart-only settings pinned to the running
    /// values).
    file: Arc<Config>,
    overrides: BTreeMap<String, RouteOverride>,
}

/// Live control of a running runoff.
pub struct Control {
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl Control {
    pub fn new(shared: Arc<Shared>, path: Option<PathBuf>) -> Control {
        let file = Arc::clone(&shared.snapshot.load().config);
        Control {
            shared,
            path,
            state: Mutex::new(State {
                file,
                overrides: BTreeMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-read the config file and put it in force. Blocking (file read, DNS): call it off
    /// the request path. Runtime overrides are dropped: the file is the truth again.
    pub fn reload(&self) -> Result<ReloadReport, ControlError> {
        let path = self.path.as_ref().ok_or(ControlError::NoFile)?;
        let mut st = self.lock();
        let metrics = &self.shared.metrics;
        let mut new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                metrics.reload(false);
                let problems = e.problems();
                log::error!(
                    "config reload from {} rejected, the running config stays in force:\n  {}",
                    path.display(),
                    problems.join("\n  ")
                );
                return Err(ControlError::Invalid(problems));
            }
        };
        let ignored = pin_restart_only(&mut new, &st.file);
        for line in &ignored {
            log::warn!("config reload: {line}");
        }
        st.file = Arc::new(new);
        st.overrides.clear();
        self.apply(&st);
        metrics.reload(true);
        log::info!("config reloaded from {}", path.display());
        Ok(ReloadReport {
            ignored_until_restart: ignored,
        })
    }

    fn apply(&self, st: &State) {
        self.shared
            .install(Arc::new(effective(&st.file, &st.overrides)));
    }

    /// Set split weights by backend name (others keep theirs). The split's order stays the
    /// file's, so sticky ranges move only as the new weights require.
    pub fn set_weights(
        &self,
        route: &str,
        body: &Value,
    ) -> Result<IndexMap<String, u32>, ControlError> {
        let Some(obj) = body.as_object() else {
            return Err(ControlError::BadRequest(
                "expected a JSON object of backend name to weight, e.g. {\"node\": 80, \"go\": 20}"
                    .into(),
            ));
        };
        let mut st = self.lock();
        let current = effective(&st.file, &st.overrides);
        let r = current
            .routes
            .iter()
            .find(|r| r.name == route)
            .ok_or_else(|| ControlError::NoRoute(route.to_string()))?;
        let mut weights: IndexMap<String, u32> = r
            .split
            .iter()
            .map(|e| (current.backends[e.backend].name.clone(), e.weight))
            .collect();
        for (name, value) in obj {
            let Some(slot) = weights.get_mut(name) else {
                return Err(ControlError::BadRequest(format!(
                    "`{name}` is not a backend of route `{route}`'s split (its backends: {})",
                    weights.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            };
            let w = value.as_u64().filter(|w| *w <= 1_000_000).ok_or_else(|| {
                ControlError::BadRequest(format!(
                    "{name}: weight must be an integer from 0 to 1000000, got {value}"
                ))
            })?;
            *slot = w as u32;
        }
        if weights.values().all(|w| *w == 0) {
            return Err(ControlError::BadRequest(
                "weights add up to 0: at least one must be > 0".into(),
            ));
        }
        st.overrides.entry(route.to_string()).or_default().weights = Some(weights.clone());
        self.apply(&st);
        log::info!("route {route}: weights set to {weights:?} (runtime override)");
        Ok(weights)
    }

    /// Set a route's mirror sampling (`percent: 0` is the kill switch); with `to`, switch a
    /// mirror on for a route that has none (other settings at their defaults).
    pub fn set_mirror(&self, route: &str, body: &Value) -> Result<MirrorOverride, ControlError> {
        let percent = body
            .get("percent")
            .and_then(Value::as_f64)
            .filter(|p| (0.0..=100.0).contains(p))
            .ok_or_else(|| {
                ControlError::BadRequest(
                    "`percent` must be a number from 0 to 100, e.g. {\"percent\": 0}".into(),
                )
            })?;
        let to = body.get("to").map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| ControlError::BadRequest("`to` must be a backend name".into()))
        });
        let mut st = self.lock();
        let current = effective(&st.file, &st.overrides);
        let r = current
            .routes
            .iter()
            .find(|r| r.name == route)
            .ok_or_else(|| ControlError::NoRoute(route.to_string()))?;
        let to = match (to.transpose()?, &r.mirror) {
            (Some(name), _) => {
                if current.backend_index(&name).is_none() {
                    return Err(ControlError::BadRequest(format!("`{name}`: no such backend")));
                }
                name
            }
            (None, Some(m)) => current.backends[m.to].name.clone(),
            (None, None) => {
                return Err(ControlError::BadRequest(format!(
                    "route `{route}` has no mirror: say where copies go, e.g. {{\"to\": \"go\", \"percent\": 10}}"
                )))
            }
        };
        let o = MirrorOverride { to, percent };
        st.overrides.entry(route.to_string()).or_default().mirror = Some(o.clone());
        self.apply(&st);
        log::info!(
            "route {route}: mirror to {} at {}% (runtime override)",
            o.to,
            o.percent
        );
        Ok(o)
    }

    /// `GET /api/routes`: routes as in force now, overrides marked.
    pub fn routes_json(&self) -> Value {
        let st = self.lock();
        let snapshot = self.shared.snapshot.load_full();
        let c = &snapshot.config;
        let routes: Vec<Value> = c
            .routes
            .iter()
            .zip(snapshot.routes.iter())
            .map(|(r, rs)| {
                let mirror = r.mirror.as_ref().map(|m| {
                    let in_flight = rs
                        .mirror
                        .as_ref()
                        .map(|x| x.in_flight.load(std::sync::atomic::Ordering::Acquire))
                        .unwrap_or(0);
                    json!({
                        "to": c.backends[m.to].name,
                        "percent": m.percent,
                        "methods": m.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                        "in_flight": in_flight,
                    })
                });
                json!({
                    "name": r.name,
                    "split": r.split.iter().map(|e| json!({"backend": c.backends[e.backend].name, "weight": e.weight})).collect::<Vec<_>>(),
                    "sticky": r.sticky.as_ref().map(sticky_json),
                    "mirror": mirror,
                    "override": st.overrides.get(&r.name),
                })
            })
            .collect();
        json!({ "routes": routes })
    }

    /// `GET /api/mismatches`: recent mismatch samples, newest first (of one route, or all).
    pub fn mismatches_json(
        &self,
        route: Option<&str>,
        limit: usize,
    ) -> Result<Value, ControlError> {
        if let Some(r) = route {
            self.known_route(r)?;
        }
        let samples = self.shared.compare_store.samples(route, limit);
        Ok(json!({ "samples": samples }))
    }

    /// `GET /api/mismatches/paths`: per-path mismatch counts of a route, with their share of
    /// compared pairs: the fields that differ on (almost) every pair are the ones to ignore.
    pub fn mismatch_paths_json(&self, route: &str) -> Result<Value, ControlError> {
        self.known_route(route)?;
        Ok(self.shared.compare_store.paths(route))
    }

    fn known_route(&self, route: &str) -> Result<(), ControlError> {
        let snapshot = self.shared.snapshot.load();
        if snapshot.config.routes.iter().any(|r| r.name == route) {
            Ok(())
        } else {
            Err(ControlError::NoRoute(route.to_string()))
        }
    }

    /// `GET /api/summary`: counts and exact latency quantiles per route, backend and role,
    /// over the last `window` and since start.
    pub fn summary(&self, window: Duration) -> Summary {
        let snapshot = self.shared.snapshot.load_full();
        let c = &snapshot.config;
        let book = &self.shared.book;
        let uptime = book.started.elapsed().as_secs_f64();
        let window_secs = window.as_secs_f64().min(uptime).max(f64::MIN_POSITIVE);
        let stats = |route: &str, backend: &str, role: &'static str| {
            let (w, t) = book
                .existing(route, backend, role)
                .map(|r| r.stats(window, window_secs, uptime))
                .unwrap_or_default();
            BackendSummary {
                backend: backend.to_string(),
                role: role.to_string(),
                window: w,
                total: t,
            }
        };
        let routes = c
            .routes
            .iter()
            .zip(snapshot.routes.iter())
            .map(|(r, rs)| {
                let mut backends: Vec<BackendSummary> = r
                    .split
                    .iter()
                    .map(|e| stats(&r.name, &c.backends[e.backend].name, "primary"))
                    .collect();
                let mirror = r.mirror.as_ref().zip(rs.mirror.as_ref()).map(|(m, rm)| {
                    let to = c.backends[m.to].name.clone();
                    backends.push(stats(&r.name, &to, "shadow"));
                    let (w, t) = book
                        .existing_ratio(&r.name)
                        .map(|x| x.ratio_quantiles(window))
                        .unwrap_or_default();
                    let pair = |(pairs, ratio_p50, ratio_p90)| PairStats {
                        pairs,
                        ratio_p50,
                        ratio_p90,
                    };
                    MirrorSummary {
                        to,
                        percent: m.percent,
                        copies: rm.handles.requests.get(),
                        completed: rm.handles.shadow.finished_total(),
                        dropped: rm.handles.dropped_total(),
                        window: pair(w),
                        total: pair(t),
                    }
                });
                let compare = rs
                    .mirror
                    .as_ref()
                    .and_then(|rm| rm.compare.as_ref())
                    .map(|cmp| {
                        let [m, mm, sk] = &cmp.handles.results;
                        let (matched, mismatched, skipped) = (m.get(), mm.get(), sk.get());
                        CompareSummary {
                            matched,
                            mismatched,
                            skipped,
                            match_rate: (matched + mismatched > 0)
                                .then(|| matched as f64 / (matched + mismatched) as f64),
                        }
                    });
                RouteSummary {
                    name: r.name.clone(),
                    baseline: c.backends[r.baseline].name.clone(),
                    candidate: r.candidate().map(|b| c.backends[b].name.clone()),
                    backends,
                    mirror,
                    compare,
                }
            })
            .collect();
        Summary {
            version: env!("CARGO_PKG_VERSION").to_string(),
            generated_at: crate::access_log::now_rfc3339(),
            uptime_seconds: uptime,
            window_seconds: window_secs,
            routes,
            processes: self.shared.resources.stats(window),
        }
    }

    /// `GET /api/config`: the effective config (secrets redacted), overrides marked.
    pub fn config_json(&self) -> Value {
        let st = self.lock();
        let c = self.shared.snapshot.load_full().config.clone();
        config_json(&c, &st.overrides)
    }
}

/// Restart-only settings keep their running values; say which ones the file changed.
fn pin_restart_only(new: &mut Config, running: &Config) -> Vec<String> {
    let mut ignored = Vec::new();
    let mut pin = |name: &str, changed: bool| {
        if changed {
            ignored.push(format!("{name} changed in the file; it applies only after a restart, the running value stays"));
        }
    };
    pin("listen", new.listen != running.listen);
    pin("admin.listen", new.admin.listen != running.admin.listen);
    pin(
        "admin.token_env",
        new.admin.token_env != running.admin.token_env,
    );
    pin(
        "server.threads",
        new.server.threads != running.server.threads,
    );
    pin(
        "server.drain_timeout",
        new.server.drain_timeout != running.server.drain_timeout,
    );
    pin(
        "server.upstream_keepalive_pool_size",
        new.server.upstream_keepalive_pool_size != running.server.upstream_keepalive_pool_size,
    );
    pin(
        "server.mirror_memory_bytes",
        new.server.mirror_memory_bytes != running.server.mirror_memory_bytes,
    );
    pin("server.watch", new.server.watch != running.server.watch);
    pin(
        "server.upgrade_sock",
        new.server.upgrade_sock != running.server.upgrade_sock,
    );
    pin("access_log", new.access_log != running.access_log);
    new.listen = running.listen.clone();
    new.admin = running.admin.clone();
    new.server = running.server.clone();
    new.access_log = running.access_log.clone();
    ignored
}

/// The file's config with runtime overrides applied.
fn effective(file: &Config, overrides: &BTreeMap<String, RouteOverride>) -> Config {
    let mut c = file.clone();
    for (route, o) in overrides {
        let Some(ri) = c.routes.iter().position(|r| &r.name == route) else {
            continue;
        };
        if let Some(weights) = &o.weights {
            for entry in c.routes[ri].split.iter_mut() {
                if let Some(w) = weights.get(&c.backends[entry.backend].name) {
                    entry.weight = *w;
                }
            }
        }
        if let Some(m) = &o.mirror {
            let Some(to) = c.backend_index(&m.to) else {
                continue;
            };
            let route = &mut c.routes[ri];
            match &mut route.mirror {
                Some(existing) if existing.to == to => existing.percent = m.percent,
                _ => route.mirror = Some(Mirror::with_defaults(to, m.percent)),
            }
        }
    }
    c
}

fn sticky_json(s: &StickyKey) -> Value {
    match s {
        StickyKey::Header(h) => json!({"header": h.as_str()}),
        StickyKey::Cookie(c) => json!({"cookie": c}),
        StickyKey::ClientIp => json!({"client_ip": true}),
    }
}

fn duration(d: std::time::Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn config_json(c: &Config, overrides: &BTreeMap<String, RouteOverride>) -> Value {
    let backends: serde_json::Map<String, Value> = c
        .backends
        .iter()
        .map(|b| {
            (
                b.name.clone(),
                json!({
                    "address": b.address,
                    "resolved": b.addr.to_string(),
                    "connect_timeout": duration(b.connect_timeout),
                    "read_timeout": duration(b.read_timeout),
                    "write_timeout": duration(b.write_timeout),
                    "max_in_flight": b.max_in_flight,
                }),
            )
        })
        .collect();
    let routes: Vec<Value> = c
        .routes
        .iter()
        .map(|r| {
            let split: serde_json::Map<String, Value> = r
                .split
                .iter()
                .map(|e| (c.backends[e.backend].name.clone(), json!(e.weight)))
                .collect();
            json!({
                "name": r.name,
                "match": {
                    "path_prefix": r.matcher.path_prefix,
                    "host": r.matcher.host,
                    "methods": r.matcher.methods.as_ref().map(|m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>()),
                },
                "split": split,
                "sticky": r.sticky.as_ref().map(sticky_json),
                "force_header": r.force_header.as_ref().map(|h| h.as_str()),
                "mirror": r.mirror.as_ref().map(|m| json!({
                    "to": c.backends[m.to].name,
                    "percent": m.percent,
                    "methods": m.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>(),
                    "max_body_bytes": m.max_body_bytes,
                    "max_in_flight": m.max_in_flight,
                    "timeout": duration(m.timeout),
                    "marker_header": m.marker_header.as_str(),
                    "strip_headers": m.strip_headers.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
                })),
                "overridden": overrides.contains_key(&r.name),
            })
        })
        .collect();
    json!({
        "listen": c.listen.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "server": {
            "threads": c.server.threads,
            "drain_timeout": duration(c.server.drain_timeout),
            "upstream_keepalive_pool_size": c.server.upstream_keepalive_pool_size,
            "mirror_memory_bytes": c.server.mirror_memory_bytes,
            "watch": c.server.watch,
            "upgrade_sock": c.server.upgrade_sock.display().to_string(),
        },
        "admin": {
            "listen": c.admin.listen.to_string(),
            "token_env": c.admin.token_env,
            "token": c.admin.token_env.as_ref().map(|_| "<redacted>"),
        },
        "forwarding": {
            "x_forwarded_for": c.forwarding.x_forwarded_for,
            "x_forwarded_proto": c.forwarding.x_forwarded_proto,
            "x_forwarded_host": c.forwarding.x_forwarded_host,
            "request_id_header": c.forwarding.request_id_header.as_str(),
        },
        "access_log": match &c.access_log {
            AccessLog::Off => "off".to_string(),
            AccessLog::Stdout => "stdout".to_string(),
            AccessLog::File(p) => p.display().to_string(),
        },
        "backends": backends,
        "routes": routes,
        "overrides": overrides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "listen: 127.0.0.1:8080\nbackends:\n  node: { address: 127.0.0.1:3000 }\n  go: { address: 127.0.0.1:3001 }\nroutes:\n  - name: api\n    split: { node: 90, go: 10 }\n    sticky: { header: x-user-id }\n";

    #[test]
    fn overrides_change_weights_and_mirrors_but_not_the_split_order() {
        let file = Config::from_yaml(BASE).expect("valid");
        let mut o = BTreeMap::new();
        o.insert(
            "api".to_string(),
            RouteOverride {
                weights: Some(IndexMap::from([("go".to_string(), 50)])),
                mirror: Some(MirrorOverride {
                    to: "go".into(),
                    percent: 5.0,
                }),
            },
        );
        let c = effective(&file, &o);
        let split: Vec<(usize, u32)> = c.routes[0]
            .split
            .iter()
            .map(|e| (e.backend, e.weight))
            .collect();
        assert_eq!(split, vec![(0, 90), (1, 50)]);
        let m = c.routes[0].mirror.as_ref().expect("mirror switched on");
        assert_eq!((m.to, m.percent), (1, 5.0));
        // Unknown routes in overrides are ignored (a reload may have removed them).
        o.insert("gone".into(), RouteOverride::default());
        let _ = effective(&file, &o);
    }

    #[test]
    fn restart_only_settings_are_pinned_and_reported() {
        let running = Config::from_yaml(BASE).expect("valid");
        let mut new = Config::from_yaml(
            &BASE
                .replace("127.0.0.1:8080", "127.0.0.1:8081")
                .replace("{ node: 90, go: 10 }", "{ node: 50, go: 50 }"),
        )
        .expect("valid");
        let ignored = pin_restart_only(&mut new, &running);
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(ignored[0].starts_with("listen changed"));
        assert_eq!(new.listen, running.listen);
        assert_eq!(
            new.routes[0].split[1].weight, 50,
            "live settings still change"
        );
    }

    #[test]
    fn the_config_view_names_the_token_variable_but_never_a_token() {
        let c = Config::from_yaml(&format!(
            "{BASE}admin: {{ listen: 0.0.0.0:9100, token_env: RUNOFF_TOKEN }}\n"
        ))
        .expect("valid");
        let v = config_json(&c, &BTreeMap::new());
        assert_eq!(v["admin"]["token_env"], "RUNOFF_TOKEN");
        assert_eq!(v["admin"]["token"], "<redacted>");
        assert_eq!(v["routes"][0]["split"]["go"], 10);
    }
}
