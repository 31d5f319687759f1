//! The shape of `GET /api/summary`: what `runoff report`, `runoff demo` and any JSON reader
//! work from. The measured figures (per route, backend and role) and the comparison runoff
//! derived from them ([`Comparison`]), so no reader has to recompute a figure.
//!
//! Lives here: plain serde types, shared by the server (which fills them) and the report
//! (which reads them, possibly from another process). Must not: compute anything.

use serde::{Deserialize, Serialize};

/// Exact latency quantiles, in milliseconds (from an HDR histogram, not Prometheus buckets).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// Counts and latency over a period (the window, or since start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests finished (for a shadow: copies completed).
    pub requests: u64,
    /// Requests with status 5xx or no complete answer (for a shadow: copies dropped for an
    /// upstream error or timeout are not requests; see `RouteSummary::mirror`).
    pub errors: u64,
    /// `requests` divided by the period's length.
    pub rps: f64,
    /// Upstream-side latency of the finished requests: from the moment the leg's own request
    /// started going upstream (connect included) to the last response byte received. The
    /// figure baseline and candidate are compared on. `None` when there were none.
    pub latency_ms: Option<Quantiles>,
    /// Primary only: caller-side latency, from runoff seeing the request start to the last
    /// byte sent to the caller (what the caller saw, runoff included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_latency_ms: Option<Quantiles>,
}

/// A backend process's resource use (same-host trials with `process:` configured).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// The process (and its children) is being sampled right now.
    pub alive: bool,
    /// Why it is not, when it is not (pid file missing, process gone, ...).
    pub problem: Option<String>,
    pub pids: Vec<u32>,
    /// CPU seconds (user + system) of the process and its children since runoff started
    /// sampling it.
    pub cpu_seconds_total: f64,
    /// CPU seconds used during the window.
    pub cpu_seconds_window: f64,
    /// Resident memory now, bytes, process and children.
    pub resident_memory_bytes: u64,
    /// Resident memory the last time the backend had no WebSocket connection open through
    /// runoff: the baseline of memory per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_resident_memory_bytes: Option<u64>,
}

/// One backend in one role on a route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendSummary {
    pub backend: String,
    /// `primary` or `shadow`.
    pub role: String,
    /// What runoff spoke to the backend on this leg (`http1`, `h2c`, `h2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    pub window: Stats,
    pub total: Stats,
}

/// Shadow-vs-primary timing of the same requests (mirroring only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairStats {
    /// Completed pairs.
    pub pairs: u64,
    /// Median and p90 of shadow duration ÷ primary duration, request by request.
    pub ratio_p50: Option<f64>,
    pub ratio_p90: Option<f64>,
}

/// Mirror accounting of a route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MirrorSummary {
    pub to: String,
    pub percent: f64,
    /// Since start.
    pub copies: u64,
    pub completed: u64,
    pub dropped: u64,
    /// Copies still under way when the summary was taken.
    #[serde(default)]
    pub in_flight: u64,
    pub window: PairStats,
    pub total: PairStats,
    /// Copies sent in the window, and how many while the shadow ran far ahead of the primary.
    #[serde(default)]
    pub pace_window: Pace,
    /// The same since start.
    #[serde(default)]
    pub pace_total: Pace,
}

/// Copies sent to the shadow, and how many of them were sent while the shadow's copies under
/// way ran far above the primary's requests under way (more than 4× plus 4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pace {
    pub copies: u64,
    pub ahead: u64,
}

