//! Derived figures: from the measured figures of a [`Summary`], what faces what in each route's
//! comparison (window or since start, baseline's primary figures against the candidate's
//! primary or shadow figures), CPU per request, traffic shares, candidate ÷ baseline ratios and
//! error-rate differences.
//!
//! Lives here: plain arithmetic over the model. Must not: format or word anything (that is the
//! report's), divide by zero, or produce NaN or infinity: a figure that cannot be computed is
//! `None`.

use super::model::{
    BackendSummary, Bias, Comparison, Facing, Paired, ProcessState, RouteSummary, Stats, Summary,
    Traffic, WebSocketComparison, WebSocketSummary,
};
use crate::metrics::Role;

/// A mirrored comparison is biased by the load's shape when more than this share of copies
/// were sent while the shadow ran far ahead of the primary...
pub const BIAS_SHARE: f64 = 0.05;
/// ...out of at least this many copies (fewer say nothing).
pub const BIAS_MIN_COPIES: u64 = 20;

/// Fill in every route's derived figures (`in_flight` of its mirror, and its [`Comparison`]).
pub fn derive(summary: &mut Summary) {
    let comparisons: Vec<Comparison> = summary
        .routes
        .iter()
        .map(|r| comparison(summary, r))
        .collect();
    for (route, c) in summary.routes.iter_mut().zip(comparisons) {
        if let Some(m) = route.mirror.as_mut() {
            m.in_flight = m
                .copies
                .saturating_sub(m.completed.saturating_add(m.dropped));
        }
        route.comparison = Some(c);
        route.websocket_comparison = websocket_comparison(route);
    }
}

/// The baseline's primary WebSocket row against the candidate's (its shadow row on a mirrored
/// route that has one, else its primary row).
fn websocket_comparison(route: &RouteSummary) -> Option<WebSocketComparison> {
    if route.websocket.is_empty() {
        return None;
    }
    let find = |backend: &str, role: Role| {
        route
            .websocket
            .iter()
            .position(|w| w.backend == backend && w.role == role.as_str())
    };
    let baseline = find(&route.baseline, Role::Primary);
    let candidate = route.candidate.as_deref().and_then(|c| {
        if route.mirror.is_some() {
            find(c, Role::Shadow).or_else(|| find(c, Role::Primary))
        } else {
            find(c, Role::Primary)
        }
    });
    let row = |i: Option<usize>| i.and_then(|i| route.websocket.get(i));
    let (b, c) = (row(baseline), row(candidate));
    let latency = |w: &WebSocketSummary, q: fn(&super::model::Quantiles) -> f64| {
        w.window
            .latency_ms
            .as_ref()
            .or(w.total.latency_ms.as_ref())
            .map(q)
    };
    let both = |f: &dyn Fn(&WebSocketSummary) -> Option<f64>| ratio(b.and_then(f), c.and_then(f));
    Some(WebSocketComparison {
        baseline,
        candidate,
        latency_p50_ratio: both(&|w| latency(w, |q| q.p50)),
        latency_p99_ratio: both(&|w| latency(w, |q| q.p99)),
        memory_per_connection_ratio: both(&|w| w.memory_per_connection_bytes),
    })
}

/// Candidate ÷ baseline: 1.0 when equal, `None` when either is missing, not finite, or not
/// above 0.
pub fn ratio(baseline: Option<f64>, candidate: Option<f64>) -> Option<f64> {
    let (b, c) = (finite(baseline)?, finite(candidate)?);
    if b == c {
        return Some(1.0);
    }
    (b > 0.0 && c > 0.0).then(|| c / b)
}

/// Candidate minus baseline, when both are finite.
pub fn difference(baseline: Option<f64>, candidate: Option<f64>) -> Option<f64> {
    Some(finite(candidate)? - finite(baseline)?)
}

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

fn comparison(summary: &Summary, route: &RouteSummary) -> Comparison {
    let candidate_role = if route.mirror.is_some() {
        Role::Shadow
    } else {
        Role::Primary
    };
    let baseline = facing(summary, route, &route.baseline, Role::Primary);
    let candidate = route
        .candidate
        .as_deref()
        .map(|c| facing(summary, route, c, candidate_role));
    let pick = |f: &Facing, q: fn(&super::model::Quantiles) -> f64| {
        f.stats
            .as_ref()
            .and_then(|s| s.latency_ms.as_ref())
            .map(q)
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let both =
        |f: &dyn Fn(&Facing) -> Option<f64>| ratio(f(&baseline), candidate.as_ref().and_then(f));
    let mut primaries: Vec<&str> = route
        .backends
        .iter()
        .filter(|b| b.role == Role::Primary.as_str())
        .map(|b| b.backend.as_str())
        .collect();
    primaries.sort_unstable();
    primaries.dedup();
    Comparison {
        mean_ratio: both(&|f| pick(f, |q| q.mean)),
        p50_ratio: both(&|f| pick(f, |q| q.p50)),
        p99_ratio: both(&|f| pick(f, |q| q.p99)),
        cpu_ratio: both(&|f| f.cpu_ms_per_request),
        memory_ratio: both(&|f| f.memory_bytes.map(|b| b as f64)),
        error_rate_difference_pp: difference(
            baseline.error_rate_percent,
            candidate.as_ref().and_then(|c| c.error_rate_percent),
        ),
        traffic: traffic(route, candidate.is_some()),
        split: primaries.len() > 1,
        bias: route.mirror.as_ref().map(|m| {
            let (pace, since_start) = if m.pace_window.copies > 0 {
                (&m.pace_window, false)
            } else {
                (&m.pace_total, true)
            };
            let share = if pace.copies > 0 {
                pace.ahead as f64 / pace.copies as f64
            } else {
                0.0
            };
            Bias {
                share,
                copies: pace.copies,
                ahead: pace.ahead,
                since_start,
                biased: pace.copies >= BIAS_MIN_COPIES && share > BIAS_SHARE,
            }
        }),
        paired: route.mirror.as_ref().map(|m| {
            let (pairs, since_start) = if m.window.pairs > 0 {
                (&m.window, false)
            } else {
                (&m.total, true)
            };
            Paired {
                pairs: pairs.pairs,
                ratio_p50: finite(pairs.ratio_p50),
                since_start,
            }
        }),
        baseline,
        candidate,
    }
}

fn entry<'a>(route: &'a RouteSummary, backend: &str, role: Role) -> Option<&'a BackendSummary> {
    route
        .backends
        .iter()
        .find(|b| b.backend == backend && b.role == role.as_str())
}

