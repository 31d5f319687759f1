//! The demo's live view: one screen a second, per route and backend, of the last 10 seconds
//! as the admin API's summary tells it.
//!
//! Must not: compute figures (they come from the summary).

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::load::LoadCounts;
use crate::analysis::model::Summary;

/// One screen of the live view: per route and backend, what the last 10 s looked like.
pub(super) fn live_view(
    summary: Option<&Summary>,
    elapsed: Duration,
    counts: &LoadCounts,
) -> Vec<String> {
    let mut lines = vec![format!(
        "[{:>3}s] sent {:>6}  ok {:>6}  5xx {:>4}  failed {:>3}  websocket messages {:>6}",
        elapsed.as_secs(),
        counts.sent.load(Ordering::Relaxed),
        counts.ok.load(Ordering::Relaxed),
        counts.server_errors.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
        counts.ws_messages.load(Ordering::Relaxed),
    )];
    let Some(s) = summary else {
        lines.push("  (waiting for the admin endpoint)".to_string());
        return lines;
    };
    for r in &s.routes {
        for b in &r.backends {
            let (p50, p99) = b
                .window
                .latency_ms
                .as_ref()
                .map(|q| (q.p50, q.p99))
                .unwrap_or((0.0, 0.0));
            lines.push(format!(
                "  {:<8} {:<6} {:<7} {:>7.1} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  errors {:>4}",
                r.name, b.backend, b.role, b.window.rps, p50, p99, b.window.errors
            ));
        }
        for w in &r.websocket {
            lines.push(format!(
                "  {:<8} {:<6} {:<7} {:>4} websockets open  {:>7.1} msg/s",
                r.name, w.backend, w.role, w.open, w.window.messages_per_second_to_client
            ));
        }
        if let Some(c) = &r.compare {
            lines.push(format!(
                "  {:<8} compare: {} match, {} mismatch, {} skipped",
                r.name, c.matched, c.mismatched, c.skipped
            ));
        }
    }
    lines
}
