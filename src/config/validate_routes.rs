//! Validation of `routes[]`: matching, the split and its weights, sticky keys, the force
//! header, the mirror and the comparison of its answers.
//!
//! Lives here: per-route checks and the weight rules the admin API applies too
//! ([`split_weight`], [`weights_total`]), so a weight is judged the same way from the file and
//! from `PUT /api/routes/NAME/weights`. Must not: resolve names or read files.

use std::time::Duration;

use http::header::HeaderName;

use super::checker::{check_name, Checker};
use super::defaults;
use super::model::{
    Analysis, Backend, Compare, Criterion, Force, HeaderRule, JsonRules, Mirror, OnFail, Pacing,
    Ramp, Route, RouteMatch, SplitEntry, StickyKey,
};
use super::schema::{
    RawAnalysis, RawCompare, RawForceHeader, RawMirror, RawRamp, RawRoute, RawSticky,
};

/// A split weight: an integer from 0 to [`defaults::MAX_WEIGHT`].
pub fn split_weight(value: i64) -> Result<u32, String> {
    match u32::try_from(value) {
        Ok(w) if w <= defaults::MAX_WEIGHT => Ok(w),
        _ => Err(weight_error(value)),
    }
}

/// What is wrong with a weight that is not one (`got` as the user wrote it).
pub fn weight_error(got: impl std::fmt::Display) -> String {
    format!(
        "weight must be an integer from 0 to {}, got {got}",
        defaults::MAX_WEIGHT
    )
}

/// A split's weights together: at least one must be above 0.
pub fn weights_total(total: u64) -> Result<(), &'static str> {
    if total == 0 {
        Err("weights add up to 0: at least one must be > 0")
    } else {
        Ok(())
    }
}

pub(super) fn routes(
    c: &mut Checker,
    raw: &[RawRoute],
    backends: &[Backend],
    websocket_idle: Duration,
) -> Vec<Route> {
    if raw.is_empty() {
        c.report("routes", "needs at least one route");
    }
    let mut routes = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let path = format!("routes[{i}]");
        if raw[..i].iter().any(|other| other.name == r.name) {
            c.report(
                format!("{path}.name"),
                format!("`{}` is already the name of another route", r.name),
            );
        }
        if let Some(route) = validate_route(c, &path, r, backends, websocket_idle) {
            routes.push(route);
        }
    }
    routes
}

