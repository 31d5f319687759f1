//! Configuration: the user's YAML (`schema`) validated into the typed `Config` the proxy uses.
//!
//! Lives here: parsing from `&str`, defaults, validation that collects every problem with its
//! field path, and DNS resolution of backend addresses (at load and reload only).
//! Must not: touch the network beyond that resolution, read environment variables, or know
//! about Pingora.

pub mod schema;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::HeaderName;
use http::Method;

use crate::error::{ConfigError, Problem};
use schema::{OneOrMany, RawConfig, RawForceHeader, RawRoute, RawSticky};

/// Defaults, in one place; `config.example.yaml` documents the same values.
pub mod defaults {
    use std::time::Duration;
    pub const THREADS: usize = 2;
    pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
    pub const UPSTREAM_KEEPALIVE_POOL_SIZE: usize = 128;
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9100";
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
    pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
    pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
    pub const FORCE_HEADER: &str = "x-runoff-backend";
    pub const REQUEST_ID_HEADER: &str = "x-request-id";
    pub const MIRROR_PERCENT: f64 = 100.0;
    pub const MIRROR_METHODS: [&str; 2] = ["GET", "HEAD"];
    pub const MIRROR_MAX_BODY_BYTES: u64 = 1_048_576;
    pub const MIRROR_MAX_IN_FLIGHT: usize = 1024;
    pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(5);
    pub const MIRROR_MARKER_HEADER: &str = "x-runoff-shadow";
    pub const MIRROR_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
    pub const UPGRADE_SOCK: &str = "/tmp/runoff-upgrade.sock";
    pub const COMPARE_HEADERS: [&str; 1] = ["content-type"];
    pub const COMPARE_MAX_BYTES: usize = 262_144;
    pub const COMPARE_SAMPLES: usize = 100;
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: Vec<SocketAddr>,
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub forwarding: Forwarding,
    pub access_log: AccessLog,
    /// Backends in file order; a backend's index here is its id elsewhere.
    pub backends: Vec<Backend>,
    /// Routes in file order: the first match wins.
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub threads: usize,
    pub drain_timeout: Duration,
    pub upstream_keepalive_pool_size: usize,
    /// Global budget for request-body bytes buffered for shadow copies.
    pub mirror_memory_bytes: u64,
    /// Reload when the config file changes.
    pub watch: bool,
    /// Where a new process started with `--upgrade` receives the listeners (SIGQUIT handoff).
    pub upgrade_sock: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
    /// The environment variable holding the bearer token for `/api/*` (the name, never the
    /// token itself).
    pub token_env: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Forwarding {
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub request_id_header: HeaderName,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Off,
    Stdout,
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    /// The address as written (`host:port`), re-resolved on every load.
    pub address: String,
    pub addr: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    /// Requests under way to this backend at once; past it runoff answers 503.
    pub max_in_flight: Option<usize>,
    /// The backend's process on this host, sampled for CPU and memory.
    pub process: Option<ProcessSpec>,
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
    pub force_header: Option<HeaderName>,
    pub mirror: Option<Mirror>,
    /// Compare the primary's and the shadow's answers (needs `mirror`).
    pub compare: Option<Compare>,
    /// Index into `Config::backends` of the route's baseline (reports compare the candidate
    /// against it): `baseline:`, else the first backend of the split.
    pub baseline: usize,
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
        }
    }
}

impl Config {
    /// Parse and validate YAML text. Resolves backend host names.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        validate(raw)
    }

    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text)
    }

    pub fn backend_index(&self, name: &str) -> Option<usize> {
        self.backends.iter().position(|b| b.name == name)
    }
}

/// Collects problems while building the typed config.
struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    fn duration(&mut self, path: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.report(path, format!("must be greater than 0, got `{text}`"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.report(
                    path,
                    format!("`{text}` is not a duration like 250ms or 5s ({e})"),
                );
                default
            }
        }
    }

    fn positive(&mut self, path: &str, value: Option<i64>, default: usize) -> usize {
        match value {
            None => default,
            Some(v) if v > 0 => usize::try_from(v).unwrap_or(default),
            Some(v) => {
                self.report(path, format!("must be greater than 0, got {v}"));
                default
            }
        }
    }

    fn listen_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    path,
                    format!(
                        "`{text}` is not an IP address and port like 127.0.0.1:8080 or [::1]:8080"
                    ),
                );
                None
            }
        }
    }

    /// A list of HTTP methods (any case); each bad one is reported as `path[j]`.
    fn methods(&mut self, path: &str, names: &[String]) -> Vec<Method> {
        names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        self.report(
                            format!("{path}[{j}]"),
                            format!("`{name}` is not an HTTP method"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    fn header_name(&mut self, path: &str, text: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.report(path, format!("`{text}` is not a valid header name"));
                None
            }
        }
    }
}

