//! Validation: the user's YAML (`schema`) into the typed [`Config`], one function per section,
//! collecting every problem with the path of the field it concerns.
//!
//! Lives here: the top level, the startup sections and backends (routes have their own file,
//! `validate_routes`; the problem collector is `checker`). Must not: stop at the first problem,
//! or touch the network beyond resolving backend names (through `resolve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::header::HeaderName;
use indexmap::IndexMap;

use super::checker::{check_name, Checker};
use super::defaults;
use super::model::{
    AccessLog, AddedHeaderName, AdminSettings, Backend, BackendTls, Balance, CertFiles, Config,
    Forwarding, HealthCheck, Live, Outlier, PoolSpec, ProcessSpec, Protocol, Redact,
    ServerSettings, Startup, TlsListener,
};
use super::resolve::resolve_all;
use super::schema::{
    OneOrMany, RawAdmin, RawBackend, RawBackendTls, RawConfig, RawForwarding, RawHealth,
    RawOutlier, RawRedact, RawServer, RawTlsListener,
};
use super::validate_routes::routes;
use crate::error::ConfigError;

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut c = Checker::default();
        let listen = listen(&mut c, raw.listen);
        let listen_tls = listen_tls(&mut c, &raw.listen_tls, &listen);
        let server = server(&mut c, &raw.server);
        let admin = admin(&mut c, &raw.admin, &listen);
        let forwarding = forwarding(&mut c, &raw.forwarding);
        let access_log = access_log(&mut c, raw.access_log.as_deref());
        let backends = backends(&mut c, &raw.backends, &server.resolver);
        loops_back(&mut c, &backends, &listen, admin.listen);
        let websocket_idle = c.duration(
            "websocket.idle_timeout",
            raw.websocket.idle_timeout.as_deref(),
            defaults::WEBSOCKET_IDLE_TIMEOUT,
        );
        let routes = routes(&mut c, &raw.routes, &backends, websocket_idle);
        let redact = redact(&mut c, &raw.redact);
        let grpc_error_codes = grpc_error_codes(&mut c, raw.grpc.error_codes.as_deref());
        if !c.problems.is_empty() {
            return Err(ConfigError::Invalid(c.problems));
        }
        Ok(Config {
            startup: Startup {
                listen,
                listen_tls,
                server,
                admin,
                access_log,
            },
            live: Live {
                forwarding,
                redact,
                backends,
                routes,
                grpc_error_codes,
            },
        })
    }
}

/// `listen_tls`: each listener's address (not one of the plaintext ones) and certificates,
/// loaded now so a bad file is named here.
fn listen_tls(c: &mut Checker, raw: &[RawTlsListener], plain: &[SocketAddr]) -> Vec<TlsListener> {
    let mut out: Vec<TlsListener> = Vec::new();
    for (i, l) in raw.iter().enumerate() {
        let path = format!("listen_tls[{i}]");
        let Some(address) = c.listen_addr(&format!("{path}.address"), &l.address) else {
            continue;
        };
        if plain.contains(&address) || out.iter().any(|o| o.address == address) {
            c.report(
                format!("{path}.address"),
                format!("{address} is already a listener"),
            );
        }
        let pairs: Vec<(String, &str, &str)> = match (&l.cert, &l.key, &l.certs) {
            (Some(cert), Some(key), None) => vec![(path.clone(), cert.as_str(), key.as_str())],
            (None, None, Some(list)) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    (
                        format!("{path}.certs[{j}]"),
                        p.cert.as_str(),
                        p.key.as_str(),
                    )
                })
                .collect(),
            _ => {
                c.report(
                    &path,
                    "give `cert` and `key`, or `certs: [{ cert, key }, ...]` (one or more)",
                );
                continue;
            }
        };
        let mut certs = Vec::new();
        for (at, cert, key) in pairs {
            let files = CertFiles {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            };
            if let Err((field, e)) = super::tls::load_certified_key(&files) {
                c.report(format!("{at}.{field}"), e);
            }
            certs.push(files);
        }
        out.push(TlsListener { address, certs });
    }
    out
}

