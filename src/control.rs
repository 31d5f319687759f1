//! Live control: reloading the config file, and runtime overrides of split weights and mirror
//! sampling set through the admin API.
//!
//! Lives here: a reload (the file's live settings put in force, its startup settings pinned to
//! the running ones and reported), the overrides and how they combine with the file. Must not:
//! touch requests (the proxy picks up a new snapshot on its next request), render views (the
//! admin API's), or let a bad file replace a good config: an invalid reload changes nothing but
//! the error counter.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use indexmap::IndexMap;
use serde::Serialize;
use serde_json::Value;

use crate::analysis::model::{RampStatus, RouteAnalysis};
use crate::config::{split_weight, weight_error, weights_total, Config, Live, Mirror, Ramp, Route};
use crate::metrics::ReloadResult;
use crate::ramp::{decide, RampState, Ramps};
use crate::state::Shared;

/// Why a control action was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("runoff was started without a config file, so there is nothing to reload")]
    NoFile,
    #[error("invalid config: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("no route named `{0}`")]
    NoRoute(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

/// A runtime override of one route, in force until the next file reload.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RouteOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<IndexMap<String, u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<MirrorOverride>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct MirrorOverride {
    pub to: String,
    pub percent: f64,
}

/// What a successful reload reports.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ReloadReport {
    /// Settings that changed in the file but only apply after a restart.
    pub ignored_until_restart: Vec<String>,
}

struct State {
    /// The config as last loaded from the file (restart-only settings pinned to the running
    /// values).
    file: Arc<Config>,
    overrides: BTreeMap<String, RouteOverride>,
    /// Ramps (routes with `ramp:`); kept across reloads, and in their state file across restarts.
    ramps: Ramps,
}

/// Live control of a running runoff.
pub(crate) struct Control {
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl Control {
    /// Control of a runoff running `running`, loaded from `path` (if from a file).
    /// `ramp_file`: where ramps keep their state (`None`: in memory only).
    pub(crate) fn new(
        shared: Arc<Shared>,
        running: Config,
        path: Option<PathBuf>,
        ramp_file: Option<PathBuf>,
    ) -> Control {
        let file = Arc::new(running);
        let control = Control {
            shared,
            path,
            state: Mutex::new(State {
                file,
                overrides: BTreeMap::new(),
                ramps: Ramps::load(ramp_file),
            }),
        };
        {
            // Every ramp puts its step's weights in force from the start (a restart after a
            // rollback keeps the candidate at 0).
            let mut st = control.lock();
            if start_ramps(&mut st) {
                control.apply(&st);
            }
        }
        control
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Re-read the config file and put it in force. Blocking (file read, DNS): call it off
    /// the request path. Runtime overrides are dropped: the file is the truth again.
    pub(crate) fn reload(&self) -> Result<ReloadReport, ControlError> {
        let path = self.path.as_ref().ok_or(ControlError::NoFile)?;
        let metrics = &self.shared.metrics;
        // Read, parse and resolve (DNS) before taking the lock the admin handlers share.
        let mut new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                metrics.control.reload(ReloadResult::Error);
                let problems = e.problems();
                log::error!(
                    "config reload from {} rejected, the running config stays in force:\n  {}",
                    path.display(),
                    problems.join("\n  ")
                );
                return Err(ControlError::Invalid(problems));
            }
        };
        let mut st = self.lock();
        let ignored = pin_restart_only(&mut new, &st.file);
        if let Err(e) = self.shared.reload_certs(&new.startup.listen_tls) {
            metrics.control.reload(ReloadResult::Error);
            log::error!("config reload rejected, the running config and certificates stay: {e}");
            return Err(ControlError::Invalid(vec![e]));
        }
        for line in &ignored {
            log::warn!("config reload: {line}");
        }
        st.file = Arc::new(new);
        st.overrides.clear();
        start_ramps(&mut st);
        self.apply(&st);
        metrics.control.reload(ReloadResult::Success);
        log::info!("config reloaded from {}", path.display());
        Ok(ReloadReport {
            ignored_until_restart: ignored,
        })
    }

    fn apply(&self, st: &State) {
        self.shared.install(Arc::new(
            effective(&st.file, &st.overrides, &st.ramps.states).live,
        ));
    }