/// Response comparison counts of a route, since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompareSummary {
    pub matched: u64,
    pub mismatched: u64,
    pub skipped: u64,
    /// matched ÷ (matched + mismatched); `None` before any pair.
    pub match_rate: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSummary {
    pub name: String,
    /// The route's baseline backend (`baseline:` key, else the first of its split).
    pub baseline: String,
    /// The candidate: the mirror target, else the other backend of the split.
    pub candidate: Option<String>,
    pub backends: Vec<BackendSummary>,
    pub mirror: Option<MirrorSummary>,
    pub compare: Option<CompareSummary>,
    /// The baseline and candidate figures facing each other, and how they differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
    /// The route's verdicts (routes with `analysis:` configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RouteAnalysis>,
    /// WebSocket connections per backend and role (routes that carried any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub websocket: Vec<WebSocketSummary>,
    /// The baseline's and the candidate's WebSocket rows facing each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_comparison: Option<WebSocketComparison>,
}

/// Which WebSocket rows face each other (indices into `websocket`), and their ratios
/// (candidate ÷ baseline; the window's latency when it has any, else since start's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSocketComparison {
    pub baseline: Option<usize>,
    pub candidate: Option<usize>,
    pub latency_p50_ratio: Option<f64>,
    pub latency_p99_ratio: Option<f64>,
    pub memory_per_connection_ratio: Option<f64>,
}

/// One backend's WebSocket connections on a route, in one role: the seed's WebSocket table
/// from live traffic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSocketSummary {
    pub backend: String,
    pub role: String,
    /// Connections open now, at most at once, and ever opened.
    pub open: i64,
    pub peak: i64,
    pub opened: u64,
    pub window: WebSocketStats,
    pub total: WebSocketStats,
    /// The backend's resident memory growth since it last had no WebSocket open, divided by
    /// the connections open to it now (all routes and roles); same-host backends with
    /// `process:` only.
    pub memory_per_connection_bytes: Option<f64>,
    /// The baseline of the figure above: the backend's RSS with no WebSocket open.
    pub idle_resident_memory_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSocketStats {
    pub messages_to_backend: u64,
    pub messages_to_client: u64,
    pub messages_per_second_to_backend: f64,
    pub messages_per_second_to_client: f64,
    /// A client message relayed to the backend's next message (meaningful only where every
    /// message gets a reply).
    pub latency_ms: Option<Quantiles>,
}

/// Where a criterion, or a route overall, stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The confidence bound lies entirely on the good side of the margin.
    Pass,
    /// Entirely on the bad side.
    Fail,
    /// Neither yet (or too few samples to say).
    #[default]
    Inconclusive,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// −1 fail, 0 inconclusive, 1 pass (the metric's values).
    pub fn score(self) -> i64 {
        match self {
            Verdict::Pass => 1,
            Verdict::Fail => -1,
            Verdict::Inconclusive => 0,
        }
    }
}

/// One criterion's estimate, its anytime-valid bound at the route's confidence, and the
/// verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CriterionResult {
    /// `latency_p50`, `latency_p99`, `error_rate` or `match_rate`.
    pub criterion: String,
    /// What is estimated, in words (e.g. "median of per-request candidate/baseline latency").
    pub measures: String,
    /// The point estimate (a ratio, percentage points, or a share); `None` without data.
    pub estimate: Option<f64>,
    /// The confidence bound; `upper` is `None` when the data cannot bound it from above yet.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The margin the bound is held against.
    pub margin: f64,
    /// Samples behind it: baseline and candidate (the same pairs on mirrored routes).
    pub n_baseline: u64,
    pub n_candidate: u64,
    pub verdict: Verdict,
    /// One line: "latency_p99: candidate/baseline 1.31, 95% bound [1.22, 1.40], margin 1.10 →
    /// fail (n = 4,210 / 4,198)".
    pub explanation: String,
}

/// A route's verdicts, accumulated from a start point (never over a sliding window).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteAnalysis {
    /// The start point (RFC 3339), and what set it.
    pub since: String,
    pub reason: String,
    pub confidence: f64,
    pub min_samples: u64,
    pub criteria: Vec<CriterionResult>,
    /// Pass when every criterion passes; fail when any fails after a Bonferroni correction
    /// across the criteria; else inconclusive.
    pub overall: Verdict,
    pub explanation: String,
    /// The route's ramp, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<RampStatus>,
}

