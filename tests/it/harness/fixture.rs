//! Fixture backends: real HTTP/1.1 servers on 127.0.0.1:0 that count and record what they
//! receive and answer as their builder says:
//!
//! ```ignore
//! let go = fixture("go")
//!     .delay(Duration::from_millis(1))
//!     .when_path("/api/boom", |b| b.status(500))
//!     .when_path("/api/reset", |b| b.reset())
//!     .close_every(25)
//!     .start()
//!     .await;
//! ```

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// What a fixture received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request's head arrived (wall clock).
    pub arrived_at: SystemTime,
    /// When the fixture began sending its answer (after any gate and delay); `None` until then,
    /// or when it reset the connection instead.
    pub answered_at: Option<SystemTime>,
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

/// How a fixture answers one request.
#[derive(Clone)]
struct Behaviour {
    status: u16,
    body: Bytes,
    delay: Duration,
    extra_headers: Vec<(String, String)>,
    /// Hold each answer until this counter (another fixture's) has reached this fixture's own
    /// count: "answer only after the shadow got its copy". 500 if that takes over 10 s.
    gate: Option<Arc<AtomicU64>>,
    /// Close the connection with a reset (RST) instead of answering.
    reset: bool,
    /// When set, the status to answer with, read per request (a test flips it).
    status_cell: Option<Arc<AtomicU16>>,
    /// Answer with the request as JSON (`path`, `headers`, `body`, and `fixture`) instead of
    /// `body`, the way echo services do (and leak what they were sent).
    echo: bool,
}

/// A real HTTP/1.1 server on 127.0.0.1:0 that counts and records what it receives.
pub struct Fixture {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fixture {
    /// Die like a killed process: stop listening and close every open connection. Returns
    /// once both are done (an abort only takes effect when the runtime next reaches the task:
    /// until then the listener still completes connections, which the close then resets
    /// instead of refusing).
    pub async fn kill(&self) {
        let within = Duration::from_secs(10);
        self.task.abort();
        // The accept loop ended: the listener is closed, and no connection is added any more.
        let what = format!("{}: the listener closed", self.name);
        super::poll::wait_until(&what, within, || self.task.is_finished()).await;
        let conns: Vec<_> = self.state.conns.lock().unwrap().drain(..).collect();
        for c in &conns {
            c.abort();
        }
        let what = format!("{}: every connection closed", self.name);
        super::poll::wait_until(&what, within, || conns.iter().all(|c| c.is_finished())).await;
    }
}

/// What a fixture's connections share.
struct State {
    name: String,
    default: Behaviour,
    /// Behaviours for requests to these paths, instead of `default`.
    paths: Vec<(String, Behaviour)>,
    close_every: Option<u64>,
    /// WebSocket upgrades are accepted and echoed.
    websocket: bool,
    count: Arc<AtomicU64>,
    received: Mutex<Vec<Received>>,
    /// Its connections' tasks, for `kill`.
    conns: Mutex<Vec<tokio::task::AbortHandle>>,
}

pub struct FixtureBuilder {
    name: String,
    b: Behaviour,
    paths: Vec<(String, Behaviour)>,
    close_every: Option<u64>,
    websocket: bool,
}

/// A fixture named `name` (sent back in an `x-fixture` header) answering 200 with the body
/// `hello from NAME\n`, at once, until the builder says otherwise.
pub fn fixture(name: &str) -> FixtureBuilder {
    FixtureBuilder {
        name: name.to_string(),
        b: Behaviour {
            status: 200,
            body: Bytes::from(format!("hello from {name}\n")),
            delay: Duration::ZERO,
            extra_headers: Vec::new(),
            gate: None,
            reset: false,
            status_cell: None,
            echo: false,
        },
        paths: Vec::new(),
        close_every: None,
        websocket: false,
    }
}

impl FixtureBuilder {
    pub fn status(mut self, s: u16) -> Self {
        self.b.status = s;
        self
    }
    /// Answer with this body (and stop echoing, inside a `when_path` of an echoing fixture).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.b.body = body.into();
        self.b.echo = false;
        self
    }
    /// Wait this long before answering (a long one makes a hanging backend).
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

    /// Answer each request with itself as JSON: `{"fixture", "path", "headers": {name: value},
    /// "body"}` (its body parsed as JSON when it is, else as text).
    pub fn echo(mut self) -> Self {
        self.b.echo = true;
        self
    }

    /// Once a request has been read (and counted), reset the connection (RST) instead of
    /// answering.
    pub fn reset(mut self) -> Self {
        self.b.reset = true;
        self
    }

    /// Requests for exactly `path` (query string aside) are answered as `how` says, starting
    /// from the behaviour set so far: `.when_path("/api/boom", |b| b.status(500))`. Inside
    /// `how`, only the per-request settings count (status, body, delay, header, gate, reset).
    pub fn when_path(mut self, path: &str, how: impl FnOnce(Self) -> Self) -> Self {
        let base = FixtureBuilder {
            name: self.name.clone(),
            b: self.b.clone(),
            paths: Vec::new(),
            close_every: None,
            websocket: false,
        };
        self.paths.push((path.to_string(), how(base).b));
        self
    }

    /// Accept WebSocket upgrades (on any path) and echo every message, besides answering
    /// ordinary requests as configured.
    pub fn websocket(mut self) -> Self {
        self.websocket = true;
        self
    }

    /// Close each connection after its `n`-th answer (sent with `Connection: close`), so that
    /// clients keep opening new ones.
    pub fn close_every(mut self, n: u64) -> Self {
        assert!(n > 0, "close_every(0)");
        self.close_every = Some(n);
        self
    }

