//! Routing decisions, table-driven, including the published sticky hash vectors.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;

use super::hash::{index_for_point, point_fraction, sticky_point};
use super::*;
use crate::config::{Route, RouteMatch, SplitEntry, StickyKey};

/// Published in README: key -> xxh3-64 (seed 0) -> point. Cross-checked against the
/// independent Python `xxhash` package.
const VECTORS: [(&[u8], u64, f64); 5] = [
    (b"", 3244421341483603138, 0.175880),
    (b"user-1", 8968379626967066057, 0.486177),
    (b"user-42", 5836184775705692621, 0.316380),
    (b"alice", 5593767425381308080, 0.303239),
    (b"session-abc123", 856359238394099187, 0.046423),
];

#[test]
fn published_hash_vectors() {
    for (key, h, point) in VECTORS {
        assert_eq!(sticky_point(key), h, "{}", String::from_utf8_lossy(key));
        assert!((point_fraction(h) - point).abs() < 1e-6);
    }
    // Client IP 192.0.2.1 as ::ffff:192.0.2.1
    let ip: IpAddr = "192.0.2.1".parse().expect("ip");
    assert_eq!(sticky_point(&ip_key(ip)), 11520911977985869338);
}

fn split(weights: &[u32]) -> Vec<SplitEntry> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &w)| SplitEntry {
            backend: i,
            weight: w,
        })
        .collect()
}

#[test]
fn ranges_follow_cumulative_weights() {
    let s = split(&[90, 10]);
    let at = |f: f64| index_for_point(&s, (f * 18_446_744_073_709_551_616.0) as u64);
    assert_eq!(at(0.0), Some(0));
    assert_eq!(at(0.8999), Some(0));
    assert_eq!(at(0.9001), Some(1));
    assert_eq!(index_for_point(&s, u64::MAX), Some(1));
    // Exactly at the boundary 0.9 (= 9/10 of 2^64, rounded down) belongs to the first range.
    let boundary = ((u128::from(u64::MAX) + 1) * 9 / 10) as u64;
    assert_eq!(index_for_point(&s, boundary - 1), Some(0));
    assert_eq!(index_for_point(&s, boundary + 1), Some(1));
    // Weight 0 owns nothing; all zero picks nothing.
    let s = split(&[0, 5, 0]);
    for p in [0, u64::MAX / 2, u64::MAX] {
        assert_eq!(index_for_point(&s, p), Some(1));
    }
    assert_eq!(index_for_point(&split(&[0, 0]), 7), None);
}

#[test]
fn vectors_land_where_the_docs_say() {
    // With node: 70, go: 30 the boundary is 0.7: user-1 (0.486) -> node, 192.0.2.1 (0.6246) -> node.
    let s = split(&[70, 30]);
    assert_eq!(index_for_point(&s, sticky_point(b"user-1")), Some(0));
    // With node: 40, go: 60 the boundary is 0.4: user-1 (0.486) -> go, alice (0.303) -> node.
    let s = split(&[40, 60]);
    assert_eq!(index_for_point(&s, sticky_point(b"user-1")), Some(1));
    assert_eq!(index_for_point(&s, sticky_point(b"alice")), Some(0));
}

#[test]
fn raising_the_last_weight_never_moves_a_key_off_it() {
    // Canary ramp 10 -> 20 -> 50: every key already on the canary stays there.
    let ramps = [[90, 10], [80, 20], [50, 50], [0, 100]];
    for key in 0..5_000u32 {
        let point = sticky_point(format!("user-{key}").as_bytes());
        let mut was_on_canary = false;
        for w in ramps {
            let on_canary = index_for_point(&split(&w), point) == Some(1);
            assert!(
                !was_on_canary || on_canary,
                "key {key} left the canary at {w:?}"
            );
            was_on_canary = on_canary;
        }
    }
}

