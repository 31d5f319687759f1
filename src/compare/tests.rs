//! Comparison rules, case by case.

use super::*;
use crate::config::{Compare, HeaderRule, JsonRules};
use http::header::HeaderValue;

fn rules() -> Compare {
    Compare {
        status: true,
        headers: HeaderRule::Compare(vec![HeaderName::from_static("content-type")]),
        body_max_bytes: 1 << 20,
        json: JsonRules {
            ignore_paths: vec![],
            array_order_ignore: false,
            float_tolerance: 0.0,
        },
        samples: 10,
        grpc_body: false,
    }
}

fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Captured {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    let mut c = Captured::new(status, h, 1 << 20);
    c.push(&Bytes::copy_from_slice(body));
    c
}

fn json_resp(body: &str) -> Captured {
    resp(
        200,
        &[("content-type", "application/json")],
        body.as_bytes(),
    )
}

fn body_paths(v: &Verdict) -> Vec<String> {
    match v {
        Verdict::Mismatch(d) => d.body.iter().map(|b| b.path.clone()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn json_is_compared_structurally() {
    let cfg = rules();
    let same = [
        (r#"{"a":1,"b":[1,2]}"#, r#"{"b":[1,2],"a":1}"#), // key order
        (r#"{"n":1}"#, r#"{"n":1.0}"#),                   // 1 == 1.0
        (
            r#"{"big":12345678901234567890}"#,
            r#"{"big":12345678901234567890}"#,
        ),
        ("[]", " [ ] "),
    ];
    for (a, b) in same {
        assert_eq!(
            compare(&json_resp(a), &json_resp(b), &cfg),
            Verdict::Match,
            "{a} vs {b}"
        );
    }
    let v = compare(
        &json_resp(r#"{"user":{"name":"ann","age":30},"items":[{"id":1,"price":10}]}"#),
        &json_resp(
            r#"{"user":{"name":"ann","age":31},"items":[{"id":1,"price":12}],"extra":true}"#,
        ),
        &cfg,
    );
    assert_eq!(
        body_paths(&v),
        vec!["/extra", "/items/0/price", "/user/age"]
    );
    let Verdict::Mismatch(d) = v else { panic!() };
    assert_eq!(d.body[2].primary, serde_json::json!(30));
    assert_eq!(d.body[2].shadow, serde_json::json!(31));
    assert_eq!(d.body[0].primary, Value::Null);
    assert_eq!(d.parts(), vec![Part::Body]);
}

#[test]
fn ignored_paths_with_wildcards_are_removed_first() {
    let mut cfg = rules();
    cfg.json.ignore_paths = vec![
        crate::config::json_pointer("/generated_at").expect("ptr"),
        crate::config::json_pointer("/items/*/id").expect("ptr"),
    ];
    let a = r#"{"generated_at":"2026-01-01","items":[{"id":"x1","v":1},{"id":"x2","v":2}]}"#;
    let b = r#"{"generated_at":"2027-02-02","items":[{"id":"y1","v":1},{"id":"y2","v":2}]}"#;
    assert_eq!(compare(&json_resp(a), &json_resp(b), &cfg), Verdict::Match);
    let c = r#"{"generated_at":"2027-02-02","items":[{"id":"y1","v":1},{"id":"y2","v":3}]}"#;
    assert_eq!(
        body_paths(&compare(&json_resp(a), &json_resp(c), &cfg)),
        vec!["/items/1/v"]
    );
}

#[test]
fn arrays_in_order_or_as_multisets() {
    let mut cfg = rules();
    let (a, b) = (json_resp("[1,2,3]"), json_resp("[3,2,1]"));
    assert_eq!(body_paths(&compare(&a, &b, &cfg)), vec!["/0", "/2"]);
    cfg.json.array_order_ignore = true;
    assert_eq!(compare(&a, &b, &cfg), Verdict::Match);
    assert_eq!(
        body_paths(&compare(&a, &json_resp("[1,2,2]"), &cfg)),
        vec![""]
    );
    assert_eq!(
        compare(
            &json_resp(r#"{"t":[{"a":1},{"b":2}]}"#),
            &json_resp(r#"{"t":[{"b":2},{"a":1}]}"#),
            &cfg
        ),
        Verdict::Match
    );
}

#[test]
fn float_tolerance() {
    let mut cfg = rules();
    let (a, b) = (
        json_resp(r#"{"x":0.30000000000000004}"#),
        json_resp(r#"{"x":0.3}"#),
    );
    assert_ne!(compare(&a, &b, &cfg), Verdict::Match);
    cfg.json.float_tolerance = 1e-9;
    assert_eq!(compare(&a, &b, &cfg), Verdict::Match);
}

#[test]
fn status_and_headers() {
    let cfg = rules();
    let a = resp(
        200,
        &[
            ("content-type", "application/json"),
            ("x-powered-by", "Express"),
        ],
        b"{}",
    );
    let b = resp(500, &[("content-type", "text/plain")], b"{}");
    let Verdict::Mismatch(d) = compare(&a, &b, &cfg) else {
        panic!()
    };
    assert_eq!(d.status, Some((200, 500)));
    assert_eq!(d.parts(), vec![Part::Status, Part::Headers]);
    assert_eq!(d.headers[0].name, "content-type");
    // Only the allowlist by default: x-powered-by is not compared.
    assert_eq!(d.headers.len(), 1);
    // Ignore mode compares all but the listed and the framing headers.
    let mut cfg = rules();
    cfg.headers = HeaderRule::Ignore(vec![HeaderName::from_static("server")]);
    let a = resp(
        200,
        &[("content-length", "2"), ("server", "a"), ("etag", "1")],
        b"{}",
    );
    let b = resp(
        200,
        &[("transfer-encoding", "chunked"), ("server", "b")],
        b"{}",
    );
    let Verdict::Mismatch(d) = compare(&a, &b, &cfg) else {
        panic!()
    };
    assert_eq!(
        d.headers
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>(),
        vec!["etag"]
    );
}

#[test]
fn non_json_bodies_compare_byte_for_byte_after_decoding() {
    use std::io::Write;
    let cfg = rules();
    let plain = resp(200, &[], b"hello world");
    assert_eq!(
        compare(&plain, &resp(200, &[], b"hello world"), &cfg),
        Verdict::Match
    );
    assert_eq!(
        body_paths(&compare(&plain, &resp(200, &[], b"hello there"), &cfg)),
        vec![""]
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"hello world").expect("gzip");
    let zipped = resp(
        200,
        &[("content-encoding", "gzip")],
        &gz.finish().expect("gzip"),
    );
    assert_eq!(compare(&plain, &zipped, &cfg), Verdict::Match);
    let br = resp(
        200,
        &[("content-encoding", "br")],
        b"\x0b\x05\x80hello world\x03",
    );
    assert!(matches!(compare(&plain, &br, &cfg), Verdict::Skipped(_)));
}

#[test]
fn bodies_over_the_limit_are_skipped_and_not_kept() {
    let cfg = rules();
    let mut big = Captured::new(200, HeaderMap::new(), 8);
    big.push(&Bytes::from_static(b"12345"));
    big.push(&Bytes::from_static(b"67890"));
    assert!(big.truncated);
    assert!(big.body.is_empty());
    assert!(matches!(
        compare(&big, &resp(200, &[], b"x"), &cfg),
        Verdict::Skipped(_)
    ));
}

/// A memory budget that counts what it holds.
struct TestBudget {
    used: std::sync::atomic::AtomicU64,
    limit: u64,
}

impl Charge for TestBudget {
    fn take(&self, bytes: u64) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + bytes <= self.limit).then_some(u + bytes)
            })
            .is_ok()
    }
    fn give(&self, bytes: u64) {
        self.used
            .fetch_sub(bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

#[test]
fn captures_are_charged_to_the_budget_skipped_past_it_and_give_it_back() {
    use std::sync::atomic::Ordering;
    let budget = Arc::new(TestBudget {
        used: std::sync::atomic::AtomicU64::new(0),
        limit: 8,
    });
    let charged = || Captured::new(200, HeaderMap::new(), 1 << 20).charged(budget.clone());
    let mut a = charged();
    a.push(&Bytes::from_static(b"12345"));
    assert_eq!(budget.used.load(Ordering::Acquire), 5);
    let mut b = charged();
    b.push(&Bytes::from_static(b"6789"));
    assert!(b.over_budget && b.truncated && b.body.is_empty());
    assert_eq!(budget.used.load(Ordering::Acquire), 5);
    assert!(matches!(
        compare(&a, &b, &rules()),
        Verdict::Skipped(SkipReason::Overloaded)
    ));
    drop(a);
    assert_eq!(budget.used.load(Ordering::Acquire), 0);
}

#[test]
fn the_store_redacts_counts_paths_and_keeps_a_bounded_ring() {
    let store = store::CompareStore::default();
    let route = store::RouteSamples {
        route: "api".into(),
        capacity: 3,
        redact: std::sync::Arc::new(crate::redact::Redactor::new(
            &crate::config::Redact {
                headers: vec![],
                json_keys: vec!["password".into()],
                query_params: vec!["token".into()],
            },
            &[HeaderName::from_static("x-api-key")],
        )),
    };
    let meta = PairMeta {
        method: "GET".into(),
        path: "/u?id=1&token=tk1".into(),
        request_id: "r1".into(),
    };
    let mut cfg = rules();
    cfg.headers = HeaderRule::Ignore(vec![]);
    for i in 0..5 {
        let a = resp(
            200,
            &[("set-cookie", "s=1"), ("x-api-key", "k1")],
            format!(r#"{{"items":[{{"ts":{i}}}],"n":1,"password":"pw1"}}"#).as_bytes(),
        );
        let b = resp(
            200,
            &[("set-cookie", "s=2"), ("x-api-key", "k2")],
            br#"{"items":[{"ts":-1}],"n":1,"password":"pw2"}"#,
        );
        let v = compare(&a, &b, &cfg);
        store.record(&route, &meta, (200, 200), &v, format!("t{i}"));
    }
    store.record(&route, &meta, (200, 200), &Verdict::Match, "t9".into());
    let samples = store.samples(Some("api"), 10);
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].time, "t4");
    let shown = serde_json::to_string(&samples).expect("json");
    for secret in ["s=1", "k1", "tk1", "pw1", "pw2"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(shown.contains("/u?id=1&token=<redacted>"), "{shown}");
    assert!(shown.contains("<redacted>"));
    let paths = serde_json::to_value(store.paths("api")).expect("json");
    assert_eq!(paths["pairs"], 6);
    let list = paths["paths"].as_array().expect("paths");
    let ts = list
        .iter()
        .find(|p| p["path"] == "/items/*/ts")
        .expect("generalized path");
    assert_eq!(ts["count"], 5);
    assert!((ts["share"].as_f64().expect("share") - 5.0 / 6.0).abs() < 1e-9);
}

#[test]
fn large_arrays_compare_as_multisets_in_n_log_n() {
    let mut cfg = rules();
    cfg.json.array_order_ignore = true;
    // 128k elements (under 1 MiB), reversed: the pairwise search took seconds per pair.
    let n = 128_000;
    let forward: Vec<String> = (0..n).map(|i| (i % 1000).to_string()).collect();
    let mut backward: Vec<String> = forward.iter().rev().cloned().collect();
    let (a, b) = (
        json_resp(&format!("[{}]", forward.join(","))),
        json_resp(&format!("[{}]", backward.join(","))),
    );
    assert_eq!(compare(&a, &b, &cfg), Verdict::Match);
    backward[7] = "1000".to_string();
    let c = json_resp(&format!("[{}]", backward.join(",")));
    assert_eq!(body_paths(&compare(&a, &c, &cfg)), vec![""]);
}

#[test]
fn multisets_pair_numbers_across_representations_and_within_tolerance() {
    let mut cfg = rules();
    cfg.json.array_order_ignore = true;
    assert_eq!(
        compare(
            &json_resp("[1, 2.5, [3, 4]]"),
            &json_resp("[[4.0, 3], 2.5, 1.0]"),
            &cfg
        ),
        Verdict::Match
    );
    assert_eq!(
        compare(
            &json_resp("[9007199254740993, 1]"),
            &json_resp("[1, 9007199254740993]"),
            &cfg
        ),
        Verdict::Match
    );
    cfg.json.float_tolerance = 0.01;
    assert_eq!(
        compare(
            &json_resp("[1.0, 2.0, 3]"),
            &json_resp("[2.001, 3, 0.999]"),
            &cfg
        ),
        Verdict::Match
    );
    assert_eq!(
        body_paths(&compare(
            &json_resp("[1.0, 2.0]"),
            &json_resp("[2.5, 1.0]"),
            &cfg
        )),
        vec![""]
    );
}

#[test]
fn grpc_pairs_compare_grpc_status_and_bytes_only_when_asked() {
    let grpc = |status: &str, body: &[u8]| {
        resp(
            200,
            &[
                ("content-type", "application/grpc"),
                ("grpc-status", status),
            ],
            body,
        )
    };
    let mut cfg = rules();
    // Equal status, messages encoded differently: a match.
    assert!(matches!(
        compare(
            &grpc("0", b"\x00\x00\x00\x00\x02\x08\x01"),
            &grpc("0", b"\x00\x00\x00\x00\x04\x08\x01\x10\x00"),
            &cfg
        ),
        Verdict::Match
    ));
    // Another grpc-status: a header mismatch, whatever `headers` lists.
    match compare(&grpc("0", b"x"), &grpc("13", b"x"), &cfg) {
        Verdict::Mismatch(d) => {
            assert_eq!(d.headers.len(), 1);
            assert_eq!(d.headers[0].name, "grpc-status");
            assert_eq!(d.headers[0].shadow.as_deref(), Some("13"));
        }
        other => panic!("{other:?}"),
    }
    // Asked for: the bytes too.
    cfg.grpc_body = true;
    assert!(matches!(
        compare(&grpc("0", b"a"), &grpc("0", b"b"), &cfg),
        Verdict::Mismatch(_)
    ));
}
