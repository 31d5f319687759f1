//! Fixture backends: real HTTP/1.1 servers on 127.0.0.1:0 that count and record what they
//! receive and answer as their builder says.

use std::convert::Infallible;
use std::net::SocketAddr;
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
struct Behaviour {
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
