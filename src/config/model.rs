//! The typed configuration the rest of runoff reads, split by when a setting may change:
//! [`Startup`] settings apply only when the process starts (a reload keeps the running ones and
//! says so), [`Live`] settings are what a reload puts in force. A new field has to choose.
//!
//! Lives here: the types and what follows directly from them (a route's candidate, a mirror's
//! defaults, which startup settings a new file changed). Must not: parse YAML, validate, or
//! resolve names (see `validate` and `resolve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;
use serde::{Serialize, Serializer};

use super::defaults;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Applied once, at start; a reload that changes them reports it and keeps the running ones.
    pub startup: Startup,
    /// Put in force by a reload.
    pub live: Live,
}

/// What needs a restart: listeners, the process's own resources, who may use the admin API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Startup {
    pub listen: Vec<SocketAddr>,
    /// TLS listeners: their addresses need a restart; their certificates are read again on
    /// every reload.
    pub listen_tls: Vec<TlsListener>,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub access_log: AccessLog,
}

/// One TLS listener and its certificates (the first is served when no other matches the
/// client's SNI).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TlsListener {
    pub address: SocketAddr,
    pub certs: Vec<CertFiles>,
}

/// A certificate chain and its private key, PEM files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What a reload may change: how requests are forwarded, routed, mirrored and compared.
#[derive(Debug, Clone)]
pub struct Live {
    pub forwarding: Forwarding,
    /// What runoff never keeps or shows in the clear.
    pub redact: Redact,
    /// Backends in file order; a backend's index here is its id elsewhere.
    pub backends: Vec<Backend>,
    /// Routes in file order: the first match wins.
    pub routes: Vec<Route>,
    /// The gRPC status codes (numbers, 0-16) that count as errors in summaries and verdicts,
    /// as a 5xx does; a gRPC response with no status always does.
    pub grpc_error_codes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerSettings {
    pub threads: usize,
    #[serde(serialize_with = "humane")]
    pub drain_timeout: Duration,
    /// How long a caller's keep-alive connection may wait for its next request (whole
    /// seconds; Pingora's unit).
    #[serde(serialize_with = "humane")]
    pub keepalive_timeout: Duration,
    /// How long a caller may pause while sending a request body (between two reads); past it
    /// the request is answered 408, the caller's fault.
    #[serde(serialize_with = "humane")]
    pub client_body_timeout: Duration,
    /// How long a caller may take to send a request's whole header block (from its
    /// connection's start, or from the first byte of a later request on it); past it the
    /// connection is closed and counted.
    #[serde(serialize_with = "humane")]
    pub client_header_timeout: Duration,
    /// How long a write of the response to a caller may wait (a caller that stops reading);
    /// past it the connection is closed.
    #[serde(serialize_with = "humane")]
    pub send_timeout: Duration,
    /// Keep header names with underscores (dropped by default, as nginx does).
    pub underscores_in_headers: bool,
    /// Callers' connections open at once; past it one is closed as soon as it is accepted.
    pub max_connections: usize,
    pub upstream_keepalive_pool_size: usize,
    /// Global budget for request-body bytes buffered for shadow copies.
    pub mirror_memory_bytes: u64,
    /// Threads of their own for shadow copies (0: they run on the proxy's threads).
    pub shadow_threads: usize,
    /// Reload when the config file changes.
    pub watch: bool,
    /// Where a new process started with `--upgrade` receives the listeners (SIGQUIT handoff);
    /// `None`: `upgrade.sock` in a directory only runoff's user may write, made at start.
    pub upgrade_sock: Option<PathBuf>,
    /// Where ramps keep their state across restarts; `None`: next to the config file.
    pub ramp_state_file: Option<PathBuf>,
    /// DNS servers that resolve backend names (nginx's `resolver`); empty: the system's
    /// resolver (getaddrinfo: /etc/hosts, /etc/resolv.conf).
    pub resolver: Vec<SocketAddr>,
    /// HTTP/2 with prior knowledge (h2c) on the plaintext listeners, beside HTTP/1.1.
    pub h2c: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token for `/api/*` (the name, never the
    /// token itself).
    pub token_env: Option<String>,
    /// Host names (lower case, without port) the admin API answers to besides loopback names
    /// and its own address: a request naming another host is refused (DNS rebinding).
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

impl AccessLog {
    /// As written in the config: `off`, `stdout` or the path.
    pub fn describe(&self) -> String {
        match self {
            AccessLog::Off => "off".to_string(),
            AccessLog::Stdout => "stdout".to_string(),
            AccessLog::File(p) => p.display().to_string(),
        }
    }
}

impl Serialize for AccessLog {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

/// A duration as people write it in the config (`10s`, `250ms`).
pub fn humane<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

impl Startup {
    /// The startup settings (as dotted paths, e.g. `server.threads`) whose value in `self`
    /// differs from `running`. Derived from the type itself, so a field added to `Startup`
    /// is covered without being listed anywhere.
    pub fn changed_from(&self, running: &Startup) -> Vec<String> {
        let (Ok(new), Ok(old)) = (serde_json::to_value(self), serde_json::to_value(running)) else {
            return vec!["(startup settings)".to_string()];
        };
        let mut changed = Vec::new();
        diff_paths("", &new, &old, &mut changed);
        changed
    }
}

/// The dotted paths of the leaves (values that are not objects) that differ.
fn diff_paths(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                let null = serde_json::Value::Null;
                diff_paths(
                    &path,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(prefix.to_string()),
        _ => {}
    }
}

impl Live {
    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }

    pub fn route_index(&self, name: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Forwarding {
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub request_id_header: AddedHeaderName,
    /// Peers whose `X-Forwarded-*` and marker header are believed: from them `X-Forwarded-For`
    /// is extended and the client is the rightmost address not in this list; from anyone
    /// else the forwarding headers are replaced.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// The name of a header runoff adds to requests, parsed once, with its text (lower case) kept
/// ready for the map of header case Pingora writes from: `RequestHeader::insert_parsed_header`
/// (patches/README.md) then neither parses nor copies the name per request.
#[derive(Debug, Clone)]
pub struct AddedHeaderName {
    name: HeaderName,
    text: bytes::Bytes,
}

impl AddedHeaderName {
    /// `name` must be a valid header name in lower case (checked at compile time in a `static`).
    pub const fn from_static(name: &'static str) -> AddedHeaderName {
        AddedHeaderName {
            name: HeaderName::from_static(name),
            text: bytes::Bytes::from_static(name.as_bytes()),
        }
    }

    pub fn new(name: HeaderName) -> AddedHeaderName {
        let text = bytes::Bytes::copy_from_slice(name.as_str().as_bytes());
        AddedHeaderName { name, text }
    }

    pub fn name(&self) -> &HeaderName {
        &self.name
    }

    /// The name as written upstream.
    pub fn text(&self) -> &bytes::Bytes {
        &self.text
    }
}

impl Forwarding {
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// What runoff never keeps or shows in the clear (mismatch samples, path counts, the access
/// log, its own logs).
#[derive(Debug, Clone, PartialEq)]
pub struct Redact {
    /// Header values (besides authorization, proxy-authorization, cookie, set-cookie, always).
    pub headers: Vec<HeaderName>,
    /// JSON body values under these keys (lower case), at any depth.
    pub json_keys: Vec<String>,
    /// Query parameter values (names in lower case).
    pub query_params: Vec<String>,
}

/// Forcing a backend of a route's split with a header.
#[derive(Debug, Clone, PartialEq)]
pub struct Force {
    pub header: HeaderName,
    /// Only callers from these networks (`None`: any caller).
    pub from: Option<Vec<ipnet::IpNet>>,
    /// The environment variable holding a secret the caller must also send, in
    /// `<header>-secret` (compared in constant time).
    pub secret_env: Option<String>,
}

impl Force {
    /// The header carrying the secret: `<header>-secret`.
    pub fn secret_header(&self) -> HeaderName {
        HeaderName::from_bytes(format!("{}-secret", self.header.as_str()).as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-runoff-backend-secret"))
    }
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    /// The addresses as written (`host:port` each), in file order; resolved on every load and,
    /// for names, every `resolve_every` while running.
    pub entries: Vec<String>,
    /// What each entry resolved to when the config loaded, in entry order.
    pub resolved: Vec<Vec<SocketAddr>>,
    /// How the backend's addresses are chosen, checked, ejected and retried.
    pub pool: PoolSpec,
    /// What runoff speaks to it.
    pub protocol: Protocol,
    /// Requests at once on one HTTP/2 connection to it (`protocol: h2c` or `h2`).
    pub max_streams: usize,
    /// TLS to the backend, when it has `tls:`.
    pub tls: Option<BackendTls>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Requests under way to this backend at once; past it runoff answers 503.
    pub max_in_flight: Option<usize>,
    /// The backend's process on this host, sampled for CPU and memory.
    pub process: Option<ProcessSpec>,
}

impl Backend {
    /// The addresses as written, for messages: `a:1` or `a:1, b:2`.
    pub fn address(&self) -> String {
        self.entries.join(", ")
    }

    /// Every address the entries resolved to at load, each once.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        let mut all: Vec<SocketAddr> = Vec::new();
        for a in self.resolved.iter().flatten() {
            if !all.contains(a) {
                all.push(*a);
            }
        }
        all
    }
}

/// The protocol runoff speaks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    /// HTTP/2 in cleartext, with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http1 => "http1",
            Protocol::H2c => "h2c",
            Protocol::H2 => "h2",
        }
    }

    /// HTTP/2 on the wire (framing, no connection-specific fields).
    pub fn is_h2(self) -> bool {
        matches!(self, Protocol::H2c | Protocol::H2)
    }
}

/// TLS to a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendTls {
    /// The name sent as SNI and checked against the certificate (empty: none, then nothing
    /// can be verified).
    pub sni: String,
    /// Check the backend's certificate (chain and name).
    pub verify: bool,
    /// Trust these CA certificates (DER, from `ca_file`) instead of the system's.
    pub ca: Option<Vec<Vec<u8>>>,
}

/// A backend's addresses as a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// How often names are resolved again (IP literals never are).
    pub resolve_every: Duration,
    pub balance: Balance,
    /// Further attempts of a request on other addresses of the backend, when safe.
    pub retries: u32,
    pub health: Option<HealthCheck>,
    pub outlier: Outlier,
}

/// Which address of a backend a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    LeastInFlight,
}

impl Balance {
    pub fn as_str(self) -> &'static str {
        match self {
            Balance::RoundRobin => "round_robin",
            Balance::LeastInFlight => "least_in_flight",
        }
    }
}

