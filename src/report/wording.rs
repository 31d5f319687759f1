//! Wording: a route's heading, whose traffic it is, "3.0× faster" / "1.4× slower" / "same",
//! percentage-point differences, the match rate, the paired line and why a process figure is
//! missing.
//!
//! Must not: compute figures: every ratio, share and difference arrives from `analysis`.

use super::numbers::{fmt_ms, fmt_ratio, fmt_share, fmt_trim, group};
use super::{NA, NONE};
use crate::analysis::model::{
    Bias, CompareSummary, Comparison, Facing, Paired, ProcessState, RouteAnalysis, RouteSummary,
    Traffic, Verdict,
};

/// Two figures closer than this (relative) are "same".
const SAME_WITHIN: f64 = 0.02;

/// "orders: node (baseline) vs go (candidate), mirror 100%".
pub(super) fn heading(route: &RouteSummary, comparison: &Comparison) -> String {
    let mode = match (&route.mirror, comparison.split) {
        (Some(m), true) => format!("split + mirror {}%", fmt_trim(m.percent)),
        (Some(m), false) => format!("mirror {}%", fmt_trim(m.percent)),
        (None, true) => "split".to_string(),
        (None, false) => "single backend".to_string(),
    };
    match &route.candidate {
        Some(candidate) => format!(
            "{}: {} (baseline) vs {} (candidate), {mode}",
            route.name, route.baseline, candidate
        ),
        None => format!(
            "{}: {} (baseline), no candidate, {mode}",
            route.name, route.baseline
        ),
    }
}

/// The Requests/sec difference: whose traffic it is, never "N× more".
pub(super) fn traffic(traffic: &Traffic) -> String {
    match traffic {
        Traffic::Unknown => NA.to_string(),
        Traffic::Mirror { percent } if *percent >= 100.0 => "same traffic (mirror)".to_string(),
        Traffic::Mirror { percent } => format!("mirror of {}% of traffic", fmt_trim(*percent)),
        Traffic::Split {
            baseline_percent,
            candidate_percent,
        } => format!(
            "{} / {} of traffic",
            fmt_share(*baseline_percent),
            fmt_share(*candidate_percent)
        ),
    }
}

/// A candidate ÷ baseline ratio where lower is better: "3.0× faster", "1.4× slower", "same"
/// (within 2%).
pub(super) fn times(ratio: Option<f64>, better: &str, worse: &str) -> String {
    let Some(r) = ratio.filter(|r| r.is_finite() && *r > 0.0) else {
        return NA.to_string();
    };
    if (r - 1.0).abs() <= SAME_WITHIN {
        "same".to_string()
    } else if r < 1.0 {
        format!("{} {better}", fmt_ratio(1.0 / r))
    } else {
        format!("{} {worse}", fmt_ratio(r))
    }
}

/// Candidate minus baseline, in percentage points: "−0.3 pp", "+0.2 pp", "same".
pub(super) fn points(difference: Option<f64>) -> String {
    let Some(d) = difference.filter(|d| d.is_finite()) else {
        return NA.to_string();
    };
    let magnitude = format!("{:.1}", d.abs());
    if magnitude == "0.0" {
        "same".to_string()
    } else if d < 0.0 {
        format!("\u{2212}{magnitude} pp")
    } else {
        format!("+{magnitude} pp")
    }
}

/// The candidate's match rate, and how many differ.
pub(super) fn response_match(compare: Option<&CompareSummary>) -> (String, String) {
    let Some(compare) = compare else {
        return (NONE.to_string(), NA.to_string());
    };
    let Some(rate) = compare
        .match_rate
        .filter(|r| r.is_finite())
        .map(|r| r.clamp(0.0, 1.0))
    else {
        return (NONE.to_string(), NA.to_string());
    };
    let mut matched = format!("{:.1}%", rate * 100.0);
    if compare.mismatched > 0 && matched == "100.0%" {
        matched = ">99.9%".to_string();
    }
    let differ = if compare.mismatched == 0 {
        "none differ".to_string()
    } else {
        let pct = format!("{:.1}", (1.0 - rate) * 100.0);
        if pct == "0.0" {
            "<0.1% differ".to_string()
        } else {
            format!("{pct}% differ")
        }
    };
    (matched, differ)
}