/// Resolve `host:port` to one socket address (the first the resolver gives).
pub fn resolve_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` is not host:port (the port is missing)"));
    };
    if host.is_empty() {
        return Err(format!("`{text}` is not host:port (the host is missing)"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{text}` is not host:port (`{port}` is not a port)"
        ));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address")),
        Err(e) => Err(format!("cannot resolve `{host}`: {e}")),
    }
}

fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
    let mut c = Checker {
        problems: Vec::new(),
    };

    let listen_texts = match raw.listen {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if listen_texts.is_empty() {
        c.report("listen", "needs at least one address");
    }
    let mut listen = Vec::new();
    for (i, text) in listen_texts.iter().enumerate() {
        let path = if listen_texts.len() == 1 {
            "listen".to_string()
        } else {
            format!("listen[{i}]")
        };
        if let Some(a) = c.listen_addr(&path, text) {
            if listen.contains(&a) {
                c.report(&path, format!("`{text}` is listed twice"));
            } else {
                listen.push(a);
            }
        }
    }

    let server = ServerSettings {
        threads: c.positive("server.threads", raw.server.threads, defaults::THREADS),
        drain_timeout: c.duration(
            "server.drain_timeout",
            raw.server.drain_timeout.as_deref(),
            defaults::DRAIN_TIMEOUT,
        ),
        upstream_keepalive_pool_size: c.positive(
            "server.upstream_keepalive_pool_size",
            raw.server.upstream_keepalive_pool_size,
            defaults::UPSTREAM_KEEPALIVE_POOL_SIZE,
        ),
        mirror_memory_bytes: c.positive(
            "server.mirror_memory_bytes",
            raw.server.mirror_memory_bytes,
            defaults::MIRROR_MEMORY_BYTES as usize,
        ) as u64,
        watch: raw.server.watch.unwrap_or(false),
        upgrade_sock: PathBuf::from(
            raw.server
                .upgrade_sock
                .clone()
                .unwrap_or_else(|| defaults::UPGRADE_SOCK.to_string()),
        ),
    };

    let admin_text = raw
        .admin
        .listen
        .clone()
        .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    let admin_listen = c.listen_addr("admin.listen", &admin_text);
    if let Some(a) = admin_listen {
        if listen.contains(&a) {
            c.report(
                "admin.listen",
                format!("`{admin_text}` is also a proxy listen address"),
            );
        }
        if !a.ip().is_loopback() && raw.admin.token_env.is_none() {
            c.report(
                "admin.listen",
                format!(
                    "`{admin_text}` is reachable from other hosts: set admin.token_env to the name of an environment variable holding a bearer token, or listen on 127.0.0.1"
                ),
            );
        }
    }
    if let Some(name) = &raw.admin.token_env {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ok {
            c.report(
                "admin.token_env",
                format!("`{name}` is not an environment variable name"),
            );
        }
    }

    let request_id_text = raw
        .forwarding
        .request_id_header
        .clone()
        .unwrap_or_else(|| defaults::REQUEST_ID_HEADER.to_string());
    let request_id_header = c
        .header_name("forwarding.request_id_header", &request_id_text)
        .unwrap_or_else(|| HeaderName::from_static(defaults::REQUEST_ID_HEADER));
    let forwarding = Forwarding {
        x_forwarded_for: raw.forwarding.x_forwarded_for.unwrap_or(true),
        x_forwarded_proto: raw.forwarding.x_forwarded_proto.unwrap_or(true),
        x_forwarded_host: raw.forwarding.x_forwarded_host.unwrap_or(true),
        request_id_header,
    };

    let access_log = match raw.access_log.as_deref() {
        None | Some("off") => AccessLog::Off,
        Some("stdout") | Some("-") => AccessLog::Stdout,
        Some("") => {
            c.report("access_log", "must be `off`, `stdout` or a file path");
            AccessLog::Off
        }
        Some(path) => AccessLog::File(PathBuf::from(path)),
    };

    if raw.backends.is_empty() {
        c.report("backends", "needs at least one backend");
    }
    let mut backends = Vec::new();
    for (name, b) in &raw.backends {
        let path = format!("backends.{name}");
        check_name(&mut c, &path, name);
        let addr = match resolve_address(b.address.trim()) {
            Ok(a) => a,
            Err(e) => {
                c.report(format!("{path}.address"), e);
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        };
        backends.push(Backend {
            name: name.clone(),
            address: b.address.clone(),
            addr,
            connect_timeout: c.duration(
                &format!("{path}.connect_timeout"),
                b.connect_timeout.as_deref(),
                defaults::CONNECT_TIMEOUT,
            ),
            read_timeout: c.duration(
                &format!("{path}.read_timeout"),
                b.read_timeout.as_deref(),
                defaults::READ_TIMEOUT,
            ),
            write_timeout: c.duration(
                &format!("{path}.write_timeout"),
                b.write_timeout.as_deref(),
                defaults::WRITE_TIMEOUT,
            ),
            max_in_flight: b
                .max_in_flight
                .map(|v| c.positive(&format!("{path}.max_in_flight"), Some(v), 1)),
            process: b.process.as_ref().and_then(|p| match (p.pid, &p.pid_file) {
                (Some(pid), None) => match u32::try_from(pid) {
                    Ok(pid) if pid > 0 => Some(ProcessSpec::Pid(pid)),
                    _ => {
                        c.report(
                            format!("{path}.process.pid"),
                            format!("`{pid}` is not a process id"),
                        );
                        None
                    }
                },
                (None, Some(file)) if !file.is_empty() => {
                    Some(ProcessSpec::PidFile(PathBuf::from(file)))
                }
                _ => {
                    c.report(
                        format!("{path}.process"),
                        "give exactly one of `pid: N` or `pid_file: PATH`",
                    );
                    None
                }
            }),
        });
    }

    if raw.routes.is_empty() {
        c.report("routes", "needs at least one route");
    }
    let mut routes: Vec<Route> = Vec::new();
    for (i, r) in raw.routes.iter().enumerate() {
        let path = format!("routes[{i}]");
        if raw.routes[..i].iter().any(|other| other.name == r.name) {
            c.report(
                format!("{path}.name"),
                format!("`{}` is already the name of another route", r.name),
            );
        }
        if let Some(route) = validate_route(&mut c, &path, r, &backends) {
            routes.push(route);
        }
    }

    if !c.problems.is_empty() {
        return Err(ConfigError::Invalid(c.problems));
    }
    Ok(Config {
        listen,
        server,
        admin: AdminSettings {
            listen: admin_listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 9100))),
            token_env: raw.admin.token_env.clone(),
        },
        forwarding,
        access_log,
        backends,
        routes,
    })
}