/// Active health checks of each address.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub path: String,
    /// The Host sent (else the address as written).
    pub host: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_after: u32,
    pub unhealthy_after: u32,
    /// Inclusive status ranges a passing check answers with.
    pub expect_status: Vec<(u16, u16)>,
}

/// Passive outlier ejection: an address failing this many times in a row leaves the rotation
/// for a backoff that doubles each time, up to `max_ejection`; 0 turns a rule off.
#[derive(Debug, Clone, PartialEq)]
pub struct Outlier {
    /// Connection failures: refused, timed out, reset, closed before an answer.
    pub consecutive_errors: u32,
    /// 5xx answers from the backend (off by default: the trial wants to see them).
    pub consecutive_5xx: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// The share of a backend's addresses that may be ejected at once (one always may).
    pub max_ejected_percent: u32,
}

/// Which process a same-host backend runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessSpec {
    Pid(u32),
    PidFile(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub name: String,
    pub matcher: RouteMatch,
    /// The split in file order; sticky ranges follow this order.
    pub split: Vec<SplitEntry>,
    pub sticky: Option<StickyKey>,
    /// Forcing a backend with a header: opt-in, from allowed sources, with a secret.
    pub force: Option<Force>,
    pub mirror: Option<Mirror>,
    /// Compare the primary's and the shadow's answers (needs `mirror`).
    pub compare: Option<Compare>,
    /// Index into `Config::backends` of the route's baseline (reports compare the candidate
    /// against it): `baseline:`, else the first backend of the split.
    pub baseline: usize,
    /// Statistical verdicts on the candidate against the baseline.
    pub analysis: Option<Analysis>,
    /// A progressive ramp of the candidate's weight, driven by the verdicts (split routes).
    pub ramp: Option<Ramp>,
    /// An upgraded WebSocket connection idle this long is closed (the route's
    /// `websocket.idle_timeout`, else the top-level one).
    pub websocket_idle_timeout: Duration,
    /// `on_unhealthy.fallback`: the backend of the split that takes the share of one with no
    /// healthy address (else such requests are answered 503).
    pub fallback: Option<usize>,
}