/// `grpc.error_codes`: names (`UNAVAILABLE`, any case) or numbers (14).
fn grpc_error_codes(c: &mut Checker, raw: Option<&[serde_yaml::Value]>) -> Vec<u8> {
    let Some(list) = raw else {
        return defaults::GRPC_ERROR_CODES.to_vec();
    };
    let mut codes = Vec::new();
    for (i, v) in list.iter().enumerate() {
        let code = match (v.as_u64(), v.as_str()) {
            (Some(n), _) => u8::try_from(n).ok().filter(|n| *n <= 16),
            (None, Some(name)) => defaults::GRPC_CODES
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name.trim()))
                .and_then(|n| u8::try_from(n).ok()),
            _ => None,
        };
        match code {
            Some(code) if !codes.contains(&code) => codes.push(code),
            Some(_) => {}
            None => c.report(
                format!("grpc.error_codes[{i}]"),
                "must be a gRPC status name (UNAVAILABLE) or number from 0 to 16",
            ),
        }
    }
    codes
}

fn listen(c: &mut Checker, raw: OneOrMany) -> Vec<SocketAddr> {
    let texts = match raw {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    };
    if texts.is_empty() {
        c.report("listen", "needs at least one address");
    }
    let mut listen = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        let path = if texts.len() == 1 {
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
    listen
}

/// `server.keepalive_timeout`: Pingora counts keep-alive in whole seconds, so at least one.
fn keepalive_timeout(c: &mut Checker, text: Option<&str>) -> Duration {
    let path = "server.keepalive_timeout";
    let d = c.duration(path, text, defaults::KEEPALIVE_TIMEOUT);
    if d < Duration::from_secs(1) {
        c.report(
            path,
            format!("must be at least 1s, got `{}`", text.unwrap_or_default()),
        );
        return defaults::KEEPALIVE_TIMEOUT;
    }
    d
}

fn server(c: &mut Checker, raw: &RawServer) -> ServerSettings {
    ServerSettings {
        threads: c.positive("server.threads", raw.threads, defaults::threads()),
        drain_timeout: c.duration(
            "server.drain_timeout",
            raw.drain_timeout.as_deref(),
            defaults::DRAIN_TIMEOUT,
        ),
        keepalive_timeout: keepalive_timeout(c, raw.keepalive_timeout.as_deref()),
        client_body_timeout: c.duration(
            "server.client_body_timeout",
            raw.client_body_timeout.as_deref(),
            defaults::CLIENT_BODY_TIMEOUT,
        ),
        client_header_timeout: c.duration(
            "server.client_header_timeout",
            raw.client_header_timeout.as_deref(),
            defaults::CLIENT_HEADER_TIMEOUT,
        ),
        send_timeout: c.duration(
            "server.send_timeout",
            raw.send_timeout.as_deref(),
            defaults::SEND_TIMEOUT,
        ),
        underscores_in_headers: raw.underscores_in_headers.unwrap_or(false),
        max_connections: c.positive(
            "server.max_connections",
            raw.max_connections,
            defaults::MAX_CONNECTIONS,
        ),
        upstream_keepalive_pool_size: c.positive(
            "server.upstream_keepalive_pool_size",
            raw.upstream_keepalive_pool_size,
            defaults::UPSTREAM_KEEPALIVE_POOL_SIZE,
        ),
        mirror_memory_bytes: c.positive(
            "server.mirror_memory_bytes",
            raw.mirror_memory_bytes,
            defaults::MIRROR_MEMORY_BYTES as usize,
        ) as u64,
        shadow_threads: c.count(
            "server.shadow_threads",
            raw.shadow_threads,
            defaults::SHADOW_THREADS,
            0,
        ) as usize,
        watch: raw.watch.unwrap_or(false),
        upgrade_sock: match raw.upgrade_sock.as_deref() {
            None => None,
            Some("") => {
                c.report("server.upgrade_sock", "must be a file path");
                None
            }
            Some(path) => Some(PathBuf::from(path)),
        },
        ramp_state_file: match raw.ramp_state_file.as_deref() {
            None => None,
            Some("") => {
                c.report("server.ramp_state_file", "must be a file path");
                None
            }
            Some(path) => Some(PathBuf::from(path)),
        },
        h2c: raw.h2c.unwrap_or(true),
        resolver: raw
            .resolver
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, text)| {
                let text = text.trim();
                let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
                    text.parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| SocketAddr::new(ip, 53))
                });
                if parsed.is_none() {
                    c.report(
                        format!("server.resolver[{i}]"),
                        format!("`{text}` is not an IP address or ip:port of a DNS server"),
                    );
                }
                parsed
            })
            .collect(),
    }
}