/// Names become Prometheus label values and URL path segments: keep them plain.
fn check_name(c: &mut Checker, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.');
    if !ok {
        c.report(
            path,
            format!("name `{name}` must be 1-64 characters of letters, digits, `_`, `-` or `.`"),
        );
    }
}

fn validate_route(
    c: &mut Checker,
    path: &str,
    r: &RawRoute,
    backends: &[Backend],
) -> Option<Route> {
    check_name(c, &format!("{path}.name"), &r.name);
    let before = c.problems.len();

    let path_prefix = r.matcher.path_prefix.clone().unwrap_or_else(|| "/".into());
    if !path_prefix.starts_with('/') {
        c.report(
            format!("{path}.match.path_prefix"),
            format!("`{path_prefix}` must start with `/`"),
        );
    }
    let host = r
        .matcher
        .host
        .as_ref()
        .map(|h| h.trim().to_ascii_lowercase());
    if let Some(h) = &host {
        if h.is_empty() || h.contains(['/', ' ']) {
            c.report(
                format!("{path}.match.host"),
                format!("`{h}` is not a host name"),
            );
        }
    }
    let methods = r.matcher.methods.as_ref().map(|list| {
        if list.is_empty() {
            c.report(
                format!("{path}.match.methods"),
                "is empty: leave it out to match every method",
            );
        }
        c.methods(&format!("{path}.match.methods"), list)
    });

    if r.split.is_empty() {
        c.report(format!("{path}.split"), "needs at least one backend");
    }
    let mut split = Vec::new();
    let mut total: u64 = 0;
    for (name, weight) in &r.split {
        let entry_path = format!("{path}.split.{name}");
        let backend = backends.iter().position(|b| &b.name == name);
        if backend.is_none() {
            c.report(&entry_path, "no such backend");
        }
        let weight = match u32::try_from(*weight) {
            Ok(w) if w <= 1_000_000 => w,
            _ => {
                c.report(
                    &entry_path,
                    format!("weight must be an integer from 0 to 1000000, got {weight}"),
                );
                0
            }
        };
        total += u64::from(weight);
        if let Some(backend) = backend {
            split.push(SplitEntry { backend, weight });
        }
    }
    if !r.split.is_empty() && total == 0 {
        c.report(
            format!("{path}.split"),
            "weights add up to 0: at least one must be > 0",
        );
    }

    let sticky = r
        .sticky
        .as_ref()
        .and_then(|s| validate_sticky(c, &format!("{path}.sticky"), s));

    let force_header = match &r.force_header {
        None | Some(RawForceHeader::Enabled(true)) => {
            Some(HeaderName::from_static(defaults::FORCE_HEADER))
        }
        Some(RawForceHeader::Enabled(false)) => None,
        Some(RawForceHeader::Name(n)) => c.header_name(&format!("{path}.force_header"), n),
    };

    let mirror = r
        .mirror
        .as_ref()
        .and_then(|m| validate_mirror(c, &format!("{path}.mirror"), m, backends));
    let compare = r
        .compare
        .as_ref()
        .and_then(|cmp| validate_compare(c, &format!("{path}.compare"), cmp));
    if r.compare.is_some() && r.mirror.is_none() {
        c.report(
            format!("{path}.compare"),
            "needs a `mirror` on the same route: it compares the primary's answer with the shadow's",
        );
    }

    let baseline = match &r.baseline {
        None => split.first().map(|e| e.backend).unwrap_or(0),
        Some(name) => match split.iter().find(|e| backends[e.backend].name == *name) {
            Some(e) => e.backend,
            None => {
                c.report(
                    format!("{path}.baseline"),
                    format!("`{name}` is not a backend of this route's split"),
                );
                0
            }
        },
    };
    if c.problems.len() > before {
        return None;
    }
    Some(Route {
        baseline,
        name: r.name.clone(),
        matcher: RouteMatch {
            path_prefix,
            host,
            methods,
        },
        split,
        sticky,
        force_header,
        mirror,
        compare,
    })
}