fn validate_route(
    c: &mut Checker,
    path: &str,
    r: &RawRoute,
    backends: &[Backend],
    websocket_idle: Duration,
) -> Option<Route> {
    check_name(c, &format!("{path}.name"), &r.name);
    let websocket_idle_timeout = c.duration(
        &format!("{path}.websocket.idle_timeout"),
        r.websocket.as_ref().and_then(|w| w.idle_timeout.as_deref()),
        websocket_idle,
    );
    let before = c.problems.len();

    let path_prefix = r.matcher.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/') {
        c.report(
            format!("{path}.match.path_prefix"),
            format!("`{path_prefix}` must start with `/`"),
        );
    }
    let host = r
        .matcher
        .host
        .as_ref()
        .map(|h| h.trim().to_ascii_lowercase());
    if let Some(h) = &host {
        if h.is_empty() || h.contains(['/', ' ']) {
            c.report(
                format!("{path}.match.host"),
                format!("`{h}` is not a host name"),
            );
        }
    }
    let methods = r.matcher.methods.as_ref().map(|list| {
        if list.is_empty() {
            c.report(
                format!("{path}.match.methods"),
                "is empty: leave it out to match every method",
            );
        }
        c.methods(&format!("{path}.match.methods"), list)
    });

    if r.split.is_empty() {
        c.report(format!("{path}.split"), "needs at least one backend");
    }
    let mut split = Vec::new();
    let mut total: u64 = 0;
    for (name, weight) in &r.split {
        let entry_path = format!("{path}.split.{name}");
        let backend = backends.iter().position(|b| &b.name == name);
        if backend.is_none() {
            c.report(&entry_path, "no such backend");
        }
        let weight = match split_weight(*weight) {
            Ok(w) => w,
            Err(e) => {
                c.report(&entry_path, e);
                0
            }
        };
        total += u64::from(weight);
        if let Some(backend) = backend {
            split.push(SplitEntry { backend, weight });
        }
    }
    if !r.split.is_empty() {
        if let Err(e) = weights_total(total) {
            c.report(format!("{path}.split"), e);
        }
    }

    let sticky = r
        .sticky
        .as_ref()
        .and_then(|s| validate_sticky(c, &format!("{path}.sticky"), s));

    let force = force(c, path, r);

    let mirror = r
        .mirror
        .as_ref()
        .and_then(|m| validate_mirror(c, &format!("{path}.mirror"), m, backends));
    let compare = r
        .compare
        .as_ref()
        .and_then(|cmp| validate_compare(c, &format!("{path}.compare"), cmp));
    if r.compare.is_some() && r.mirror.is_none() {
        c.report(
            format!("{path}.compare"),
            "needs a `mirror` on the same route: it compares the primary's answer with the shadow's",
        );
    }

    let baseline = match &r.baseline {
        None => split.first().map(|e| e.backend).unwrap_or(0),
        Some(name) => match split.iter().find(|e| backends[e.backend].name == *name) {
            Some(e) => e.backend,
            None => {
                c.report(
                    format!("{path}.baseline"),
                    format!("`{name}` is not a backend of this route's split"),
                );
                0
            }
        },
    };
    let analysis = r
        .analysis
        .as_ref()
        .and_then(|a| validate_analysis(c, &format!("{path}.analysis"), a, compare.is_some()));
    let ramp = r.ramp.as_ref().and_then(|raw| {
        let ramp_path = format!("{path}.ramp");
        if r.analysis.is_none() {
            c.report(
                &ramp_path,
                "needs an `analysis` on the same route: the ramp advances on its verdicts",
            );
        }
        if r.mirror.is_some() || split.len() != 2 {
            c.report(
                &ramp_path,
                "needs a split of exactly two backends (the baseline and the candidate) and no mirror",
            );
        }
        validate_ramp(c, &ramp_path, raw)
    });
    let fallback = r.on_unhealthy.as_ref().and_then(|o| {
        let found = split
            .iter()
            .find(|e| backends[e.backend].name == o.fallback);
        if found.is_none() {
            c.report(
                format!("{path}.on_unhealthy.fallback"),
                format!("`{}` is not a backend of this route's split", o.fallback),
            );
        }
        found.map(|e| e.backend)
    });
    if c.problems.len() > before {
        return None;
    }
    Some(Route {
        fallback,
        analysis,
        ramp,
        baseline,
        name: r.name.clone(),
        matcher: RouteMatch {
            path_prefix,
            host,
            methods,
        },
        split,
        sticky,
        force,
        mirror,
        compare,
        websocket_idle_timeout,
    })
}

/// Forcing a backend: off unless asked for (`force:`, or the older `force_header:`).
fn force(c: &mut Checker, path: &str, r: &RawRoute) -> Option<Force> {
    match (&r.force, &r.force_header) {
        (Some(_), Some(_)) => {
            c.report(
                format!("{path}.force"),
                "give `force` or the older `force_header`, not both",
            );
            None
        }
        (None, None) | (None, Some(RawForceHeader::Enabled(false))) => None,
        (None, Some(RawForceHeader::Enabled(true))) => Some(Force {
            header: HeaderName::from_static(defaults::FORCE_HEADER),
            from: None,
            secret_env: None,
        }),
        (None, Some(RawForceHeader::Name(n))) => c
            .header_name(&format!("{path}.force_header"), n)
            .map(|header| Force {
                header,
                from: None,
                secret_env: None,
            }),
        (Some(f), None) => {
            let header = match &f.header {
                None => Some(HeaderName::from_static(defaults::FORCE_HEADER)),
                Some(h) => c.header_name(&format!("{path}.force.header"), h),
            };
            let from = f
                .from
                .as_ref()
                .map(|list| c.networks(&format!("{path}.force.from"), list));
            if let Some(name) = &f.secret_env {
                c.env_name(&format!("{path}.force.secret_env"), name);
            }
            header.map(|header| Force {
                header,
                from,
                secret_env: f.secret_env.clone(),
            })
        }
    }
}

