//! The admin API: the token, who may use it without one, the mirror kill switch, and a backend's
//! max_in_flight.

use super::*;
use crate::harness::{self, bin, fixture, status, Runoff};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_the_token_and_metrics_stay_open() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let runoff = Runoff::start_with(
        |p| {
            format!(
                "{}admin: {{ listen: 127.0.0.1:{}, token_env: RUNOFF_TEST_TOKEN }}\n",
                config(p, &node, &go, 90, 10).replacen(
                    &format!("admin: {{ listen: 127.0.0.1:{} }}\n", p.admin),
                    "",
                    1
                ),
                p.admin
            )
        },
        &[],
        &[("RUNOFF_TEST_TOKEN", "s3cret-token")],
    )
    .await;
    let put = |auth: Option<&str>| {
        let mut r = runoff
            .api(Method::PUT, "/api/routes/api/weights")
            .json(&json!({"go": 50}));
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r
    };
    assert_eq!(status(put(None)).await, 401);
    assert_eq!(status(put(Some("Bearer wrong"))).await, 403);
    assert_eq!(status(put(Some("s3cret-token"))).await, 401);
    assert_eq!(
        weights(&runoff).await,
        (90.0, 10.0),
        "a refused write changed something"
    );
    assert_eq!(status(put(Some("Bearer s3cret-token"))).await, 200);
    assert_eq!(weights(&runoff).await, (90.0, 50.0));
    // Reads need it too (mismatch samples will hold request data).
    let r = runoff.api(Method::GET, "/api/config").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = runoff
        .api(Method::GET, "/api/config")
        .header("authorization", "Bearer s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("s3cret-token"),
        "the token leaked into /api/config"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["admin"]["token_env"], "RUNOFF_TEST_TOKEN");
    assert_eq!(v["routes"][0]["overridden"], true);
    for open in ["/metrics", "/healthz", "/readyz"] {
        assert_eq!(
            runoff.api(Method::GET, open).send().await.unwrap().status(),
            200,
            "{open}"
        );
    }
}

#[test]
fn an_open_admin_listener_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.yaml");
    let (listen, admin) = harness::free_port_pair();
    let base = format!("listen: 127.0.0.1:{listen}\nbackends:\n  node: {{ address: 127.0.0.1:9 }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n");
    std::fs::write(
        &path,
        format!("{base}admin: {{ listen: 0.0.0.0:{admin} }}\n"),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "admin.listen: `0.0.0.0:{admin}` is reachable from other hosts: set admin.token_env"
        )),
        "{err}"
    );

    // Named but unset: `run` refuses to start.
    std::fs::write(
        &path,
        format!(
            "{base}admin: {{ listen: 127.0.0.1:{admin}, token_env: RUNOFF_UNSET_TOKEN_VAR }}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env_remove("RUNOFF_UNSET_TOKEN_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("RUNOFF_UNSET_TOKEN_VAR is unset or empty"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_kill_switch_and_switching_a_mirror_on() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let runoff = Runoff::start(|p| config(p, &node, &go, 100, 0)).await;
    let client = reqwest::Client::new();
    let mirrored =
        |m: &harness::Metrics| m.sum("runoff_mirror_requests_total", &[("route", "api")]);

    // No mirror yet: `to` is required to switch one on.
    let r = runoff
        .put_json("/api/routes/api/mirror", json!({"percent": 100}))
        .await;
    assert_eq!(r.status(), 400);
    let r = runoff
        .put_json("/api/routes/nope/mirror", json!({"percent": 1}))
        .await;
    assert_eq!(r.status(), 404);
    let r = runoff
        .put_json("/api/routes/api/weights", json!({"rust": 5}))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("`rust` is not a backend of route `api`'s split"));

    let r = runoff
        .put_json(
            "/api/routes/api/mirror",
            json!({"to": "go", "percent": 100}),
        )
        .await;
    assert_eq!(r.status(), 200);
    for _ in 0..10 {
        assert_eq!(status(client.get(runoff.url("/api/on"))).await, 200);
    }
    let m = runoff
        .expect_metric("runoff_requests_total", &[("role", "shadow")], 10.0)
        .await;
    assert_eq!(mirrored(&m), 10.0);
    let routes: Value = runoff.get_json("/api/routes").await;
    assert_eq!(routes["routes"][0]["mirror"]["percent"], 100.0);
    assert_eq!(routes["routes"][0]["override"]["mirror"]["to"], "go");

    // The kill switch.
    let r = runoff
        .put_json("/api/routes/api/mirror", json!({"percent": 0}))
        .await;
    assert_eq!(r.status(), 200);
    for _ in 0..10 {
        assert_eq!(status(client.get(runoff.url("/api/off"))).await, 200);
    }
    runoff
        .expect_metric("runoff_requests_total", &[("role", "primary")], 20.0)
        .await;
    assert_eq!(mirrored(&runoff.scrape().await), 10.0);
    // API changes are overrides, not reloads; a file reload drops them.
    let m = runoff.scrape().await;
    assert_eq!(m.sum("runoff_config_reloads_total", &[]), 0.0);
    let r = runoff
        .api(Method::POST, "/api/reload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let routes: Value = runoff.get_json("/api/routes").await;
    assert_eq!(routes["routes"][0]["mirror"], Value::Null);
    assert_eq!(routes["routes"][0]["override"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_at_max_in_flight_gets_no_more_requests() {
    let slow = fixture("go").delay(Duration::from_secs(3)).start().await;
    let runoff =
        Runoff::start(|p| harness::one_backend(p, "go", slow.addr, ", max_in_flight: 2")).await;
    let url = runoff.url("/api");
    let held: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { reqwest::get(url).await.unwrap().status().as_u16() })
        })
        .collect();
    slow.wait_for(2, Duration::from_secs(10)).await;
    for _ in 0..5 {
        let r = reqwest::get(&url).await.unwrap();
        assert_eq!(r.status(), 503);
    }
    assert_eq!(
        slow.count(),
        2,
        "requests past max_in_flight reached the backend"
    );
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("backend", "go"), ("status_class", "2xx")],
            2.0,
        )
        .await;
    assert_eq!(
        m.sum("runoff_backend_rejected_total", &[("backend", "go")]),
        5.0
    );
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &[("backend", "go"), ("status_class", "error")]
        ),
        5.0
    );
}