#[test]
fn sticky_choice_is_deterministic_and_forced_wins() {
    let names = ["node", "go"];
    let s = split(&[50, 50]);
    let name = |b: usize| names[b];
    let a = choose_backend(&s, name, None, Some(b"user-42"), || {
        panic!("no random with a key")
    });
    let b = choose_backend(&s, name, None, Some(b"user-42"), || {
        panic!("no random with a key")
    });
    assert_eq!(a, b);
    assert_eq!(a.map(|c| c.reason), Some(ChoiceReason::Sticky));

    let forced = choose_backend(&s, name, Some(b"go"), Some(b"user-42"), || 0);
    assert_eq!(
        forced,
        Some(Choice {
            split_index: 1,
            reason: ChoiceReason::Forced
        })
    );
    // A name outside the split is ignored.
    let ignored = choose_backend(&s, name, Some(b"rust"), None, || 0);
    assert_eq!(
        ignored,
        Some(Choice {
            split_index: 0,
            reason: ChoiceReason::Random
        })
    );
    // Forcing a weight-0 backend works (test the candidate before any ramp).
    let s = split(&[100, 0]);
    let forced = choose_backend(&s, name, Some(b"go"), None, || 0);
    assert_eq!(forced.map(|c| c.split_index), Some(1));
    // Without a key the random draw decides.
    let r = choose_backend(&s, name, None, None, || u64::MAX);
    assert_eq!(r.map(|c| c.split_index), Some(0));
}

fn route(name: &str, prefix: &str, host: Option<&str>, methods: Option<Vec<Method>>) -> Route {
    Route {
        name: name.into(),
        matcher: RouteMatch {
            path_prefix: prefix.into(),
            host: host.map(str::to_string),
            methods,
        },
        split: split(&[1]),
        sticky: None,
        force: None,
        mirror: None,
        compare: None,
        baseline: 0,
        analysis: None,
        ramp: None,
        websocket_idle_timeout: crate::config::defaults::WEBSOCKET_IDLE_TIMEOUT,
        fallback: None,
    }
}

#[test]
fn first_matching_route_wins() {
    let routes = vec![
        route("admin-posts", "/api/admin", None, Some(vec![Method::POST])),
        route("api-host", "/api", Some("api.example.com"), None),
        route("wild", "/api", Some("*.example.com"), None),
        route("api", "/api", None, None),
        route("all", "/", None, None),
    ];
    let cases: [(Method, Option<&str>, &str, Option<&str>); 9] = [
        (Method::POST, None, "/api/admin/x", Some("admin-posts")),
        (Method::GET, None, "/api/admin/x", Some("api")),
        (
            Method::GET,
            Some("API.example.com"),
            "/api/v1",
            Some("api-host"),
        ),
        (Method::GET, Some("eu.example.com"), "/api/v1", Some("wild")),
        (Method::GET, Some("example.com"), "/api/v1", Some("api")),
        (Method::GET, None, "/apix", Some("api")), // a plain string prefix, like Envoy's
        (Method::GET, None, "/", Some("all")),
        (Method::GET, None, "/other", Some("all")),
        (Method::GET, Some("x.example.com"), "/nothing", Some("all")),
    ];
    for (method, host, path, want) in cases {
        let facts = RequestFacts {
            method: &method,
            host,
            path,
        };
        let got = find_route(&routes, &facts).map(|i| routes[i].name.as_str());
        assert_eq!(got, want, "{method} {host:?} {path}");
    }
    let only_api = vec![route("api", "/api", None, None)];
    let facts = RequestFacts {
        method: &Method::GET,
        host: None,
        path: "/",
    };
    assert_eq!(find_route(&only_api, &facts), None);
}

#[test]
fn host_ports_are_ignored() {
    assert_eq!(host_without_port("example.com:8080"), "example.com");
    assert_eq!(host_without_port("example.com"), "example.com");
    assert_eq!(host_without_port("[::1]:8080"), "[::1]");
    assert_eq!(host_without_port("[::1]"), "[::1]");
}

#[test]
fn sticky_keys_from_headers_cookies_and_addresses() {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("x-user-id"),
        HeaderValue::from_static("user-42"),
    );
    headers.append(
        http::header::COOKIE,
        HeaderValue::from_static("theme=dark; session = abc ;x=1"),
    );
    headers.append(
        http::header::COOKIE,
        HeaderValue::from_static("session=second"),
    );
    let header = StickyKey::Header(HeaderName::from_static("x-user-id"));
    assert_eq!(
        sticky_key(&header, &headers, None).map(|k| k.as_bytes().to_vec()),
        Some(b"user-42".to_vec())
    );
    let missing = StickyKey::Header(HeaderName::from_static("x-other"));
    assert!(sticky_key(&missing, &headers, None).is_none());
    let cookie = StickyKey::Cookie("session".into());
    assert_eq!(
        sticky_key(&cookie, &headers, None).map(|k| k.as_bytes().to_vec()),
        Some(b"abc".to_vec())
    );
    let absent_cookie = StickyKey::Cookie("sess".into());
    assert!(sticky_key(&absent_cookie, &headers, None).is_none());
    let v4: IpAddr = "192.0.2.1".parse().expect("ip");
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
    let k4 = sticky_key(&StickyKey::ClientIp, &headers, Some(v4)).map(|k| k.as_bytes().to_vec());
    let k6 =
        sticky_key(&StickyKey::ClientIp, &headers, Some(mapped)).map(|k| k.as_bytes().to_vec());
    assert_eq!(k4, k6);
    assert_eq!(k4.map(|k| k.len()), Some(16));
    assert!(sticky_key(&StickyKey::ClientIp, &headers, None).is_none());
}

