//! `runoff demo`: everything a newcomer needs to see what runoff tells them, in one command.
//! Two built-in demo backends (a "baseline" and a faster "candidate" that differs on purpose:
//! another latency profile, one JSON field, rare 500s), the proxy on an embedded config that
//! splits one route and mirrors and compares another, a bounded synthetic load, a live table,
//! and the report at the end.
//!
//! Lives here: the demo backends, the embedded demo config, the load generator and the live
//! view. Must not: be used on the proxy's data path, or send traffic anywhere but the
//! proxy's own loopback listener.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::protocols::http::ServerSession;
use pingora::upstreams::peer::HttpPeer;
use rand::Rng;

use crate::config::Config;
use crate::control::Control;
use crate::report::{self, Format};

/// How a demo backend behaves.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Answer latency, drawn uniformly from this range (milliseconds).
    pub latency_ms: (u64, u64),
    /// Every `error_every`-th request is answered 500 (0: never). Deterministic, so the
    /// demo always shows some errors.
    pub error_every: u64,
    /// The candidate spells one field differently (the planted mismatch).
    pub lowercase_currency: bool,
}

/// A demo backend: a small JSON API with a configurable latency profile.
pub struct DemoBackend {
    pub name: String,
    pub profile: Profile,
    served: AtomicU64,
}

impl DemoBackend {
    pub fn baseline(name: &str) -> DemoBackend {
        DemoBackend {
            name: name.to_string(),
            profile: Profile {
                latency_ms: (6, 16),
                error_every: 0,
                lowercase_currency: false,
            },
            served: AtomicU64::new(0),
        }
    }

    pub fn candidate(name: &str) -> DemoBackend {
        DemoBackend {
            name: name.to_string(),
            profile: Profile {
                latency_ms: (2, 6),
                error_every: 40,
                lowercase_currency: true,
            },
            served: AtomicU64::new(0),
        }
    }

    fn answer(&self, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let id: u64 = path
            .rsplit('/')
            .next()
            .and_then(|s| s.split('?').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(1);
        let currency = if self.profile.lowercase_currency {
            "eur"
        } else {
            "EUR"
        };
        let now = crate::access_log::now_rfc3339();
        if path.starts_with("/api/orders") {
            let qty = id % 5 + 1;
            let status = if method == "POST" {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            return (
                status,
                serde_json::json!({
                    "order_id": id,
                    "items": [{"sku": format!("SKU-{}", id % 17), "qty": qty, "unit_price_cents": 1999}],
                    "total_cents": qty * 1999,
                    "currency": currency,
                    "generated_at": now,
                }),
            );
        }
        let users: Vec<serde_json::Value> = (0..5)
            .map(
                |i| serde_json::json!({"id": id * 10 + i, "name": format!("user-{}", id * 10 + i)}),
            )
            .collect();
        (
            StatusCode::OK,
            serde_json::json!({"page": id, "users": users, "generated_at": now}),
        )
    }
}

#[async_trait]
impl ServeHttp for DemoBackend {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        while let Ok(Some(_chunk)) = session.read_request_body().await {}
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        let fail = self.profile.error_every > 0 && n.is_multiple_of(self.profile.error_every);
        let delay = {
            let (lo, hi) = self.profile.latency_ms;
            Duration::from_millis(rand::rng().random_range(lo..=hi.max(lo)))
        };
        tokio::time::sleep(delay).await;
        let req = session.req_header();
        let (status, body) = if fail {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({"error": "internal error (planted by the demo)"}),
            )
        } else {
            self.answer(req.method.as_str(), req.uri.path())
        };
        let mut resp = Response::new(body.to_string().into_bytes());
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = self.name.parse() {
            headers.insert("x-demo-backend", v);
        }
        resp
    }
}

/// The embedded demo config: `users` is split 80/20 with sticky users; `orders` is served by
/// the baseline and mirrored to the candidate, whose answers are compared.
pub fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    node: SocketAddr,
    go: SocketAddr,
) -> String {
    format!(
        r#"listen: {listen}
server: {{ threads: 2, drain_timeout: 2s }}
admin: {{ listen: {admin} }}
backends:
  node: {{ address: "{node}" }}
  go: {{ address: "{go}" }}
routes:
  - name: users
    match: {{ path_prefix: /api/users }}
    split: {{ node: 80, go: 20 }}
    sticky: {{ header: x-user-id }}
  - name: orders
    match: {{ path_prefix: /api/orders }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, methods: [GET, POST] }}
    compare:
      body: {{ json: {{ ignore_paths: [/generated_at] }} }}
"#
    )
}

