//! The YAML schema users write, as serde structs. Unknown keys are errors.
//!
//! Lives here: the shape of the file and nothing else. Must not: validate values, resolve
//! names or hold defaults that matter to behaviour (those live in `validate`, next to the
//! typed `Config`, so one place says what a missing key means).

use indexmap::IndexMap;
use serde::Deserialize;

/// `listen: 127.0.0.1:8080` or `listen: [127.0.0.1:8080, "[::1]:8080"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: OneOrMany,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub redact: RawRedact,
    #[serde(default)]
    pub websocket: RawWebSocket,
    #[serde(default)]
    pub grpc: RawGrpc,
    #[serde(default)]
    pub access_log: Option<String>,
    #[serde(default)]
    pub listen_tls: Vec<RawTlsListener>,
    pub backends: IndexMap<String, RawBackend>,
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub threads: Option<i64>,
    pub drain_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub max_connections: Option<i64>,
    pub client_body_timeout: Option<String>,
    pub client_header_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub underscores_in_headers: Option<bool>,
    pub upstream_keepalive_pool_size: Option<i64>,
    pub mirror_memory_bytes: Option<i64>,
    pub shadow_threads: Option<i64>,
    pub watch: Option<bool>,
    pub upgrade_sock: Option<String>,
    pub ramp_state_file: Option<String>,
    pub resolver: Option<Vec<String>>,
    pub h2c: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub token_env: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    pub x_forwarded_for: Option<bool>,
    pub x_forwarded_proto: Option<bool>,
    pub x_forwarded_host: Option<bool>,
    pub request_id_header: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
}

/// `redact: { headers: [...], json_keys: [...], query_params: [...] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedact {
    pub headers: Option<Vec<String>>,
    pub json_keys: Option<Vec<String>>,
    pub query_params: Option<Vec<String>>,
}

/// `{ address, cert, key }` or `{ address, certs: [{ cert, key }, ...] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsListener {
    pub address: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub certs: Option<Vec<RawCertPair>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: String,
    pub key: String,
}

/// `grpc: { error_codes: [INTERNAL, UNAVAILABLE] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    pub error_codes: Option<Vec<serde_yaml::Value>>,
}

/// `websocket: { idle_timeout: 5m }` (top level: the default; per route: its own).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebSocket {
    pub idle_timeout: Option<String>,
}

/// `force: { header: x-runoff-backend, from: [10.0.0.0/8], secret_env: VAR }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForce {
    pub header: Option<String>,
    pub from: Option<Vec<String>>,
    pub secret_env: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    /// One `host:port`, or `addresses` for several (exactly one of the two).
    pub address: Option<String>,
    pub addresses: Option<Vec<String>>,
    pub resolve_every: Option<String>,
    pub balance: Option<String>,
    pub retries: Option<i64>,
    pub health: Option<RawHealth>,
    pub outlier: Option<RawOutlier>,
    pub protocol: Option<String>,
    pub max_streams: Option<i64>,
    pub tls: Option<RawBackendTls>,
    pub connect_timeout: Option<String>,
    pub read_timeout: Option<String>,
    pub write_timeout: Option<String>,
    pub max_in_flight: Option<i64>,
    pub process: Option<RawProcess>,
}

/// `health: { path, interval, timeout, healthy_after, unhealthy_after, expect_status, host }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<String>,
    pub host: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_after: Option<i64>,
    pub unhealthy_after: Option<i64>,
    /// Status codes (`200`) or classes (`2xx`).
    pub expect_status: Option<Vec<serde_yaml::Value>>,
}

/// `outlier: { consecutive_errors, consecutive_5xx, base_ejection, max_ejection,
/// max_ejected_percent }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutlier {
    pub consecutive_errors: Option<i64>,
    pub consecutive_5xx: Option<i64>,
    pub base_ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejected_percent: Option<i64>,
}

/// `tls: { sni, verify, ca_file }` of a backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackendTls {
    pub sni: Option<String>,
    pub verify: Option<bool>,
    pub ca_file: Option<String>,
}

/// `on_unhealthy: { fallback: NAME }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOnUnhealthy {
    pub fallback: String,
}

/// `{ pid: 1234 }` or `{ pid_file: /run/node.pid }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub pid: Option<i64>,
    pub pid_file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(rename = "match", default)]
    pub matcher: RawMatch,
    pub split: IndexMap<String, i64>,
    pub sticky: Option<RawSticky>,
    pub force_header: Option<RawForceHeader>,
    pub force: Option<RawForce>,
    pub mirror: Option<RawMirror>,
    pub compare: Option<RawCompare>,
    pub baseline: Option<String>,
    pub on_unhealthy: Option<RawOnUnhealthy>,
    pub analysis: Option<RawAnalysis>,
    pub ramp: Option<RawRamp>,
    pub websocket: Option<RawWebSocket>,
}

/// `analysis: { confidence, min_samples, criteria: { latency_p50: { max_ratio }, ... } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnalysis {
    pub confidence: Option<f64>,
    pub min_samples: Option<i64>,
    pub criteria: Option<RawCriteria>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCriteria {
    pub latency_p50: Option<RawMaxRatio>,
    pub latency_p99: Option<RawMaxRatio>,
    pub error_rate: Option<RawMaxIncrease>,
    pub match_rate: Option<RawMinRate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaxRatio {
    pub max_ratio: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaxIncrease {
    pub max_increase_pp: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMinRate {
    pub min: f64,
}

/// `ramp: { steps: [1, 5, 10, 25, 50, 100], min_interval: 5m, max_hold: 30m, on_fail: rollback }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRamp {
    pub steps: Option<Vec<i64>>,
    pub min_interval: Option<String>,
    pub max_hold: Option<String>,
    pub on_fail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompare {
    pub status: Option<bool>,
    pub headers: Option<RawHeaderRule>,
    pub body: Option<RawCompareBody>,
    pub samples: Option<i64>,
}

/// `{ compare: [content-type] }` or `{ ignore: [date, server] }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderRule {
    pub compare: Option<Vec<String>>,
    pub ignore: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompareBody {
    pub max_bytes: Option<i64>,
    pub json: Option<RawJsonRules>,
    /// Compare gRPC messages byte for byte (off by default).
    pub grpc: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonRules {
    pub ignore_paths: Option<Vec<String>>,
    pub array_order: Option<String>,
    pub float_tolerance: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMirror {
    pub to: String,
    pub percent: Option<f64>,
    pub methods: Option<Vec<String>>,
    pub max_body_bytes: Option<i64>,
    pub max_in_flight: Option<i64>,
    pub timeout: Option<String>,
    pub marker_header: Option<String>,
    pub strip_headers: Option<Vec<String>>,
    pub pacing: Option<String>,
    pub websocket: Option<bool>,
    pub websocket_max_connections: Option<i64>,
    pub websocket_queue_bytes: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    pub path_prefix: Option<String>,
    pub host: Option<String>,
    pub methods: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub header: Option<String>,
    pub cookie: Option<String>,
    pub client_ip: Option<bool>,
}

/// `force_header: x-my-header`, `force_header: true` (the default name) or `false` (off).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawForceHeader {
    Enabled(bool),
    Name(String),
}
