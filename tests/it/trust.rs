//! Trust boundaries, end to end: what a caller cannot steer (forwarding headers, the backend,
//! the mirror marker), whom the admin listener obeys, what runoff never keeps in the clear,
//! and the config mistakes `check` refuses.

use std::process::Command;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::{self, bin, fixture, status, Fixture, Ports, Received, Runoff};

/// A config with backends `node` and `go` (and any `extra` backends), `head` before them.
fn config(p: &Ports, node: &Fixture, go: &Fixture, head: &str, routes: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\n{head}backends:\n  node: {{ address: \"{}\" }}\n  go: {{ address: \"{}\" }}\nroutes:\n{routes}",
        p.listen, p.admin, node.addr, go.addr
    )
}

/// Which fixture answered.
async fn served_by(req: reqwest::RequestBuilder) -> String {
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["x-fixture"].to_str().unwrap().to_string()
}

fn all_received(fixtures: &[&Fixture]) -> Vec<Received> {
    fixtures.iter().flat_map(|f| f.received()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarding_headers_are_replaced_unless_a_trusted_proxy_sent_them() {
    const ROUTE: &str =
        "  - name: api\n    split: { node: 50, go: 50 }\n    sticky: { client_ip: true }\n";
    let spoofed = |client: &reqwest::Client, url: String, i: usize| {
        client
            .get(url)
            .header("host", "shop.example")
            .header("x-forwarded-for", format!("198.51.100.{i}"))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
    };
    let client = reqwest::Client::new();

    // From an untrusted peer (no trusted_proxies): replaced, and every caller is 127.0.0.1.
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let runoff = Runoff::start(|p| config(p, &node, &go, "", ROUTE)).await;
    for i in 1..=40 {
        spoofed(&client, runoff.url("/"), i).send().await.unwrap();
    }
    let got = all_received(&[&node, &go]);
    assert_eq!(got.len(), 40);
    for r in &got {
        assert_eq!(r.header("x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(r.header("x-forwarded-proto"), Some("http"));
        assert_eq!(r.header("x-forwarded-host"), Some("shop.example"));
    }
    assert!(
        node.count() == 40 || go.count() == 40,
        "the spoofed addresses were believed for stickiness: node {}, go {}",
        node.count(),
        go.count()
    );
    drop(runoff);

    // From a trusted proxy: extended and kept, and the client is the address it names (for
    // stickiness and the access log).
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let head = format!(
        "access_log: {}\nforwarding: {{ trusted_proxies: [127.0.0.0/8] }}\n",
        log_path.display()
    );
    let runoff = Runoff::start(|p| config(p, &node, &go, &head, ROUTE)).await;
    for i in 1..=40 {
        spoofed(&client, runoff.url("/"), i).send().await.unwrap();
    }
    let got = all_received(&[&node, &go]);
    assert_eq!(got.len(), 40);
    for r in &got {
        let xff = r.header("x-forwarded-for").unwrap();
        assert!(
            xff.starts_with("198.51.100.") && xff.ends_with(", 127.0.0.1"),
            "{xff}"
        );
        assert_eq!(r.header("x-forwarded-proto"), Some("https"));
        assert_eq!(r.header("x-forwarded-host"), Some("evil.example"));
    }
    assert!(
        node.count() > 0 && go.count() > 0,
        "40 clients behind a trusted proxy landed in one cohort"
    );
    let lines = harness::json_lines(&log_path, 40).await;
    let mut clients: Vec<&str> = lines
        .iter()
        .map(|l| l["client"].as_str().unwrap())
        .collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), 40, "{clients:?}");
    assert!(clients.iter().all(|c| c.starts_with("198.51.100.")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_a_backend_is_opt_in_and_limited_by_source_and_secret() {
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let routes = "  - name: open
    match: { path_prefix: /open }
    split: { node: 100, go: 0 }
    force: { from: [127.0.0.0/8] }
  - name: far
    match: { path_prefix: /far }
    split: { node: 100, go: 0 }
    force: { from: [10.0.0.0/8] }
  - name: secret
    match: { path_prefix: /secret }
    split: { node: 100, go: 0 }
    force: { secret_env: RUNOFF_TEST_FORCE_SECRET }
  - name: off
    match: { path_prefix: /off }
    split: { node: 100, go: 0 }
";
    let runoff = Runoff::start_with(
        |p| config(p, &node, &go, "", routes),
        &[],
        &[("RUNOFF_TEST_FORCE_SECRET", "let-me-in")],
    )
    .await;
    let client = reqwest::Client::new();
    let force = |path: &str| {
        client
            .get(runoff.url(path))
            .header("x-runoff-backend", "go")
    };
    assert_eq!(served_by(force("/open")).await, "go");
    assert_eq!(served_by(force("/far")).await, "node");
    assert_eq!(served_by(force("/off")).await, "node");
    assert_eq!(served_by(force("/secret")).await, "node");
    let with_secret = |s: &str| force("/secret").header("x-runoff-backend-secret", s);
    assert_eq!(served_by(with_secret("guess")).await, "node");
    assert_eq!(served_by(with_secret("let-me-in")).await, "go");

    // The force header and its secret never reach a backend.
    for r in all_received(&[&node, &go]) {
        assert_eq!(r.header("x-runoff-backend"), None, "{}", r.uri);
        assert_eq!(r.header("x-runoff-backend-secret"), None, "{}", r.uri);
    }
    let m = runoff
        .expect_metric(
            "runoff_force_refused_total",
            &[("route", "secret"), ("reason", "secret")],
            2.0,
        )
        .await;
    let refused = |route: &str, reason: &str| {
        m.sum(
            "runoff_force_refused_total",
            &[("route", route), ("reason", reason)],
        )
    };
    assert_eq!(refused("far", "source"), 1.0);
    assert_eq!(refused("off", "disabled"), 1.0);
    assert_eq!(
        m.sum("runoff_force_refused_total", &[("route", "open")]),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mirror_marker_from_a_caller_never_reaches_the_primary() {
    const ROUTE: &str =
        "  - name: api\n    split: { node: 100 }\n    mirror: { to: go, percent: 100 }\n";
    let client = reqwest::Client::new();
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let runoff = Runoff::start(|p| config(p, &node, &go, "", ROUTE)).await;
    let r = client
        .get(runoff.url("/marked"))
        .header("x-runoff-shadow", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    client.get(runoff.url("/plain")).send().await.unwrap();
    go.wait_for(1, Duration::from_secs(5)).await;
    let primary = node.received();
    assert_eq!(primary.len(), 2);
    assert!(
        primary
            .iter()
            .all(|r| r.header("x-runoff-shadow").is_none()),
        "the caller's marker reached the primary"
    );
    // Copies carry runoff's own marker; a marked request is not copied (loop guard).
    let copies = go.received();
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].uri, "/plain");
    assert_eq!(copies[0].header("x-runoff-shadow"), Some("1"));
    drop(runoff);

    // Behind a second runoff (a trusted proxy), the marker is kept: the candidate still knows
    // shadow traffic.
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let head = "forwarding: { trusted_proxies: [127.0.0.0/8] }\n";
    let runoff = Runoff::start(|p| config(p, &node, &go, head, ROUTE)).await;
    client
        .get(runoff.url("/marked"))
        .header("x-runoff-shadow", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(node.received()[0].header("x-runoff-shadow"), Some("1"));
}

/// The kill switch on, then a cross-site page's reload that would wipe it: refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_refuses_cross_origin_and_foreign_host_requests() {
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let runoff = Runoff::start(|p| {
        config(
            p,
            &node,
            &go,
            "",
            "  - name: api\n    split: { node: 100 }\n    mirror: { to: go, percent: 100 }\n",
        )
    })
    .await;
    let admin = runoff.ports.admin;
    let own = format!("http://127.0.0.1:{admin}");
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{own}{path}");
    let percent = || async {
        runoff.get_json("/api/routes").await["routes"][0]["mirror"]["percent"]
            .as_f64()
            .unwrap()
    };

    // Same origin, JSON: accepted.
    let r = client
        .put(url("/api/routes/api/mirror"))
        .header("origin", own.as_str())
        .json(&json!({"percent": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(percent().await, 0.0);

    // A cross-site form post (text/plain needs no preflight): refused, nothing changed.
    let evil = client
        .post(url("/api/reload"))
        .header("origin", "http://evil.example")
        .header("content-type", "text/plain")
        .body("{}");
    assert_eq!(status(evil).await, 403);
    // The same without Origin (a script), but not JSON: refused.
    let plain = client
        .post(url("/api/reload"))
        .header("content-type", "text/plain");
    assert_eq!(status(plain).await, 415);
    assert_eq!(status(client.post(url("/api/reload"))).await, 415);
    assert_eq!(
        percent().await,
        0.0,
        "a refused reload wiped the kill switch"
    );

    // DNS rebinding: a foreign Host, read or write, is refused.
    let rebound = client
        .get(url("/api/mismatches"))
        .header("host", format!("evil.example:{admin}"));
    assert_eq!(status(rebound).await, 403);
    let rebound_write = client
        .post(url("/api/reload"))
        .header("host", "evil.example")
        .header("content-type", "application/json");
    assert_eq!(status(rebound_write).await, 403);
    // Any page but the open three is guarded too.
    let page = client.get(url("/")).header("host", "evil.example");
    assert_eq!(status(page).await, 403);
    // Prometheus and probes reach the open endpoints by any name.
    for open in ["/metrics", "/healthz", "/readyz"] {
        let r = client.get(url(open)).header("host", "runoff:9100");
        assert_eq!(status(r).await, 200, "{open}");
    }
    // A cross-origin read is refused too (Origin is present and foreign).
    let read = client
        .get(url("/api/config"))
        .header("origin", "http://evil.example");
    assert_eq!(status(read).await, 403);

    // The owner's reload: JSON, no Origin, a loopback Host.
    let ok = client
        .post(url("/api/reload"))
        .header("content-type", "application/json");
    assert_eq!(status(ok).await, 200);
    assert_eq!(percent().await, 100.0);

    let m = runoff
        .expect_metric("runoff_admin_refused_total", &[("reason", "origin")], 2.0)
        .await;
    assert_eq!(
        m.sum("runoff_admin_refused_total", &[("reason", "content_type")]),
        2.0
    );
    assert_eq!(
        m.sum("runoff_admin_refused_total", &[("reason", "host")]),
        3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_an_echoing_backend_returns_are_absent_from_the_admin_api_and_the_access_log() {
    // Both echo the request back; on /api/login they answer fixed bodies with secrets that
    // differ, so that the secrets sit inside the differences.
    let node = fixture("node")
        .echo()
        .when_path("/api/login", |b| {
            b.body(r#"{"token":"tk-SECRET-1","session":{"refresh_token":"rt-SECRET-1","n":1},"user":"ann"}"#)
        })
        .start()
        .await;
    let go = fixture("go")
        .echo()
        .when_path("/api/login", |b| {
            b.body(r#"{"token":"tk-SECRET-2","session":null,"user":"bob"}"#)
        })
        .start()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let head = format!("access_log: {}\n", log_path.display());
    let routes = "  - name: api
    split: { node: 100 }
    mirror: { to: go, percent: 100, methods: [GET, POST], strip_headers: [authorization, cookie, x-api-key] }
    compare: { headers: { compare: [content-type, set-cookie] } }
    analysis: {}
";
    let runoff = Runoff::start(|p| config(p, &node, &go, &head, routes)).await;
    let client = reqwest::Client::new();
    let r = client
        .post(runoff.url("/api/items?token=q-SECRET&page=2&api_key=k-SECRET"))
        .header("authorization", "Bearer a-SECRET")
        .header("cookie", "sid=c-SECRET")
        .header("x-api-key", "h-SECRET")
        .json(&json!({"name": "x", "password": "pw-SECRET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The caller still gets the primary's answer unchanged: redaction is for what runoff keeps.
    let echoed: Value = r.json().await.unwrap();
    assert_eq!(echoed["headers"]["authorization"], "Bearer a-SECRET");
    let r = client
        .get(runoff.url("/api/login?code=oauth-SECRET"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    runoff
        .expect_metric(
            "runoff_compare_total",
            &[("route", "api"), ("result", "mismatch")],
            2.0,
        )
        .await;

    let mut shown = String::new();
    for path in [
        "/api/mismatches?route=api&limit=100",
        "/api/mismatches/paths?route=api",
        "/api/summary",
        "/api/analysis",
        "/api/config",
        "/api/routes",
    ] {
        let r = runoff.api(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        shown.push_str(&r.text().await.unwrap());
    }
    let lines = harness::json_lines(&log_path, 4).await;
    let logged: String = lines.iter().map(|l| format!("{l}\n")).collect();
    for (what, text) in [("the admin API", &shown), ("the access log", &logged)] {
        assert!(
            !text.contains("SECRET"),
            "{what} shows a secret:\n{}",
            text.lines()
                .filter(|l| l.contains("SECRET"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // What was redacted is still there to see as differing.
    let samples = runoff.get_json("/api/mismatches?route=api&limit=100").await;
    let text = samples.to_string();
    assert!(text.contains("/headers/authorization"), "{text}");
    assert!(
        text.contains("token=<redacted>&page=2&api_key=<redacted>"),
        "{text}"
    );
    assert!(text.contains("code=<redacted>"), "{text}");
    assert!(text.contains("\"/user\""), "{text}");
    assert!(logged.contains("token=<redacted>&page=2"), "{logged}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retargeting_the_mirror_keeps_its_strip_headers() {
    let (node, go) = (fixture("node").start().await, fixture("go").start().await);
    let go2 = fixture("go2").start().await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &node,
            &go,
            "",
            "  - name: api\n    split: { node: 100 }\n    mirror: { to: go, percent: 100, strip_headers: [authorization, cookie], marker_header: x-shadow }\n",
        )
        .replace(
            "routes:\n",
            &format!("  go2: {{ address: \"{}\" }}\nroutes:\n", go2.addr),
        )
    })
    .await;
    let r = runoff
        .put_json("/api/routes/api/mirror", json!({"to": "go2"}))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = reqwest::Client::new()
        .get(runoff.url("/x"))
        .header("authorization", "Bearer t")
        .header("cookie", "sid=1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    go2.wait_for(1, Duration::from_secs(5)).await;
    let copy = &go2.received()[0];
    assert_eq!(copy.header("authorization"), None);
    assert_eq!(copy.header("cookie"), None);
    assert_eq!(copy.header("x-shadow"), Some("1"));
    assert_eq!(go.count(), 0);
    let config = runoff.get_json("/api/config").await;
    let mirror = &config["routes"][0]["mirror"];
    assert_eq!(mirror["to"], "go2");
    assert_eq!(mirror["percent"], 100.0);
    assert_eq!(mirror["strip_headers"], json!(["authorization", "cookie"]));
    // Only `to` and `percent` can change here.
    let r = runoff
        .put_json("/api/routes/api/mirror", json!({"strip_headers": []}))
        .await;
    assert_eq!(r.status(), 400);
}

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runoff.yaml");
    std::fs::write(&file, yaml).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn check_refuses_duplicate_keys_and_a_backend_that_is_runoff_itself() {
    let base = "listen: 127.0.0.1:18080\nadmin: { listen: 127.0.0.1:19100 }\nbackends:\n  node: { address: 127.0.0.1:13000 }\n  go: { address: 127.0.0.1:13001 }\nroutes:\n  - name: api\n";
    let (ok, text) = check(&format!("{base}    split: {{ node: 90, go: 10 }}\n"));
    assert!(ok, "{text}");

    let (ok, text) = check(&format!(
        "{base}    split: {{ node: 90, go: 10, node: 0 }}\n"
    ));
    assert!(!ok, "a duplicate key was accepted");
    assert!(text.contains("routes[0].split"), "{text}");
    assert!(text.contains("node"), "{text}");

    for (address, listener) in [
        ("127.0.0.1:18080", "127.0.0.1:18080"),
        ("127.0.0.1:19100", "127.0.0.1:19100"),
    ] {
        let (ok, text) = check(&format!(
            "{}    split: {{ node: 90, go: 10 }}\n",
            base.replace("127.0.0.1:13001", address)
        ));
        assert!(!ok, "{address}: a loop was accepted");
        assert!(text.contains("backends.go.address"), "{text}");
        assert!(text.contains(listener), "{text}");
    }
    // A listener on every address catches loopback on its port.
    let wildcard = base
        .replace("listen: 127.0.0.1:18080", "listen: 0.0.0.0:18080")
        .replace("127.0.0.1:13001", "127.0.0.1:18080");
    let (ok, text) = check(&format!("{wildcard}    split: {{ node: 90, go: 10 }}\n"));
    assert!(!ok, "a loop through 0.0.0.0 was accepted");
    assert!(text.contains("backends.go.address"), "{text}");
}

#[test]
fn run_refuses_an_upgrade_socket_in_a_directory_others_can_write() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let config = dir.path().join("runoff.yaml");
    let (listen, admin) = harness::free_port_pair();
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nserver: {{ upgrade_sock: \"{}/upgrade.sock\" }}\nbackends:\n  node: {{ address: 127.0.0.1:1 }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n",
            listen,
            admin,
            dir.path().display()
        ),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.upgrade_sock") && err.contains("open to others"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_named_as_pid_file_does_not_hang_the_summary() {
    let node = fixture("node").start().await;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("node.pid");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let runoff = Runoff::start(|p| {
        harness::one_backend(
            p,
            "node",
            node.addr,
            &format!(", process: {{ pid_file: \"{}\" }}", fifo.display()),
        )
    })
    .await;
    // Give the sampler time to try the FIFO (once a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = runoff
        .api(Method::GET, "/api/summary")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("/api/summary hung on a FIFO pid file");
    let summary: Value = r.json().await.unwrap();
    let problem = summary["processes"]["node"]["problem"].as_str().unwrap();
    assert!(problem.contains("not a regular file"), "{problem}");
    let r = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/metrics", runoff.ports.admin))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
