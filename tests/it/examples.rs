//! The example backends (`examples/node`, Express; `examples/go`, its Go rewrite) answer the
//! same requests with the same status, a JSON content type and byte-identical bodies, and
//! their WebSocket echo endpoints (`GET /ws`: ws and gorilla/websocket) answer the same frames.
//!
//! Needs `node`, `go`, `examples/node/node_modules` and Debian's gorilla/websocket source:
//! without them the tests fail, naming the command that installs them
//! (`bash examples/setup.sh`).

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::{client_frame, free_port, require_example_apps};

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
        // GET /ws without a WebSocket handshake (the handshakes: node_and_go_websocket_echo_…)
        get("/ws", 426),
        req(Method::HEAD, "/ws", 426),
        req(Method::POST, "/ws", 404),
        get("/ws/", 404),
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

/// The directory of the `replace` in examples/go/go.mod (Debian's
/// golang-github-gorilla-websocket-dev).
const GORILLA_WEBSOCKET: &str = "/usr/share/gocode/src/github.com/gorilla/websocket";

/// Fails the calling test unless the packages of the apps' WebSocket endpoints are installed:
/// without them node cannot start and go cannot build.
fn require_websocket_packages(what: &str) {
    let mut missing = Vec::new();
    if !root().join("examples/node/node_modules/ws").is_dir() {
        missing.push("examples/node/node_modules/ws (`npm ci` in examples/node)".to_string());
    }
    if !Path::new(GORILLA_WEBSOCKET).is_dir() {
        missing.push(format!(
            "{GORILLA_WEBSOCKET} (Debian's golang-github-gorilla-websocket-dev)"
        ));
    }
    assert!(
        missing.is_empty(),
        "{what} needs the example backends' WebSocket packages, and this machine lacks {}. \
         Install them with `bash examples/setup.sh`.",
        missing.join(", ")
    );
}

/// Builds the Go app and starts both apps on free ports; `dir` holds the binary and the logs.
async fn start_both(what: &str, dir: &Path) -> (Client, Backend, Backend) {
    require_example_apps(what);
    require_websocket_packages(what);

    let go_bin = dir.join("example");
    let mut build = Command::new("go");
    build
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(".")
        .current_dir(root().join("examples/go"))
        // The standard library and gorilla/websocket from a local directory (go.mod's
        // replace): nothing to download, and no newer toolchain either.
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
    let node = Backend::start("node", Path::new("node"), &[&server_js], dir, &client).await;
    let go = Backend::start("go", &go_bin, &[], dir, &client).await;
    (client, node, go)
}