/// The demo backends placed at the addresses a config gives `node` and `go` (used by the
/// quick start's `config.example.yaml` too).
pub fn backends_for(config: &Config) -> Vec<(SocketAddr, DemoBackend)> {
    let find = |name: &str| {
        config
            .backends
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.addr)
    };
    let mut out = Vec::new();
    if let Some(a) = find("node") {
        out.push((a, DemoBackend::baseline("node")));
    }
    if let Some(a) = find("go") {
        out.push((a, DemoBackend::candidate("go")));
    }
    out
}

/// What `runoff demo` prints before it starts.
pub fn banner(proxy: SocketAddr, admin: SocketAddr, opts: &DemoOptions) -> String {
    format!(
        "runoff demo: {} of load at {} req/s through http://{proxy}\n\
         \x20 backends: node (baseline, 6-16 ms) and go (candidate, 2-6 ms, 2.5% errors, one field differs)\n\
         \x20 route users:  split node 80 / go 20, sticky by x-user-id\n\
         \x20 route orders: served by node, mirrored to go, answers compared\n\
         \x20 admin: http://{admin}/metrics and /api/summary (Prometheus and `runoff report` can watch it)\n",
        humantime::format_duration(opts.duration),
        opts.rps
    )
}

/// A free loopback port (bound, then released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the load generator saw.
#[derive(Default)]
pub struct LoadCounts {
    pub sent: AtomicU64,
    pub ok: AtomicU64,
    pub server_errors: AtomicU64,
    pub failed: AtomicU64,
    /// Not sent because too many requests were already waiting (the load stays bounded).
    pub skipped: AtomicU64,
}