    /// Set split weights by backend name (others keep theirs). The split's order stays the
    /// file's, so sticky ranges move only as the new weights require.
    pub(crate) fn set_weights(
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
        let current = effective(&st.file, &st.overrides, &st.ramps.states).live;
        let r = route_in(&current, route)?;
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
            *slot = value
                .as_i64()
                .and_then(|v| split_weight(v).ok())
                .ok_or_else(|| {
                    ControlError::BadRequest(format!("{name}: {}", weight_error(value)))
                })?;
        }
        weights_total(weights.values().map(|w| u64::from(*w)).sum())
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        st.overrides.entry(route.to_string()).or_default().weights = Some(weights.clone());
        if let Some(cfg) = ramp_of(&st.file, route) {
            if let Some(r) = st.ramps.states.get_mut(route) {
                r.pause_for_manual_change(&cfg, route);
                st.ramps.save();
            }
        }
        self.apply(&st);
        log::info!("route {route}: weights set to {weights:?} (runtime override)");
        Ok(weights)
    }

    /// Change a route's mirror: `percent` (0 is the kill switch) and/or `to` (another
    /// target). Only the fields given change: a retargeted mirror keeps its `strip_headers`,
    /// marker, methods, limits and timeout. With `to`, a route without a mirror gets one (other
    /// settings at their defaults).
    pub(crate) fn set_mirror(
        &self,
        route: &str,
        body: &Value,
    ) -> Result<MirrorOverride, ControlError> {
        let Some(obj) = body.as_object() else {
            return Err(ControlError::BadRequest(
                "expected a JSON object, e.g. {\"percent\": 0} or {\"to\": \"go\"}".into(),
            ));
        };
        if let Some(k) = obj.keys().find(|k| !matches!(k.as_str(), "to" | "percent")) {
            return Err(ControlError::BadRequest(format!(
                "`{k}` cannot be changed here: give `to`, `percent` or both"
            )));
        }
        if obj.is_empty() {
            return Err(ControlError::BadRequest(
                "give `to`, `percent` or both, e.g. {\"percent\": 0}".into(),
            ));
        }
        let percent = obj
            .get("percent")
            .map(|v| {
                v.as_f64()
                    .filter(|p| (0.0..=100.0).contains(p))
                    .ok_or_else(|| {
                        ControlError::BadRequest(
                            "`percent` must be a number from 0 to 100, e.g. {\"percent\": 0}"
                                .into(),
                        )
                    })
            })
            .transpose()?;
        let to = obj.get("to").map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| ControlError::BadRequest("`to` must be a backend name".into()))
        });
        let mut st = self.lock();
        let current = effective(&st.file, &st.overrides, &st.ramps.states).live;
        let r = route_in(&current, route)?;
        let percent = percent
            .or(r.mirror.as_ref().map(|m| m.percent))
            .unwrap_or(crate::config::defaults::MIRROR_PERCENT);
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

    /// `POST /api/routes/ROUTE/ramp/resume`: the ramp's weights are in force again (a manual
    /// weight override of the route is dropped) and its current step is judged from now.
    pub(crate) fn resume_ramp(&self, route: &str) -> Result<RampStatus, ControlError> {
        let mut st = self.lock();
        route_in(&st.file.live, route)?;
        let cfg = ramp_of(&st.file, route)
            .ok_or_else(|| ControlError::BadRequest(format!("route `{route}` has no ramp")))?;
        if let Some(o) = st.overrides.get_mut(route) {
            o.weights = None;
        }
        let state = st
            .ramps
            .states
            .entry(route.to_string())
            .or_insert_with(RampState::start);
        state.resume(route);
        let status = state.status(&cfg);
        st.ramps.save();
        self.apply(&st);
        Ok(status)
    }

    /// One look of every ramp at its route's verdict: advance, hold, roll back or pause; the
    /// new weights put in force and the state file written when anything changed. Returns the
    /// ramps' states, by route.
    pub(crate) fn ramp_tick(
        &self,
        verdicts: &[(String, RouteAnalysis)],
    ) -> Vec<(String, RampStatus, f64)> {
        let mut st = self.lock();
        let mut changed = false;
        let mut statuses = Vec::new();
        let file = Arc::clone(&st.file);
        for route in &file.live.routes {
            let Some(cfg) = &route.ramp else { continue };
            let Some(state) = st.ramps.states.get_mut(&route.name) else {
                continue;
            };
            if let Some((_, a)) = verdicts.iter().find(|(name, _)| *name == route.name) {
                let decision = decide(
                    cfg,
                    state,
                    a.overall,
                    &a.explanation,
                    state.step_started.elapsed(),
                );
                let before = state.clone();
                if state.apply(cfg, decision, &route.name) {
                    changed = true;
                }
                changed |= *state != before;
            }
            statuses.push((
                route.name.clone(),
                state.status(cfg),
                state.last_decision_at,
            ));
        }
        if changed {
            st.ramps.save();
            self.apply(&st);
        }
        statuses
    }

    /// A route's ramp, when it has one.
    pub(crate) fn ramp_status(&self, route: &str) -> Option<RampStatus> {
        let st = self.lock();
        let cfg = ramp_of(&st.file, route)?;
        st.ramps.states.get(route).map(|s| s.status(&cfg))
    }

    /// The config in force: the file's, with the runtime overrides applied.
    pub(crate) fn effective(&self) -> Config {
        let st = self.lock();
        effective(&st.file, &st.overrides, &st.ramps.states)
    }

    /// The runtime overrides in force, by route.
    pub(crate) fn overrides(&self) -> BTreeMap<String, RouteOverride> {
        self.lock().overrides.clone()
    }
}