/// A backend's figures on a route, in one role: the window's, else since start.
fn facing(summary: &Summary, route: &RouteSummary, backend: &str, role: Role) -> Facing {
    let (stats, since_start) = match entry(route, backend, role) {
        Some(e) if e.window.requests > 0 => (Some(e.window.clone()), false),
        Some(e) if e.total.requests > 0 => (Some(e.total.clone()), true),
        _ => (None, false),
    };
    let cpu = cpu_per_request(summary, backend);
    let process = match summary.processes.get(backend) {
        None => ProcessState::NotConfigured,
        Some(p) if !p.alive => ProcessState::NotSampled {
            problem: p.problem.clone().unwrap_or_else(|| "not alive".to_string()),
        },
        Some(_) => ProcessState::Sampled,
    };
    Facing {
        backend: backend.to_string(),
        role: role.as_str().to_string(),
        since_start,
        error_rate_percent: stats
            .as_ref()
            .filter(|s| s.requests > 0)
            .map(|s| s.errors as f64 / s.requests as f64 * 100.0),
        stats,
        cpu_ms_per_request: cpu.map(|c| c.0),
        cpu_since_start: cpu.is_some_and(|c| c.1),
        memory_bytes: summary
            .processes
            .get(backend)
            .filter(|p| p.alive && p.resident_memory_bytes > 0)
            .map(|p| p.resident_memory_bytes),
        process,
    }
}

/// CPU milliseconds per request of a backend's process: its CPU time ÷ every request it
/// handled (all routes, all roles), in the window, else since start (`true`).
fn cpu_per_request(summary: &Summary, backend: &str) -> Option<(f64, bool)> {
    let process = summary.processes.get(backend).filter(|p| p.alive)?;
    let requests = |period: fn(&BackendSummary) -> &Stats| -> u64 {
        summary
            .routes
            .iter()
            .flat_map(|r| &r.backends)
            .filter(|b| b.backend == backend)
            .map(|b| period(b).requests)
            .sum()
    };
    let window = requests(|b| &b.window);
    let total = requests(|b| &b.total);
    let (cpu, requests, since_start) = if window > 0 {
        (process.cpu_seconds_window, window, false)
    } else if total > 0 {
        (process.cpu_seconds_total, total, true)
    } else {
        return None;
    };
    let ms = cpu * 1000.0 / requests as f64;
    (ms.is_finite() && ms >= 0.0).then_some((ms, since_start))
}

/// Whose traffic it is: the mirror's share, or each backend's share of a split's callers (in
/// the window if the route had any there, else since start).
fn traffic(route: &RouteSummary, has_candidate: bool) -> Traffic {
    if !has_candidate {
        return Traffic::Unknown;
    }
    if let Some(mirror) = &route.mirror {
        return Traffic::Mirror {
            percent: mirror.percent.max(0.0),
        };
    }
    let primary_requests = |period: fn(&BackendSummary) -> &Stats, name: Option<&str>| -> u64 {
        route
            .backends
            .iter()
            .filter(|b| b.role == Role::Primary.as_str() && name.is_none_or(|n| b.backend == n))
            .map(|b| period(b).requests)
            .sum()
    };
    let period: fn(&BackendSummary) -> &Stats = if primary_requests(|b| &b.window, None) > 0 {
        |b| &b.window
    } else {
        |b| &b.total
    };
    let all = primary_requests(period, None);
    if all == 0 {
        return Traffic::Unknown;
    }
    let share = |name: Option<&str>| primary_requests(period, name) as f64 / all as f64 * 100.0;
    Traffic::Split {
        baseline_percent: share(Some(&route.baseline)),
        candidate_percent: share(route.candidate.as_deref()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_never_divide_by_zero() {
        assert_eq!(ratio(Some(122.0), Some(41.0)), Some(41.0 / 122.0));
        assert_eq!(ratio(Some(0.0), Some(0.0)), Some(1.0));
        assert_eq!(ratio(Some(0.0), Some(3.0)), None);
        assert_eq!(ratio(None, Some(3.0)), None);
        assert_eq!(ratio(Some(f64::NAN), Some(3.0)), None);
        assert_eq!(ratio(Some(2.0), Some(f64::INFINITY)), None);
    }
}