/// Where a ramp stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RampStatus {
    /// `ramping`, `paused`, `rolled_back` or `done`.
    pub state: String,
    /// The candidate's share of traffic now, in percent, and the step it is at (0-based).
    pub weight: u32,
    pub step: usize,
    pub steps: Vec<u32>,
    /// The last decision, in words, and when (RFC 3339).
    pub last_decision: String,
    pub last_decision_at: String,
}

/// The figures of a route's baseline and candidate that face each other, and how they differ,
/// as runoff computed them (`runoff report` only words and formats them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub baseline: Facing,
    /// `None` when the route has no candidate.
    pub candidate: Option<Facing>,
    /// More than one backend serves the route's callers (a split).
    pub split: bool,
    pub traffic: Traffic,
    /// Candidate ÷ baseline (1.0 when equal; `None` when either is missing or 0).
    pub mean_ratio: Option<f64>,
    pub p50_ratio: Option<f64>,
    pub p99_ratio: Option<f64>,
    pub cpu_ratio: Option<f64>,
    pub memory_ratio: Option<f64>,
    /// Candidate minus baseline error rate, in percentage points.
    pub error_rate_difference_pp: Option<f64>,
    /// Mirrored routes: the per-request ratio of the same requests.
    pub paired: Option<Paired>,
    /// Mirrored routes: whether the load's shape biases the comparison against the shadow.
    #[serde(default)]
    pub bias: Option<Bias>,
}

/// The shadow ran far ahead of the primary on a share of the copies: the load was paced by
/// the primary's answers (a closed-loop load test) or the shadow fell behind, so the shadow's
/// figures include queueing the primary never had.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bias {
    /// `ahead` ÷ `copies`.
    pub share: f64,
    pub copies: u64,
    pub ahead: u64,
    /// The window had no copies, so this is since start.
    pub since_start: bool,
    /// The share is over 5% of at least 20 copies: the comparison is biased by the load's shape.
    pub biased: bool,
}

/// One backend's figures in a comparison: the window's, or since start when the window had no
/// requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Facing {
    pub backend: String,
    /// `primary` or `shadow`.
    pub role: String,
    /// The window had no requests, so these figures are since start.
    pub since_start: bool,
    /// `None` when the backend finished no request in either period.
    pub stats: Option<Stats>,
    /// Errors ÷ requests, in percent.
    pub error_rate_percent: Option<f64>,
    /// The process's CPU time ÷ every request the backend handled (all routes and roles).
    pub cpu_ms_per_request: Option<f64>,
    /// The CPU figure is since start (no requests in the window).
    pub cpu_since_start: bool,
    /// Resident memory now.
    pub memory_bytes: Option<u64>,
    pub process: ProcessState,
}

/// Whether a backend's process is sampled for CPU and memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ProcessState {
    /// No `process:` configured.
    #[default]
    NotConfigured,
    /// Configured, but not sampled now, and why.
    NotSampled {
        problem: String,
    },
    Sampled,
}

/// How the route's traffic reaches baseline and candidate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Traffic {
    /// Not known (no candidate, or no request yet).
    #[default]
    Unknown,
    /// The candidate gets copies of this share of the baseline's traffic.
    Mirror { percent: f64 },
    /// Each backend's share of the route's callers, in percent.
    Split {
        baseline_percent: f64,
        candidate_percent: f64,
    },
}

/// The paired figure: median of shadow ÷ primary latency over the same requests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub pairs: u64,
    pub ratio_p50: Option<f64>,
    /// The window had no pairs, so this is since start.
    pub since_start: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub version: String,
    /// RFC 3339.
    pub generated_at: String,
    pub uptime_seconds: f64,
    /// The sliding window the `window` figures cover (shorter right after start).
    pub window_seconds: f64,
    pub routes: Vec<RouteSummary>,
    /// Per backend name, when `process:` is configured for it.
    pub processes: std::collections::BTreeMap<String, ProcessStats>,
}
