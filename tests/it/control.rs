//! Live control end to end: reloads and API changes under load lose nothing, in-flight
//! requests finish on their config, the admin API lets no one in without the token, and a
//! binary upgrade hands the listeners over without a failed request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{self, bin, fixture, status, wait_until, Fixture, Ports, Runoff};
use reqwest::Method;
use serde_json::{json, Value};

fn config(p: &Ports, node: &Fixture, go: &Fixture, node_w: u32, go_w: u32) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nserver: {{ upgrade_sock: \"{}/upgrade.sock\" }}\nbackends:\n  node: {{ address: \"{}\" }}\n  go: {{ address: \"{}\" }}\nroutes:\n  - name: api\n    split: {{ node: {node_w}, go: {go_w} }}\n",
        p.listen,
        p.admin,
        p.dir.display(),
        node.addr,
        go.addr
    )
}

/// Client tasks sending GETs until told to stop (bounded by count and time too); each
/// outcome is counted: status, or 0 for a connection error.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<HashMap<u16, u64>>>,
}

impl Load {
    fn start(url: String, tasks: usize, fresh_connections: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let mut builder = reqwest::Client::builder();
                    if fresh_connections {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let client = builder.build().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    let mut seen: HashMap<u16, u64> = HashMap::new();
                    for _ in 0..200_000 {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        let status = client
                            .get(&url)
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        *seen.entry(status).or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> HashMap<u16, u64> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = HashMap::new();
        for t in self.tasks {
            for (k, v) in t.await.unwrap() {
                *all.entry(k).or_default() += v;
            }
        }
        all
    }
}

fn only_200(outcomes: &HashMap<u16, u64>) -> u64 {
    assert_eq!(
        outcomes.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "failed requests (0 = connection error): {outcomes:?}"
    );
    outcomes[&200]
}

async fn weights(runoff: &Runoff) -> (f64, f64) {
    let m = runoff.scrape().await;
    (
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "node")],
        ),
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "go")],
        ),
    )
}

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
    let (listen, admin) = (harness::free_port(), harness::free_port());
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binary_upgrade_under_load_fails_no_request() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let mut old = Runoff::start(|p| config(p, &node, &go, 50, 50)).await;
    // Fresh connections, so every request is accepted by whichever process holds the
    // listening socket at that moment.
    let load = Load::start(old.url("/api/up"), 3, true);
    let received = || node.count() + go.count();
    // The load is under way on the old process before the upgrade starts.
    wait_until(
        "the load reaches the old process",
        Duration::from_secs(20),
        || received() >= 30,
    )
    .await;

    let mut new = old.spawn_upgrade();
    let sock = old.ports.dir.join("upgrade.sock");
    wait_until(
        &format!("the new process opens {}", sock.display()),
        Duration::from_secs(20),
        || sock.exists(),
    )
    .await;
    old.signal("-QUIT");
    let exit = old.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "old process: {exit}\n{}", old.stderr());
    // Keep the load on the new process for a moment, then stop.
    let before = received();
    wait_until("traffic after the handoff", Duration::from_secs(20), || {
        received() >= before + 50
    })
    .await;
    let served = only_200(&load.finish().await);
    assert!(served > 50);
    // The new process owns the admin listener now and has served requests.
    let m = new.scrape().await;
    assert!(m.sum("runoff_requests_total", &[("status_class", "2xx")]) > 0.0);
    assert_eq!(
        m.sum("runoff_requests_total", &[("status_class", "error")]),
        0.0
    );
    assert!(
        new.child.as_mut().unwrap().try_wait().unwrap().is_none(),
        "the new process exited"
    );
}