#[tokio::test]
async fn node_and_go_examples_answer_identical_json() {
    let dir = tempfile::tempdir().unwrap();
    let (client, node, go) = start_both("comparing Node's and Go's answers", dir.path()).await;

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
        if case.status == 426 {
            assert_eq!(error, "websocket upgrade required", "{what}");
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

// ---------------------------------------------------------------- GET /ws

/// The Sec-WebSocket-Key of RFC 6455's example handshake (section 1.3) ...
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// ... and the Sec-WebSocket-Accept it gives there: base64(SHA-1(key + the RFC's GUID)).
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The largest message both apps take (ws's maxPayload, gorilla's SetReadLimit).
const WS_MAX_MESSAGE: usize = 64 << 20;
/// How long one connect, write or read may take.
const WS_STEP: Duration = Duration::from_secs(20);

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A close frame's payload: the code, big-endian, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// One frame from the server, as it came: `header` is every byte before the payload.
#[derive(PartialEq, Eq)]
struct Frame {
    header: Vec<u8>,
    payload: Vec<u8>,
}

impl Frame {
    fn fin(&self) -> bool {
        self.header[0] & 0x80 != 0
    }
    fn opcode(&self) -> u8 {
        self.header[0] & 0x0f
    }
    /// What a transcript keeps of it: a payload over 1 MiB only as its length and a hash.
    fn recorded(self) -> Frame {
        if self.payload.len() <= 1 << 20 {
            return self;
        }
        let mut hasher = DefaultHasher::new();
        self.payload.hash(&mut hasher);
        let summary = format!(
            "{} bytes, hash {:016x}",
            self.payload.len(),
            hasher.finish()
        );
        Frame {
            header: self.header,
            payload: summary.into_bytes(),
        }
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.payload[..self.payload.len().min(40)];
        write!(
            f,
            "Frame {{ header: {:02x?}, payload ({} bytes): {:?} }}",
            self.header,
            self.payload.len(),
            String::from_utf8_lossy(shown)
        )
    }
}

/// One client connection to an app, by hand: what it sends and what it gets are bytes.
struct WsConn {
    name: &'static str,
    io: BufReader<TcpStream>,
}

impl WsConn {
    async fn connect(backend: &Backend) -> WsConn {
        let addr = backend.base.trim_start_matches("http://").to_string();
        let stream = timeout(WS_STEP, TcpStream::connect(&addr))
            .await
            .unwrap_or_else(|_| panic!("{}: connect to {addr}: no answer", backend.name))
            .unwrap_or_else(|e| panic!("{}: connect to {addr}: {e}", backend.name));
        WsConn {
            name: backend.name,
            io: BufReader::new(stream),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        timeout(WS_STEP, self.io.get_mut().write_all(bytes))
            .await
            .unwrap_or_else(|_| panic!("{}: writing {} bytes: timeout", self.name, bytes.len()))
            .unwrap_or_else(|e| panic!("{}: writing {} bytes: {e}", self.name, bytes.len()));
    }

    async fn read_exact(&mut self, n: usize, what: &str) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        timeout(WS_STEP, self.io.read_exact(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{}: {what}: nothing in {WS_STEP:?}", self.name))
            .unwrap_or_else(|e| panic!("{}: {what}: {e}", self.name));
        buf
    }

    /// An HTTP/1.1 response head, through its blank line, as text.
    async fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let n = timeout(WS_STEP, self.io.read_until(b'\n', &mut head))
                .await
                .unwrap_or_else(|_| {
                    panic!("{}: a response head: nothing in {WS_STEP:?}", self.name)
                })
                .unwrap_or_else(|e| panic!("{}: a response head: {e}", self.name));
            assert!(
                n > 0,
                "{}: closed inside a response head: {head:?}",
                self.name
            );
        }
        String::from_utf8(head).unwrap()
    }

    /// A whole response to a request sent on this connection: status, head (lowercase header
    /// names) and body (by Content-Length; none for HEAD).
    async fn read_response(&mut self, head_request: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let head = self.read_head().await;
        let status = head[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = head
            .lines()
            .skip(1)
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let body = if head_request {
            Vec::new()
        } else {
            self.read_exact(length, "a response body").await
        };
        (status, headers, body)
    }

    /// One frame from the server, which must not be masked (RFC 6455, 5.1).
    async fn read_frame(&mut self) -> Frame {
        let mut header = self.read_exact(2, "a frame header").await;
        assert_eq!(
            header[1] & 0x80,
            0,
            "{}: a server frame is never masked",
            self.name
        );
        let length = match header[1] & 0x7f {
            126 => {
                let ext = self.read_exact(2, "a 16-bit length").await;
                header.extend_from_slice(&ext);
                u64::from(u16::from_be_bytes([ext[0], ext[1]]))
            }
            127 => {
                let ext = self.read_exact(8, "a 64-bit length").await;
                header.extend_from_slice(&ext);
                u64::from_be_bytes(ext.try_into().unwrap())
            }
            n => u64::from(n),
        };
        let payload = self.read_exact(length as usize, "a frame payload").await;
        Frame { header, payload }
    }

    /// The server must close the connection now, cleanly: an EOF, nothing before it.
    async fn expect_eof(&mut self) {
        let mut rest = Vec::new();
        timeout(WS_STEP, self.io.read_to_end(&mut rest))
            .await
            .unwrap_or_else(|_| panic!("{}: the connection stayed open", self.name))
            .unwrap_or_else(|e| panic!("{}: not a clean close: {e}", self.name));
        assert!(
            rest.is_empty(),
            "{}: bytes after the close frame: {rest:02x?}",
            self.name
        );
    }
}

/// A WebSocket opening handshake for GET /ws (RFC 6455, 4.1), with `extra` header lines.
fn handshake(extra: &str) -> String {
    format!(
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Connects, sends `handshake(extra)` and checks the 101; returns the connection and the head.
async fn ws_open(backend: &Backend, extra: &str) -> (WsConn, String) {
    let mut conn = WsConn::connect(backend).await;
    conn.send(handshake(extra).as_bytes()).await;
    let head = conn.read_head().await;
    let name = backend.name;
    assert!(head.starts_with("HTTP/1.1 101 "), "{name}: {head}");
    let header = |wanted: &str| {
        head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| v.trim().to_string())
        })
    };
    assert_eq!(
        header("sec-websocket-accept").as_deref(),
        Some(WS_ACCEPT),
        "{name}: {head}"
    );
    assert!(
        header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{name}: {head}"
    );
    assert!(
        header("connection").is_some_and(|v| v.eq_ignore_ascii_case("upgrade")),
        "{name}: {head}"
    );
    // No subprotocol and no permessage-deflate, whatever the client offers.
    assert_eq!(header("sec-websocket-protocol"), None, "{name}: {head}");
    assert_eq!(header("sec-websocket-extensions"), None, "{name}: {head}");
    (conn, head)
}

/// What one app answered, step by step: each step's label and what came back.
type Transcript = Vec<(String, String)>;

fn frames_text(frames: Vec<Frame>) -> String {
    let recorded: Vec<Frame> = frames.into_iter().map(Frame::recorded).collect();
    format!("{recorded:?}")
}

/// Sends `frames`, reads `replies` frames back; the caller asserts on them.
async fn exchange(conn: &mut WsConn, frames: &[Vec<u8>], replies: usize) -> Vec<Frame> {
    for frame in frames {
        conn.send(frame).await;
    }
    let mut out = Vec::with_capacity(replies);
    for _ in 0..replies {
        out.push(conn.read_frame().await);
    }
    out
}

fn assert_frame(name: &str, step: &str, frame: &Frame, opcode: u8, payload: &[u8]) {
    assert!(
        frame.fin() && frame.opcode() == opcode && frame.payload == payload,
        "{name}: {step}: expected one final frame, opcode {opcode:#x}, {} bytes; got {frame:?}",
        payload.len()
    );
}

/// The WebSocket script, against one app; asserts what each answer means, and returns every
/// answer for the comparison between the two apps.
async fn ws_script(backend: &Backend) -> Transcript {
    let name = backend.name;
    let mut transcript = Transcript::new();

    // Offers a subprotocol and permessage-deflate, from another origin: neither is taken,
    // and the origin does not matter.
    let (mut conn, head) = ws_open(
        backend,
        "Sec-WebSocket-Protocol: chat, superchat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
         Origin: http://elsewhere.example\r\n",
    )
    .await;
    transcript.push(("handshake".into(), head));

    // Each message comes back as one frame, with the shortest length form: 7 bits (a 2-byte
    // header), 16 bits (4 bytes) from 126 bytes on, 64 bits (10 bytes) from 65,536 on.
    let echoes: [(&str, u8, Vec<u8>, usize); 5] = [
        ("text hello", OP_TEXT, b"hello".to_vec(), 2),
        ("empty text", OP_TEXT, Vec::new(), 2),
        ("binary 0..=255", OP_BINARY, (0..=255).collect(), 4),
        (
            "binary of 70,000 bytes",
            OP_BINARY,
            (0..70_000u32).map(|i| (i % 251) as u8).collect(),
            10,
        ),
        (
            "binary of the maximum size, 64 MiB",
            OP_BINARY,
            (0..WS_MAX_MESSAGE).map(|i| (i % 253) as u8).collect(),
            10,
        ),
    ];
    for (label, opcode, payload, header_len) in echoes {
        let got = exchange(&mut conn, &[client_frame(true, opcode, &payload)], 1).await;
        assert_frame(name, label, &got[0], opcode, &payload);
        assert_eq!(
            got[0].header.len(),
            header_len,
            "{name}: {label}: {:?}",
            got[0]
        );
        transcript.push((label.to_string(), frames_text(got)));
    }

    // A text message in three frames, a ping between the first two; "✓" is split across the
    // last two (UTF-8 is checked on the whole message). The pong comes first, then the
    // message, whole, as one frame.
    let text = "fragmented ✓".as_bytes();
    let got = exchange(
        &mut conn,
        &[
            client_frame(false, OP_TEXT, &text[..4]),
            client_frame(true, OP_PING, b"between fragments"),
            client_frame(false, OP_CONTINUATION, &text[4..12]),
            client_frame(true, OP_CONTINUATION, &text[12..]),
        ],
        2,
    )
    .await;
    assert_frame(
        name,
        "pong amid fragments",
        &got[0],
        OP_PONG,
        b"between fragments",
    );
    assert_frame(name, "fragmented text", &got[1], OP_TEXT, text);
    transcript.push(("fragmented text with a ping".into(), frames_text(got)));

    let got = exchange(
        &mut conn,
        &[client_frame(true, OP_PING, b"are you there?")],
        1,
    )
    .await;
    assert_frame(name, "ping", &got[0], OP_PONG, b"are you there?");
    transcript.push(("ping".into(), frames_text(got)));

    // A close frame is answered with a close frame, same code and reason, and the end of the
    // connection.
    let bye = close_payload(1000, "bye");
    let got = exchange(&mut conn, &[client_frame(true, OP_CLOSE, &bye)], 1).await;
    assert_frame(name, "close 1000", &got[0], OP_CLOSE, &bye);
    conn.expect_eof().await;
    transcript.push(("close 1000 bye".into(), frames_text(got)));

    // A message over the limit: refused as soon as its length is known, so only the frame
    // header and the masking key are sent.
    let mut over_limit = vec![0x80 | OP_BINARY, 0x80 | 127];
    over_limit.extend_from_slice(&(WS_MAX_MESSAGE as u64 + 1).to_be_bytes());
    over_limit.extend_from_slice(&[0x37, 0xfa, 0x21, 0x3d]);
    // Each on a connection of its own, as each ends it.
    let endings = [
        // A close frame without a code: answered by one without a code.
        (
            "close without a code",
            client_frame(true, OP_CLOSE, &[]),
            Vec::new(),
        ),
        (
            "text that is not UTF-8",
            client_frame(true, OP_TEXT, &[0xff, 0xfe]),
            close_payload(1007, ""),
        ),
        ("a message over 64 MiB", over_limit, close_payload(1009, "")),
    ];
    for (label, frame, answer) in endings {
        let (mut conn, _) = ws_open(backend, "").await;
        let got = exchange(&mut conn, &[frame], 1).await;
        assert_frame(name, label, &got[0], OP_CLOSE, &answer);
        conn.expect_eof().await;
        transcript.push((label.to_string(), frames_text(got)));
    }
    transcript
}

/// A request that is not a valid WebSocket handshake on GET /ws, and the answer both apps
/// must give it.
struct Refusal {
    label: &'static str,
    request: String,
    status: u16,
    body: &'static str,
    /// A header the answer must carry (name in lowercase, value).
    header: Option<(&'static str, &'static str)>,
}

fn refusals() -> Vec<Refusal> {
    let refusal = |label, request: String, status, body, header| Refusal {
        label,
        request,
        status,
        body,
        header,
    };
    let on = |path: &str| handshake("").replacen("/ws", path, 1);
    let upgrade_required = r#"{"error":"websocket upgrade required"}"#;
    let not_found = r#"{"error":"not found"}"#;
    let upgrade = Some(("upgrade", "websocket"));
    vec![
        refusal(
            "GET /ws",
            "GET /ws HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            426,
            upgrade_required,
            upgrade,
        ),
        refusal(
            "HEAD /ws",
            "HEAD /ws HTTP/1.1\r\nHost: t\r\n\r\n".into(),
            426,
            "",
            upgrade,
        ),
        refusal(
            "an upgrade to h2c",
            handshake("").replace("Upgrade: websocket", "Upgrade: h2c"),
            426,
            upgrade_required,
            upgrade,
        ),
        refusal(
            "Upgrade: websocket without Connection: upgrade",
            handshake("").replace("Connection: Upgrade", "Connection: keep-alive"),
            426,
            upgrade_required,
            upgrade,
        ),
        refusal(
            "a WebSocket handshake by POST",
            handshake("").replacen("GET", "POST", 1),
            404,
            not_found,
            None,
        ),
        refusal("a handshake on /nope", on("/nope"), 404, not_found, None),
        refusal("a handshake on /ws/", on("/ws/"), 404, not_found, None),
        // Not a 404: a request asking for an upgrade is still an ordinary request elsewhere.
        refusal(
            "a handshake on /healthz",
            on("/healthz"),
            200,
            r#"{"status":"ok"}"#,
            None,
        ),
        refusal(
            "Sec-WebSocket-Version: 8",
            handshake("").replace("Version: 13", "Version: 8"),
            400,
            r#"{"error":"Sec-WebSocket-Version must be 13"}"#,
            Some(("sec-websocket-version", "13")),
        ),
        refusal(
            "a Sec-WebSocket-Key of 3 bytes",
            handshake("").replace(WS_KEY, "YWJj"),
            400,
            r#"{"error":"Sec-WebSocket-Key must be 16 bytes in base64"}"#,
            None,
        ),
    ]
}

#[tokio::test]
async fn node_and_go_websocket_echo_answers_identical_frames() {
    let dir = tempfile::tempdir().unwrap();
    let (_client, node, go) =
        start_both("comparing Node's and Go's WebSocket echo", dir.path()).await;

    // Both apps must say the same thing, and what they say must be right.
    let a = ws_script(&node).await;
    let b = ws_script(&go).await;
    assert_eq!(a.len(), b.len());
    for ((label, x), (_, y)) in a.iter().zip(&b) {
        assert!(x == y, "{label}: the apps differ\n node: {x}\n   go: {y}");
    }

    for Refusal {
        label,
        request,
        status,
        body,
        header,
    } in refusals()
    {
        let mut answers = Vec::new();
        for backend in [&node, &go] {
            let mut conn = WsConn::connect(backend).await;
            conn.send(request.as_bytes()).await;
            let (got, headers, got_body) = conn.read_response(request.starts_with("HEAD")).await;
            let name = backend.name;
            let shown = String::from_utf8_lossy(&got_body).into_owned();
            assert_eq!(got, status, "{name}: {label}: {shown}");
            assert_eq!(shown, body, "{name}: {label}");
            let value = |n: &str| {
                headers
                    .iter()
                    .find(|(h, _)| h == n)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(
                value("content-type"),
                Some("application/json; charset=utf-8"),
                "{name}: {label}"
            );
            if let Some((h, v)) = header {
                assert_eq!(value(h), Some(v), "{name}: {label}: {headers:?}");
            }
            answers.push((got, value("content-length").map(str::to_string), got_body));
        }
        assert!(
            answers[0] == answers[1],
            "{label}: the apps differ: {answers:?}"
        );
    }
    eprintln!("examples: identical WebSocket frames and handshake refusals from node and go");
}
