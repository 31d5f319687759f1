//! Mismatch samples (a ring buffer per route) and per-path mismatch counts, for the admin API.
//!
//! Must not: hold more than the configured number of samples per route, a bounded number of
//! distinct paths, or anything the route's redact lists name (header values, JSON values
//! under secret keys, query-parameter values) in the clear.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::json::generalize;
use super::PairMeta;
use super::{BodyDiff, HeaderDiff, Verdict};
use crate::metrics::Part;
use crate::redact::Redactor;

/// Distinct paths counted per route; past it new paths count under `(other)`.
const MAX_PATHS: usize = 1000;

/// What the store needs to know about a route, fixed when its config loads.
#[derive(Debug, Clone)]
pub(crate) struct RouteSamples {
    pub route: String,
    /// Mismatch samples kept (the route's `samples`).
    pub capacity: usize,
    /// What samples never show in the clear.
    pub redact: Arc<Redactor>,
}

/// One recorded mismatch.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Sample {
    pub time: String,
    pub route: String,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub primary_status: u16,
    pub shadow_status: u16,
    pub parts: Vec<Part>,
    pub headers: Vec<HeaderDiff>,
    pub body: Vec<BodyDiff>,
}

#[derive(Default)]
struct RouteLog {
    samples: VecDeque<Sample>,
    /// Pairs compared (match or mismatch; skipped ones are not).
    pairs: u64,
    paths: HashMap<String, u64>,
}

/// Samples and counts for every route (kept across reloads, keyed by route name).
#[derive(Default)]
pub(crate) struct CompareStore {
    routes: Mutex<HashMap<String, RouteLog>>,
}

fn redacted_header(r: &Redactor, d: &HeaderDiff) -> HeaderDiff {
    HeaderDiff {
        name: d.name.clone(),
        primary: d.primary.as_deref().map(|v| r.header_value(&d.name, v)),
        shadow: d.shadow.as_deref().map(|v| r.header_value(&d.name, v)),
    }
}

fn redacted_body(r: &Redactor, d: &BodyDiff) -> BodyDiff {
    let mut out = d.clone();
    r.value_at(&d.path, &mut out.primary);
    r.value_at(&d.path, &mut out.shadow);
    out
}

impl CompareStore {
    /// Record one pair's verdict.
    pub(crate) fn record(
        &self,
        route: &RouteSamples,
        meta: &PairMeta,
        statuses: (u16, u16),
        verdict: &Verdict,
        time: String,
    ) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(&route.route) {
            routes.insert(route.route.clone(), RouteLog::default());
        }
        let Some(log) = routes.get_mut(&route.route) else {
            return;
        };
        let capacity = route.capacity;
        let diff = match verdict {
            Verdict::Skipped(_) => return,
            Verdict::Match => {
                log.pairs += 1;
                return;
            }
            Verdict::Mismatch(d) => d,
        };
        log.pairs += 1;
        let mut keys: Vec<String> = Vec::new();
        if diff.status.is_some() {
            keys.push("(status)".into());
        }
        keys.extend(diff.headers.iter().map(|h| format!("(header) {}", h.name)));
        let mut body_keys: Vec<String> = diff
            .body
            .iter()
            .map(|b| {
                if b.path.is_empty() {
                    "(body)".to_string()
                } else {
                    generalize(&b.path)
                }
            })
            .collect();
        body_keys.sort();
        body_keys.dedup();
        keys.extend(body_keys);
        for key in keys {
            if log.paths.len() >= MAX_PATHS && !log.paths.contains_key(&key) {
                *log.paths.entry("(other)".into()).or_default() += 1;
            } else {
                *log.paths.entry(key).or_default() += 1;
            }
        }
        if capacity == 0 {
            return;
        }
        while log.samples.len() >= capacity {
            log.samples.pop_front();
        }
        log.samples.push_back(Sample {
            time,
            route: route.route.clone(),
            method: meta.method.clone(),
            path: route.redact.path(&meta.path).into_owned(),
            request_id: meta.request_id.clone(),
            primary_status: statuses.0,
            shadow_status: statuses.1,
            parts: diff.parts(),
            headers: diff
                .headers
                .iter()
                .map(|h| redacted_header(&route.redact, h))
                .collect(),
            body: diff
                .body
                .iter()
                .map(|b| redacted_body(&route.redact, b))
                .collect(),
        });
    }

    /// The most recent samples, newest first, of one route or all.
    pub(crate) fn samples(&self, route: Option<&str>, limit: usize) -> Vec<Sample> {
        let Ok(routes) = self.routes.lock() else {
            return Vec::new();
        };
        let mut all: Vec<Sample> = routes
            .iter()
            .filter(|(name, _)| route.is_none_or(|r| r == name.as_str()))
            .flat_map(|(_, log)| log.samples.iter().cloned())
            .collect();
        all.sort_by(|a, b| b.time.cmp(&a.time));
        all.truncate(limit);
        all
    }

    /// Per-path mismatch counts of a route, most frequent first, with their share of pairs.
    pub(crate) fn paths(&self, route: &str) -> PathCounts {
        let mut out = PathCounts {
            route: route.to_string(),
            pairs: 0,
            paths: Vec::new(),
        };
        let Ok(routes) = self.routes.lock() else {
            return out;
        };
        let Some(log) = routes.get(route) else {
            return out;
        };
        let mut paths: Vec<(&String, &u64)> = log.paths.iter().collect();
        paths.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let pairs = log.pairs.max(1) as f64;
        out.pairs = log.pairs;
        out.paths = paths
            .into_iter()
            .map(|(path, count)| PathCount {
                path: path.clone(),
                count: *count,
                share: *count as f64 / pairs,
            })
            .collect();
        out
    }
}

/// `GET /api/mismatches/paths`: how often each path differed on a route.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PathCounts {
    pub route: String,
    /// Pairs compared (match or mismatch).
    pub pairs: u64,
    /// Most frequent first.
    pub paths: Vec<PathCount>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PathCount {
    /// A JSON Pointer with array indices as `*`, or `(status)`, `(header) NAME`, `(body)`.
    pub path: String,
    pub count: u64,
    /// `count` ÷ pairs compared.
    pub share: f64,
}