fn admin(c: &mut Checker, raw: &RawAdmin, proxy_listen: &[SocketAddr]) -> AdminSettings {
    let text = raw
        .listen
        .clone()
        .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
    let listen = c.listen_addr("admin.listen", &text);
    if let Some(a) = listen {
        if proxy_listen.contains(&a) {
            c.report(
                "admin.listen",
                format!("`{text}` is also a proxy listen address"),
            );
        }
        if !a.ip().is_loopback() && raw.token_env.is_none() {
            c.report(
                "admin.listen",
                format!(
                    "`{text}` is reachable from other hosts: set admin.token_env to the name of an environment variable holding a bearer token, or listen on 127.0.0.1"
                ),
            );
        }
    }
    if let Some(name) = &raw.token_env {
        c.env_name("admin.token_env", name);
    }
    let allowed_hosts = raw
        .allowed_hosts
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(j, h)| {
            let host = h.trim().to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ' ', ':']) {
                c.report(
                    format!("admin.allowed_hosts[{j}]"),
                    format!("`{h}` is not a host name (give it without a port)"),
                );
                None
            } else {
                Some(host)
            }
        })
        .collect();
    AdminSettings {
        listen: listen.unwrap_or(defaults::ADMIN_LISTEN),
        token_env: raw.token_env.clone(),
        allowed_hosts,
    }
}

fn forwarding(c: &mut Checker, raw: &RawForwarding) -> Forwarding {
    let request_id_text = raw
        .request_id_header
        .clone()
        .unwrap_or_else(|| defaults::REQUEST_ID_HEADER.to_string());
    let request_id_header = c
        .header_name("forwarding.request_id_header", &request_id_text)
        .unwrap_or_else(|| HeaderName::from_static(defaults::REQUEST_ID_HEADER));
    Forwarding {
        x_forwarded_for: raw.x_forwarded_for.unwrap_or(true),
        x_forwarded_proto: raw.x_forwarded_proto.unwrap_or(true),
        x_forwarded_host: raw.x_forwarded_host.unwrap_or(true),
        request_id_header: AddedHeaderName::new(request_id_header),
        trusted_proxies: c.networks(
            "forwarding.trusted_proxies",
            raw.trusted_proxies.as_deref().unwrap_or_default(),
        ),
    }
}

fn redact(c: &mut Checker, raw: &RawRedact) -> Redact {
    let lower = |list: &Option<Vec<String>>, default: &[&str]| -> Vec<String> {
        match list {
            Some(list) => list.iter().map(|k| k.trim().to_ascii_lowercase()).collect(),
            None => default.iter().map(|k| k.to_string()).collect(),
        }
    };
    Redact {
        headers: raw
            .headers
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(j, h)| c.header_name(&format!("redact.headers[{j}]"), h))
            .collect(),
        json_keys: lower(&raw.json_keys, &defaults::REDACT_JSON_KEYS),
        query_params: lower(&raw.query_params, &defaults::REDACT_QUERY_PARAMS),
    }
}