/// Send requests to the proxy at `rps` for `duration` (open loop, at most 256 in flight).
pub async fn generate_load(
    proxy: SocketAddr,
    rps: u32,
    duration: Duration,
    counts: Arc<LoadCounts>,
    backends: Backends,
) {
    let connector = Arc::new(Connector::new(None));
    let mut peer = HttpPeer::new(proxy, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(1));
    peer.options.read_timeout = Some(Duration::from_secs(10));
    peer.options.idle_timeout = Some(Duration::from_secs(30));
    let peer = Arc::new(peer);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rps.max(1))));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end = Instant::now() + duration;
    let mut n: u64 = 0;
    while Instant::now() < end {
        ticker.tick().await;
        n += 1;
        if in_flight.load(Ordering::Acquire) >= 256 {
            counts.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        counts.sent.fetch_add(1, Ordering::Relaxed);
        let (connector, peer, counts, in_flight) = (
            Arc::clone(&connector),
            Arc::clone(&peer),
            Arc::clone(&counts),
            Arc::clone(&in_flight),
        );
        tokio::spawn(async move {
            let outcome = one_request(&connector, &peer, n, backends).await;
            match outcome {
                Some(s) if s >= 500 => counts.server_errors.fetch_add(1, Ordering::Relaxed),
                Some(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                None => counts.failed.fetch_add(1, Ordering::Relaxed),
            };
            in_flight.fetch_sub(1, Ordering::AcqRel);
        });
    }
    // Let the last requests finish (bounded).
    let settle = Instant::now() + Duration::from_secs(5);
    while in_flight.load(Ordering::Acquire) > 0 && Instant::now() < settle {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request of the demo's mix: method, path, body.
type Request = (&'static str, String, Option<&'static [u8]>);

/// The demo's request mix: for the built-in backends users pages (sticky user id) and order
/// reads and creates; for the example apps their real API (filtered user lists, orders, and a
/// CPU-heavy report now and then).
fn request_mix(backends: Backends, n: u64) -> Request {
    match (backends, n % 20) {
        (Backends::Builtin, 0..=11) => ("GET", format!("/api/users/{}", n % 50), None),
        (Backends::Builtin, 12..=17) => ("GET", format!("/api/orders/{}", n % 1000), None),
        (Backends::Builtin, _) => (
            "POST",
            format!("/api/orders/{}", n % 1000),
            Some(br#"{"sku":"SKU-1","qty":2}"#),
        ),
        (Backends::Examples, 0..=13) => {
            const COUNTRIES: [&str; 6] = ["DE", "FR", "US", "BR", "JP", "IN"];
            let country = COUNTRIES[(n % 6) as usize];
            let min_age = 18 + n % 40;
            let offset = n % 40;
            (
                "GET",
                format!("/api/users?country={country}&min_age={min_age}&limit=20&offset={offset}"),
                None,
            )
        }
        (Backends::Examples, 14..=18) => (
            "POST",
            "/api/orders".to_string(),
            Some(br#"{"user_id":7,"items":[{"sku":"AB-1","qty":2,"unit_price_cents":1999}]}"#),
        ),
        (Backends::Examples, _) => ("GET", "/api/report?rounds=2".to_string(), None),
    }
}

/// One request of the demo's mix.
async fn one_request(
    connector: &Connector,
    peer: &HttpPeer,
    n: u64,
    backends: Backends,
) -> Option<u16> {
    let (method, path, body) = request_mix(backends, n);
    let mut req = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    req.insert_header("host", "demo.runoff").ok()?;
    req.insert_header("x-user-id", format!("user-{}", n % 200))
        .ok()?;
    if let Some(b) = body {
        req.insert_header("content-type", "application/json").ok()?;
        req.insert_header("content-length", b.len().to_string())
            .ok()?;
    }
    crate::client::exchange(connector, peer, req, body.map(Bytes::from_static))
        .await
        .ok()
        .map(|(status, _)| status)
}

/// One screen of the live view: per route and backend, what the last 10 s looked like.
fn live_view(control: &Control, elapsed: Duration, counts: &LoadCounts) -> Vec<String> {
    let s = control.summary(Duration::from_secs(10));
    let mut lines = vec![format!(
        "[{:>3}s] sent {:>6}  ok {:>6}  5xx {:>4}  failed {:>3}",
        elapsed.as_secs(),
        counts.sent.load(Ordering::Relaxed),
        counts.ok.load(Ordering::Relaxed),
        counts.server_errors.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed),
    )];
    for r in &s.routes {
        for b in &r.backends {
            let (p50, p99) = b
                .window
                .latency_ms
                .as_ref()
                .map(|q| (q.p50, q.p99))
                .unwrap_or((0.0, 0.0));
            lines.push(format!(
                "  {:<8} {:<6} {:<7} {:>7.1} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  errors {:>4}",
                r.name, b.backend, b.role, b.window.rps, p50, p99, b.window.errors
            ));
        }
        if let Some(c) = &r.compare {
            lines.push(format!(
                "  {:<8} compare: {} match, {} mismatch, {} skipped",
                r.name, c.matched, c.mismatched, c.skipped
            ));
        }
    }
    lines
}

/// Which backends the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backends {
    /// The built-in demo backends, in-process.
    Builtin,
    /// The real example apps (`examples/node`, `examples/go`) as child processes.
    Examples,
}

impl std::str::FromStr for Backends {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "builtin" => Ok(Backends::Builtin),
            "examples" => Ok(Backends::Examples),
            other => Err(format!(
                "--backends: `{other}` is not `builtin` or `examples`"
            )),
        }
    }
}

/// Options of `runoff demo`.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub backends: Backends,
    pub duration: Duration,
    pub rps: u32,
    /// Keep serving after the report instead of exiting.
    pub keep_running: bool,
    pub admin: SocketAddr,
}

/// Drive the demo once the server is up: load with a live view, then the report; exits the
/// process when done.
pub fn drive(control: Arc<Control>, proxy: SocketAddr, opts: DemoOptions) {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runoff demo: cannot start the load generator: {e}");
            std::process::exit(1);
        }
    };
    let counts = Arc::new(LoadCounts::default());
    let started = Instant::now();
    let load = rt.spawn(generate_load(
        proxy,
        opts.rps,
        opts.duration,
        Arc::clone(&counts),
        opts.backends,
    ));
    let tty = std::io::stdout().is_terminal();
    let mut drawn = 0usize;
    while !load.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let lines = live_view(&control, started.elapsed(), &counts);
        let mut out = std::io::stdout().lock();
        if tty && drawn > 0 {
            let _ = write!(out, "\x1b[{drawn}A\x1b[J");
        }
        for l in &lines {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
        drawn = lines.len();
    }
    // Copies and comparisons settle shortly after their primaries.
    std::thread::sleep(Duration::from_millis(500));
    let summary = control.summary(opts.duration + Duration::from_secs(10));
    println!();
    match report::render(&summary, None, Format::Table) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("runoff demo: cannot render the report: {e}"),
    }
    for r in &summary.routes {
        if r.compare.is_some() {
            if let Ok(v) = control.mismatch_paths_json(&r.name) {
                let paths = v["paths"].as_array().cloned().unwrap_or_default();
                if !paths.is_empty() {
                    println!(
                        "Fields that differ on route {} (share of compared pairs):",
                        r.name
                    );
                    for p in paths.iter().take(5) {
                        println!(
                            "  {:<24} {:>5.1}%",
                            p["path"].as_str().unwrap_or(""),
                            p["share"].as_f64().unwrap_or(0.0) * 100.0
                        );
                    }
                }
            }
        }
    }
    if opts.backends == Backends::Builtin {
        println!(
            "\nThe candidate (go) was planted with another latency profile, 2.5% errors and one field spelled differently (/currency).\nRun it on real services: `runoff demo --backends examples`, and examples/README.md."
        );
    }
    if opts.keep_running {
        println!(
            "\nStill serving: proxy http://{proxy}, admin http://{} (metrics, /api/summary). Ctrl-C to stop.",
            opts.admin
        );
        let _ = std::io::stdout().flush();
        return;
    }
    let _ = std::io::stdout().flush();
    kill_children();
    std::process::exit(0);
}

