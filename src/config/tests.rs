//! Config validation, table by table: what passes, and what each mistake is called.

use std::net::SocketAddr;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;

use super::*;

const MINIMAL: &str = r#"
listen: 127.0.0.1:8080
backends:
  node: { address: 127.0.0.1:3000 }
  go: { address: 127.0.0.1:3001 }
routes:
  - name: api
    match: { path_prefix: /api }
    split: { node: 90, go: 10 }
"#;

/// `p` is exactly the problems of `expect`, each named by how its line starts.
fn assert_problems(p: &[String], expect: &[&str]) {
    for e in expect {
        assert!(
            p.iter().any(|line| line.starts_with(e)),
            "missing `{e}` in:\n{}",
            p.join("\n")
        );
    }
    assert_eq!(p.len(), expect.len(), "extra problems:\n{}", p.join("\n"));
}

fn problems(yaml: &str) -> Vec<String> {
    match Config::from_yaml(yaml) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems(),
    }
}

#[test]
fn minimal_config_gets_documented_defaults() {
    let c = Config::from_yaml(MINIMAL).expect("valid");
    assert_eq!(
        c.startup.listen,
        vec!["127.0.0.1:8080".parse::<SocketAddr>().expect("addr")]
    );
    // One proxy thread per core this process may use.
    assert_eq!(
        Some(c.startup.server.threads),
        std::thread::available_parallelism().ok().map(|n| n.get())
    );
    assert_eq!(c.startup.server.drain_timeout, Duration::from_secs(10));
    assert_eq!(c.startup.server.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(c.startup.server.max_connections, 16_384);
    assert_eq!(c.startup.server.shadow_threads, 0);
    assert_eq!(
        c.startup.server.client_body_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(
        c.startup.server.client_header_timeout,
        Duration::from_secs(60)
    );
    assert_eq!(c.startup.server.send_timeout, Duration::from_secs(60));
    assert_eq!(c.startup.admin.listen.to_string(), "127.0.0.1:9100");
    let node = &c.live.backends[0];
    assert_eq!(node.connect_timeout, Duration::from_secs(1));
    assert_eq!(node.read_timeout, Duration::from_secs(30));
    assert_eq!(node.write_timeout, Duration::from_secs(30));
    let r = &c.live.routes[0];
    assert_eq!(
        r.split,
        vec![
            SplitEntry {
                backend: 0,
                weight: 90
            },
            SplitEntry {
                backend: 1,
                weight: 10
            }
        ]
    );
    assert!(
        r.force.is_none(),
        "forcing a backend is off unless asked for"
    );
    assert!(r.sticky.is_none());
    assert_eq!(c.startup.access_log, AccessLog::Off);
    assert_eq!(
        c.live.forwarding.request_id_header.name().as_str(),
        "x-request-id"
    );
}

#[test]
fn the_shipped_example_is_valid() {
    let c = Config::from_yaml(crate::EXAMPLE_CONFIG).expect("config.example.yaml must pass check");
    assert_eq!(c.live.routes.len(), 3);
    let m = c.live.routes[1].mirror.as_ref().expect("orders mirrors");
    assert_eq!(c.live.backends[m.to].name, "go");
    assert_eq!(m.methods, vec![Method::GET, Method::HEAD]);
    assert_eq!(m.max_body_bytes, 1_048_576);
    assert_eq!(c.startup.server.mirror_memory_bytes, 64 * 1024 * 1024);
    assert_eq!(
        c.live.routes[0].sticky,
        Some(StickyKey::Header(HeaderName::from_static("x-user-id")))
    );
}

#[test]
fn split_order_is_the_file_order() {
    let yaml = MINIMAL.replace("{ node: 90, go: 10 }", "{ go: 10, node: 90 }");
    let c = Config::from_yaml(&yaml).expect("valid");
    assert_eq!(c.live.routes[0].split[0].backend, 1);
    assert_eq!(c.live.routes[0].split[1].backend, 0);
}

#[test]
fn listen_may_be_a_list() {
    let yaml = MINIMAL.replace(
        "listen: 127.0.0.1:8080",
        "listen: [127.0.0.1:8080, \"[::1]:8080\"]",
    );
    let c = Config::from_yaml(&yaml).expect("valid");
    assert_eq!(c.startup.listen.len(), 2);
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let yaml = r#"
listen: nowhere
server: { threads: 0, drain_timeout: soon, keepalive_timeout: 500ms, shadow_threads: -1 }
admin: { listen: 127.0.0.1:99999 }
backends:
  node: { address: 127.0.0.1:3000, read_timeout: 0s }
  go: { address: "127.0.0.1" }
routes:
  - name: api
    match: { path_prefix: api, methods: [GET, "BAD METHOD"] }
    split: { node: 0, rust: 10, go: -1 }
  - name: api
    split: { node: 0 }
    sticky: { header: x-user, cookie: s }
"#;
    let p = problems(yaml);
    let expect = [
        "listen: `nowhere` is not an IP address",
        "server.threads: must be greater than 0, got 0",
        "server.drain_timeout: `soon` is not a duration",
        "server.keepalive_timeout: must be at least 1s, got `500ms`",
        "server.shadow_threads: must be a whole number of at least 0, got -1",
        "admin.listen: `127.0.0.1:99999` is not an IP address",
        "backends.node.read_timeout: must be greater than 0",
        "backends.go.address: `127.0.0.1` is not host:port",
        "routes[0].match.path_prefix: `api` must start with `/`",
        "routes[0].match.methods[1]: `BAD METHOD` is not an HTTP method",
        "routes[0].split.rust: no such backend",
        "routes[0].split.go: weight must be an integer from 0 to 1000000, got -1",
        "routes[1].name: `api` is already the name of another route",
        "routes[1].split: weights add up to 0",
        "routes[1].sticky: give only one of",
    ];
    assert_problems(&p, &expect);
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let yaml = MINIMAL.replace("split:", "splt: { node: 1 }\n    split:");
    let p = problems(&yaml);
    assert_eq!(p.len(), 1);
    assert!(
        p[0].contains("routes[0]") && p[0].contains("unknown field `splt`"),
        "{}",
        p[0]
    );

    let yaml = MINIMAL.replace(
        "node: { address: 127.0.0.1:3000 }",
        "node: { address: 127.0.0.1:3000, timeout: 1s }",
    );
    let p = problems(&yaml);
    assert!(p[0].contains("unknown field `timeout`"), "{}", p[0]);
}

#[test]
fn a_name_that_does_not_resolve_is_a_clear_error() {
    let yaml = MINIMAL.replace("127.0.0.1:3001", "no-such-host.invalid:3001");
    let p = problems(&yaml);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("backends.go.address: cannot resolve `no-such-host.invalid`"),
        "{}",
        p[0]
    );
}

#[test]
fn localhost_resolves() {
    let yaml = MINIMAL.replace("127.0.0.1:3001", "localhost:3001");
    let c = Config::from_yaml(&yaml).expect("localhost resolves");
    assert!(c.live.backends[1]
        .addrs()
        .iter()
        .all(|a| a.ip().is_loopback()));
    assert_eq!(c.live.backends[1].address(), "localhost:3001");
}

#[test]
fn pools_take_several_addresses_with_stated_defaults() {
    let c = Config::from_yaml(MINIMAL).expect("minimal");
    let node = &c.live.backends[0];
    assert_eq!(node.entries, vec!["127.0.0.1:3000".to_string()]);
    assert_eq!(node.pool, crate::pool::test_spec());
    assert_eq!(c.live.routes[0].fallback, None);

    let yaml = MINIMAL
        .replace(
            "go: { address: 127.0.0.1:3001 }",
            "go:\n    addresses: [127.0.0.1:3001, 127.0.0.2:3001, localhost:3002]\n    balance: least_in_flight\n    retries: 2\n    resolve_every: 30s\n    health: { path: /healthz, interval: 2s, timeout: 500ms, healthy_after: 1, unhealthy_after: 2, expect_status: [200, 3xx] }\n    outlier: { consecutive_errors: 0, consecutive_5xx: 5, base_ejection: 1s, max_ejection: 1m, max_ejected_percent: 34 }",
        )
        .replace("split: { node: 90, go: 10 }", "split: { node: 90, go: 10 }\n    on_unhealthy: { fallback: node }");
    let c = Config::from_yaml(&yaml).expect("pool config");
    let go = &c.live.backends[1];
    assert_eq!(go.entries.len(), 3);
    assert!(go.addrs().len() >= 3);
    assert_eq!(go.pool.balance, crate::config::Balance::LeastInFlight);
    assert_eq!(go.protocol, crate::config::Protocol::Http1);
    assert_eq!(go.max_streams, 100);
    assert_eq!(go.pool.retries, 2);
    assert_eq!(go.pool.resolve_every, std::time::Duration::from_secs(30));
    let hc = go.pool.health.as_ref().expect("health");
    assert_eq!(hc.path, "/healthz");
    assert_eq!((hc.healthy_after, hc.unhealthy_after), (1, 2));
    assert_eq!(hc.expect_status, vec![(200, 200), (300, 399)]);
    assert_eq!(go.pool.outlier.consecutive_errors, 0);
    assert_eq!(go.pool.outlier.consecutive_5xx, 5);
    assert_eq!(go.pool.outlier.max_ejected_percent, 34);
    assert_eq!(c.live.routes[0].fallback, Some(0));
}

#[test]
fn resolver_servers_are_addresses() {
    let yaml = MINIMAL.replace(
        "listen: 127.0.0.1:8080",
        "listen: 127.0.0.1:8080\nserver: { resolver: [10.0.0.10, \"127.0.0.1:5353\", dns.example] }",
    );
    let p = problems(&yaml);
    assert_eq!(
        p,
        vec!["server.resolver[2]: `dns.example` is not an IP address or ip:port of a DNS server"]
    );
    let ok = MINIMAL.replace(
        "listen: 127.0.0.1:8080",
        "listen: 127.0.0.1:8080\nserver: { resolver: [10.0.0.10, \"127.0.0.1:5353\"] }",
    );
    let c = Config::from_yaml(&ok).expect("resolver");
    assert_eq!(
        c.startup.server.resolver,
        vec![
            "10.0.0.10:53".parse::<SocketAddr>().expect("addr"),
            "127.0.0.1:5353".parse().expect("addr")
        ]
    );
}

#[test]
fn tls_listeners_name_their_bad_fields() {
    let dir = tempfile::tempdir().expect("dir");
    let garbage = dir.path().join("bad.pem");
    std::fs::write(&garbage, "not pem").expect("write");
    let g = garbage.display();
    let yaml = MINIMAL.replace(
        "listen: 127.0.0.1:8080",
        &format!(
            "listen: 127.0.0.1:8080\nlisten_tls:\n  - {{ address: 127.0.0.1:8080, cert: /no/such.crt, key: /no/such.key }}\n  - {{ address: 127.0.0.1:8443, certs: [{{ cert: \"{g}\", key: \"{g}\" }}] }}\n  - {{ address: 127.0.0.1:8444, cert: a.crt }}"
        ),
    );
    let p = problems(&yaml);
    let expect = [
        "listen_tls[0].address: 127.0.0.1:8080 is already a listener",
        "listen_tls[0].cert: cannot read `/no/such.crt`",
        "listen_tls[1].certs[0].cert: ",
        "listen_tls[2]: give `cert` and `key`, or `certs: [{ cert, key }, ...]`",
    ];
    assert_problems(&p, &expect);
}

#[test]
fn backend_tls_fields_are_checked() {
    let yaml = MINIMAL.replace(
        "go: { address: 127.0.0.1:3001 }",
        "go: { address: 127.0.0.1:3001, protocol: h2 }\n  rs: { address: 127.0.0.1:3002, tls: {} }\n  py: { address: 127.0.0.1:3003, protocol: h2c, tls: { verify: false, ca_file: /no/such.pem } }",
    );
    let p = problems(&yaml);
    let expect = [
        "backends.go.protocol: `h2` is HTTP/2 over TLS: it needs `tls`",
        "backends.rs.tls.sni: is needed to verify the backend's certificate",
        "backends.py.protocol: `h2c` is HTTP/2 in cleartext: with `tls`, say `h2`",
        "backends.py.tls.ca_file: cannot read `/no/such.pem`",
    ];
    assert_problems(&p, &expect);
    // A name is its own SNI.
    let ok = MINIMAL.replace(
        "go: { address: 127.0.0.1:3001 }",
        "go: { address: \"localhost:3001\", protocol: h2, tls: {} }",
    );
    let c = Config::from_yaml(&ok).expect("tls");
    let tls = c.live.backends[1].tls.as_ref().expect("tls");
    assert_eq!(
        (tls.sni.as_str(), tls.verify, tls.ca.is_none()),
        ("localhost", true, true)
    );
}

#[test]
fn grpc_error_codes_take_names_or_numbers() {
    let c = Config::from_yaml(MINIMAL).expect("minimal");
    assert_eq!(c.live.grpc_error_codes, vec![2, 4, 12, 13, 14, 15]);
    let yaml = format!("{MINIMAL}grpc: {{ error_codes: [unavailable, 13, NOT_FOUND] }}\n");
    let c = Config::from_yaml(&yaml).expect("grpc");
    assert_eq!(c.live.grpc_error_codes, vec![14, 13, 5]);
    let bad = format!("{MINIMAL}grpc: {{ error_codes: [OK, SOMETIMES, 17] }}\n");
    assert_eq!(
        problems(&bad),
        vec![
            "grpc.error_codes[1]: must be a gRPC status name (UNAVAILABLE) or number from 0 to 16",
            "grpc.error_codes[2]: must be a gRPC status name (UNAVAILABLE) or number from 0 to 16",
        ]
    );
}

#[test]
fn bad_pool_fields_are_named() {
    let yaml = MINIMAL
        .replace(
            "go: { address: 127.0.0.1:3001 }",
            "go:\n    addresses: [127.0.0.1:3001, 127.0.0.1:3001, nope]\n    protocol: h3\n    max_streams: 0\n    balance: random\n    retries: -1\n    health: { path: healthz, interval: 1s, timeout: 2s, healthy_after: 0, expect_status: [600, 7xx] }\n    outlier: { base_ejection: 1m, max_ejection: 1s, max_ejected_percent: 101 }",
        )
        .replace(
            "node: { address: 127.0.0.1:3000 }",
            "node: { address: 127.0.0.1:3000, addresses: [127.0.0.1:3000] }",
        )
        .replace("split: { node: 90, go: 10 }", "split: { node: 90, go: 10 }\n    on_unhealthy: { fallback: rust }");
    let p = problems(&yaml);
    let expect = [
        "backends.node: give `address: host:port` or `addresses: [host:port, ...]`, not both",
        "backends.go.addresses[1]: `127.0.0.1:3001` is listed twice",
        "backends.go.addresses[2]: `nope` is not host:port",
        "backends.go.balance: `random` is not `round_robin` or `least_in_flight`",
        "backends.go.retries: must be a whole number of at least 0, got -1",
        "backends.go.health.path: `healthz` is not a path",
        "backends.go.health.timeout: must not be longer than `interval`",
        "backends.go.health.expect_status[0]: must be a status code",
        "backends.go.health.expect_status[1]: must be a status code",
        "backends.go.health.healthy_after: must be a whole number of at least 1, got 0",
        "backends.go.outlier.max_ejection: must not be shorter than `base_ejection`",
        "backends.go.outlier.max_ejected_percent: must be a percentage from 0 to 100, got 101",
        "routes[0].on_unhealthy.fallback: `rust` is not a backend of this route's split",
        "backends.go.protocol: `h3` is not `http1`, `h2c` or `h2`",
        "backends.go.max_streams: must be greater than 0, got 0",
    ];
    assert_problems(&p, &expect);
}

#[test]
fn sticky_and_force_header_forms() {
    let cases = [
        (
            "sticky: { cookie: session }",
            Some(StickyKey::Cookie("session".into())),
            None,
        ),
        (
            "sticky: { client_ip: true }",
            Some(StickyKey::ClientIp),
            None,
        ),
        ("force_header: false", None, None),
        ("force_header: x-pick", None, Some("x-pick")),
        ("force_header: true", None, Some("x-runoff-backend")),
        ("force: {}", None, Some("x-runoff-backend")),
        ("force: { header: x-choose }", None, Some("x-choose")),
    ];
    for (extra, sticky, force) in cases {
        let yaml = format!("{MINIMAL}    {extra}\n");
        let c = Config::from_yaml(&yaml).unwrap_or_else(|e| panic!("{extra}: {e}"));
        assert_eq!(c.live.routes[0].sticky, sticky, "{extra}");
        assert_eq!(
            c.live.routes[0].force.as_ref().map(|f| f.header.as_str()),
            force,
            "{extra}"
        );
    }
}

#[test]
fn mirror_defaults_and_mistakes() {
    let yaml = format!("{MINIMAL}    mirror: {{ to: go }}\n");
    let c = Config::from_yaml(&yaml).expect("valid");
    let m = c.live.routes[0].mirror.as_ref().expect("mirror");
    assert_eq!(m.to, 1);
    assert_eq!(m.percent, 100.0);
    assert_eq!(m.methods, vec![Method::GET, Method::HEAD]);
    assert_eq!(m.max_in_flight, 1024);
    assert_eq!(m.timeout, Duration::from_secs(5));
    assert_eq!(m.marker_header.as_str(), "x-runoff-shadow");
    assert!(m.strip_headers.is_empty());
    assert_eq!(m.pacing, Pacing::Off);
    for (text, want) in [("off", Pacing::Off), ("matched", Pacing::Matched)] {
        let yaml = format!("{MINIMAL}    mirror: {{ to: go, pacing: {text} }}\n");
        let c = Config::from_yaml(&yaml).expect("valid");
        assert_eq!(
            c.live.routes[0].mirror.as_ref().map(|m| m.pacing),
            Some(want)
        );
    }

    let yaml = format!(
        "{MINIMAL}    mirror: {{ to: rust, percent: 120, methods: [GET, \"NO WAY\"], max_in_flight: 0, timeout: never, strip_headers: [\"bad header\"], pacing: sometimes }}\n"
    );
    let p = problems(&yaml);
    for want in [
        "routes[0].mirror.to: `rust`: no such backend",
        "routes[0].mirror.percent: must be from 0 to 100, got 120",
        "routes[0].mirror.methods[1]: `NO WAY` is not an HTTP method",
        "routes[0].mirror.max_in_flight: must be greater than 0, got 0",
        "routes[0].mirror.timeout: `never` is not a duration",
        "routes[0].mirror.strip_headers[0]: `bad header` is not a valid header name",
        "routes[0].mirror.pacing: must be `off` or `matched`, got `sometimes`",
    ] {
        assert!(
            p.iter().any(|l| l.starts_with(want)),
            "missing `{want}` in:\n{}",
            p.join("\n")
        );
    }
    assert_eq!(p.len(), 7, "{}", p.join("\n"));
}

#[test]
fn admin_must_not_share_the_proxy_address() {
    let yaml = format!("{MINIMAL}admin: {{ listen: 127.0.0.1:8080 }}\n");
    let p = problems(&yaml);
    assert_eq!(
        p,
        vec!["admin.listen: `127.0.0.1:8080` is also a proxy listen address".to_string()]
    );
}

#[test]
fn empty_sections_are_errors() {
    let p = problems("listen: 127.0.0.1:8080\nbackends: {}\nroutes: []\n");
    assert!(
        p.contains(&"backends: needs at least one backend".to_string()),
        "{p:?}"
    );
    assert!(
        p.contains(&"routes: needs at least one route".to_string()),
        "{p:?}"
    );
}

#[test]
fn compare_defaults_and_mistakes() {
    let yaml = format!("{MINIMAL}    mirror: {{ to: go }}\n    compare: {{}}\n");
    let c = Config::from_yaml(&yaml).expect("valid");
    let cmp = c.live.routes[0].compare.as_ref().expect("compare");
    assert!(cmp.status);
    assert_eq!(
        cmp.headers,
        HeaderRule::Compare(vec![HeaderName::from_static("content-type")])
    );
    assert_eq!(cmp.body_max_bytes, 262_144);
    assert!(!cmp.json.array_order_ignore);
    assert_eq!(cmp.samples, 100);

    let yaml = format!("{MINIMAL}    compare: {{}}\n");
    assert_eq!(
        problems(&yaml),
        vec!["routes[0].compare: needs a `mirror` on the same route: it compares the primary's answer with the shadow's".to_string()]
    );

    let yaml = format!(
        "{MINIMAL}    mirror: {{ to: go }}\n    compare: {{ headers: {{ compare: [a], ignore: [b] }}, body: {{ max_bytes: 0, json: {{ ignore_paths: [items], array_order: sorted, float_tolerance: -1 }} }}, samples: -5 }}\n"
    );
    let p = problems(&yaml);
    for want in [
        "routes[0].compare.headers: give exactly one of",
        "routes[0].compare.body.max_bytes: must be greater than 0",
        "routes[0].compare.body.json.ignore_paths[0]: `items` is not a JSON Pointer",
        "routes[0].compare.body.json.array_order: must be `strict` or `ignore`, got `sorted`",
        "routes[0].compare.body.json.float_tolerance: must be a number >= 0, got -1",
        "routes[0].compare.samples: must be from 0 to 100000, got -5",
    ] {
        assert!(
            p.iter().any(|l| l.starts_with(want)),
            "missing `{want}` in:\n{}",
            p.join("\n")
        );
    }
    assert_eq!(p.len(), 6, "{}", p.join("\n"));
    assert_eq!(
        json_pointer("/a~1b/~0c/*"),
        Some(vec!["a/b".to_string(), "~c".into(), "*".into()])
    );
}