/// Parse a JSON Pointer (`/items/*/id`, `~0` for `~`, `~1` for `/`) into its segments.
pub fn json_pointer(text: &str) -> Option<Vec<String>> {
    let rest = text.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn validate_compare(c: &mut Checker, path: &str, raw: &RawCompare) -> Option<Compare> {
    let before = c.problems.len();
    let names = |c: &mut Checker, p: &str, list: &[String]| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(j, h)| c.header_name(&format!("{p}[{j}]"), h))
            .collect()
    };
    let headers = match &raw.headers {
        None => HeaderRule::Compare(
            defaults::COMPARE_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        ),
        Some(rule) => match (&rule.compare, &rule.ignore) {
            (Some(list), None) => {
                HeaderRule::Compare(names(c, &format!("{path}.headers.compare"), list))
            }
            (None, Some(list)) => {
                HeaderRule::Ignore(names(c, &format!("{path}.headers.ignore"), list))
            }
            _ => {
                c.report(
                    format!("{path}.headers"),
                    "give exactly one of `compare: [...]` (only these) or `ignore: [...]` (all but these)",
                );
                HeaderRule::Compare(Vec::new())
            }
        },
    };
    let body = raw.body.clone().unwrap_or_default();
    let body_max_bytes = c.positive(
        &format!("{path}.body.max_bytes"),
        body.max_bytes,
        defaults::COMPARE_MAX_BYTES,
    );
    let grpc_body = body.grpc.unwrap_or(false);
    let json = body.json.unwrap_or_default();
    let ignore_paths = json
        .ignore_paths
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, p)| {
            let parsed = json_pointer(p);
            if parsed.is_none() {
                c.report(
                    format!("{path}.body.json.ignore_paths[{j}]"),
                    format!(
                        "`{p}` is not a JSON Pointer: it must start with `/`, e.g. /items/*/id"
                    ),
                );
            }
            parsed
        })
        .collect();
    let array_order_ignore = match json.array_order.as_deref() {
        None | Some("strict") => false,
        Some("ignore") => true,
        Some(other) => {
            c.report(
                format!("{path}.body.json.array_order"),
                format!("must be `strict` or `ignore`, got `{other}`"),
            );
            false
        }
    };
    let float_tolerance = json.float_tolerance.unwrap_or(0.0);
    if !(float_tolerance >= 0.0 && float_tolerance.is_finite()) {
        c.report(
            format!("{path}.body.json.float_tolerance"),
            format!("must be a number >= 0, got {float_tolerance}"),
        );
    }
    let samples = match raw.samples {
        None => defaults::COMPARE_SAMPLES,
        Some(n) if (0..=100_000).contains(&n) => n as usize,
        Some(n) => {
            c.report(
                format!("{path}.samples"),
                format!("must be from 0 to 100000, got {n}"),
            );
            0
        }
    };
    if c.problems.len() > before {
        return None;
    }
    Some(Compare {
        status: raw.status.unwrap_or(true),
        headers,
        body_max_bytes,
        json: JsonRules {
            ignore_paths,
            array_order_ignore,
            float_tolerance,
        },
        samples,
        grpc_body,
    })
}

