//! `runoff report`: a [`Summary`] (the JSON of the admin API's `GET /api/summary`, fetched by
//! `fetch`) rendered as the seed article's comparison table, `Metric | <baseline> |
//! <candidate> | Difference`, one table per route: as plain text with aligned columns for a
//! terminal, as a GitHub Markdown table (`layout`), or as JSON.
//!
//! Lives here: which rows a table has (this file), their wording (`wording`: "3.0× faster",
//! "−0.3 pp", "same traffic (mirror)") and number formatting (`numbers`). Must not: compute a
//! figure (every figure, ratio and share comes from the summary's `comparison`, computed by
//! `analysis`), touch the server or its metrics, or print: it returns a `String`. A figure that
//! is missing is "—" (its difference "n/a"), never NaN or inf.

pub(crate) mod fetch;
mod layout;
mod numbers;
mod websocket;
mod wording;

use std::fmt;

use crate::analysis::model::{Comparison, Facing, Quantiles, RouteSummary, Summary};
use layout::{render_text, RouteTable, Style};
use numbers::{fmt_cpu_ms, fmt_error_percent, fmt_mb, fmt_ms, fmt_rps, group};
use wording::{
    bias_line, heading, latency_note, paired_line, points, process_notes, response_match, times,
    traffic, verdict_lines,
};

/// Shown for a figure that is unavailable.
const NONE: &str = "—";
/// Shown for a difference that cannot be computed.
const NA: &str = "n/a";
/// Marks a CPU figure taken since start (no requests in the window).
const SINCE_START_MARK: &str = "†";
/// Said once, under the last table.
const REMINDER: &str = "On live traffic, requests/sec is context (the share of traffic each \
backend got), not a verdict; CPU per request is the efficiency figure (process CPU time ÷ \
every request the backend handled, all routes and roles).";

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Plain text with aligned columns, for a terminal.
    Table,
    /// A GitHub Markdown table.
    Markdown,
    /// The selected routes as pretty JSON (itself a valid `Summary`).
    Json,
}

impl Format {
    /// The name of the format, as `--format` takes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Markdown => "markdown",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportError {
    /// The route asked for is not in the summary: its name, and the names that are.
    #[error("no route named `{0}` in the summary (known routes: {known})", known = list_or_none(.1))]
    NoSuchRoute(String, Vec<String>),
    #[error("cannot write the summary as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// Renders every route of `summary` (`route: None`) or only the one named, in `format`.
pub(crate) fn render(
    summary: &Summary,
    route: Option<&str>,
    format: Format,
) -> Result<String, ReportError> {
    let routes = select(summary, route)?;
    match format {
        Format::Json => {
            let selected = selected_summary(summary, &routes, route.is_some());
            let mut out = serde_json::to_string_pretty(&selected)?;
            out.push('\n');
            Ok(out)
        }
        Format::Table => Ok(render_text(summary, &routes, Style::Plain)),
        Format::Markdown => Ok(render_text(summary, &routes, Style::Markdown)),
    }
}

fn select<'a>(
    summary: &'a Summary,
    route: Option<&str>,
) -> Result<Vec<&'a RouteSummary>, ReportError> {
    let Some(name) = route else {
        return Ok(summary.routes.iter().collect());
    };
    match summary.routes.iter().find(|r| r.name == name) {
        Some(found) => Ok(vec![found]),
        None => Err(ReportError::NoSuchRoute(
            name.to_string(),
            summary.routes.iter().map(|r| r.name.clone()).collect(),
        )),
    }
}

/// The summary cut down to `routes` (and, when one route was asked for, to the processes of
/// its backends): still a valid `Summary`, so the JSON output parses back as one.
fn selected_summary(summary: &Summary, routes: &[&RouteSummary], filtered: bool) -> Summary {
    let processes = summary
        .processes
        .iter()
        .filter(|(name, _)| !filtered || routes.iter().any(|r| uses(r, name)))
        .map(|(name, stats)| (name.clone(), stats.clone()))
        .collect();
    Summary {
        version: summary.version.clone(),
        generated_at: summary.generated_at.clone(),
        uptime_seconds: summary.uptime_seconds,
        window_seconds: summary.window_seconds,
        routes: routes.iter().map(|r| (*r).clone()).collect(),
        processes,
    }
}

fn uses(route: &RouteSummary, backend: &str) -> bool {
    route.baseline == backend
        || route.candidate.as_deref() == Some(backend)
        || route.backends.iter().any(|b| b.backend == backend)
        || route.mirror.as_ref().is_some_and(|m| m.to == backend)
}

/// Which latency figure a row shows.
type QuantilePick = fn(&Quantiles) -> f64;

/// The column header of a side: its name, marked when its figures are since start.
fn side_header(side: Option<&Facing>) -> String {
    match side {
        Some(f) if f.since_start => format!("{} (since start)", f.backend),
        Some(f) => f.backend.clone(),
        None => NONE.to_string(),
    }
}