    /// Answer with the status `cell` holds at the time of each request.
    pub fn status_from(mut self, cell: Arc<AtomicU16>) -> Self {
        self.b.status_cell = Some(cell);
        self
    }

    pub async fn start(self) -> Fixture {
        self.start_at("127.0.0.1:0".parse().unwrap()).await
    }

    /// Start listening on `addr` (a killed fixture's, to bring it back).
    pub async fn start_at(self, addr: SocketAddr) -> Fixture {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: self.name.clone(),
            default: self.b,
            paths: self.paths,
            close_every: self.close_every,
            websocket: self.websocket,
            count: Arc::new(AtomicU64::new(0)),
            received: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
        });
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = tokio::spawn(serve(shared.clone(), stream));
                let mut conns = shared.conns.lock().unwrap();
                conns.retain(|c| !c.is_finished());
                conns.push(conn.abort_handle());
            }
        });
        Fixture {
            name: self.name,
            addr,
            state,
            task,
        }
    }
}

/// One connection: HTTP/1.1 with keep-alive, until the client closes, `close_every` is
/// reached or a behaviour resets it.
async fn serve(state: Arc<State>, stream: TcpStream) {
    let reset = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let conn = Conn {
        stream,
        reset: reset.clone(),
    };
    let svc = service_fn(move |req: Request<Incoming>| {
        let (state, reset, answered) = (state.clone(), reset.clone(), answered.clone());
        async move {
            let Some(mut resp) = state.answer(req).await else {
                // An error from the service makes hyper drop the connection unanswered;
                // `Conn` then closes it with an RST.
                reset.store(true, Ordering::SeqCst);
                return Err(io::Error::other("reset on purpose"));
            };
            let n = answered.fetch_add(1, Ordering::SeqCst) + 1;
            if state
                .close_every
                .is_some_and(|every| n.is_multiple_of(every))
            {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp)
        }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(conn), svc)
        .with_upgrades()
        .await;
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

impl State {
    fn behaviour(&self, path: &str) -> &Behaviour {
        self.paths
            .iter()
            .find(|(p, _)| p == path)
            .map_or(&self.default, |(_, b)| b)
    }

    /// A WebSocket upgrade: 101, then an echo of every message on its own task.
    fn upgrade(&self, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
        use tokio_tungstenite::tungstenite::protocol::Role;
        self.count.fetch_add(1, Ordering::SeqCst);
        let key = req.headers()["sec-websocket-key"].as_bytes().to_vec();
        let upgraded = hyper::upgrade::on(req);
        tokio::spawn(async move {
            let Ok(io) = upgraded.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(io),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", derive_accept_key(&key))
            .header("x-fixture", self.name.as_str())
            .body(Full::new(Bytes::new()))
            .unwrap()
    }

    /// One exchange: read the whole request, record it, behave as configured; `None` for
    /// "reset the connection".
    async fn answer(&self, mut req: Request<Incoming>) -> Option<Response<Full<Bytes>>> {
        if self.websocket && req.headers().contains_key("sec-websocket-key") {
            return Some(self.upgrade(&mut req));
        }
        let arrived_at = SystemTime::now();
        let b = self.behaviour(req.uri().path());
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
            return Some(plain(400, "body error"));
        };
        if declared.is_some_and(|n| n != body.len()) {
            return Some(plain(400, "short body"));
        }
        let index = {
            let mut received = self.received.lock().unwrap();
            received.push(Received {
                method,
                uri,
                headers,
                body,
                arrived_at,
                answered_at: None,
            });
            received.len() - 1
        };
        let mine = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(gate) = &b.gate {
            let deadline = Instant::now() + Duration::from_secs(10);
            while gate.load(Ordering::SeqCst) < mine {
                if Instant::now() > deadline {
                    return Some(plain(
                        500,
                        "gate timed out: the other fixture never got its request",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        if !b.delay.is_zero() {
            tokio::time::sleep(b.delay).await;
        }
        if b.reset {
            return None;
        }
        self.received.lock().unwrap()[index].answered_at = Some(SystemTime::now());
        let status = b
            .status_cell
            .as_ref()
            .map_or(b.status, |c| c.load(Ordering::SeqCst));
        let mut resp = Response::builder()
            .status(status)
            .header("x-fixture", self.name.as_str());
        for (k, v) in &b.extra_headers {
            resp = resp.header(k.as_str(), v.as_str());
        }
        if b.echo {
            let got = self.received.lock().unwrap()[index].clone();
            let body = serde_json::from_slice(&got.body).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&got.body).into_owned())
            });
            let headers: serde_json::Map<String, serde_json::Value> = got
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            let echo = serde_json::json!({
                "fixture": self.name,
                "path": got.uri,
                "headers": headers,
                "body": body,
            });
            return Some(
                resp.header("content-type", "application/json")
                    .body(Full::new(Bytes::from(echo.to_string())))
                    .unwrap(),
            );
        }
        Some(resp.body(Full::new(b.body.clone())).unwrap())
    }
}

/// A fixture's end of a connection: the socket, closed with a reset (RST) instead of a FIN
/// once `reset` is set.
struct Conn {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // Linger 0: close with RST. (Deprecated in tokio because a non-zero linger blocks
            // on drop; zero does not.)
            #[allow(deprecated)]
            let _ = self.stream.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

impl Fixture {
    pub fn counter(&self) -> Arc<AtomicU64> {
        self.state.count.clone()
    }
    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
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
