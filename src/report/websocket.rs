//! The WebSocket table of a route, in the seed article's form: connections open and at peak,
//! messages per second each way, message latency, and memory per connection, baseline against
//! candidate.
//!
//! Must not: compute a figure (ratios come from the summary's `websocket_comparison`).

use super::layout::RouteTable;
use super::numbers::{fmt_ms, fmt_rps, group};
use super::wording::times;
use super::{cell, row, NA, NONE};
use crate::analysis::model::{RouteSummary, WebSocketSummary};

/// The route's WebSocket table, when it carried WebSockets.
pub(super) fn websocket_table(route: &RouteSummary) -> Option<RouteTable> {
    let c = route.websocket_comparison.as_ref()?;
    let pick = |i: Option<usize>| i.and_then(|i| route.websocket.get(i));
    let (base, cand) = (pick(c.baseline), pick(c.candidate));
    let header = |w: Option<&WebSocketSummary>| match w {
        Some(w) if w.role == "shadow" => format!("{} (shadow)", w.backend),
        Some(w) => w.backend.clone(),
        None => NONE.to_string(),
    };
    let count = |w: Option<&WebSocketSummary>, f: fn(&WebSocketSummary) -> i64| {
        cell(w.map(f).map(|n| n.max(0) as u64), group)
    };
    let rate =
        |w: Option<&WebSocketSummary>, f: fn(&WebSocketSummary) -> f64| cell(w.map(f), fmt_rps);
    let latency = |w: Option<&WebSocketSummary>,
                   q: fn(&crate::analysis::model::Quantiles) -> f64| {
        cell(
            w.and_then(|w| w.window.latency_ms.as_ref().or(w.total.latency_ms.as_ref()))
                .map(q),
            fmt_ms,
        )
    };
    let memory =
        |w: Option<&WebSocketSummary>| cell(w.and_then(|w| w.memory_per_connection_bytes), fmt_kb);
    let rows = vec![
        row(
            "Open connections",
            count(base, |w| w.open),
            count(cand, |w| w.open),
            NA.to_string(),
        ),
        row(
            "Peak connections",
            count(base, |w| w.peak),
            count(cand, |w| w.peak),
            NA.to_string(),
        ),
        row(
            "Messages/sec to backend",
            rate(base, |w| w.window.messages_per_second_to_backend),
            rate(cand, |w| w.window.messages_per_second_to_backend),
            NA.to_string(),
        ),
        row(
            "Messages/sec to client",
            rate(base, |w| w.window.messages_per_second_to_client),
            rate(cand, |w| w.window.messages_per_second_to_client),
            NA.to_string(),
        ),
        row(
            "Message latency P50",
            latency(base, |q| q.p50),
            latency(cand, |q| q.p50),
            times(c.latency_p50_ratio, "faster", "slower"),
        ),
        row(
            "Message latency P99",
            latency(base, |q| q.p99),
            latency(cand, |q| q.p99),
            times(c.latency_p99_ratio, "faster", "slower"),
        ),
        row(
            "Memory/connection",
            memory(base),
            memory(cand),
            times(c.memory_per_connection_ratio, "less", "more"),
        ),
    ];
    let mut notes = vec![
        "Message latency: a client message relayed to the backend's next message (meaningful only where every message gets a reply).".to_string(),
    ];
    let idle: Vec<String> = [base, cand]
        .into_iter()
        .flatten()
        .filter_map(|w| {
            w.idle_resident_memory_bytes
                .map(|b| format!("{} {}", w.backend, fmt_kb(b as f64)))
        })
        .collect();
    if !idle.is_empty() {
        notes.push(format!(
            "Memory/connection: the backend's RSS growth since it last had no WebSocket open ({}), ÷ connections open to it now; growth from anything else since then counts too, so read it with many connections open.",
            idle.join(", ")
        ));
    }
    Some(RouteTable {
        heading: format!("{}: WebSockets", route.name),
        header: [
            "Metric".to_string(),
            header(base),
            header(cand),
            "Difference".to_string(),
        ],
        rows,
        notes,
    })
}

/// Bytes as KB (1000) with one decimal below 100 KB.
fn fmt_kb(bytes: f64) -> String {
    if !bytes.is_finite() {
        return NONE.to_string();
    }
    let kb = bytes / 1000.0;
    if kb.abs() < 100.0 {
        format!("{kb:.1} KB")
    } else {
        format!("{} KB", super::numbers::group_f64(kb))
    }
}