/// Parse a JSON Pointer (`/items/*/id`, `~0` for `~`, `~1` for `/`) into its segments.
pub fn json_pointer(text: &str) -> Option<Vec<String>> {
    let rest = text.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|seg| seg.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn validate_compare(c: &mut Checker, path: &str, raw: &schema::RawCompare) -> Option<Compare> {
    let before = c.problems.len();
    let names = |c: &mut Checker, p: &str, list: &[String]| -> Vec<HeaderName> {
        list.iter()
            .enumerate()
            .filter_map(|(j, h)| c.header_name(&format!("{p}[{j}]"), h))
            .collect()
    };
    let headers = match &raw.headers {
        None => HeaderRule::Compare(
            defaults::COMPARE_HEADERS
                .iter()
                .map(|h| HeaderName::from_static(h))
                .collect(),
        ),
        Some(rule) => match (&rule.compare, &rule.ignore) {
            (Some(list), None) => {
                HeaderRule::Compare(names(c, &format!("{path}.headers.compare"), list))
            }
            (None, Some(list)) => {
                HeaderRule::Ignore(names(c, &format!("{path}.headers.ignore"), list))
            }
            _ => {
                c.report(
                    format!("{path}.headers"),
                    "give exactly one of `compare: [...]` (only these) or `ignore: [...]` (all but these)",
                );
                HeaderRule::Compare(Vec::new())
            }
        },
    };
    let body = raw.body.clone().unwrap_or_default();
    let body_max_bytes = c.positive(
        &format!("{path}.body.max_bytes"),
        body.max_bytes,
        defaults::COMPARE_MAX_BYTES,
    );
    let json = body.json.unwrap_or_default();
    let ignore_paths = json
        .ignore_paths
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, p)| {
            let parsed = json_pointer(p);
            if parsed.is_none() {
                c.report(
                    format!("{path}.body.json.ignore_paths[{j}]"),
                    format!(
                        "`{p}` is not a JSON Pointer: it must start with `/`, e.g. /items/*/id"
                    ),
                );
            }
            parsed
        })
        .collect();
    let array_order_ignore = match json.array_order.as_deref() {
        None | Some("strict") => false,
        Some("ignore") => true,
        Some(other) => {
            c.report(
                format!("{path}.body.json.array_order"),
                format!("must be `strict` or `ignore`, got `{other}`"),
            );
            false
        }
    };
    let float_tolerance = json.float_tolerance.unwrap_or(0.0);
    if !(float_tolerance >= 0.0 && float_tolerance.is_finite()) {
        c.report(
            format!("{path}.body.json.float_tolerance"),
            format!("must be a number >= 0, got {float_tolerance}"),
        );
    }
    let samples = match raw.samples {
        None => defaults::COMPARE_SAMPLES,
        Some(n) if (0..=100_000).contains(&n) => n as usize,
        Some(n) => {
            c.report(
                format!("{path}.samples"),
                format!("must be from 0 to 100000, got {n}"),
            );
            0
        }
    };
    if c.problems.len() > before {
        return None;
    }
    Some(Compare {
        status: raw.status.unwrap_or(true),
        headers,
        body_max_bytes,
        json: JsonRules {
            ignore_paths,
            array_order_ignore,
            float_tolerance,
        },
        samples,
    })
}

