//! The example backends (`examples/node`, Express; `examples/go`, its Go rewrite) answer the
//! same requests with the same status, a JSON content type and byte-identical bodies.
//!
//! Needs `node`, `go` and `examples/node/node_modules`: without them the test fails, naming
//! the command that installs them (`bash examples/setup.sh`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};

use crate::harness::{free_port, require_example_apps};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `cmd` to completion within `limit`, or kills it and panics.
fn run_bounded(mut cmd: Command, what: &str, limit: Duration) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(out.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(out.path()).unwrap_or_default();
            assert!(status.success(), "{what} failed ({status}):\n{log}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} took longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An example backend process, killed when dropped.
struct Backend {
    name: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Backend {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts `program args` with `PORT` set to a free port and waits for `/healthz`. A port
    /// taken by someone else between our probe and the server's bind makes it exit: retried.
    async fn start(
        name: &'static str,
        program: &Path,
        args: &[&Path],
        dir: &Path,
        client: &Client,
    ) -> Backend {
        let mut last_log = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("{name}-{attempt}.log"));
            let file = File::create(&log).unwrap();
            let child = Command::new(program)
                .args(args)
                .env("PORT", port.to_string())
                .env("HOST", "127.0.0.1")
                .env("NODE_ENV", "production")
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: cannot start {}: {e}", program.display()));
            let mut backend = Backend {
                name,
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            };
            if backend.wait_healthy(client, Duration::from_secs(30)).await {
                return backend;
            }
            last_log = backend.log();
        }
        panic!("{name}: never answered /healthz 200 (3 attempts); last output:\n{last_log}");
    }

    /// Polls `/healthz` until it answers 200 (true), the process exits or `within` passes.
    async fn wait_healthy(&mut self, client: &Client, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let url = format!("{}/healthz", self.base);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            let probe = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if matches!(probe, Ok(r) if r.status() == StatusCode::OK) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// One request sent to both backends, and the status both must answer.
struct Case {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
}

fn get(path: &str, status: u16) -> Case {
    Case {
        method: Method::GET,
        path: path.to_string(),
        body: None,
        headers: Vec::new(),
        status,
    }
}

fn req(method: Method, path: &str, status: u16) -> Case {
    Case {
        method,
        ..get(path, status)
    }
}

fn order(body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case {
        method: Method::POST,
        path: "/api/orders".to_string(),
        body: Some(body.into()),
        headers: vec![("content-type", "application/json")],
        status,
    }
}

fn with_header(mut case: Case, name: &'static str, value: &'static str) -> Case {
    case.headers.retain(|(n, _)| *n != name);
    case.headers.push((name, value));
    case
}

fn item(sku: &str, qty: &str, price: &str) -> String {
    format!(r#"{{"sku":"{sku}","qty":{qty},"unit_price_cents":{price}}}"#)
}

fn order_json(user_id: &str, items: &[String]) -> String {
    format!(r#"{{"user_id":{user_id},"items":[{}]}}"#, items.join(","))
}

fn cases() -> Vec<Case> {
    let one = |sku: &str, qty: &str, price: &str| order_json("7", &[item(sku, qty, price)]);
    let hundred: Vec<String> = (0..100)
        .map(|i| item(&format!("SKU-{i}"), "1000", "10000000"))
        .collect();
    let too_many: Vec<String> = (0..101).map(|_| item("A", "1", "1")).collect();
    vec![
        get("/healthz", 200),
        // GET /api/users: filters, sorting, paging, and the query-string edge cases on which
        // Express's and Go's defaults disagree.
        get("/api/users", 200),
        get("/api/users?country=DE&min_age=30&limit=50&offset=0", 200),
        get(
            "/api/users?country=fr&min_age=25&max_age=40&sort=-score&limit=20&offset=5",
            200,
        ),
        get("/api/users?sort=age&limit=500&offset=4800", 200),
        get("/api/users?sort=score&max_age=20&limit=7", 200),
        get("/api/users?country=XX", 200),
        get("/api/users?offset=999999", 200),
        get("/api/users?country=DE&country=FR&limit=3", 200),
        get("/api/users?country%5Bx%5D=DE&limit=2", 200),
        get("/api/users?country=%64e&limit=2&", 200),
        get("/api/users?min_age=abc", 400),
        get("/api/users?min_age=+30", 400),
        get("/api/users?max_age=151", 400),
        get("/api/users?limit=0", 400),
        get("/api/users?limit=", 400),
        get("/api/users?country=DEU", 400),
        get("/api/users?sort=name", 400),
        get("/api/users?sort=__proto__", 400),
        get("/api/users?limit=1%zz", 400),
        get("/api/users?limit=1;offset=2", 400),
        // GET /api/report
        get("/api/report?rounds=1", 200),
        get("/api/report?rounds=2", 200),
        get("/api/report?rounds=0", 400),
        get("/api/report?rounds=1001", 400),
        // POST /api/orders: valid
        order(one("AB-1", "2", "1999"), 201),
        order(
            order_json(
                "4999",
                &[
                    item("X", "3", "333"),
                    item("Y-2", "1", "0"),
                    item("Z", "1", "7"),
                ],
            ),
            201,
        ),
        order(one("HALF", "2", "100"), 201), // tax 16.5 cents: rounds half up to 17
        order(one("FLOATS", "2.0", "1e3"), 201),
        order(order_json("3", &hundred), 201),
        with_header(
            order(one("TEXT", "1", "1"), 201),
            "content-type",
            "text/plain",
        ),
        order(
            r#"  {"user_id":1,"user_id":2,"items":[{"sku":"A","qty":1,"unit_price_cents":1,"extra":[1]}],"note":"x"}  "#,
            201,
        ),
        // POST /api/orders: invalid, with the field named
        order("{", 400),
        order("", 400),
        order(r#"{"user_id":7} x"#, 400),
        order("[1,2]", 400),
        order("null", 400),
        order(r#"{"user_id":"7","items":[]}"#, 400),
        order(r#"{"user_id":0,"items":[]}"#, 400),
        order(r#"{"user_id":1.5,"items":[]}"#, 400),
        order(r#"{"user_id":1e400,"items":[]}"#, 400),
        order(r#"{"user_id":5001,"items":[]}"#, 422),
        order(r#"{"user_id":1152921504606846976,"items":[]}"#, 422),
        order(r#"{"user_id":7}"#, 400),
        order(r#"{"user_id":7,"items":[]}"#, 400),
        order(r#"{"user_id":7,"items":{}}"#, 400),
        order(order_json("7", &too_many), 400),
        order(
            order_json("7", &[item("A", "1", "1"), "2".to_string()]),
            400,
        ),
        order(one("ab", "1", "1"), 400),
        order(one(&"A".repeat(33), "1", "1"), 400),
        order(one("A", "0", "1"), 400),
        order(one("A", "1001", "1"), 400),
        order(one("A", "\"2\"", "1"), 400),
        order(one("A", "1", "-1"), 400),
        order(one("A", "1", "1.5"), 400),
        order(one("A", "1", "10000001"), 400),
        with_header(order("{}", 415), "content-encoding", "gzip"),
        order(format!(r#"{{"pad":"{}"}}"#, "x".repeat(70_000)), 413),
        // Unknown paths and methods
        get("/nope", 404),
        get("/api", 404),
        get("/api/users/", 404),
        get("/API/users", 404),
        get("/api/%75sers", 404),
        get("/api/orders", 404),
        req(Method::POST, "/api/users", 404),
        req(Method::DELETE, "/api/users", 404),
        req(Method::OPTIONS, "/api/users", 404),
        req(Method::HEAD, "/api/users?limit=5", 200),
        req(Method::HEAD, "/nope", 404),
    ]
}

struct Answer {
    status: StatusCode,
    content_type: String,
    content_length: Option<String>,
    body: Vec<u8>,
}

async fn send(client: &Client, base: &str, case: &Case) -> Answer {
    let mut request = client.request(case.method.clone(), format!("{base}{}", case.path));
    for (name, value) in &case.headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.unwrap_or_else(|e| {
        panic!("{} {}{}: {e}", case.method, base, case.path);
    });
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    Answer {
        status: response.status(),
        content_type: header("content-type").unwrap_or_default(),
        content_length: header("content-length"),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

#[tokio::test]
async fn node_and_go_examples_answer_identical_json() {
    require_example_apps("comparing Node's and Go's answers");

    let dir = tempfile::tempdir().unwrap();
    let go_bin = dir.path().join("example");
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(".")
        .current_dir(root().join("examples/go"))
        // Standard library only: nothing to download, and no newer toolchain either.
        .env("GOPROXY", "off")
        .env("GOTOOLCHAIN", "local");
    // A blocking wait of up to minutes: off the async workers.
    tokio::task::spawn_blocking(move || {
        run_bounded(build, "go build (examples/go)", Duration::from_secs(300));
    })
    .await
    .unwrap();

    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let server_js = root().join("examples/node/server.js");
    let node = Backend::start(
        "node",
        Path::new("node"),
        &[&server_js],
        dir.path(),
        &client,
    )
    .await;
    let go = Backend::start("go", &go_bin, &[], dir.path(), &client).await;

    let mut checked = 0;
    for case in cases() {
        let mut what = format!("{} {}", case.method, case.path);
        if let Some(body) = &case.body {
            let shown: String = String::from_utf8_lossy(body).chars().take(80).collect();
            what.push_str(&format!(" {shown}"));
        }
        let a = send(&client, &node.base, &case).await;
        let b = send(&client, &go.base, &case).await;
        let text = |x: &Answer| {
            String::from_utf8_lossy(&x.body)
                .chars()
                .take(400)
                .collect::<String>()
        };
        assert_eq!(
            a.status.as_u16(),
            case.status,
            "{what}: {} answered {} {}",
            node.name,
            a.status,
            text(&a)
        );
        assert_eq!(
            b.status.as_u16(),
            case.status,
            "{what}: {} answered {} {}",
            go.name,
            b.status,
            text(&b)
        );
        for x in [&a, &b] {
            assert_eq!(x.content_type, "application/json; charset=utf-8", "{what}");
        }
        assert_eq!(a.content_length, b.content_length, "{what}: Content-Length");
        assert!(
            a.body == b.body,
            "{what}: bodies differ\n node: {}\n   go: {}",
            text(&a),
            text(&b)
        );
        if case.method == Method::HEAD {
            assert!(a.body.is_empty(), "{what}: a HEAD answer has no body");
            assert!(a.content_length.is_some(), "{what}: Content-Length");
        } else {
            let json: serde_json::Value = serde_json::from_slice(&a.body)
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text(&a)));
            check_meaning(&case, &json);
        }
        checked += 1;
    }
    eprintln!("examples: {checked} requests, identical answers from node and go");
    drop(node);
    drop(go);
}

/// Identical answers could still be identically wrong: spot-check what a few of them say.
fn check_meaning(case: &Case, json: &serde_json::Value) {
    let what = format!("{} {}", case.method, case.path);
    if case.status >= 400 {
        let error = json["error"].as_str().unwrap_or_default();
        assert!(
            !error.is_empty(),
            "{what}: an error names the problem: {json}"
        );
        if case.body.as_deref() == Some(b"{\"user_id\":0,\"items\":[]}".as_slice()) {
            assert_eq!(error, "user_id must be a positive integer");
        }
        if case.status == 404 {
            assert_eq!(json, &serde_json::json!({"error": "not found"}), "{what}");
        }
        return;
    }
    match case.path.split('?').next().unwrap() {
        "/healthz" => assert_eq!(json, &serde_json::json!({"status": "ok"})),
        "/api/users" if case.path.contains("country=DE&min_age=30") => {
            let items = json["items"].as_array().unwrap();
            assert!(json["total"].as_u64().unwrap() > 50, "{what}: {json}");
            assert_eq!(items.len(), 50, "{what}");
            for u in items {
                assert_eq!(u["country"], "DE", "{what}");
                assert!(u["age"].as_u64().unwrap() >= 30, "{what}");
            }
        }
        "/api/users" if case.path == "/api/users" => {
            assert_eq!(json["total"], 5000, "{what}");
            assert_eq!(json["items"].as_array().unwrap().len(), 50, "{what}");
        }
        "/api/report" => {
            assert_eq!(json["users"], 5000, "{what}");
            let countries = json["countries"].as_array().unwrap();
            let sum: u64 = countries.iter().map(|c| c["users"].as_u64().unwrap()).sum();
            assert_eq!(sum, 5000, "{what}");
            assert_eq!(json["top"].as_array().unwrap().len(), 10, "{what}");
        }
        "/api/orders" => {
            let (sub, tax, total) = (
                json["subtotal_cents"].as_u64().unwrap(),
                json["tax_cents"].as_u64().unwrap(),
                json["total_cents"].as_u64().unwrap(),
            );
            assert_eq!(total, sub + tax, "{what}: {json}");
            assert_eq!(tax, (sub * 825 + 5000) / 10000, "{what}: {json}");
            if json["items"][0]["sku"] == "HALF" {
                assert_eq!((sub, tax), (200, 17), "{what}: {json}");
            }
        }
        _ => {}
    }
}
