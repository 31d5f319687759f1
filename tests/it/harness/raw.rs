//! Raw HTTP/1.1 on a loopback socket, for what an HTTP client library will not do on purpose:
//! many requests on one known connection, a chunked body in chosen pieces, bytes that are not
//! HTTP. Async sockets, every step bounded by a timeout.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long one connect or one write may take.
const STEP: Duration = Duration::from_secs(20);

/// One client connection to `127.0.0.1:port`.
pub struct RawConn {
    stream: TcpStream,
}

impl RawConn {
    pub async fn connect(port: u16) -> RawConn {
        let stream = timeout(STEP, TcpStream::connect(("127.0.0.1", port)))
            .await
            .unwrap_or_else(|_| panic!("connect to 127.0.0.1:{port}: no answer in {STEP:?}"))
            .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        RawConn { stream }
    }

    /// Write all of `bytes`.
    pub async fn send(&mut self, bytes: &[u8]) {
        timeout(STEP, self.stream.write_all(bytes))
            .await
            .unwrap_or_else(|_| panic!("writing {} bytes took over {STEP:?}", bytes.len()))
            .unwrap();
    }

    /// Read until what arrived ends with `tail`, the peer closes or `within` passes; return
    /// what arrived, as text (the caller asserts on it).
    pub async fn read_until(&mut self, tail: &str, within: Duration) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let _ = timeout(within, async {
            while !buf.ends_with(tail.as_bytes()) {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Read until the peer closes or `within` passes; return what arrived, as text.
    pub async fn read_to_close(&mut self, within: Duration) -> String {
        let mut buf = Vec::new();
        let _ = timeout(within, self.stream.read_to_end(&mut buf)).await;
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// POST `body` with `Transfer-Encoding: chunked`, in pieces of `chunk` bytes, on a new
/// connection; return the response head and body as text once `expect_tail` has arrived (or
/// the connection closed, or 20 s passed).
pub async fn raw_chunked_post(
    port: u16,
    path: &str,
    body: &[u8],
    chunk: usize,
    expect_tail: &str,
) -> String {
    let mut conn = RawConn::connect(port).await;
    conn.send(
        format!("POST {path} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n").as_bytes(),
    )
    .await;
    for piece in body.chunks(chunk) {
        let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
        framed.extend_from_slice(piece);
        framed.extend_from_slice(b"\r\n");
        conn.send(&framed).await;
    }
    conn.send(b"0\r\n\r\n").await;
    conn.read_until(expect_tail, Duration::from_secs(20)).await
}

/// Read the next whole response from `stream` (1xx interim responses skipped), where `pending`
/// holds what was read past the previous one (several may come in one read, as pipelined
/// answers do). Its head, lowercased; `None` when the peer closed or 10 s passed first. A
/// response without `Content-Length` counts as bodiless.
pub async fn next_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    pending: &mut Vec<u8>,
) -> Option<String> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_ascii_lowercase();
            let interim = head.get(9..10) == Some("1");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .filter(|_| !interim)
                .unwrap_or(0);
            if pending.len() >= end + 4 + length {
                pending.drain(..end + 4 + length);
                if interim {
                    continue;
                }
                return Some(head);
            }
        }
        match timeout(Duration::from_secs(10), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => pending.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// The status code of a response head (`HTTP/1.1 200 OK` → 200).
pub fn status_of(head: &str) -> Option<u16> {
    head.get(9..12)?.parse().ok()
}