fn validate_mirror(
    c: &mut Checker,
    path: &str,
    m: &schema::RawMirror,
    backends: &[Backend],
) -> Option<Mirror> {
    let before = c.problems.len();
    let to = backends.iter().position(|b| b.name == m.to);
    if to.is_none() {
        c.report(format!("{path}.to"), format!("`{}`: no such backend", m.to));
    }
    let percent = m.percent.unwrap_or(defaults::MIRROR_PERCENT);
    if !(0.0..=100.0).contains(&percent) {
        c.report(
            format!("{path}.percent"),
            format!("must be from 0 to 100, got {percent}"),
        );
    }
    let method_names: Vec<String> = match &m.methods {
        Some(list) => list.clone(),
        None => defaults::MIRROR_METHODS
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    let methods = c.methods(&format!("{path}.methods"), &method_names);
    let max_body_bytes = match m.max_body_bytes {
        None => defaults::MIRROR_MAX_BODY_BYTES,
        Some(v) if v >= 0 => v as u64,
        Some(v) => {
            c.report(
                format!("{path}.max_body_bytes"),
                format!("must be 0 or more, got {v}"),
            );
            0
        }
    };
    let max_in_flight = c.positive(
        &format!("{path}.max_in_flight"),
        m.max_in_flight,
        defaults::MIRROR_MAX_IN_FLIGHT,
    );
    let timeout = c.duration(
        &format!("{path}.timeout"),
        m.timeout.as_deref(),
        defaults::MIRROR_TIMEOUT,
    );
    let marker_text = m
        .marker_header
        .clone()
        .unwrap_or_else(|| defaults::MIRROR_MARKER_HEADER.to_string());
    let marker_header = c.header_name(&format!("{path}.marker_header"), &marker_text);
    let strip_headers = m
        .strip_headers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, h)| c.header_name(&format!("{path}.strip_headers[{j}]"), h))
        .collect();
    if c.problems.len() > before {
        return None;
    }
    Some(Mirror {
        to: to?,
        percent,
        methods,
        max_body_bytes,
        max_in_flight,
        timeout,
        marker_header: marker_header?,
        strip_headers,
    })
}

fn validate_sticky(c: &mut Checker, path: &str, s: &RawSticky) -> Option<StickyKey> {
    let mut chosen = Vec::new();
    if let Some(h) = &s.header {
        chosen.push(
            c.header_name(&format!("{path}.header"), h)
                .map(StickyKey::Header),
        );
    }
    if let Some(name) = &s.cookie {
        if name.is_empty() || name.contains([';', '=', ' ']) {
            c.report(
                format!("{path}.cookie"),
                format!("`{name}` is not a cookie name"),
            );
            chosen.push(None);
        } else {
            chosen.push(Some(StickyKey::Cookie(name.clone())));
        }
    }
    match s.client_ip {
        Some(true) => chosen.push(Some(StickyKey::ClientIp)),
        Some(false) => {
            c.report(
                format!("{path}.client_ip"),
                "only `true` makes sense: leave `sticky` out for random choice",
            );
        }
        None => {}
    }
    match chosen.len() {
        0 => {
            c.report(path, "needs one of `header`, `cookie` or `client_ip: true`");
            None
        }
        1 => chosen.pop().flatten(),
        _ => {
            c.report(path, "give only one of `header`, `cookie` or `client_ip`");
            None
        }
    }
}

#[cfg(test)]
mod tests;