/// "Paired (same requests): candidate/baseline latency median ratio 0.34 → 2.9× faster (N pairs)".
pub(super) fn paired_line(paired: &Paired) -> String {
    const LEAD: &str = "Paired (same requests):";
    let since = if paired.since_start {
        ", since start"
    } else {
        ""
    };
    if paired.pairs == 0 {
        return format!("{LEAD} no completed pairs yet");
    }
    match paired.ratio_p50.filter(|r| r.is_finite() && *r > 0.0) {
        Some(r) => format!(
            "{LEAD} candidate/baseline latency median ratio {r:.2} → {} ({} pairs{since})",
            times(Some(r), "faster", "slower"),
            group(paired.pairs)
        ),
        None => format!(
            "{LEAD} {} pairs{since}, median ratio unavailable",
            group(paired.pairs)
        ),
    }
}

/// Why CPU and memory are "—": a process not sampled, or none configured.
pub(super) fn process_notes(sides: &[&Facing]) -> Vec<String> {
    let mut notes = Vec::new();
    let mut unconfigured = Vec::new();
    for side in sides {
        match &side.process {
            ProcessState::NotConfigured => unconfigured.push(side.backend.as_str()),
            ProcessState::NotSampled { problem } => notes.push(format!(
                "{}: process not sampled ({problem}).",
                side.backend
            )),
            ProcessState::Sampled => {}
        }
    }
    if !unconfigured.is_empty() {
        notes.push(format!(
            "No process stats for {} (no `process:` configured), so no CPU or memory figures.",
            unconfigured.join(", ")
        ));
    }
    notes
}

/// What the latency rows measure, and what the callers saw where runoff knows it.
pub(super) fn latency_note(sides: &[&Facing]) -> String {
    let mut line =
        "Latency is upstream-side on both legs: each from its own request going upstream \
(connect included) to the last response byte back."
            .to_string();
    let seen: Vec<String> = sides
        .iter()
        .filter_map(|f| {
            let q = f.stats.as_ref()?.caller_latency_ms.as_ref()?;
            Some(format!(
                "{} p50 {}, p99 {}",
                f.backend,
                fmt_ms(q.p50),
                fmt_ms(q.p99)
            ))
        })
        .collect();
    if !seen.is_empty() {
        line.push_str(&format!(
            " Callers saw (runoff included): {}.",
            seen.join("; ")
        ));
    }
    line
}

/// The warning that the load's shape biases a mirrored comparison.
pub(super) fn bias_line(bias: &Bias) -> String {
    let since = if bias.since_start {
        ", since start"
    } else {
        ""
    };
    format!(
        "Biased by the load's shape: {:.0}% of copies ({} of {}{since}) were sent while the shadow \
ran far ahead of the primary (copies under way > 4× the primary's + 4). The load is paced by \
the primary's answers (a closed-loop load test?) or the shadow fell behind, so the shadow's \
latency includes queueing the primary never had; for such loads use `mirror: {{ pacing: matched }}`.",
        bias.share * 100.0,
        group(bias.ahead),
        group(bias.copies)
    )
}

/// The route's verdicts: the overall one with its reason and start point, one line per
/// criterion (as analysis explained it), and the ramp.
pub(super) fn verdict_lines(a: &RouteAnalysis) -> Vec<String> {
    let overall = match a.overall {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Inconclusive => "INCONCLUSIVE",
    };
    let mut lines = vec![format!(
        "Verdict: {overall} — {} (accumulated since {}, {}; {:.0}% confidence, anytime-valid)",
        a.explanation,
        a.since,
        a.reason,
        a.confidence * 100.0
    )];
    lines.extend(a.criteria.iter().map(|c| format!("  {}", c.explanation)));
    if let Some(r) = &a.ramp {
        lines.push(format!(
            "Ramp: {} at {}% (steps {:?}); last decision {}: {}",
            r.state.replace('_', " "),
            r.weight,
            r.steps,
            r.last_decision_at,
            r.last_decision
        ));
    }
    lines
}