/// `tls:` of a backend: the SNI (by default the address's name, when it is one), whether to
/// verify, and the CA file read now.
fn backend_tls(c: &mut Checker, path: &str, t: &RawBackendTls, entries: &[String]) -> BackendTls {
    let verify = t.verify.unwrap_or(true);
    let sni = match &t.sni {
        Some(s) => s.trim().to_string(),
        None => entries
            .first()
            .and_then(|e| match super::resolve::parse_entry(e) {
                Ok(super::resolve::Entry::Name { host, .. }) => Some(host),
                _ => None,
            })
            .unwrap_or_default(),
    };
    if verify && sni.is_empty() {
        c.report(
            format!("{path}.sni"),
            "is needed to verify the backend's certificate (its address is an IP): give the name it serves, or `verify: false`",
        );
    }
    let ca = t.ca_file.as_ref().and_then(|file| {
        use rustls::pki_types::pem::PemObject;
        let read: Result<Vec<Vec<u8>>, String> =
            rustls::pki_types::CertificateDer::pem_file_iter(file)
                .map_err(|e| format!("cannot read `{file}`: {e}"))
                .and_then(|it| {
                    it.map(|c| c.map(|c| c.to_vec()))
                        .collect::<Result<_, _>>()
                        .map_err(|e| format!("`{file}` is not PEM certificates: {e}"))
                });
        let read = read.and_then(|list| {
            for der in &list {
                let der = rustls::pki_types::CertificateDer::from(der.as_slice());
                webpki::anchor_from_trusted_cert(&der).map_err(|e| {
                    format!("`{file}` holds a certificate that cannot be a CA: {e}")
                })?;
            }
            Ok(list)
        });
        match read {
            Ok(list) if !list.is_empty() => Some(list),
            Ok(_) => {
                c.report(
                    format!("{path}.ca_file"),
                    format!("`{file}` holds no certificate"),
                );
                None
            }
            Err(e) => {
                c.report(format!("{path}.ca_file"), e);
                None
            }
        }
    });
    BackendTls { sni, verify, ca }
}

/// A backend's pool settings: balancing, retries, health checks, outlier ejection.
fn pool_spec(c: &mut Checker, path: &str, b: &RawBackend) -> PoolSpec {
    let balance = match b.balance.as_deref() {
        None | Some("round_robin") => Balance::RoundRobin,
        Some("least_in_flight") => Balance::LeastInFlight,
        Some(other) => {
            c.report(
                format!("{path}.balance"),
                format!("`{other}` is not `round_robin` or `least_in_flight`"),
            );
            Balance::RoundRobin
        }
    };
    PoolSpec {
        resolve_every: c.duration(
            &format!("{path}.resolve_every"),
            b.resolve_every.as_deref(),
            defaults::RESOLVE_EVERY,
        ),
        balance,
        retries: c.count(&format!("{path}.retries"), b.retries, defaults::RETRIES, 0),
        health: b
            .health
            .as_ref()
            .map(|h| health(c, &format!("{path}.health"), h)),
        outlier: outlier(
            c,
            &format!("{path}.outlier"),
            &b.outlier.clone().unwrap_or_default(),
        ),
    }
}