/// The example apps the demo started, killed when the demo ends (or runoff drains).
static CHILDREN: std::sync::Mutex<Vec<std::process::Child>> = std::sync::Mutex::new(Vec::new());

/// Kill the example apps the demo started, if any.
pub fn kill_children() {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    for mut c in children.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// What `--backends examples` needs and lacks, in words.
fn missing_for_examples() -> Vec<String> {
    let works = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut missing = Vec::new();
    if !works("node", "--version") {
        missing.push("node (Node.js)".to_string());
    }
    if !works("go", "version") {
        missing.push("go (Debian: golang-go)".to_string());
    }
    if !std::path::Path::new("examples/go/main.go").exists() {
        missing.push("examples/go (run from the repository root)".to_string());
    }
    if !std::path::Path::new("examples/node/node_modules").exists() {
        missing.push("examples/node/node_modules (npm ci)".to_string());
    }
    missing
}

/// Start the example apps on free ports; returns their addresses and pids (node, go).
pub fn start_examples() -> Result<[(SocketAddr, u32); 2], String> {
    let missing = missing_for_examples();
    if !missing.is_empty() {
        return Err(format!(
            "--backends examples needs {}. Install with `bash examples/setup.sh` from the repository root, or use the built-in backends (the default).",
            missing.join(", ")
        ));
    }
    let dir = std::env::temp_dir().join(format!("runoff-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let go_bin = dir.join("runoff-example-go");
    let built = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(".")
        .current_dir("examples/go")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .status()
        .map_err(|e| format!("go build: {e}"))?;
    if !built.success() {
        return Err(format!("go build in examples/go failed: {built}"));
    }
    let node_cmd = {
        let mut c = std::process::Command::new("node");
        c.arg("examples/node/server.js");
        c
    };
    let mut out = Vec::new();
    for (name, mut cmd) in [
        ("node", node_cmd),
        ("go", std::process::Command::new(&go_bin)),
    ] {
        let port = free_port().map_err(|e| e.to_string())?;
        let child = cmd
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the {name} example: {e}"))?;
        let pid = child.id();
        CHILDREN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !wait_healthy(addr, Duration::from_secs(20)) {
            kill_children();
            return Err(format!(
                "the {name} example did not answer /healthz on {addr} within 20 s"
            ));
        }
        out.push((addr, pid));
    }
    <[(SocketAddr, u32); 2]>::try_from(out)
        .map_err(|_| "internal: expected two example apps".to_string())
}

/// Poll `GET /healthz` until it answers 200 or the deadline passes.
fn wait_healthy(addr: SocketAddr, within: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nhost: demo\r\n\r\n");
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
                && &head[9..12] == b"200"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The demo config for the example apps: the seed's experiment, Node mirrored to Go on /api,
/// answers compared, both processes sampled.
pub fn examples_config(
    listen: SocketAddr,
    admin: SocketAddr,
    node: (SocketAddr, u32),
    go: (SocketAddr, u32),
) -> String {
    format!(
        r#"listen: {listen}
server: {{ threads: 2, drain_timeout: 2s }}
admin: {{ listen: {admin} }}
backends:
  node: {{ address: "{}", process: {{ pid: {} }} }}
  go: {{ address: "{}", process: {{ pid: {} }} }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, methods: [GET, HEAD, POST] }}
    compare: {{}}
"#,
        node.0, node.1, go.0, go.1
    )
}
