//! Renders a [`Summary`] (the JSON of the admin API's `GET /api/summary`) as the seed article's
//! comparison table, `Metric | <baseline> | <candidate> | Difference`, one table per route: as
//! plain text with aligned columns for a terminal, as a GitHub Markdown table, or as JSON.
//!
//! Lives here: which figures face each other (the window's, else since start; on a mirror route
//! the baseline's primary figures against the candidate's shadow figures), their wording
//! ("3.0× faster", "−0.3 pp", "same traffic (mirror)") and number formatting. Must not: fetch
//! the summary, touch the server or its metrics, or print: it returns a `String`. A figure it
//! cannot compute is "—" (its difference "n/a"), never NaN or inf, and nothing is divided by
//! zero.

use std::fmt;
use std::str::FromStr;

use crate::summary::model::{
    BackendSummary, CompareSummary, MirrorSummary, Quantiles, RouteSummary, Stats, Summary,
};

/// The role of a backend that serves the caller.
const PRIMARY: &str = "primary";
/// The role of a backend that gets copies (mirroring).
const SHADOW: &str = "shadow";
/// Shown for a figure that is unavailable.
const NONE: &str = "—";
/// Shown for a difference that cannot be computed.
const NA: &str = "n/a";
/// Two figures closer than this (relative) are "same".
const SAME_WITHIN: f64 = 0.02;
/// Marks a CPU figure taken since start (no requests in the window).
const SINCE_START_MARK: &str = "†";
/// Said once, under the last table.
const REMINDER: &str = "On live traffic, requests/sec is context (the share of traffic each \
backend got), not a verdict; CPU per request is the efficiency figure (process CPU time ÷ \
every request the backend handled, all routes and roles).";

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain text with aligned columns, for a terminal.
    Table,
    /// A GitHub Markdown table.
    Markdown,
    /// The selected routes as pretty JSON (itself a valid `Summary`).
    Json,
}

