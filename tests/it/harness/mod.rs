//! Test harness: real fixture backends on 127.0.0.1:0, the real `runoff` binary per test on
//! ports the test picks, and `/metrics` scraping with exact-count assertions.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

// ---------------------------------------------------------------- fixture backends

/// What a fixture received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How a fixture answers.
#[derive(Clone)]
pub struct Behaviour {
    pub status: u16,
    pub body: Bytes,
    pub delay: Duration,
    pub extra_headers: Vec<(String, String)>,
    /// Hold each answer until this counter (another fixture's) has reached this fixture's own
    /// count: "answer only after the shadow got its copy". 500 if that takes over 10 s.
    pub gate: Option<Arc<AtomicU64>>,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 that counts and records what it receives.
pub struct Fixture {
    pub name: String,
    pub addr: SocketAddr,
    count: Arc<AtomicU64>,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct FixtureBuilder {
    name: String,
    b: Behaviour,
}

pub fn fixture(name: &str) -> FixtureBuilder {
    FixtureBuilder {
        name: name.to_string(),
        b: Behaviour {
            status: 200,
            body: Bytes::from(format!("hello from {name}\n")),
            delay: Duration::ZERO,
            extra_headers: Vec::new(),
            gate: None,
        },
    }
}

impl FixtureBuilder {
    pub fn status(mut self, s: u16) -> Self {
        self.b.status = s;
        self
    }
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.b.body = body.into();
        self
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.b.delay = d;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.b.extra_headers.push((k.into(), v.into()));
        self
    }

    pub fn gate(mut self, counter: Arc<AtomicU64>) -> Self {
        self.b.gate = Some(counter);
        self
    }

    pub async fn start(self) -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(self.b);
        let name = self.name.clone();
        let (c, r) = (count.clone(), received.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (c, r, b, name) = (c.clone(), r.clone(), behaviour.clone(), name.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (c, r, b, name) = (c.clone(), r.clone(), b.clone(), name.clone());
                        async move { Ok::<_, Infallible>(answer(req, &c, &r, &b, &name).await) }
                    });
                    let _ = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Fixture {
            name: self.name,
            addr,
            count,
            received,
            task,
        }
    }
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

/// One fixture exchange: read the whole request, record it, behave as configured.
async fn answer(
    req: Request<Incoming>,
    count: &AtomicU64,
    received: &Mutex<Vec<Received>>,
    b: &Behaviour,
    name: &str,
) -> Response<Full<Bytes>> {
    let method = req.method().to_string();
    let uri = req.uri().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // A body cut short is not a request received. hyper ends a body quietly when the peer
    // half-closes mid-body, so also compare its length with Content-Length (chunked
    // truncation is checked on raw bytes in the tests that need it).
    let declared: Option<usize> = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let Ok(body) = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
    else {
        return plain(400, "body error");
    };
    if declared.is_some_and(|n| n != body.len()) {
        return plain(400, "short body");
    }
    received.lock().unwrap().push(Received {
        method,
        uri,
        headers,
        body,
    });
    let mine = count.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(gate) = &b.gate {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gate.load(Ordering::SeqCst) < mine {
            if Instant::now() > deadline {
                return plain(
                    500,
                    "gate timed out: the other fixture never got its request",
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    if !b.delay.is_zero() {
        tokio::time::sleep(b.delay).await;
    }
    let mut resp = Response::builder()
        .status(b.status)
        .header("x-fixture", name);
    for (k, v) in &b.extra_headers {
        resp = resp.header(k.as_str(), v.as_str());
    }
    resp.body(Full::new(b.body.clone())).unwrap()
}

impl Fixture {
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.count.clone()
    }
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
    /// Wait until at least `n` requests arrived, with a deadline.
    pub async fn wait_for(&self, n: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{}: only {} of {n} requests arrived",
                self.name,
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A server that accepts connections, reads a little, then resets them (RST).
pub async fn resetting_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let _ = tokio::time::timeout(Duration::from_secs(2), stream.readable()).await;
                let _ = stream.try_read(&mut buf);
                // Linger 0: close with RST. (Deprecated in tokio because a non-zero linger blocks
                // on drop; zero does not.)
                #[allow(deprecated)]
                let _ = stream.set_linger(Some(Duration::ZERO));
                drop(stream);
            });
        }
    });
    (addr, task)
}

/// A loopback port with nothing listening (bound, then closed).
pub fn closed_port() -> u16 {
    free_port()
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------- the runoff process

pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    /// A per-process temporary directory (for upgrade sockets, logs, ...).
    pub dir: PathBuf,
}

/// A running `runoff run` process, killed on drop.
pub struct Runoff {
    pub child: Option<Child>,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_runoff")
}

