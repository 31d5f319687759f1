//! Reloads (SIGHUP, the API, the file watch) and API changes under load lose no request; a request
//! under way finishes on the config it started with; restart-only changes are reported.

use super::*;
use crate::harness::{self, fixture, Fixture, Ports, Runoff};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_and_api_changes_under_load_lose_no_request() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let runoff = Runoff::start(|p| config(p, &node, &go, 90, 10)).await;
    let load = Load::start(runoff.url("/api/x"), 4, false);

    let mut successes = 0;
    for i in 0..50u32 {
        let go_w = 5 + (i * 37) % 90;
        let node_w = 100 - go_w;
        let via_signal = i % 2 == 1;
        if i == 25 {
            // One invalid config among them: rejected whole, the running config stays.
            std::fs::write(&runoff.config_path, "listen: 127.0.0.1:1\nroutes: [oops\n").unwrap();
            let resp = runoff
                .api(Method::POST, "/api/reload")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 400);
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["result"], "error");
            assert!(!body["problems"].as_array().unwrap().is_empty(), "{body}");
            continue;
        }
        let yaml = config(&runoff.ports, &node, &go, node_w, go_w);
        std::fs::write(&runoff.config_path, yaml).unwrap();
        if via_signal {
            runoff.signal("-HUP");
            successes += 1;
            runoff
                .expect_metric(
                    "runoff_config_reloads_total",
                    &[("result", "success")],
                    f64::from(successes),
                )
                .await;
        } else {
            let resp = runoff
                .api(Method::POST, "/api/reload")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            successes += 1;
        }
        assert_eq!(
            weights(&runoff).await,
            (f64::from(node_w), f64::from(go_w)),
            "reload {i}"
        );
    }
    // A few weight changes through the API: runtime overrides, not reloads.
    for (n, g) in [(50, 50), (80, 20), (25, 75)] {
        let resp = runoff
            .put_json("/api/routes/api/weights", json!({"node": n, "go": g}))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(weights(&runoff).await, (f64::from(n), f64::from(g)));
    }
    let served = only_200(&load.finish().await);
    assert!(served > 100, "only {served} requests under load");

    let m = runoff.scrape().await;
    assert_eq!(
        m.sum("runoff_config_reloads_total", &[("result", "success")]),
        49.0
    );
    assert_eq!(
        m.sum("runoff_config_reloads_total", &[("result", "error")]),
        1.0
    );
    assert!(m.sum("runoff_config_last_reload_success_timestamp_seconds", &[]) > 1.0e9);

    // The split in force is the last one set: 25/75.
    let (before_node, before_go) = (node.count(), go.count());
    let statuses = harness::load(&reqwest::Client::new(), &runoff.url("/api/y"), 2000, 8).await;
    assert_eq!(statuses, HashMap::from([(200, 2000)]));
    let go_share = (go.count() - before_go) as f64;
    assert_eq!((node.count() - before_node) as f64 + go_share, 2000.0);
    // 75% of 2000 = 1500, sd = 19.4; 5 sd.
    assert!(
        (go_share - 1500.0).abs() < 97.0,
        "go got {go_share} of 2000"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_finishes_across_a_reload_that_removes_its_backend() {
    let old = fixture("old")
        .delay(Duration::from_secs(2))
        .body("old answer\n")
        .start()
        .await;
    let new = fixture("new").start().await;
    let route = |p: &Ports, name: &str, f: &Fixture| harness::one_backend(p, name, f.addr, "");
    let runoff = Runoff::start(|p| route(p, "old", &old)).await;
    let url = runoff.url("/api/slow");
    let slow = tokio::spawn(async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    old.wait_for(1, Duration::from_secs(10)).await;
    std::fs::write(&runoff.config_path, route(&runoff.ports, "new", &new)).unwrap();
    let resp = runoff
        .api(Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // New requests go to the new backend at once...
    let r = reqwest::get(runoff.url("/api/fast")).await.unwrap();
    assert_eq!(r.headers()["x-fixture"], "new");
    // ...while the old one finishes on the config it started with.
    assert_eq!(slow.await.unwrap(), (200, "old answer\n".to_string()));
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "old"), ("status_class", "2xx")],
            1.0,
        )
        .await;
    // The removed backend's weight is no longer published.
    assert_eq!(m.sum("runoff_route_weight", &[("backend", "old")]), 0.0);
    assert!(
        !m.dump("runoff_route_weight").contains("\"old\""),
        "{}",
        m.dump("runoff_route_weight")
    );
    assert_eq!(m.sum("runoff_route_weight", &[("backend", "new")]), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_when_the_file_changes_and_reports_restart_only_changes() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let runoff = Runoff::start_with(|p| config(p, &node, &go, 90, 10), &["--watch"], &[]).await;
    let yaml = config(&runoff.ports, &node, &go, 40, 60);
    std::fs::write(&runoff.config_path, &yaml).unwrap();
    runoff
        .expect_metric("runoff_route_weight", &[("backend", "go")], 60.0)
        .await;
    runoff
        .expect_metric("runoff_config_reloads_total", &[("result", "success")], 1.0)
        .await;

    // A listen address change cannot be applied live: reported, ignored, still served.
    let moved = yaml.replace(
        &format!("127.0.0.1:{}\n", runoff.ports.listen),
        "127.0.0.1:1\n",
    );
    assert_ne!(moved, yaml);
    std::fs::write(&runoff.config_path, &moved).unwrap();
    runoff
        .expect_metric("runoff_config_reloads_total", &[("result", "success")], 2.0)
        .await;
    let r = runoff
        .api(Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["ignored_until_restart"][0]
            .as_str()
            .unwrap()
            .starts_with("listen changed"),
        "{body}"
    );
    assert_eq!(
        reqwest::get(runoff.url("/api")).await.unwrap().status(),
        200
    );
}