impl Format {
    /// The names [`Format::from_str`] accepts, in order.
    pub const NAMES: [&'static str; 3] = ["table", "markdown", "json"];

    /// The name [`Format::from_str`] accepts for this format.
    pub fn name(self) -> &'static str {
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

impl FromStr for Format {
    type Err = ReportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Format::Table),
            "markdown" => Ok(Format::Markdown),
            "json" => Ok(Format::Json),
            _ => Err(ReportError::UnknownFormat(s.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The route asked for is not in the summary: its name, and the names that are.
    #[error("no route named `{0}` in the summary (known routes: {known})", known = list_or_none(.1))]
    NoSuchRoute(String, Vec<String>),
    /// A format name [`Format::from_str`] does not know.
    #[error("unknown report format `{0}` (expected one of: table, markdown, json)")]
    UnknownFormat(String),
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
pub fn render(
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Markdown,
}

/// One route's table before layout.
struct RouteTable {
    heading: String,
    header: [String; 4],
    rows: Vec<[String; 4]>,
    /// Lines printed under the table.
    notes: Vec<String>,
}

fn render_text(summary: &Summary, routes: &[&RouteSummary], style: Style) -> String {
    let mut out = String::new();
    if routes.is_empty() {
        out.push_str("No routes in the summary.\n\n");
    }
    for route in routes {
        let table = route_table(summary, route);
        match style {
            Style::Plain => write_plain(&table, &mut out),
            Style::Markdown => write_markdown(&table, &mut out),
        }
        out.push('\n');
    }
    out.push_str(&format!(
        "window: {} s, generated {}\n",
        fmt_trim(summary.window_seconds),
        summary.generated_at
    ));
    if style == Style::Markdown {
        out.push('\n');
    }
    out.push_str(REMINDER);
    out.push('\n');
    out
}

fn write_plain(table: &RouteTable, out: &mut String) {
    out.push_str(&table.heading);
    out.push('\n');
    out.push_str(&"=".repeat(table.heading.chars().count()));
    out.push_str("\n\n");
    let mut widths = [0usize; 4];
    for row in std::iter::once(&table.header).chain(&table.rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule: [String; 4] = widths.map(|w| "-".repeat(w));
    for row in std::iter::once(&table.header)
        .chain(std::iter::once(&rule))
        .chain(&table.rows)
    {
        // Metric and Difference left-aligned, the figures right-aligned.
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !table.notes.is_empty() {
        out.push('\n');
    }
    for note in &table.notes {
        out.push_str(note);
        out.push('\n');
    }
}

fn write_markdown(table: &RouteTable, out: &mut String) {
    out.push_str("### ");
    out.push_str(&table.heading);
    out.push_str("\n\n");
    let row = |cells: &[String; 4]| {
        let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    out.push_str(&row(&table.header));
    out.push_str("|---|---:|---:|---|\n");
    for cells in &table.rows {
        out.push_str(&row(cells));
    }
    for note in &table.notes {
        out.push('\n');
        out.push_str(note);
        out.push('\n');
    }
}

/// Which latency figure a row shows.
type QuantilePick = fn(&Quantiles) -> f64;

/// A backend's figures on a route, in one role: the window's, else since start.
struct Side<'a> {
    name: Option<&'a str>,
    stats: Option<&'a Stats>,
    since_start: bool,
}

impl<'a> Side<'a> {
    fn new(route: &'a RouteSummary, name: Option<&'a str>, role: &str) -> Self {
        let entry = name.and_then(|n| entry(route, n, role));
        let (stats, since_start) = match entry {
            Some(e) if e.window.requests > 0 => (Some(&e.window), false),
            Some(e) if e.total.requests > 0 => (Some(&e.total), true),
            _ => (None, false),
        };
        Side {
            name,
            stats,
            since_start,
        }
    }

    fn header(&self) -> String {
        match (self.name, self.since_start) {
            (Some(name), false) => name.to_string(),
            (Some(name), true) => format!("{name} (since start)"),
            (None, _) => NONE.to_string(),
        }
    }

    fn quantile(&self, pick: QuantilePick) -> Option<f64> {
        self.stats
            .and_then(|s| s.latency_ms.as_ref())
            .map(pick)
            .filter(|v| v.is_finite() && *v >= 0.0)
    }

    /// Errors ÷ requests, in percent.
    fn error_percent(&self) -> Option<f64> {
        self.stats
            .filter(|s| s.requests > 0)
            .map(|s| s.errors as f64 / s.requests as f64 * 100.0)
    }
}

fn entry<'a>(route: &'a RouteSummary, backend: &str, role: &str) -> Option<&'a BackendSummary> {
    route
        .backends
        .iter()
        .find(|b| b.backend == backend && b.role == role)
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

/// Resident memory of a backend's process, bytes.
fn memory(summary: &Summary, backend: &str) -> Option<u64> {
    summary
        .processes
        .get(backend)
        .filter(|p| p.alive && p.resident_memory_bytes > 0)
        .map(|p| p.resident_memory_bytes)
}

fn route_table(summary: &Summary, route: &RouteSummary) -> RouteTable {
    let candidate = route.candidate.as_deref();
    let candidate_role = if route.mirror.is_some() {
        SHADOW
    } else {
        PRIMARY
    };
    let base = Side::new(route, Some(&route.baseline), PRIMARY);
    let cand = Side::new(route, candidate, candidate_role);

    let mut rows = Vec::new();

    let rps = |side: &Side| cell(side.stats.map(|s| s.rps), fmt_rps);
    rows.push(row(
        "Requests/sec",
        rps(&base),
        rps(&cand),
        traffic_share(route, &base, &cand),
    ));

    let latency_rows: [(&str, QuantilePick); 3] = [
        ("Avg latency", |q| q.mean),
        ("P50 latency", |q| q.p50),
        ("P99 latency", |q| q.p99),
    ];
    for (metric, pick) in latency_rows {
        let (b, c) = (base.quantile(pick), cand.quantile(pick));
        rows.push(row(
            metric,
            cell(b, fmt_ms),
            cell(c, fmt_ms),
            lower_is_better(b, c, "faster", "slower"),
        ));
    }

    let (b, c) = (base.error_percent(), cand.error_percent());
    rows.push(row(
        "Error rate",
        cell(b, fmt_error_percent),
        cell(c, fmt_error_percent),
        points_difference(b, c),
    ));

    let base_cpu = cpu_per_request(summary, &route.baseline);
    let cand_cpu = candidate.and_then(|c| cpu_per_request(summary, c));
    let cpu_cell = |cpu: Option<(f64, bool)>| match cpu {
        Some((ms, since_start)) => {
            let mark = if since_start { SINCE_START_MARK } else { "" };
            format!("{}{mark}", fmt_cpu_ms(ms))
        }
        None => NONE.to_string(),
    };
    rows.push(row(
        "CPU per request",
        cpu_cell(base_cpu),
        cpu_cell(cand_cpu),
        lower_is_better(base_cpu.map(|c| c.0), cand_cpu.map(|c| c.0), "less", "more"),
    ));

    let base_mem = memory(summary, &route.baseline);
    let cand_mem = candidate.and_then(|c| memory(summary, c));
    rows.push(row(
        "Memory (RSS)",
        cell(base_mem, fmt_mb),
        cell(cand_mem, fmt_mb),
        lower_is_better(
            base_mem.map(|b| b as f64),
            cand_mem.map(|b| b as f64),
            "less",
            "more",
        ),
    ));

    let (match_cell, match_diff) = response_match(route.compare.as_ref());
    rows.push(row(
        "Response match",
        NONE.to_string(),
        match_cell,
        match_diff,
    ));

    let mut notes = Vec::new();
    if let Some(mirror) = &route.mirror {
        notes.push(paired_line(mirror));
        let mut line = format!(
            "Mirror (since start): {} copies, {} completed, {} dropped",
            group(mirror.copies),
            group(mirror.completed),
            group(mirror.dropped)
        );
        let in_flight = mirror
            .copies
            .saturating_sub(mirror.completed.saturating_add(mirror.dropped));
        if in_flight > 0 {
            line.push_str(&format!(", {} in flight", group(in_flight)));
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
    if base_cpu.is_some_and(|c| c.1) || cand_cpu.is_some_and(|c| c.1) {
        notes.push(format!(
            "{SINCE_START_MARK} CPU per request since start (no requests in the window)."
        ));
    }
    notes.extend(process_notes(summary, &route.baseline, candidate));

    let header = [
        "Metric".to_string(),
        base.header(),
        cand.header(),
        "Difference".to_string(),
    ];
    RouteTable {
        heading: heading(route),
        header,
        rows,
        notes,
    }
}

fn row(metric: &str, base: String, cand: String, difference: String) -> [String; 4] {
    [metric.to_string(), base, cand, difference]
}

fn cell<T>(value: Option<T>, format: fn(T) -> String) -> String {
    value.map_or_else(|| NONE.to_string(), format)
}

/// "orders: node (baseline) vs go (candidate), mirror 100%".
fn heading(route: &RouteSummary) -> String {
    let mut primaries: Vec<&str> = route
        .backends
        .iter()
        .filter(|b| b.role == PRIMARY)
        .map(|b| b.backend.as_str())
        .collect();
    primaries.sort_unstable();
    primaries.dedup();
    let split = primaries.len() > 1;
    let mode = match (&route.mirror, split) {
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
fn traffic_share(route: &RouteSummary, base: &Side, cand: &Side) -> String {
    let (Some(base_name), Some(cand_name)) = (base.name, cand.name) else {
        return NA.to_string();
    };
    if let Some(mirror) = &route.mirror {
        return if mirror.percent >= 100.0 {
            "same traffic (mirror)".to_string()
        } else {
            format!(
                "mirror of {}% of traffic",
                fmt_trim(mirror.percent.max(0.0))
            )
        };
    }
    // A split: each backend's share of the route's primary requests, in the window if the
    // route had any there, else since start.
    let primary_requests = |period: fn(&BackendSummary) -> &Stats, name: Option<&str>| -> u64 {
        route
            .backends
            .iter()
            .filter(|b| b.role == PRIMARY && name.is_none_or(|n| b.backend == n))
            .map(|b| period(b).requests)
            .sum()
    };
    let window = primary_requests(|b| &b.window, None);
    let period: fn(&BackendSummary) -> &Stats = if window > 0 {
        |b| &b.window
    } else {
        |b| &b.total
    };
    let all = primary_requests(period, None);
    if all == 0 {
        return NA.to_string();
    }
    let share = |name: &str| primary_requests(period, Some(name)) as f64 / all as f64 * 100.0;
    format!(
        "{} / {} of traffic",
        fmt_share(share(base_name)),
        fmt_share(share(cand_name))
    )
}

/// "3.0× faster" / "1.4× slower" / "same" (within 2%), for figures where lower is better.
fn lower_is_better(base: Option<f64>, cand: Option<f64>, better: &str, worse: &str) -> String {
    let (Some(b), Some(c)) = (finite(base), finite(cand)) else {
        return NA.to_string();
    };
    if b == c {
        return "same".to_string();
    }
    if b <= 0.0 || c <= 0.0 {
        return NA.to_string();
    }
    if (c / b - 1.0).abs() <= SAME_WITHIN {
        "same".to_string()
    } else if c < b {
        format!("{} {better}", fmt_ratio(b / c))
    } else {
        format!("{} {worse}", fmt_ratio(c / b))
    }
}

/// Candidate minus baseline, in percentage points: "−0.3 pp", "+0.2 pp", "same".
fn points_difference(base: Option<f64>, cand: Option<f64>) -> String {
    let (Some(b), Some(c)) = (finite(base), finite(cand)) else {
        return NA.to_string();
    };
    let d = c - b;
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
fn response_match(compare: Option<&CompareSummary>) -> (String, String) {
    let Some(compare) = compare else {
        return (NONE.to_string(), NA.to_string());
    };
    let Some(rate) = finite(compare.match_rate).map(|r| r.clamp(0.0, 1.0)) else {
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
fn paired_line(mirror: &MirrorSummary) -> String {
    const LEAD: &str = "Paired (same requests):";
    let (pairs, since) = if mirror.window.pairs > 0 {
        (&mirror.window, "")
    } else {
        (&mirror.total, ", since start")
    };
    if pairs.pairs == 0 {
        return format!("{LEAD} no completed pairs yet");
    }
    match finite(pairs.ratio_p50).filter(|r| *r > 0.0) {
        Some(r) => {
            let verdict = if (r - 1.0).abs() <= SAME_WITHIN {
                "same".to_string()
            } else if r < 1.0 {
                format!("{} faster", fmt_ratio(1.0 / r))
            } else {
                format!("{} slower", fmt_ratio(r))
            };
            format!(
                "{LEAD} candidate/baseline latency median ratio {r:.2} → {verdict} ({} pairs{since})",
                group(pairs.pairs)
            )
        }
        None => format!(
            "{LEAD} {} pairs{since}, median ratio unavailable",
            group(pairs.pairs)
        ),
    }
}

/// Why CPU and memory are "—": a process not sampled, or none configured.
fn process_notes(summary: &Summary, baseline: &str, candidate: Option<&str>) -> Vec<String> {
    let mut notes = Vec::new();
    let mut unconfigured = Vec::new();
    for name in std::iter::once(baseline).chain(candidate) {
        match summary.processes.get(name) {
            None => unconfigured.push(name),
            Some(p) if !p.alive => notes.push(format!(
                "{name}: process not sampled ({}).",
                p.problem.as_deref().unwrap_or("not alive")
            )),
            Some(_) => {}
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

fn finite(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite())
}

/// Milliseconds: < 10 → 2 decimals, < 100 → 1, else none (with thousands separators).
fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        NONE.to_string()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", group_f64(ms))
    }
}

/// CPU milliseconds per request: 2 decimals, 3 below 0.1 ms (so it does not read "0.00").
fn fmt_cpu_ms(ms: f64) -> String {
    if ms < 0.1 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Requests per second: ≥ 100 → whole with thousands separators, ≥ 10 → 1 decimal, else 2.
fn fmt_rps(rps: f64) -> String {
    if !rps.is_finite() || rps < 0.0 {
        NONE.to_string()
    } else if rps >= 100.0 {
        group_f64(rps)
    } else if rps >= 10.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.2}")
    }
}

/// An error rate in percent, 1 decimal ("0.4%"); "<0.1%" rather than "0.0%" when some failed.
fn fmt_error_percent(percent: f64) -> String {
    if !percent.is_finite() {
        NONE.to_string()
    } else if percent > 0.0 && percent < 0.05 {
        "<0.1%".to_string()
    } else {
        format!("{percent:.1}%")
    }
}

/// Decimal megabytes, whole ("450 MB").
fn fmt_mb(bytes: u64) -> String {
    let mb = bytes as f64 / 1_000_000.0;
    if mb < 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{} MB", group_f64(mb))
    }
}

/// A ratio with 1 decimal and "×" ("3.0×"); 2 decimals when 1 would read "1.0×".
fn fmt_ratio(ratio: f64) -> String {
    if !ratio.is_finite() {
        return NONE.to_string();
    }
    let one = format!("{ratio:.1}");
    if one == "1.0" {
        format!("{ratio:.2}×")
    } else if ratio >= 100.0 {
        format!("{}×", group_f64(ratio))
    } else {
        format!("{one}×")
    }
}

/// A share of traffic in percent: whole, "<1%" / ">99%" near the ends.
fn fmt_share(percent: f64) -> String {
    if !percent.is_finite() {
        NONE.to_string()
    } else if percent > 0.0 && percent < 0.5 {
        "<1%".to_string()
    } else if percent > 99.5 && percent < 100.0 {
        ">99%".to_string()
    } else {
        format!("{percent:.0}%")
    }
}

/// A number without trailing ".0" when it is whole ("60", "12.5").
fn fmt_trim(value: f64) -> String {
    if !value.is_finite() {
        NONE.to_string()
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A non-negative float rounded to a whole number, with thousands separators.
fn group_f64(value: f64) -> String {
    group(value.round().max(0.0) as u64)
}

/// Thousands separators: 480000 → "480,000".
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::model::{PairStats, ProcessStats};

    const EXAMPLE: &str = include_str!("../tests/data/summary-example.json");

    fn example() -> Summary {
        serde_json::from_str::<Summary>(EXAMPLE).expect("tests/data/summary-example.json parses")
    }

    fn render_ok(summary: &Summary, route: Option<&str>, format: Format) -> String {
        render(summary, route, format).expect("renders")
    }

    fn assert_lines(output: &str, expected: &[&str]) {
        for line in expected {
            assert!(
                output.lines().any(|l| l == *line),
                "missing line {line:?} in:\n{output}"
            );
        }
    }

    fn assert_finite_text(output: &str) {
        for bad in ["NaN", "nan", "inf", "Inf"] {
            assert!(!output.contains(bad), "{bad:?} in:\n{output}");
        }
    }

    #[test]
    fn markdown_mirror_route() {
        let out = render_ok(&example(), Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "### orders: node (baseline) vs go (candidate), mirror 100%",
                "| Metric | node | go | Difference |",
                "|---|---:|---:|---|",
                "| Requests/sec | 833 | 832 | same traffic (mirror) |",
                "| Avg latency | 122 ms | 41.0 ms | 3.0× faster |",
                "| P50 latency | 98.0 ms | 35.0 ms | 2.8× faster |",
                "| P99 latency | 340 ms | 95.0 ms | 3.6× faster |",
                "| Error rate | 0.4% | 0.1% | \u{2212}0.3 pp |",
                "| CPU per request | 0.85 ms | 0.45 ms | 1.9× less |",
                "| Memory (RSS) | 450 MB | 85 MB | 5.3× less |",
                "| Response match | — | 99.2% | 0.8% differ |",
                "Paired (same requests): candidate/baseline latency median ratio 0.34 → 2.9× faster (49,900 pairs)",
                "Mirror (since start): 480,000 copies, 479,520 completed, 480 dropped",
                "Response match (since start): 474,176 match, 3,824 differ, 1,000 skipped",
                "window: 60 s, generated 2025-11-28T12:00:00Z",
                REMINDER,
            ],
        );
        assert!(!out.contains("users"), "only the route asked for:\n{out}");
        assert!(!out.contains("No process stats"), "{out}");
    }

    #[test]
    fn markdown_split_route() {
        let out = render_ok(&example(), Some("users"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "### users: users-node (baseline) vs users-go (candidate), split",
                "| Metric | users-node | users-go | Difference |",
                "| Requests/sec | 90.0 | 10.0 | 90% / 10% of traffic |",
                "| Avg latency | 12.4 ms | 12.6 ms | same |",
                "| P50 latency | 9.80 ms | 4.10 ms | 2.4× faster |",
                "| P99 latency | 48.0 ms | 67.0 ms | 1.4× slower |",
                "| Error rate | 0.5% | 0.5% | same |",
                "| CPU per request | — | — | n/a |",
                "| Memory (RSS) | — | — | n/a |",
                "| Response match | — | — | n/a |",
                "No process stats for users-node, users-go (no `process:` configured), so no CPU or memory figures.",
            ],
        );
        assert!(!out.contains("Paired"), "no mirror, no pairs:\n{out}");
    }

    #[test]
    fn every_route_by_default_and_footer_once() {
        let out = render_ok(&example(), None, Format::Markdown);
        assert!(out.contains("### orders: "), "{out}");
        assert!(out.contains("### users: "), "{out}");
        assert!(out.find("### orders").lt(&out.find("### users")));
        assert_eq!(out.matches(REMINDER).count(), 1, "{out}");
        assert_eq!(out.matches("window: 60 s").count(), 1, "{out}");
        let table = render_ok(&example(), None, Format::Table);
        assert_eq!(table.matches(REMINDER).count(), 1, "{table}");
        assert!(table.contains("orders: node (baseline) vs go (candidate), mirror 100%\n"));
        assert!(table.contains("users: users-node (baseline) vs users-go (candidate), split\n"));
    }

    #[test]
    fn plain_table_is_aligned() {
        let out = render_ok(&example(), Some("orders"), Format::Table);
        assert_lines(
            &out,
            &[
                "orders: node (baseline) vs go (candidate), mirror 100%",
                "======================================================",
                "Metric              node       go  Difference",
                "---------------  -------  -------  ---------------------",
                "Requests/sec         833      832  same traffic (mirror)",
                "Avg latency       122 ms  41.0 ms  3.0× faster",
                "P50 latency      98.0 ms  35.0 ms  2.8× faster",
                "P99 latency       340 ms  95.0 ms  3.6× faster",
                "Error rate          0.4%     0.1%  \u{2212}0.3 pp",
                "CPU per request  0.85 ms  0.45 ms  1.9× less",
                "Memory (RSS)      450 MB    85 MB  5.3× less",
                "Response match         —    99.2%  0.8% differ",
                "Paired (same requests): candidate/baseline latency median ratio 0.34 → 2.9× faster (49,900 pairs)",
                "window: 60 s, generated 2025-11-28T12:00:00Z",
            ],
        );
        assert!(!out.contains('|'), "no Markdown in the plain table:\n{out}");
        assert!(out.lines().all(|l| l == l.trim_end()), "trailing spaces");
    }

    #[test]
    fn unknown_route_lists_the_known_ones() {
        let err = render(&example(), Some("payments"), Format::Table).expect_err("no such route");
        match &err {
            ReportError::NoSuchRoute(name, known) => {
                assert_eq!(name, "payments");
                assert_eq!(known, &["orders".to_string(), "users".to_string()]);
            }
            other => panic!("unexpected error {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "no route named `payments` in the summary (known routes: orders, users)"
        );
        let empty = Summary::default();
        let err = render(&empty, Some("orders"), Format::Json).expect_err("no routes at all");
        assert_eq!(
            err.to_string(),
            "no route named `orders` in the summary (known routes: none)"
        );
    }

    #[test]
    fn json_round_trips() {
        let summary = example();
        let all = render_ok(&summary, None, Format::Json);
        let back: Summary = serde_json::from_str(&all).expect("JSON output parses");
        assert_eq!(back, summary);

        let one = render_ok(&summary, Some("orders"), Format::Json);
        let back: Summary = serde_json::from_str(&one).expect("JSON output parses");
        assert_eq!(back.routes, vec![summary.routes[0].clone()]);
        assert_eq!(back.generated_at, summary.generated_at);
        assert_eq!(back.window_seconds, summary.window_seconds);
        assert_eq!(
            back.processes, summary.processes,
            "node and go serve orders"
        );

        let users = render_ok(&summary, Some("users"), Format::Json);
        let back: Summary = serde_json::from_str(&users).expect("JSON output parses");
        assert_eq!(back.routes.len(), 1);
        assert!(back.processes.is_empty(), "no process of users' backends");
    }

    #[test]
    fn format_from_str() {
        assert_eq!("table".parse::<Format>().ok(), Some(Format::Table));
        assert_eq!("markdown".parse::<Format>().ok(), Some(Format::Markdown));
        assert_eq!("json".parse::<Format>().ok(), Some(Format::Json));
        assert_eq!(" JSON ".parse::<Format>().ok(), Some(Format::Json));
        let err = "html".parse::<Format>().expect_err("unknown");
        assert!(matches!(err, ReportError::UnknownFormat(ref f) if f == "html"));
        assert_eq!(
            err.to_string(),
            "unknown report format `html` (expected one of: table, markdown, json)"
        );
        for name in Format::NAMES {
            let format: Format = name.parse().expect("known");
            assert_eq!(format.to_string(), name);
        }
    }

    /// A summary where nothing has happened yet: no requests, no pairs, processes at zero.
    fn empty_summary() -> Summary {
        let idle = |backend: &str, role: &str| BackendSummary {
            backend: backend.to_string(),
            role: role.to_string(),
            window: Stats::default(),
            total: Stats::default(),
        };
        let zero_process = ProcessStats {
            alive: true,
            ..ProcessStats::default()
        };
        Summary {
            version: "0.1.0".to_string(),
            generated_at: "2025-11-28T12:00:00Z".to_string(),
            uptime_seconds: 0.0,
            window_seconds: 0.0,
            routes: vec![
                RouteSummary {
                    name: "orders".to_string(),
                    baseline: "node".to_string(),
                    candidate: Some("go".to_string()),
                    backends: vec![idle("node", PRIMARY), idle("go", SHADOW)],
                    mirror: Some(MirrorSummary {
                        to: "go".to_string(),
                        percent: 100.0,
                        ..MirrorSummary::default()
                    }),
                    compare: Some(CompareSummary::default()),
                },
                RouteSummary {
                    name: "users".to_string(),
                    baseline: "node".to_string(),
                    candidate: Some("go".to_string()),
                    backends: vec![idle("node", PRIMARY), idle("go", PRIMARY)],
                    mirror: None,
                    compare: None,
                },
            ],
            processes: [
                ("node".to_string(), zero_process.clone()),
                ("go".to_string(), zero_process),
            ]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn zero_requests_never_nan_or_inf() {
        let summary = empty_summary();
        for format in [Format::Table, Format::Markdown, Format::Json] {
            let out = render_ok(&summary, None, format);
            assert_finite_text(&out);
        }
        let out = render_ok(&summary, Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "| Requests/sec | — | — | same traffic (mirror) |",
                "| Avg latency | — | — | n/a |",
                "| Error rate | — | — | n/a |",
                "| CPU per request | — | — | n/a |",
                "| Memory (RSS) | — | — | n/a |",
                "| Response match | — | — | n/a |",
                "Paired (same requests): no completed pairs yet",
                "window: 0 s, generated 2025-11-28T12:00:00Z",
            ],
        );
        let out = render_ok(&summary, Some("users"), Format::Markdown);
        assert_lines(&out, &["| Requests/sec | — | — | n/a |"]);
    }

    #[test]
    fn degenerate_figures_never_nan_or_inf() {
        // Zero latencies and CPU, requests without latency, a zero ratio.
        let mut summary = example();
        for route in &mut summary.routes {
            for b in &mut route.backends {
                b.window.rps = 0.0;
                b.window.latency_ms = Some(Quantiles::default());
            }
            route.backends[1].window.latency_ms = None;
        }
        if let Some(mirror) = &mut summary.routes[0].mirror {
            mirror.window.ratio_p50 = Some(0.0);
        }
        for p in summary.processes.values_mut() {
            p.cpu_seconds_window = 0.0;
        }
        for format in [Format::Table, Format::Markdown] {
            let out = render_ok(&summary, None, format);
            assert_finite_text(&out);
        }
        let out = render_ok(&summary, Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "| Avg latency | 0.00 ms | — | n/a |",
                "| CPU per request | 0.000 ms | 0.000 ms | same |",
                "Paired (same requests): 49,900 pairs, median ratio unavailable",
            ],
        );
    }

    #[test]
    fn falls_back_to_since_start_when_the_window_is_empty() {
        let mut summary = example();
        let go = &mut summary.routes[1].backends[1];
        go.window = Stats::default();
        let out = render_ok(&summary, Some("users"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "| Metric | users-node | users-go (since start) | Difference |",
                "| Avg latency | 12.4 ms | 12.5 ms | same |",
                "| Requests/sec | 90.0 | 9.67 | 100% / 0% of traffic |",
            ],
        );

        // The whole trial idle in the window: CPU per request since start, marked.
        let mut summary = example();
        for b in &mut summary.routes[0].backends {
            b.window = Stats::default();
        }
        if let Some(mirror) = &mut summary.routes[0].mirror {
            mirror.window = PairStats::default();
        }
        let out = render_ok(&summary, Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "| Metric | node (since start) | go (since start) | Difference |",
                "| Requests/sec | 800 | 799 | same traffic (mirror) |",
                "| CPU per request | 0.83 ms† | 0.44 ms† | 1.9× less |",
                "† CPU per request since start (no requests in the window).",
                "Paired (same requests): candidate/baseline latency median ratio 0.35 → 2.9× faster (479,000 pairs, since start)",
            ],
        );
    }

    #[test]
    fn differences_wording() {
        assert_eq!(
            lower_is_better(Some(122.0), Some(41.0), "faster", "slower"),
            "3.0× faster"
        );
        assert_eq!(
            lower_is_better(Some(48.0), Some(67.0), "faster", "slower"),
            "1.4× slower"
        );
        assert_eq!(
            lower_is_better(Some(100.0), Some(101.9), "faster", "slower"),
            "same"
        );
        assert_eq!(
            lower_is_better(Some(100.0), Some(96.0), "faster", "slower"),
            "1.04× faster"
        );
        assert_eq!(lower_is_better(Some(0.0), Some(3.0), "less", "more"), "n/a");
        assert_eq!(lower_is_better(None, Some(3.0), "less", "more"), "n/a");
        assert_eq!(
            lower_is_better(Some(f64::NAN), Some(3.0), "less", "more"),
            "n/a"
        );
        assert_eq!(points_difference(Some(0.4), Some(0.1)), "\u{2212}0.3 pp");
        assert_eq!(points_difference(Some(0.1), Some(0.3)), "+0.2 pp");
        assert_eq!(points_difference(Some(0.5), Some(0.5)), "same");
        assert_eq!(points_difference(Some(0.5), None), "n/a");
    }

    #[test]
    fn number_formats() {
        assert_eq!(fmt_ms(4.256), "4.26 ms");
        assert_eq!(fmt_ms(41.0), "41.0 ms");
        assert_eq!(fmt_ms(122.4), "122 ms");
        assert_eq!(fmt_ms(1250.0), "1,250 ms");
        assert_eq!(fmt_ms(f64::INFINITY), "—");
        assert_eq!(fmt_rps(8200.0), "8,200");
        assert_eq!(fmt_rps(90.0), "90.0");
        assert_eq!(fmt_rps(2.5), "2.50");
        assert_eq!(fmt_ratio(2.9756), "3.0×");
        assert_eq!(fmt_ratio(1.04), "1.04×");
        assert_eq!(fmt_ratio(f64::INFINITY), "—");
        assert_eq!(fmt_mb(450_000_000), "450 MB");
        assert_eq!(fmt_mb(1_250_000_000), "1,250 MB");
        assert_eq!(fmt_error_percent(0.01), "<0.1%");
        assert_eq!(fmt_error_percent(0.0), "0.0%");
        assert_eq!(fmt_share(99.8), ">99%");
        assert_eq!(fmt_share(0.2), "<1%");
        assert_eq!(fmt_trim(60.0), "60");
        assert_eq!(fmt_trim(12.5), "12.5");
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(12_345_678), "12,345,678");
    }

    #[test]
    fn response_match_wording() {
        let compare = |matched, mismatched, match_rate| CompareSummary {
            matched,
            mismatched,
            skipped: 0,
            match_rate,
        };
        assert_eq!(
            response_match(Some(&compare(992, 8, Some(0.992)))),
            ("99.2%".to_string(), "0.8% differ".to_string())
        );
        assert_eq!(
            response_match(Some(&compare(10, 0, Some(1.0)))),
            ("100.0%".to_string(), "none differ".to_string())
        );
        assert_eq!(
            response_match(Some(&compare(99_999, 1, Some(0.99999)))),
            (">99.9%".to_string(), "<0.1% differ".to_string())
        );
        assert_eq!(
            response_match(Some(&compare(0, 0, None))),
            ("—".to_string(), "n/a".to_string())
        );
        assert_eq!(response_match(None), ("—".to_string(), "n/a".to_string()));
    }

    #[test]
    fn process_problems_and_no_candidate() {
        let mut summary = example();
        if let Some(go) = summary.processes.get_mut("go") {
            go.alive = false;
            go.problem = Some("pid file /run/go.pid missing".to_string());
        }
        let out = render_ok(&summary, Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "| CPU per request | 0.85 ms | — | n/a |",
                "| Memory (RSS) | 450 MB | — | n/a |",
                "go: process not sampled (pid file /run/go.pid missing).",
            ],
        );

        let mut summary = example();
        let users = &mut summary.routes[1];
        users.candidate = None;
        users.backends.truncate(1);
        let out = render_ok(&summary, Some("users"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "### users: users-node (baseline), no candidate, single backend",
                "| Metric | users-node | — | Difference |",
                "| Requests/sec | 90.0 | — | n/a |",
                "| Avg latency | 12.4 ms | — | n/a |",
            ],
        );
        assert_finite_text(&out);
    }

    #[test]
    fn partial_mirror_and_split_plus_mirror() {
        let mut summary = example();
        let orders = &mut summary.routes[0];
        if let Some(mirror) = &mut orders.mirror {
            mirror.percent = 25.0;
        }
        orders.backends.push(BackendSummary {
            backend: "go".to_string(),
            role: PRIMARY.to_string(),
            ..BackendSummary::default()
        });
        let out = render_ok(&summary, Some("orders"), Format::Markdown);
        assert_lines(
            &out,
            &[
                "### orders: node (baseline) vs go (candidate), split + mirror 25%",
                "| Requests/sec | 833 | 832 | mirror of 25% of traffic |",
            ],
        );
    }
}