impl Runoff {
    /// Start runoff on a config made from fresh ports; retry on address-in-use.
    pub async fn start(make_config: impl Fn(&Ports) -> String) -> Runoff {
        Self::start_with(make_config, &[], &[]).await
    }

    /// Start with extra `run` flags and environment variables.
    pub async fn start_with(
        make_config: impl Fn(&Ports) -> String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Runoff {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let ports = Ports {
                listen: free_port(),
                admin: free_port(),
                dir: dir.path().to_path_buf(),
            };
            let config_path = dir.path().join("runoff.yaml");
            std::fs::write(&config_path, make_config(&ports)).unwrap();
            let child = spawn_run(&config_path, args, env, dir.path());
            let mut r = Runoff {
                child: Some(child),
                ports,
                dir,
                config_path,
            };
            match r.wait_ready(Duration::from_secs(20)).await {
                Ok(()) => return r,
                Err(stderr) if stderr.contains("cannot listen") => continue,
                Err(stderr) => panic!("runoff did not become ready:\n{stderr}"),
            }
        }
        panic!("runoff could not find free ports in 5 attempts");
    }

    /// A second process on the same config and ports, started with `run --upgrade` (it waits
    /// for this one's listeners); not waited for.
    pub fn spawn_upgrade(&self) -> Runoff {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_run(&self.config_path, &["--upgrade"], &[], dir.path());
        Runoff {
            child: Some(child),
            ports: Ports {
                listen: self.ports.listen,
                admin: self.ports.admin,
                dir: self.ports.dir.clone(),
            },
            dir,
            config_path: self.config_path.clone(),
        }
    }

    /// `GET` an admin API path and parse its JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.api(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `PUT` a JSON body on an admin API path.
    pub async fn put_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.api(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POST/PUT/GET on the admin API.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(
            method,
            format!("http://127.0.0.1:{}{path}", self.ports.admin),
        )
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let url = format!("http://127.0.0.1:{}/readyz", self.ports.admin);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}: {}", self.stderr()));
            }
            if let Ok(resp) = client
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in {within:?}: {}", self.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.listen)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit, with a deadline.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runoff did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn scrape(&self) -> Metrics {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ports.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Metrics::parse(&text)
    }

    /// Scrape until `name{labels}` equals `want` (sum over matching series), or fail at 10 s.
    pub async fn expect_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.scrape().await;
            let got = m.sum(name, labels);
            if got == want {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}{labels:?} = {got}, expected {want}\n{}",
                    m.dump(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

fn spawn_run(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    logs: &std::path::Path,
) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

impl Drop for Runoff {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------- metrics text

/// Parsed Prometheus text: (name, labels, value) per sample.
pub struct Metrics {
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
                None => (series.to_string(), HashMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// Sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    pub fn dump(&self, prefix: &str) -> String {
        self.samples
            .iter()
            .filter(|(n, _, _)| n.starts_with(prefix))
            .map(|(n, l, v)| format!("{n}{l:?} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 2..]; // skip ="
        let end = after.find('"').unwrap();
        out.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// Send `n` GETs from `concurrency` tasks; return the statuses by count.
pub async fn load(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
) -> HashMap<u16, usize> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_string(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen: HashMap<u16, usize> = HashMap::new();
            while (next.fetch_add(1, Ordering::SeqCst) as usize) < n {
                let status = client
                    .get(&url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                *seen.entry(status).or_default() += 1;
            }
            seen
        }));
    }
    let mut all = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.unwrap() {
            *all.entry(k).or_default() += v;
        }
    }
    all
}

/// POST `body` with `Transfer-Encoding: chunked` over a raw connection; returns the response
/// head and body as text once `expect_tail` has arrived (or the connection closed).
pub fn raw_chunked_post(
    port: u16,
    path: &str,
    body: &[u8],
    chunk: usize,
    expect_tail: &str,
) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    .unwrap();
    for piece in body.chunks(chunk) {
        write!(conn, "{:x}\r\n", piece.len()).unwrap();
        conn.write_all(piece).unwrap();
        conn.write_all(b"\r\n").unwrap();
    }
    conn.write_all(b"0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    while !String::from_utf8_lossy(&buf).ends_with(expect_tail) {
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Send a request and return its status.
pub async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

/// Wait (bounded) until a JSON-lines file (an access log) has at least `n` lines; return them.
pub async fn json_lines(path: &std::path::Path, n: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The config of a runoff in front of one backend `name` on one route `api`; `options` are
/// extra fields of the backend (e.g. `, read_timeout: 200ms`).
pub fn one_backend(
    p: &Ports,
    name: &str,
    address: impl std::fmt::Display,
    options: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  {name}: {{ address: \"{address}\"{options} }}\nroutes:\n  - name: api\n    split: {{ {name}: 1 }}\n",
        p.listen, p.admin
    )
}