fn mirror_to(to: usize, percent: f64) -> crate::config::Mirror {
    crate::config::Mirror {
        to,
        percent,
        methods: vec![Method::GET, Method::HEAD],
        max_body_bytes: 1024,
        max_in_flight: 8,
        timeout: std::time::Duration::from_secs(1),
        marker_header: HeaderName::from_static("x-runoff-shadow"),
        strip_headers: Vec::new(),
        ..crate::config::Mirror::with_defaults(to, percent)
    }
}

#[test]
fn mirror_decisions() {
    let m = mirror_to(1, 100.0);
    let facts =
        |backend: usize, method: &'static Method, marker: bool, upgrade: bool| MirrorFacts {
            serving_backend: backend,
            method,
            has_marker: marker,
            is_upgrade: upgrade,
        };
    static GET: Method = Method::GET;
    static POST: Method = Method::POST;
    let cases = [
        (facts(0, &GET, false, false), true),
        (facts(1, &GET, false, false), false), // the target serves it: no copy to itself
        (facts(0, &POST, false, false), false), // not an allowed method
        (facts(0, &GET, true, false), false),  // already a copy: loop guard
        (facts(0, &GET, false, true), false),  // a WebSocket upgrade
    ];
    for (f, want) in cases {
        assert_eq!(should_mirror(&m, &f, None, || 0), want, "{f:?}");
    }
    assert!(!should_mirror(
        &mirror_to(1, 0.0),
        &facts(0, &GET, false, false),
        None,
        || 0
    ));
}

#[test]
fn websocket_mirror_decisions() {
    let mut m = mirror_to(1, 100.0);
    // Off unless the mirror opts in.
    assert!(!should_mirror_websocket(&m, 0, false, None, || 0));
    m.websocket = true;
    assert!(should_mirror_websocket(&m, 0, false, None, || 0));
    assert!(
        !should_mirror_websocket(&m, 1, false, None, || 0),
        "no copy to itself"
    );
    assert!(
        !should_mirror_websocket(&m, 0, true, None, || 0),
        "loop guard"
    );
    // Sampled like requests: by the sticky key when there is one.
    m.percent = 50.0;
    let key = b"user-1";
    let first = should_mirror_websocket(&m, 0, false, Some(key), || 0);
    for _ in 0..10 {
        assert_eq!(
            should_mirror_websocket(&m, 0, false, Some(key), || u64::MAX),
            first
        );
    }
    assert!(should_mirror_websocket(&m, 0, false, None, || 0));
    assert!(!should_mirror_websocket(&m, 0, false, None, || u64::MAX));
}

#[test]
fn sampling_points_and_percent() {
    use super::hash::{sample_point, sampled};
    assert!(sampled(u64::MAX, 100.0));
    assert!(!sampled(0, 0.0));
    assert!(sampled(0, 0.001));
    let half = 1u64 << 63;
    assert!(sampled(half - 1, 50.0));
    assert!(!sampled(half, 50.0));
    // Seed 1 is not seed 0.
    assert_ne!(sample_point(b"user-1"), sticky_point(b"user-1"));
    assert_eq!(sample_point(b"user-1"), 7796588852892475844);
    // A keyed decision is the same every time, and the share follows percent.
    let m = mirror_to(1, 25.0);
    let f = MirrorFacts {
        serving_backend: 0,
        method: &Method::GET,
        has_marker: false,
        is_upgrade: false,
    };
    let mut copied = 0;
    for k in 0..10_000 {
        let key = format!("user-{k}");
        let a = should_mirror(&m, &f, Some(key.as_bytes()), || panic!("keyed"));
        let b = should_mirror(&m, &f, Some(key.as_bytes()), || panic!("keyed"));
        assert_eq!(a, b);
        copied += usize::from(a);
    }
    // 25% of 10,000, sd 43: 5 sd.
    assert!((2_285..=2_715).contains(&copied), "{copied}");
}