fn health(c: &mut Checker, path: &str, h: &RawHealth) -> HealthCheck {
    let check_path = h.path.clone().unwrap_or_else(|| "/".to_string());
    if !check_path.starts_with('/') || check_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        c.report(
            format!("{path}.path"),
            format!("`{check_path}` is not a path starting with `/`"),
        );
    }
    if let Some(host) = &h.host {
        if http::HeaderValue::from_str(host).is_err() || host.is_empty() {
            c.report(
                format!("{path}.host"),
                format!("`{host}` is not a Host value"),
            );
        }
    }
    let interval = c.duration(
        &format!("{path}.interval"),
        h.interval.as_deref(),
        defaults::HEALTH_INTERVAL,
    );
    let timeout = c.duration(
        &format!("{path}.timeout"),
        h.timeout.as_deref(),
        defaults::HEALTH_TIMEOUT,
    );
    if timeout > interval {
        c.report(
            format!("{path}.timeout"),
            "must not be longer than `interval` (checks of one address never overlap)",
        );
    }
    let mut expect_status = Vec::new();
    for (i, v) in h.expect_status.iter().flatten().enumerate() {
        let field = format!("{path}.expect_status[{i}]");
        match status_range(v) {
            Some(r) => expect_status.push(r),
            None => c.report(field, "must be a status code like 200 or a class like 2xx"),
        }
    }
    if h.expect_status.as_ref().is_some_and(Vec::is_empty) {
        c.report(format!("{path}.expect_status"), "needs at least one status");
    }
    if expect_status.is_empty() {
        expect_status.push(defaults::HEALTH_EXPECT);
    }
    HealthCheck {
        path: check_path,
        host: h.host.clone(),
        interval,
        timeout,
        healthy_after: c.count(
            &format!("{path}.healthy_after"),
            h.healthy_after,
            defaults::HEALTHY_AFTER,
            1,
        ),
        unhealthy_after: c.count(
            &format!("{path}.unhealthy_after"),
            h.unhealthy_after,
            defaults::UNHEALTHY_AFTER,
            1,
        ),
        expect_status,
    }
}

/// `200` → (200, 200); `"2xx"` → (200, 299).
fn status_range(v: &serde_yaml::Value) -> Option<(u16, u16)> {
    if let Some(n) = v.as_u64() {
        let n = u16::try_from(n).ok().filter(|n| (100..=599).contains(n))?;
        return Some((n, n));
    }
    let s = v.as_str()?.trim().to_ascii_lowercase();
    if let Some(class) = s.strip_suffix("xx") {
        let d = class.parse::<u16>().ok().filter(|d| (1..=5).contains(d))?;
        return Some((d * 100, d * 100 + 99));
    }
    let n = s.parse::<u16>().ok().filter(|n| (100..=599).contains(n))?;
    Some((n, n))
}

fn outlier(c: &mut Checker, path: &str, o: &RawOutlier) -> Outlier {
    let base_ejection = c.duration(
        &format!("{path}.base_ejection"),
        o.base_ejection.as_deref(),
        defaults::OUTLIER_BASE_EJECTION,
    );
    let max_ejection = c.duration(
        &format!("{path}.max_ejection"),
        o.max_ejection.as_deref(),
        defaults::OUTLIER_MAX_EJECTION.max(base_ejection),
    );
    if max_ejection < base_ejection {
        c.report(
            format!("{path}.max_ejection"),
            "must not be shorter than `base_ejection`",
        );
    }
    let max_ejected_percent = c.count(
        &format!("{path}.max_ejected_percent"),
        o.max_ejected_percent,
        defaults::OUTLIER_MAX_EJECTED_PERCENT,
        0,
    );
    if max_ejected_percent > 100 {
        c.report(
            format!("{path}.max_ejected_percent"),
            format!("must be a percentage from 0 to 100, got {max_ejected_percent}"),
        );
    }
    Outlier {
        consecutive_errors: c.count(
            &format!("{path}.consecutive_errors"),
            o.consecutive_errors,
            defaults::OUTLIER_CONSECUTIVE_ERRORS,
            0,
        ),
        consecutive_5xx: c.count(&format!("{path}.consecutive_5xx"), o.consecutive_5xx, 0, 0),
        base_ejection,
        max_ejection,
        max_ejected_percent: max_ejected_percent.min(100),
    }
}

/// A backend that is one of runoff's own listeners would send every request back to runoff.
fn loops_back(c: &mut Checker, backends: &[Backend], listen: &[SocketAddr], admin: SocketAddr) {
    for b in backends {
        for addr in &b.addrs() {
            let own = listen.iter().chain(std::iter::once(&admin)).find(|l| {
                **l == *addr
                    || (l.port() == addr.port() && l.ip().is_unspecified() && local(addr.ip()))
            });
            if let Some(l) = own {
                let field = if b.entries.len() == 1 {
                    format!("backends.{}.address", b.name)
                } else {
                    format!("backends.{}.addresses", b.name)
                };
                c.report(
                    field,
                    format!(
                        "`{addr}` is runoff's own listener {l}: every request would come back to runoff",
                    ),
                );
            }
        }
    }
}