/// How the candidate is judged against the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// 1 − α of every confidence bound (the verdicts' error rate is at most α).
    pub confidence: f64,
    /// No verdict before this many requests (or pairs) on each side.
    pub min_samples: u64,
    pub criteria: Vec<Criterion>,
}

/// One criterion the candidate must meet, with its margin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Criterion {
    /// Mirrored routes: the median of per-request candidate ÷ baseline latency; split routes:
    /// the ratio of the two backends' medians. At most `max_ratio`.
    LatencyP50 { max_ratio: f64 },
    /// The ratio of the two backends' p99s; at most `max_ratio`.
    LatencyP99 { max_ratio: f64 },
    /// Candidate error rate minus baseline's, in percentage points; at most this.
    ErrorRate { max_increase_pp: f64 },
    /// Share of compared pairs that match; at least this.
    MatchRate { min: f64 },
}

impl Criterion {
    /// The name people and metrics use.
    pub fn name(self) -> &'static str {
        match self {
            Criterion::LatencyP50 { .. } => "latency_p50",
            Criterion::LatencyP99 { .. } => "latency_p99",
            Criterion::ErrorRate { .. } => "error_rate",
            Criterion::MatchRate { .. } => "match_rate",
        }
    }
}

/// The ramp of a split route's candidate weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Ramp {
    /// The candidate's share of traffic at each step, in percent, rising.
    pub steps: Vec<u32>,
    /// The least time at a step before advancing (every criterion must also pass).
    pub min_interval: Duration,
    /// The longest time a step may stay inconclusive; past it, the ramp rolls back.
    pub max_hold: Duration,
    /// What a failing criterion does.
    pub on_fail: OnFail,
}