fn quantile(side: Option<&Facing>, pick: QuantilePick) -> Option<f64> {
    side.and_then(|f| f.stats.as_ref())
        .and_then(|s| s.latency_ms.as_ref())
        .map(pick)
}

fn route_table(route: &RouteSummary) -> RouteTable {
    let Some(c) = route.comparison.as_ref() else {
        return RouteTable {
            heading: route.name.clone(),
            header: [
                "Metric".to_string(),
                route.baseline.clone(),
                route.candidate.clone().unwrap_or_else(|| NONE.to_string()),
                "Difference".to_string(),
            ],
            rows: Vec::new(),
            notes: vec!["No comparison figures in this summary (from an older runoff?).".into()],
        };
    };
    let base = Some(&c.baseline);
    let cand = c.candidate.as_ref();
    let mut rows = Vec::new();

    let rps =
        |side: Option<&Facing>| cell(side.and_then(|f| f.stats.as_ref()).map(|s| s.rps), fmt_rps);
    rows.push(row(
        "Requests/sec",
        rps(base),
        rps(cand),
        traffic(&c.traffic),
    ));

    let latency_rows: [(&str, QuantilePick, Option<f64>); 3] = [
        ("Avg latency", |q| q.mean, c.mean_ratio),
        ("P50 latency", |q| q.p50, c.p50_ratio),
        ("P99 latency", |q| q.p99, c.p99_ratio),
    ];
    for (metric, pick, ratio) in latency_rows {
        rows.push(row(
            metric,
            cell(quantile(base, pick), fmt_ms),
            cell(quantile(cand, pick), fmt_ms),
            times(ratio, "faster", "slower"),
        ));
    }

    let errors =
        |side: Option<&Facing>| cell(side.and_then(|f| f.error_rate_percent), fmt_error_percent);
    rows.push(row(
        "Error rate",
        errors(base),
        errors(cand),
        points(c.error_rate_difference_pp),
    ));

    let cpu = |side: Option<&Facing>| match side.and_then(|f| f.cpu_ms_per_request) {
        Some(ms) => {
            let since_start = side.is_some_and(|f| f.cpu_since_start);
            let mark = if since_start { SINCE_START_MARK } else { "" };
            format!("{}{mark}", fmt_cpu_ms(ms))
        }
        None => NONE.to_string(),
    };
    rows.push(row(
        "CPU per request",
        cpu(base),
        cpu(cand),
        times(c.cpu_ratio, "less", "more"),
    ));

    let memory = |side: Option<&Facing>| cell(side.and_then(|f| f.memory_bytes), fmt_mb);
    rows.push(row(
        "Memory (RSS)",
        memory(base),
        memory(cand),
        times(c.memory_ratio, "less", "more"),
    ));

    let (match_cell, match_diff) = response_match(route.compare.as_ref());
    rows.push(row(
        "Response match",
        NONE.to_string(),
        match_cell,
        match_diff,
    ));

    RouteTable {
        heading: heading(route, c),
        header: [
            "Metric".to_string(),
            side_header(base),
            side_header(cand),
            "Difference".to_string(),
        ],
        rows,
        notes: notes(route, c),
    }
}

/// The lines under a route's table.
fn notes(route: &RouteSummary, c: &Comparison) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(bias) = c.bias.as_ref().filter(|b| b.biased) {
        notes.push(bias_line(bias));
    }
    if let Some(paired) = &c.paired {
        notes.push(paired_line(paired));
    }
    if let Some(mirror) = &route.mirror {
        let mut line = format!(
            "Mirror (since start): {} copies, {} completed, {} dropped",
            group(mirror.copies),
            group(mirror.completed),
            group(mirror.dropped)
        );
        if mirror.in_flight > 0 {
            line.push_str(&format!(", {} in flight", group(mirror.in_flight)));
        }
        notes.push(line);
    }
    if let Some(compare) = &route.compare {
        notes.push(format!(
            "Response match (since start): {} match, {} differ, {} skipped",
            group(compare.matched),
            group(compare.mismatched),
            group(compare.skipped)
        ));
    }
    let sides: Vec<&Facing> = std::iter::once(&c.baseline).chain(&c.candidate).collect();
    notes.push(latency_note(&sides));
    if sides
        .iter()
        .any(|f| f.cpu_ms_per_request.is_some() && f.cpu_since_start)
    {
        notes.push(format!(
            "{SINCE_START_MARK} CPU per request since start (no requests in the window)."
        ));
    }
    notes.extend(process_notes(&sides));
    if let Some(a) = &route.analysis {
        notes.extend(verdict_lines(a));
    }
    notes
}

fn row(metric: &str, base: String, cand: String, difference: String) -> [String; 4] {
    [metric.to_string(), base, cand, difference]
}

fn cell<T>(value: Option<T>, format: fn(T) -> String) -> String {
    value.map_or_else(|| NONE.to_string(), format)
}

#[cfg(test)]
mod tests;