/// An address that reaches this host through an unspecified (0.0.0.0 or ::) listener.
fn local(ip: std::net::IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}

fn access_log(c: &mut Checker, raw: Option<&str>) -> AccessLog {
    match raw {
        None | Some("off") => AccessLog::Off,
        Some("stdout") | Some("-") => AccessLog::Stdout,
        Some("") => {
            c.report("access_log", "must be `off`, `stdout` or a file path");
            AccessLog::Off
        }
        Some(path) => AccessLog::File(PathBuf::from(path)),
    }
}

fn backends(
    c: &mut Checker,
    raw: &IndexMap<String, RawBackend>,
    dns: &[SocketAddr],
) -> Vec<Backend> {
    if raw.is_empty() {
        c.report("backends", "needs at least one backend");
    }
    raw.iter()
        .map(|(name, b)| backend(c, name, b, dns))
        .collect()
}

fn backend(c: &mut Checker, name: &str, b: &RawBackend, dns: &[SocketAddr]) -> Backend {
    let path = format!("backends.{name}");
    check_name(c, &path, name);
    let written: Vec<(String, String)> = match (&b.address, &b.addresses) {
        (Some(one), None) => vec![(format!("{path}.address"), one.trim().to_string())],
        (None, Some(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("{path}.addresses[{i}]"), a.trim().to_string()))
            .collect(),
        (None, Some(_)) => {
            c.report(
                format!("{path}.addresses"),
                "needs at least one `host:port`",
            );
            Vec::new()
        }
        (Some(_), Some(_)) => {
            c.report(
                &path,
                "give `address: host:port` or `addresses: [host:port, ...]`, not both",
            );
            Vec::new()
        }
        (None, None) => {
            c.report(
                format!("{path}.address"),
                "is missing: give `address: host:port` or `addresses: [host:port, ...]`",
            );
            Vec::new()
        }
    };
    let mut resolved: Vec<Vec<SocketAddr>> = Vec::new();
    let mut entries: Vec<String> = Vec::new();
    for (field, text) in written {
        if entries.contains(&text) {
            c.report(field, format!("`{text}` is listed twice"));
            continue;
        }
        match resolve_all(&text, dns) {
            Ok(found) => resolved.push(found),
            Err(e) => {
                c.report(field, e);
                resolved.push(Vec::new());
            }
        }
        entries.push(text);
    }
    let tls = b
        .tls
        .as_ref()
        .map(|t| backend_tls(c, &format!("{path}.tls"), t, &entries));
    Backend {
        name: name.to_string(),
        entries,
        resolved,
        pool: pool_spec(c, &path, b),
        protocol: match (b.protocol.as_deref(), b.tls.is_some()) {
            (None | Some("http1"), _) => Protocol::Http1,
            (Some("h2c"), false) => Protocol::H2c,
            (Some("h2"), true) => Protocol::H2,
            (Some("h2c"), true) => {
                c.report(
                    format!("{path}.protocol"),
                    "`h2c` is HTTP/2 in cleartext: with `tls`, say `h2`",
                );
                Protocol::H2
            }
            (Some("h2"), false) => {
                c.report(
                    format!("{path}.protocol"),
                    "`h2` is HTTP/2 over TLS: it needs `tls` (or say `h2c` for cleartext)",
                );
                Protocol::H2c
            }
            (Some(other), _) => {
                c.report(
                    format!("{path}.protocol"),
                    format!("`{other}` is not `http1`, `h2c` or `h2`"),
                );
                Protocol::Http1
            }
        },
        tls,
        max_streams: c.positive(
            &format!("{path}.max_streams"),
            b.max_streams,
            defaults::MAX_STREAMS,
        ),
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
    }
}