fn validate_mirror(
    c: &mut Checker,
    path: &str,
    m: &RawMirror,
    backends: &[Backend],
) -> Option<Mirror> {
    let before = c.problems.len();
    let to = backends.iter().position(|b| b.name == m.to);
    if to.is_none() {
        c.report(format!("{path}.to"), format!("`{}`: no such backend", m.to));
    }
    let percent = m.percent.unwrap_or(defaults::MIRROR_PERCENT);
    if !(0.0..=100.0).contains(&percent) {
        c.report(
            format!("{path}.percent"),
            format!("must be from 0 to 100, got {percent}"),
        );
    }
    let method_names: Vec<String> = match &m.methods {
        Some(list) => list.clone(),
        None => defaults::MIRROR_METHODS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let methods = c.methods(&format!("{path}.methods"), &method_names);
    let max_body_bytes = match m.max_body_bytes {
        None => defaults::MIRROR_MAX_BODY_BYTES,
        Some(v) if v >= 0 => v as u64,
        Some(v) => {
            c.report(
                format!("{path}.max_body_bytes"),
                format!("must be 0 or more, got {v}"),
            );
            0
        }
    };
    let max_in_flight = c.positive(
        &format!("{path}.max_in_flight"),
        m.max_in_flight,
        defaults::MIRROR_MAX_IN_FLIGHT,
    );
    let timeout = c.duration(
        &format!("{path}.timeout"),
        m.timeout.as_deref(),
        defaults::MIRROR_TIMEOUT,
    );
    let marker_text = m
        .marker_header
        .clone()
        .unwrap_or_else(|| defaults::MIRROR_MARKER_HEADER.to_string());
    let marker_header = c.header_name(&format!("{path}.marker_header"), &marker_text);
    let strip_headers = m
        .strip_headers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, h)| c.header_name(&format!("{path}.strip_headers[{j}]"), h))
        .collect();
    let pacing = match m.pacing.as_deref() {
        None | Some("off") => Pacing::Off,
        Some("matched") => Pacing::Matched,
        Some(other) => {
            c.report(
                format!("{path}.pacing"),
                format!("must be `off` or `matched`, got `{other}`"),
            );
            Pacing::Off
        }
    };
    let websocket_max_connections = c.positive(
        &format!("{path}.websocket_max_connections"),
        m.websocket_max_connections,
        defaults::MIRROR_WEBSOCKET_MAX_CONNECTIONS,
    );
    let websocket_queue_bytes = c.positive(
        &format!("{path}.websocket_queue_bytes"),
        m.websocket_queue_bytes,
        defaults::MIRROR_WEBSOCKET_QUEUE_BYTES,
    );
    if c.problems.len() > before {
        return None;
    }
    Some(Mirror {
        to: to?,
        percent,
        methods,
        max_body_bytes,
        max_in_flight,
        timeout,
        marker_header: marker_header?,
        strip_headers,
        pacing,
        websocket: m.websocket.unwrap_or(false),
        websocket_max_connections,
        websocket_queue_bytes,
    })
}

fn validate_sticky(c: &mut Checker, path: &str, s: &RawSticky) -> Option<StickyKey> {
    let mut chosen = Vec::new();
    if let Some(h) = &s.header {
        chosen.push(
            c.header_name(&format!("{path}.header"), h)
                .map(StickyKey::Header),
        );
    }
    if let Some(name) = &s.cookie {
        if name.is_empty() || name.contains([';', '=', ' ']) {
            c.report(
                format!("{path}.cookie"),
                format!("`{name}` is not a cookie name"),
            );
            chosen.push(None);
        } else {
            chosen.push(Some(StickyKey::Cookie(name.clone())));
        }
    }
    match s.client_ip {
        Some(true) => chosen.push(Some(StickyKey::ClientIp)),
        Some(false) => {
            c.report(
                format!("{path}.client_ip"),
                "only `true` makes sense: leave `sticky` out for random choice",
            );
        }
        None => {}
    }
    match chosen.len() {
        0 => {
            c.report(path, "needs one of `header`, `cookie` or `client_ip: true`");
            None
        }
        1 => chosen.pop().flatten(),
        _ => {
            c.report(path, "give only one of `header`, `cookie` or `client_ip`");
            None
        }
    }
}

