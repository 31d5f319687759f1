//! Verdicts: each criterion of a route's `analysis` judged on its tally with an anytime-valid
//! confidence bound (`stats`), and the route overall.
//!
//! Per criterion, at the route's confidence 1 − α: **pass** when the bound lies entirely on
//! the good side of the margin, **fail** when entirely on the bad side, **inconclusive**
//! otherwise, and always inconclusive below `min_samples` on either side, on a side with no
//! successful answer, or with nothing since the start point. Overall: pass when every
//! criterion passes (an intersection–union test: no correction needed); fail when any fails at
//! α/k for k criteria (Bonferroni); else inconclusive.
//!
//! Lives here: pure functions from a tally to the model. Must not: do I/O or read clocks.

use hdrhistogram::Histogram;

use super::model::{CriterionResult, RouteAnalysis, Verdict};
use super::stats::{self, Interval};
use super::tally::{SideTally, TallySnapshot, RATIO_SCALE};
use crate::config::{Analysis, Criterion};
use crate::thousands::group;

/// Judge a route: `mirrored` says whether the candidate is the route's shadow (then latency
/// p50 and errors are paired per request).
pub fn evaluate(cfg: &Analysis, mirrored: bool, t: &TallySnapshot) -> RouteAnalysis {
    let alpha = 1.0 - cfg.confidence;
    let k = cfg.criteria.len().max(1) as f64;
    let judged: Vec<(CriterionResult, Verdict)> = cfg
        .criteria
        .iter()
        .map(|c| {
            let shown = judge(*c, cfg, mirrored, t, alpha);
            // The overall fail needs the criterion to fail at α/k.
            let strict = judge(*c, cfg, mirrored, t, alpha / k).verdict;
            (shown, strict)
        })
        .collect();
    let overall = if judged.iter().all(|(r, _)| r.verdict == Verdict::Pass) {
        Verdict::Pass
    } else if judged.iter().any(|(_, strict)| *strict == Verdict::Fail) {
        Verdict::Fail
    } else {
        Verdict::Inconclusive
    };
    let names = |want: fn(&(CriterionResult, Verdict)) -> bool| {
        judged
            .iter()
            .filter(|j| want(j))
            .map(|(r, _)| r.criterion.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let explanation = match overall {
        Verdict::Pass => "pass: every criterion passes".to_string(),
        Verdict::Fail => format!(
            "fail: {} failed (Bonferroni over {} criteria)",
            names(|(_, s)| *s == Verdict::Fail),
            judged.len()
        ),
        Verdict::Inconclusive => {
            let failing = names(|(r, s)| r.verdict == Verdict::Fail && *s != Verdict::Fail);
            let open = names(|(r, _)| r.verdict == Verdict::Inconclusive);
            match (failing.is_empty(), open.is_empty()) {
                (true, _) => format!("inconclusive: {open} not decided yet"),
                (false, true) => format!(
                    "inconclusive: {failing} fails alone but not after the correction across criteria"
                ),
                (false, false) => format!(
                    "inconclusive: {open} not decided yet; {failing} fails alone but not after the correction"
                ),
            }
        }
    };
    RouteAnalysis {
        since: humantime::format_rfc3339_millis(t.since).to_string(),
        reason: t.reason.clone(),
        confidence: cfg.confidence,
        min_samples: cfg.min_samples,
        criteria: judged.into_iter().map(|(r, _)| r).collect(),
        overall,
        explanation,
        ramp: None,
    }
}

/// What a criterion compares, before the decision.
struct Estimate {
    measures: &'static str,
    estimate: Option<f64>,
    bound: Option<Interval>,
    n: (u64, u64),
    /// Why no verdict can be given, whatever the bound says.
    blocked: Option<String>,
    /// Higher is better (match rate); else lower is better.
    higher_is_better: bool,
    margin: f64,
}

fn judge(
    c: Criterion,
    cfg: &Analysis,
    mirrored: bool,
    t: &TallySnapshot,
    alpha: f64,
) -> CriterionResult {
    let e = match c {
        Criterion::LatencyP50 { max_ratio } if mirrored => paired_median(t, max_ratio, alpha),
        Criterion::LatencyP50 { max_ratio } => quantile_ratio(t, 0.5, max_ratio, alpha),
        Criterion::LatencyP99 { max_ratio } => quantile_ratio(t, 0.99, max_ratio, alpha),
        Criterion::ErrorRate { max_increase_pp } => error_rate(t, mirrored, max_increase_pp, alpha),
        Criterion::MatchRate { min } => match_rate(t, min, alpha),
    };
    let few = e.n.0.min(e.n.1) < cfg.min_samples;
    let blocked = e
        .blocked
        .clone()
        .or_else(|| few.then(|| format!("fewer than {} samples on a side", cfg.min_samples)));
    let verdict = match (&blocked, e.bound) {
        (None, Some(b)) if e.higher_is_better => {
            if b.lo >= e.margin {
                Verdict::Pass
            } else if b.hi < e.margin {
                Verdict::Fail
            } else {
                Verdict::Inconclusive
            }
        }
        (None, Some(b)) => {
            if b.hi < e.margin {
                Verdict::Pass
            } else if b.lo > e.margin {
                Verdict::Fail
            } else {
                Verdict::Inconclusive
            }
        }
        _ => Verdict::Inconclusive,
    };
    let pct = (cfg.confidence * 100.0).round();
    let shown = |v: f64| show(c, v);
    let bound_text = match e.bound {
        Some(b) => format!(
            "{pct}% bound [{}, {}]",
            shown(b.lo),
            if b.hi.is_finite() {
                shown(b.hi)
            } else {
                "∞".to_string()
            }
        ),
        None => "no bound yet".to_string(),
    };
    let mut explanation = format!(
        "{}: {} {}, {bound_text}, margin {} → {}",
        c.name(),
        e.measures,
        e.estimate.map_or("—".to_string(), shown),
        shown(e.margin),
        verdict.as_str(),
    );
    explanation.push_str(&format!(" (n = {} / {})", group(e.n.0), group(e.n.1)));
    if let Some(why) = &blocked {
        explanation.push_str(&format!("; {why}"));
    }
    CriterionResult {
        criterion: c.name().to_string(),
        measures: e.measures.to_string(),
        estimate: e.estimate,
        lower: e.bound.map(|b| b.lo),
        upper: e.bound.and_then(|b| b.hi.is_finite().then_some(b.hi)),
        margin: e.margin,
        n_baseline: e.n.0,
        n_candidate: e.n.1,
        verdict,
        explanation,
    }
}

/// A value of a criterion as people read it.
fn show(c: Criterion, v: f64) -> String {
    match c {
        Criterion::LatencyP50 { .. } | Criterion::LatencyP99 { .. } => format!("{v:.2}"),
        Criterion::ErrorRate { .. } => format!("{v:+.2} pp"),
        Criterion::MatchRate { .. } => format!("{:.2}%", v * 100.0),
    }
}

fn successes(s: &SideTally) -> u64 {
    s.requests.saturating_sub(s.errors)
}

/// Nothing to judge without an answer from both sides.
fn answers_blocked(t: &TallySnapshot) -> Option<String> {
    if t.baseline.requests == 0 && t.candidate.requests == 0 {
        Some("no traffic since the start point".to_string())
    } else if successes(&t.baseline) == 0 {
        Some("the baseline has no successful answer".to_string())
    } else if successes(&t.candidate) == 0 {
        Some("the candidate has no successful answer".to_string())
    } else {
        None
    }
}

/// Mirrored routes: the median of per-request candidate ÷ baseline latency.
fn paired_median(t: &TallySnapshot, margin: f64, alpha: f64) -> Estimate {
    let n = t.ratios.len();
    Estimate {
        measures: "median of per-request candidate/baseline latency",
        estimate: (n > 0).then(|| t.ratios.value_at_quantile(0.5) as f64 / RATIO_SCALE),
        bound: stats::quantile(&t.ratios, 0.5, alpha).map(|b| Interval {
            lo: b.lo / RATIO_SCALE,
            hi: b.hi / RATIO_SCALE,
        }),
        n: (n, n),
        blocked: answers_blocked(t),
        higher_is_better: false,
        margin,
    }
}

/// The ratio of the two sides' q-quantiles (each bounded at α/2).
fn quantile_ratio(t: &TallySnapshot, q: f64, margin: f64, alpha: f64) -> Estimate {
    let (b, c) = (&t.baseline.latency, &t.candidate.latency);
    let at = |h: &Histogram<u64>| (!h.is_empty()).then(|| h.value_at_quantile(q) as f64);
    Estimate {
        measures: if q == 0.5 {
            "candidate/baseline median latency"
        } else {
            "candidate/baseline p99 latency"
        },
        estimate: at(c).zip(at(b)).map(|(c, b)| c / b.max(1.0)),
        bound: stats::quantile(c, q, alpha / 2.0)
            .zip(stats::quantile(b, q, alpha / 2.0))
            .map(|(c, b)| stats::ratio(c, b)),
        n: (b.len(), c.len()),
        blocked: answers_blocked(t),
        higher_is_better: false,
        margin,
    }
}

/// Candidate error rate minus baseline's, in percentage points: paired per request on
/// mirrored routes, per side on splits.
fn error_rate(t: &TallySnapshot, mirrored: bool, margin_pp: f64, alpha: f64) -> Estimate {
    let pp = |i: Interval| Interval {
        lo: i.lo * 100.0,
        hi: i.hi * 100.0,
    };
    let (estimate, bound, n) = if mirrored {
        let n = t.pairs;
        (
            (n > 0).then(|| (t.worse as f64 - t.better as f64) / n as f64 * 100.0),
            (n > 0).then(|| pp(stats::difference(t.worse, n, t.better, n, alpha))),
            (n, n),
        )
    } else {
        let (b, c) = (&t.baseline, &t.candidate);
        let rate = |s: &SideTally| s.errors as f64 / s.requests as f64;
        (
            (b.requests > 0 && c.requests > 0).then(|| (rate(c) - rate(b)) * 100.0),
            (b.requests > 0 && c.requests > 0).then(|| {
                pp(stats::difference(
                    c.errors, c.requests, b.errors, b.requests, alpha,
                ))
            }),
            (b.requests, c.requests),
        )
    };
    Estimate {
        measures: "candidate − baseline error rate",
        estimate,
        bound,
        n,
        blocked: (t.baseline.requests == 0 && t.candidate.requests == 0)
            .then(|| "no traffic since the start point".to_string()),
        higher_is_better: false,
        margin: margin_pp,
    }
}

/// The share of compared pairs that match.
fn match_rate(t: &TallySnapshot, min: f64, alpha: f64) -> Estimate {
    let n = t.matched + t.mismatched;
    Estimate {
        measures: "share of compared pairs that match",
        estimate: (n > 0).then(|| t.matched as f64 / n as f64),
        bound: (n > 0).then(|| stats::bernoulli(t.matched, n, alpha)),
        n: (n, n),
        blocked: (n == 0).then(|| "no compared pair since the start point".to_string()),
        higher_is_better: true,
        margin: min,
    }
}

#[cfg(test)]
mod tests;