/// What a ramp does when a criterion fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFail {
    /// The candidate's weight goes to 0 and stays there (across reloads and restarts).
    Rollback,
    /// The ramp stops at its step until resumed.
    Pause,
}

impl Route {
    /// The candidate compared with the baseline: the mirror's target, else the first other
    /// backend of the split.
    pub fn candidate(&self) -> Option<usize> {
        if let Some(m) = &self.mirror {
            return Some(m.to);
        }
        self.split
            .iter()
            .map(|e| e.backend)
            .find(|b| *b != self.baseline)
    }
}

/// How primary and shadow responses are compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Compare {
    pub status: bool,
    pub headers: HeaderRule,
    /// Pairs with a (decoded) body larger than this are `skipped`.
    pub body_max_bytes: usize,
    pub json: JsonRules,
    /// Mismatch samples kept in memory per route.
    pub samples: usize,
    /// Compare gRPC bodies byte for byte: off by default, since equal messages can be encoded
    /// differently by two runtimes' protobuf libraries (field order, default values).
    pub grpc_body: bool,
}

/// Which response headers are compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderRule {
    /// Only these.
    Compare(Vec<HeaderName>),
    /// All but these (and framing headers, which differ by transport, not by answer).
    Ignore(Vec<HeaderName>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct JsonRules {
    /// JSON Pointers, `*` matching any key or index, removed on both sides before comparing.
    pub ignore_paths: Vec<Vec<String>>,
    /// Compare arrays as multisets.
    pub array_order_ignore: bool,
    /// Absolute tolerance for numbers.
    pub float_tolerance: f64,
}

/// Shadow traffic for a route: copies of its requests go to `to`, whose answers are measured
/// and thrown away.
#[derive(Debug, Clone)]
pub struct Mirror {
    /// Index into `Config::backends`.
    pub to: usize,
    /// Share of eligible requests copied, 0-100.
    pub percent: f64,
    pub methods: Vec<Method>,
    pub max_body_bytes: u64,
    pub max_in_flight: usize,
    /// The whole shadow exchange.
    pub timeout: Duration,
    pub marker_header: HeaderName,
    pub strip_headers: Vec<HeaderName>,
    pub pacing: Pacing,
    /// Mirror upgraded WebSocket connections too (opt-in: messages may have side effects).
    pub websocket: bool,
    /// Shadow WebSocket connections open at once for this route.
    pub websocket_max_connections: usize,
    /// Client bytes waiting for one shadow WebSocket connection.
    pub websocket_queue_bytes: usize,
}

/// How copies are paced against the primary's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pacing {
    /// Every eligible copy is sent (up to `max_in_flight`): the shadow sees the primary's
    /// arrivals, whatever its own pace.
    #[default]
    Off,
    /// Copies under way never outnumber the primary's requests under way on the route: a copy
    /// that would is dropped as `paced`, so a load paced by the primary's answers (a
    /// closed-loop load test) gives both backends the same concurrency.
    Matched,
}

#[derive(Debug, Clone, Default)]
pub struct RouteMatch {
    pub path_prefix: String,
    /// Lower-case host without port; a leading `*.` matches any subdomain.
    pub host: Option<String>,
    pub methods: Option<Vec<Method>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitEntry {
    /// Index into `Config::backends`.
    pub backend: usize,
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

impl Mirror {
    /// A mirror to backend `to` with every other setting at its documented default (used
    /// when the admin API switches a mirror on for a route that has none).
    pub fn with_defaults(to: usize, percent: f64) -> Mirror {
        Mirror {
            to,
            percent,
            methods: defaults::MIRROR_METHODS
                .iter()
                .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            max_body_bytes: defaults::MIRROR_MAX_BODY_BYTES,
            max_in_flight: defaults::MIRROR_MAX_IN_FLIGHT,
            timeout: defaults::MIRROR_TIMEOUT,
            marker_header: HeaderName::from_static(defaults::MIRROR_MARKER_HEADER),
            strip_headers: Vec::new(),
            pacing: Pacing::Off,
            websocket: false,
            websocket_max_connections: defaults::MIRROR_WEBSOCKET_MAX_CONNECTIONS,
            websocket_queue_bytes: defaults::MIRROR_WEBSOCKET_QUEUE_BYTES,
        }
    }
}