fn validate_analysis(
    c: &mut Checker,
    path: &str,
    raw: &RawAnalysis,
    compares: bool,
) -> Option<Analysis> {
    let before = c.problems.len();
    let confidence = raw.confidence.unwrap_or(defaults::ANALYSIS_CONFIDENCE);
    if !(confidence > 0.5 && confidence < 1.0) {
        c.report(
            format!("{path}.confidence"),
            format!("must be above 0.5 and below 1, e.g. 0.95, got {confidence}"),
        );
    }
    let min_samples = match raw.min_samples {
        None => defaults::ANALYSIS_MIN_SAMPLES,
        Some(n) if (1..=100_000_000).contains(&n) => n as u64,
        Some(n) => {
            c.report(
                format!("{path}.min_samples"),
                format!("must be from 1 to 100000000, got {n}"),
            );
            1
        }
    };
    let mut criteria = Vec::new();
    let ratio = |c: &mut Checker, name: &str, v: f64| {
        if !(v.is_finite() && v >= 1.0) {
            c.report(
                format!("{path}.criteria.{name}.max_ratio"),
                format!("must be a ratio of 1 or more, e.g. 1.05, got {v}"),
            );
        }
        v
    };
    match &raw.criteria {
        None => {
            criteria.push(Criterion::LatencyP50 {
                max_ratio: defaults::LATENCY_P50_MAX_RATIO,
            });
            criteria.push(Criterion::LatencyP99 {
                max_ratio: defaults::LATENCY_P99_MAX_RATIO,
            });
            criteria.push(Criterion::ErrorRate {
                max_increase_pp: defaults::ERROR_RATE_MAX_INCREASE_PP,
            });
            if compares {
                criteria.push(Criterion::MatchRate {
                    min: defaults::MATCH_RATE_MIN,
                });
            }
        }
        Some(k) => {
            if let Some(r) = &k.latency_p50 {
                let max_ratio = ratio(c, "latency_p50", r.max_ratio);
                criteria.push(Criterion::LatencyP50 { max_ratio });
            }
            if let Some(r) = &k.latency_p99 {
                let max_ratio = ratio(c, "latency_p99", r.max_ratio);
                criteria.push(Criterion::LatencyP99 { max_ratio });
            }
            if let Some(e) = &k.error_rate {
                let v = e.max_increase_pp;
                if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                    c.report(
                        format!("{path}.criteria.error_rate.max_increase_pp"),
                        format!("must be from 0 to 100 percentage points, got {v}"),
                    );
                }
                criteria.push(Criterion::ErrorRate { max_increase_pp: v });
            }
            if let Some(m) = &k.match_rate {
                let v = m.min;
                if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                    c.report(
                        format!("{path}.criteria.match_rate.min"),
                        format!("must be a share from 0 to 1, e.g. 0.995, got {v}"),
                    );
                }
                if !compares {
                    c.report(
                        format!("{path}.criteria.match_rate"),
                        "needs `compare` on the same route: it judges compared answers",
                    );
                }
                criteria.push(Criterion::MatchRate { min: v });
            }
            if criteria.is_empty() {
                c.report(
                    format!("{path}.criteria"),
                    "is empty: name at least one of latency_p50, latency_p99, error_rate, match_rate",
                );
            }
        }
    }
    if c.problems.len() > before {
        return None;
    }
    Some(Analysis {
        confidence,
        min_samples,
        criteria,
    })
}

fn validate_ramp(c: &mut Checker, path: &str, raw: &RawRamp) -> Option<Ramp> {
    let before = c.problems.len();
    let steps: Vec<u32> = match &raw.steps {
        None => defaults::RAMP_STEPS.to_vec(),
        Some(list) => {
            let steps: Vec<u32> = list
                .iter()
                .enumerate()
                .filter_map(|(j, s)| match u32::try_from(*s) {
                    Ok(v) if (1..=100).contains(&v) => Some(v),
                    _ => {
                        c.report(
                            format!("{path}.steps[{j}]"),
                            format!("must be a percentage from 1 to 100, got {s}"),
                        );
                        None
                    }
                })
                .collect();
            if list.is_empty() {
                c.report(format!("{path}.steps"), "needs at least one step");
            } else if !steps.windows(2).all(|w| w[0] < w[1]) {
                c.report(format!("{path}.steps"), "must rise, step after step");
            }
            steps
        }
    };
    let min_interval = c.duration(
        &format!("{path}.min_interval"),
        raw.min_interval.as_deref(),
        defaults::RAMP_MIN_INTERVAL,
    );
    let max_hold = c.duration(
        &format!("{path}.max_hold"),
        raw.max_hold.as_deref(),
        defaults::RAMP_MAX_HOLD,
    );
    let on_fail = match raw.on_fail.as_deref() {
        None | Some("rollback") => OnFail::Rollback,
        Some("pause") => OnFail::Pause,
        Some(other) => {
            c.report(
                format!("{path}.on_fail"),
                format!("must be `rollback` or `pause`, got `{other}`"),
            );
            OnFail::Rollback
        }
    };
    if c.problems.len() > before {
        return None;
    }
    Some(Ramp {
        steps,
        min_interval,
        max_hold,
        on_fail,
    })
}
