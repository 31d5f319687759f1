//! Comparison end to end: fixture backends that differ in controlled ways, exact counts of
//! every verdict, mismatch samples and per-path counts from the admin API, and the caller's
//! answer unchanged throughout.

use std::io::Write;

use crate::harness::{self, fixture, status, Fixture, Metrics, Runoff};
use reqwest::Method;
use serde_json::Value;

/// One route per scenario: node answers `primary`, go answers `shadow`.
struct Scenario {
    route: &'static str,
    compare: &'static str,
    node: Fixture,
    go: Fixture,
}

async fn scenario(
    route: &'static str,
    compare: &'static str,
    primary: harness::FixtureBuilder,
    shadow: harness::FixtureBuilder,
) -> Scenario {
    Scenario {
        route,
        compare,
        node: primary.start().await,
        go: shadow.start().await,
    }
}

fn json_fixture(name: &str, status: u16, body: &str) -> harness::FixtureBuilder {
    fixture(name)
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_string())
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

fn config(p: &harness::Ports, scenarios: &[Scenario]) -> String {
    let mut backends = String::new();
    let mut routes = String::new();
    for s in scenarios {
        backends.push_str(&format!(
            "  {r}-node: {{ address: \"{}\" }}\n  {r}-go: {{ address: \"{}\" }}\n",
            s.node.addr,
            s.go.addr,
            r = s.route
        ));
        routes.push_str(&format!(
            "  - name: {r}\n    match: {{ path_prefix: /{r}/ }}\n    split: {{ {r}-node: 100 }}\n    mirror: {{ to: {r}-go }}\n    compare: {}\n",
            s.compare,
            r = s.route
        ));
    }
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n{backends}routes:\n{routes}",
        p.listen, p.admin
    )
}

fn results(m: &Metrics, route: &str) -> (f64, f64, f64) {
    let r = |result| {
        m.sum(
            "runoff_compare_total",
            &[("route", route), ("result", result)],
        )
    };
    (r("match"), r("mismatch"), r("skipped"))
}

