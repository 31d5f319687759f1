//! WebSocket fixture backends on 127.0.0.1:0, and a client helper. A fixture echoes
//! (tokio-tungstenite, permessage-deflate off), records raw bytes, never reads, closes early or
//! refuses the upgrade, and counts what it saw.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// How a WebSocket fixture behaves on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsBehaviour {
    /// Echo every data message; answer pings and closes.
    Echo,
    /// Accept the upgrade, then keep every byte received (raw frames), answering nothing.
    Record,
    /// Accept the upgrade, then never read again (its receive buffer fills up).
    NeverRead,
    /// Accept the upgrade, then close (1000) after this long.
    CloseAfter(Duration),
    /// Answer the upgrade with this status and a small body.
    Refuse(u16),
}

#[derive(Default)]
struct WsState {
    connections: AtomicU64,
    messages: AtomicU64,
    payload_bytes: AtomicU64,
    /// Raw bytes received after the handshake, per connection (`Record`).
    raw: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    /// Close codes received from runoff, per close frame.
    closes: Mutex<Vec<Option<u16>>>,
    /// Headers of each upgrade request.
    requests: Mutex<Vec<Vec<(String, String)>>>,
}

pub struct WsFixture {
    pub addr: SocketAddr,
    state: Arc<WsState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WsFixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Generous limits: tests send a 64 MiB message through.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(128 << 20))
        .max_frame_size(Some(128 << 20))
}

pub async fn ws_fixture(name: &str, behaviour: WsBehaviour) -> WsFixture {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Arc::new(WsState::default());
    let (s, n) = (Arc::clone(&state), name.to_string());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (s, n) = (Arc::clone(&s), n.clone());
            tokio::spawn(async move { serve(stream, &n, behaviour, &s).await });
        }
    });
    WsFixture { addr, state, task }
}

impl WsFixture {
    pub fn connections(&self) -> u64 {
        self.state.connections.load(Ordering::SeqCst)
    }
    /// Data messages received.
    pub fn messages(&self) -> u64 {
        self.state.messages.load(Ordering::SeqCst)
    }
    pub fn payload_bytes(&self) -> u64 {
        self.state.payload_bytes.load(Ordering::SeqCst)
    }
    /// Close codes received (a close frame without a code is `None`).
    pub fn closes(&self) -> Vec<Option<u16>> {
        self.state.closes.lock().unwrap().clone()
    }
    /// The raw bytes each connection received after its handshake (`Record`).
    pub fn raw(&self) -> Vec<Vec<u8>> {
        self.state
            .raw
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.lock().unwrap().clone())
            .collect()
    }
    /// The headers of each upgrade request received.
    pub fn requests(&self) -> Vec<Vec<(String, String)>> {
        self.state.requests.lock().unwrap().clone()
    }
}

// tungstenite's callback type returns its error response by value.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, name: &str, behaviour: WsBehaviour, state: &WsState) {
    let _ = stream.set_nodelay(true);
    match behaviour {
        WsBehaviour::Record | WsBehaviour::Refuse(_) => raw(stream, behaviour, state).await,
        _ => {
            let callback = |req: &Request, mut resp: Response| {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                    .collect();
                state.requests.lock().unwrap().push(headers);
                resp.headers_mut()
                    .insert("x-fixture", name.parse().unwrap());
                Ok(resp)
            };
            let Ok(mut ws) =
                tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config()))
                    .await
            else {
                return;
            };
            state.connections.fetch_add(1, Ordering::SeqCst);
            match behaviour {
                WsBehaviour::NeverRead => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                WsBehaviour::CloseAfter(d) => {
                    // Read (and drop) until then, so that the close is a clean one, not a reset.
                    let deadline = tokio::time::Instant::now() + d;
                    while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, ws.next()).await {
                    }
                    let _ = ws.close(None).await;
                    while let Some(Ok(_)) = ws.next().await {}
                }
                _ => {
                    while let Some(Ok(msg)) = ws.next().await {
                        match msg {
                            Message::Text(_) | Message::Binary(_) => {
                                state.messages.fetch_add(1, Ordering::SeqCst);
                                state
                                    .payload_bytes
                                    .fetch_add(msg.len() as u64, Ordering::SeqCst);
                                if ws.send(msg).await.is_err() {
                                    break;
                                }
                            }
                            Message::Close(frame) => {
                                state
                                    .closes
                                    .lock()
                                    .unwrap()
                                    .push(frame.map(|f| u16::from(f.code)));
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
    }
}

/// A hand-written server side: `Record` keeps every byte after its 101; `Refuse` answers with
/// a status.
async fn raw(mut stream: TcpStream, behaviour: WsBehaviour, state: &WsState) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let headers: Vec<(String, String)> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let key = headers
        .iter()
        .find(|(k, _)| k == "sec-websocket-key")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    state.requests.lock().unwrap().push(headers);
    if let WsBehaviour::Refuse(status) = behaviour {
        let body = "refused\n";
        let _ = stream
            .write_all(
                format!(
                    "HTTP/1.1 {status} Refused\r\ncontent-length: {}\r\nx-fixture: refuse\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            )
            .await;
        return;
    }
    let accept = derive_accept_key(key.as_bytes());
    if stream
        .write_all(
            format!("HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .is_err()
    {
        return;
    }
    state.connections.fetch_add(1, Ordering::SeqCst);
    let kept = Arc::new(Mutex::new(Vec::new()));
    state.raw.lock().unwrap().push(Arc::clone(&kept));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => kept.lock().unwrap().extend_from_slice(&buf[..n]),
        }
    }
}

pub type WsClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect to `url` (ws://...) with extra headers; the client and the 101's headers.
pub async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> (WsClient, http::HeaderMap) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, resp) = tokio_tungstenite::connect_async_with_config(req, Some(config()), true)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    (ws, resp.headers().clone())
}

/// A client frame as RFC 6455 (5.2) has a client send it: masked (with a fixed key), the
/// payload length in 7 bits, or 126 and 16 bits up to 65,535, or 127 and 64 bits.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// An upgrade request on a raw socket (to send hand-made frames after it).
pub async fn raw_upgrade(port: u16, path: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte))
            .await
            .expect("the 101 in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed during the handshake: {:?}",
            String::from_utf8_lossy(&head)
        );
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).to_string())
}