/// The ramp config of a route, if it has one.
fn ramp_of(file: &Config, route: &str) -> Option<Ramp> {
    let i = file.live.route_index(route)?;
    file.live.routes[i].ramp.clone()
}

/// Give every route with a ramp a state (its first step when new); `true` when any has one.
fn start_ramps(st: &mut State) -> bool {
    let mut any = false;
    for r in st.file.live.routes.iter().filter(|r| r.ramp.is_some()) {
        st.ramps
            .states
            .entry(r.name.clone())
            .or_insert_with(RampState::start);
        any = true;
    }
    if any {
        st.ramps.save();
    }
    any
}

/// The route named `route` in `live`.
fn route_in<'a>(live: &'a Live, route: &str) -> Result<&'a Route, ControlError> {
    live.route_index(route)
        .map(|i| &live.routes[i])
        .ok_or_else(|| ControlError::NoRoute(route.to_string()))
}

/// Restart-only settings keep their running values; say which ones the file changed.
fn pin_restart_only(new: &mut Config, running: &Config) -> Vec<String> {
    let changed = new.startup.changed_from(&running.startup);
    new.startup = running.startup.clone();
    changed
        .into_iter()
        .map(|name| {
            format!("{name} changed in the file; it applies only after a restart, the running value stays")
        })
        .collect()
}

/// The file's config with the ramps' weights and then the runtime overrides applied (a manual
/// override wins, and pauses the ramp).
fn effective(
    file: &Config,
    overrides: &BTreeMap<String, RouteOverride>,
    ramps: &BTreeMap<String, RampState>,
) -> Config {
    let mut config = file.clone();
    let c = &mut config.live;
    for route in c.routes.iter_mut() {
        let (Some(cfg), Some(state)) = (&route.ramp, ramps.get(&route.name)) else {
            continue;
        };
        let weight = state.weight(cfg);
        let (baseline, candidate) = (route.baseline, route.candidate());
        for entry in route.split.iter_mut() {
            if Some(entry.backend) == candidate {
                entry.weight = weight;
            } else if entry.backend == baseline {
                entry.weight = 100 - weight.min(100);
            }
        }
    }
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
                Some(existing) => {
                    existing.to = to;
                    existing.percent = m.percent;
                }
                None => route.mirror = Some(Mirror::with_defaults(to, m.percent)),
            }
        }
    }
    config
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
        let c = effective(&file, &o, &BTreeMap::new()).live;
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
        let _ = effective(&file, &o, &BTreeMap::new());
    }

    #[test]
    fn retargeting_a_mirror_keeps_its_settings() {
        let yaml = BASE.replace(
            "  go: { address: 127.0.0.1:3001 }\n",
            "  go: { address: 127.0.0.1:3001 }\n  go2: { address: 127.0.0.1:3002 }\n",
        ) + "    mirror: { to: go, percent: 20, strip_headers: [authorization, cookie], marker_header: x-shadow, timeout: 3s }\n";
        let file = Config::from_yaml(&yaml).expect("valid");
        let before = file.live.routes[0].mirror.clone().expect("mirror");
        let o = BTreeMap::from([(
            "api".to_string(),
            RouteOverride {
                weights: None,
                mirror: Some(MirrorOverride {
                    to: "go2".into(),
                    percent: 20.0,
                }),
            },
        )]);
        let c = effective(&file, &o, &BTreeMap::new()).live;
        let m = c.routes[0].mirror.as_ref().expect("mirror");
        assert_eq!(m.to, 2);
        assert_eq!(m.strip_headers, before.strip_headers);
        assert_eq!(m.marker_header, before.marker_header);
        assert_eq!(m.timeout, before.timeout);
        assert_eq!(m.methods, before.methods);
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
        assert_eq!(new.startup.listen, running.startup.listen);
        assert_eq!(
            new.live.routes[0].split[1].weight, 50,
            "live settings still change"
        );
    }
}
