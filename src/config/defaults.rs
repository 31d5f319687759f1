//! Every default of the config, in one place; `config.example.yaml` documents the same values
//! and the CLI's help names them.
//!
//! Must not: hold anything but constants, and the one default read off the machine
//! ([`threads`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Proxy threads: the cores this process may use (its CPU affinity and cgroup quota, as
/// `std::thread::available_parallelism` reads them), as nginx's `worker_processes auto` and
/// Envoy's `--concurrency` default; 1 when they cannot be read.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a caller's keep-alive connection may wait for its next request: nginx's 75 s.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(75);
pub const UPSTREAM_KEEPALIVE_POOL_SIZE: usize = 128;
/// How long a caller may pause while sending a request body: nginx's `client_body_timeout`.
pub const CLIENT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a caller may take to send a request's header block: nginx's
/// `client_header_timeout`.
pub const CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one write of a response to a caller may wait: nginx's `send_timeout`.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// Callers' connections open at once (above the 10,000 the benches hold).
pub const MAX_CONNECTIONS: usize = 16_384;
/// The admin listener: loopback, so the API works without a token only on this host.
pub const ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9100);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a backend's names are resolved again: Envoy's `dns_refresh_rate`.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(5);
/// Further attempts on another address after a connection failure (nginx's
/// `proxy_next_upstream error` moves on to the next server the same way).
pub const RETRIES: u32 = 1;
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);
pub const HEALTHY_AFTER: u32 = 2;
pub const UNHEALTHY_AFTER: u32 = 3;
/// 2xx and 3xx pass a health check (nginx's default `match`).
pub const HEALTH_EXPECT: (u16, u16) = (200, 399);
pub const OUTLIER_CONSECUTIVE_ERRORS: u32 = 3;
/// nginx's `fail_timeout`.
pub const OUTLIER_BASE_EJECTION: Duration = Duration::from_secs(10);
/// Envoy's `max_ejection_time`.
pub const OUTLIER_MAX_EJECTION: Duration = Duration::from_secs(300);
pub const OUTLIER_MAX_EJECTED_PERCENT: u32 = 50;
/// Requests at once on one HTTP/2 connection to a backend (Pingora's default is 1: a
/// connection per request in flight); 100 is the common servers' own stream limit.
pub const MAX_STREAMS: usize = 100;
/// The gRPC status codes by number (the spec's names).
pub const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
/// gRPC codes counted as errors: the server's failures (UNKNOWN, DEADLINE_EXCEEDED,
/// UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS), as a 5xx is; the caller's mistakes
/// (INVALID_ARGUMENT, NOT_FOUND, …) are not, as a 4xx is not.
pub const GRPC_ERROR_CODES: [u8; 6] = [2, 4, 12, 13, 14, 15];
pub const FORCE_HEADER: &str = "x-runoff-backend";
pub const REQUEST_ID_HEADER: &str = "x-request-id";
pub const MIRROR_PERCENT: f64 = 100.0;
pub const MIRROR_METHODS: [&str; 2] = ["GET", "HEAD"];
pub const MIRROR_MAX_BODY_BYTES: u64 = 1_048_576;
pub const MIRROR_MAX_IN_FLIGHT: usize = 1024;
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);
pub const MIRROR_MARKER_HEADER: &str = "x-runoff-shadow";
pub const MIRROR_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Shadow copies run on the proxy's threads, as Envoy's and nginx's mirrors do, so both legs of
/// a pair are timed on the same thread. Threads of their own (`server.shadow_threads: 1` or
/// more) keep the copies' work (a second exchange per mirrored request) from queueing ahead of
/// callers' requests near saturation, but time the shadow leg on another thread: bench/
/// fidelity.sh measured a role bias of +15% in the p50 ratio at 500 req/s that way (against
/// -4% to -9% on the proxy's threads), so it is opt-in.
pub const SHADOW_THREADS: u32 = 0;
/// Shadow WebSocket connections open at once per route (`mirror.websocket_max_connections`).
pub const MIRROR_WEBSOCKET_MAX_CONNECTIONS: usize = 1024;
/// Client bytes waiting for one shadow WebSocket (`mirror.websocket_queue_bytes`); past it the
/// shadow is closed and counted `overloaded`.
pub const MIRROR_WEBSOCKET_QUEUE_BYTES: usize = 1024 * 1024;
/// An upgraded WebSocket connection with nothing crossing it for this long is closed (1001 to
/// both sides). Five minutes, like Envoy's stream idle timeout: far above the 30-60 s heartbeats
/// WebSocket clients and servers commonly send, and short enough that dead peers do not pile up.
pub const WEBSOCKET_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const COMPARE_HEADERS: [&str; 1] = ["content-type"];
pub const COMPARE_MAX_BYTES: usize = 262_144;
pub const COMPARE_SAMPLES: usize = 100;
/// The largest split weight (weights are integers from 0 to this).
pub const MAX_WEIGHT: u32 = 1_000_000;
/// The confidence of verdicts' bounds (1 − α).
pub const ANALYSIS_CONFIDENCE: f64 = 0.95;
/// No verdict before this many requests (or pairs) on each side.
pub const ANALYSIS_MIN_SAMPLES: u64 = 200;
/// Margins of the default criteria.
pub const LATENCY_P50_MAX_RATIO: f64 = 1.05;
pub const LATENCY_P99_MAX_RATIO: f64 = 1.10;
pub const ERROR_RATE_MAX_INCREASE_PP: f64 = 0.5;
pub const MATCH_RATE_MIN: f64 = 0.995;
/// The default ramp.
pub const RAMP_STEPS: [u32; 6] = [1, 5, 10, 25, 50, 100];
pub const RAMP_MIN_INTERVAL: Duration = Duration::from_secs(300);
pub const RAMP_MAX_HOLD: Duration = Duration::from_secs(1800);
/// The ramp state file's name, next to the config file.
pub const RAMP_STATE_FILE: &str = "runoff-ramp-state.json";
/// JSON keys whose values are redacted in everything runoff keeps or shows.
pub const REDACT_JSON_KEYS: [&str; 8] = [
    "password",
    "token",
    "secret",
    "api_key",
    "access_token",
    "refresh_token",
    "authorization",
    "cookie",
];
/// Query parameters whose values are redacted.
pub const REDACT_QUERY_PARAMS: [&str; 9] = [
    "token",
    "access_token",
    "api_key",
    "key",
    "password",
    "secret",
    "signature",
    "sig",
    "code",
];
/// Header values always redacted, whatever the config says.
pub const REDACT_HEADERS_ALWAYS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];