fn part(m: &Metrics, route: &str, part: &str) -> f64 {
    m.sum(
        "runoff_compare_mismatches_total",
        &[("route", route), ("part", part)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_difference_gets_the_right_verdict() {
    let base = r#"{"generated_at":"2026-11-27T10:00:00Z","user":{"name":"ann","age":30},"items":[{"id":"a1","qty":1}],"n":1}"#;
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(5000));
    let scenarios = vec![
        scenario(
            "ignored",
            "{ body: { json: { ignore_paths: [/generated_at, /items/*/id] } } }",
            json_fixture("node", 200, base),
            json_fixture(
                "go",
                200,
                &base
                    .replace("2026-11-27T10:00:00Z", "2030-01-01T00:00:00Z")
                    .replace("a1", "zz"),
            ),
        )
        .await,
        scenario(
            "field",
            "{}",
            json_fixture("node", 200, base),
            json_fixture("go", 200, &base.replace(r#""age":30"#, r#""age":31"#)),
        )
        .await,
        scenario(
            "order",
            "{}",
            json_fixture("node", 200, r#"{"a":1,"b":{"c":[1,2],"d":null}}"#),
            json_fixture("go", 200, r#"{"b":{"d":null,"c":[1,2]},"a":1}"#),
        )
        .await,
        scenario(
            "numbers",
            "{}",
            json_fixture("node", 200, r#"{"total":1,"tax":0.5}"#),
            json_fixture("go", 200, r#"{"total":1.0,"tax":0.50}"#),
        )
        .await,
        scenario(
            "strict",
            "{}",
            json_fixture("node", 200, r#"{"tags":["a","b","c"]}"#),
            json_fixture("go", 200, r#"{"tags":["c","b","a"]}"#),
        )
        .await,
        scenario(
            "multiset",
            "{ body: { json: { array_order: ignore } } }",
            json_fixture("node", 200, r#"{"tags":["a","b","c"]}"#),
            json_fixture("go", 200, r#"{"tags":["c","b","a"]}"#),
        )
        .await,
        scenario(
            "status",
            "{}",
            json_fixture("node", 200, r#"{"ok":true}"#),
            json_fixture("go", 500, r#"{"ok":true}"#),
        )
        .await,
        scenario(
            "big",
            "{ body: { max_bytes: 1024 } }",
            json_fixture("node", 200, &big),
            json_fixture("go", 200, &big),
        )
        .await,
        scenario(
            "gzip",
            "{}",
            json_fixture("node", 200, base),
            fixture("go")
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(gzip(base)),
        )
        .await,
        scenario(
            "secret",
            "{ headers: { ignore: [content-type] } }",
            json_fixture("node", 200, r#"{"ok":true}"#).header("set-cookie", "session=node-secret"),
            json_fixture("go", 200, r#"{"ok":true}"#).header("set-cookie", "session=go-secret"),
        )
        .await,
    ];
    let runoff = Runoff::start(|p| config(p, &scenarios)).await;
    let client = reqwest::Client::new();
    let per_route = 3;
    for s in &scenarios {
        for i in 0..per_route {
            let resp = client
                .get(runoff.url(&format!("/{}/item?i={i}", s.route)))
                .send()
                .await
                .unwrap();
            // The caller always gets the primary's answer, byte for byte.
            let status = resp.status().as_u16();
            let body = resp.bytes().await.unwrap();
            let direct = client
                .get(format!("http://{}/{}/item", s.node.addr, s.route))
                .send()
                .await
                .unwrap();
            assert_eq!(status, direct.status().as_u16(), "{}", s.route);
            assert_eq!(body, direct.bytes().await.unwrap(), "{}", s.route);
        }
    }
    let total = (scenarios.len() * per_route) as f64;
    runoff
        .expect_metric("runoff_compare_total", &[], total)
        .await;
    let m = runoff.scrape().await;
    let n = per_route as f64;
    let expect = [
        ("ignored", (n, 0.0, 0.0)),
        ("field", (0.0, n, 0.0)),
        ("order", (n, 0.0, 0.0)),
        ("numbers", (n, 0.0, 0.0)),
        ("strict", (0.0, n, 0.0)),
        ("multiset", (n, 0.0, 0.0)),
        ("status", (0.0, n, 0.0)),
        ("big", (0.0, 0.0, n)),
        ("gzip", (n, 0.0, 0.0)),
        ("secret", (0.0, n, 0.0)),
    ];
    for (route, want) in expect {
        assert_eq!(results(&m, route), want, "{route}");
    }
    assert_eq!(part(&m, "field", "body"), n);
    assert_eq!(part(&m, "field", "status"), 0.0);
    assert_eq!(part(&m, "status", "status"), n);
    assert_eq!(part(&m, "status", "body"), 0.0);
    assert_eq!(part(&m, "secret", "headers"), n);
    // Every completed pair is judged exactly once.
    assert_eq!(
        m.sum("runoff_mirror_latency_ratio_count", &[]),
        m.sum("runoff_compare_total", &[])
    );

    // A sample names the differing path with both values, and keeps the query string.
    let samples: Value = runoff.get_json("/api/mismatches?route=field&limit=2").await;
    let list = samples["samples"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let s = &list[0];
    assert_eq!(s["route"], "field");
    assert_eq!(s["method"], "GET");
    assert!(
        s["path"].as_str().unwrap().starts_with("/field/item?i="),
        "{s}"
    );
    assert_eq!(s["primary_status"], 200);
    assert_eq!(s["body"][0]["path"], "/user/age");
    assert_eq!(s["body"][0]["primary"], 30);
    assert_eq!(s["body"][0]["shadow"], 31);
    assert_eq!(s["body"].as_array().unwrap().len(), 1);

    // Status mismatches are samples too.
    let samples: Value = runoff.get_json("/api/mismatches?route=status").await;
    assert_eq!(samples["samples"][0]["shadow_status"], 500);
    assert_eq!(samples["samples"][0]["parts"][0], "status");

    // Credentials never show in samples.
    let text = runoff
        .api(Method::GET, "/api/mismatches?route=secret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !text.contains("node-secret") && !text.contains("go-secret"),
        "{text}"
    );
    assert!(text.contains("<redacted>"), "{text}");

    // Per-path counts: which fields differ on every pair.
    let paths: Value = runoff.get_json("/api/mismatches/paths?route=field").await;
    assert_eq!(paths["pairs"], per_route);
    assert_eq!(paths["paths"][0]["path"], "/user/age");
    assert_eq!(paths["paths"][0]["count"], per_route);
    assert_eq!(paths["paths"][0]["share"], 1.0);
    let unknown = runoff
        .api(Method::GET, "/api/mismatches/paths?route=nope")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noisy_field_shows_up_in_path_counts_and_ignoring_it_makes_pairs_match() {
    let node = json_fixture(
        "node",
        200,
        r#"{"id":"n-1","items":[{"sku":"a","price":10},{"sku":"b","price":20}]}"#,
    )
    .start()
    .await;
    let go = json_fixture(
        "go",
        200,
        r#"{"id":"g-9","items":[{"sku":"a","price":10},{"sku":"b","price":21}]}"#,
    )
    .start()
    .await;
    let yaml = |p: &harness::Ports, compare: &str| {
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{}\" }}\n  go: {{ address: \"{}\" }}\nroutes:\n  - name: api\n    split: {{ node: 100 }}\n    mirror: {{ to: go }}\n    compare: {compare}\n",
            p.listen, p.admin, node.addr, go.addr
        )
    };
    let runoff = Runoff::start(|p| yaml(p, "{}")).await;
    let client = reqwest::Client::new();
    for _ in 0..4 {
        assert_eq!(status(client.get(runoff.url("/x"))).await, 200);
    }
    runoff
        .expect_metric("runoff_compare_total", &[("result", "mismatch")], 4.0)
        .await;
    let paths: Value = runoff.get_json("/api/mismatches/paths?route=api").await;
    let list = paths["paths"].as_array().unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["path"].as_str().unwrap()).collect();
    // Array indices are generalized, in the form ignore_paths takes.
    assert_eq!(names, vec!["/id", "/items/*/price"]);
    assert!(list.iter().all(|p| p["share"] == 1.0));

    // The workflow: ignore the noisy id, reload, and only the real difference remains.
    std::fs::write(
        &runoff.config_path,
        yaml(&runoff.ports, "{ body: { json: { ignore_paths: [/id] } } }"),
    )
    .unwrap();
    let r = runoff
        .api(Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..2 {
        assert_eq!(status(client.get(runoff.url("/x"))).await, 200);
    }
    runoff
        .expect_metric("runoff_compare_total", &[("result", "mismatch")], 6.0)
        .await;
    let samples: Value = runoff.get_json("/api/mismatches?route=api&limit=1").await;
    let body = samples["samples"][0]["body"].as_array().unwrap();
    assert_eq!(body.len(), 1, "{body:?}");
    assert_eq!(body[0]["path"], "/items/1/price");
}
