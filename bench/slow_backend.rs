//! bench/slow_backend.rs — the deliberately slow HTTP/1.1 backend of bench/mirror.sh: answers
//! every request with `200 ok\n`, DELAY_MS after its head (and its Content-Length body) came.
//!
//! Keep-alive, answers in order on a connection (pipelining-safe), one small task per
//! connection, a timer per request: thousands of slow requests in flight cost little. It
//! replaced a Python asyncio server that took ~110 µs of CPU a request (44% of a core at
//! 4,000 req/s) on the two cores the proxy under test shares: the shadow's own CPU then showed
//! up as the primary's latency. (Go's net/http took ~83 µs.)
//!
//! Usage: slow-backend PORT [DELAY_MS=200] (built with `cargo build --release --example
//! slow-backend`). Binds 127.0.0.1 only. On SIGTERM or SIGINT it prints
//! `slow_backend: served N requests` to stderr and exits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, SignalKind};

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
/// A head longer than this is refused (the connection closed).
const MAX_HEAD: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(port) = args
        .get(1)
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p > 0)
    else {
        eprintln!("usage: slow-backend PORT [DELAY_MS=200] (PORT 1-65535)");
        std::process::exit(2);
    };
    let delay_ms = match args.get(2).map(|d| d.parse::<u64>()) {
        None => 200,
        Some(Ok(ms)) => ms,
        Some(Err(_)) => {
            eprintln!("slow-backend: DELAY_MS must be a whole number of milliseconds");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slow-backend: no runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(serve(port, Duration::from_millis(delay_ms))) {
        eprintln!("slow-backend: {e}");
        std::process::exit(1);
    }
}

async fn serve(port: u16, delay: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let served = Arc::new(AtomicU64::new(0));
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((conn, _)) = accepted else { continue };
                let _ = conn.set_nodelay(true);
                tokio::spawn(connection(conn, delay, Arc::clone(&served)));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    eprintln!(
        "slow_backend: served {} requests",
        served.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Serve one connection's requests in order until it closes or sends `Connection: close`.
async fn connection(mut conn: TcpStream, delay: Duration, served: Arc<AtomicU64>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // Read until a whole head is buffered.
        let head_len = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD || !read_more(&mut conn, &mut buf).await {
                return;
            }
        };
        let (body_len, close) = head_facts(&buf[..head_len]);
        // Skip the body, which may still be on its way.
        let need = head_len + body_len;
        while buf.len() < need {
            if !read_more(&mut conn, &mut buf).await {
                return;
            }
        }
        buf.drain(..need);
        tokio::time::sleep(delay).await;
        if conn.write_all(ANSWER).await.is_err() {
            return;
        }
        served.fetch_add(1, Ordering::Relaxed);
        if close {
            return;
        }
    }
}

/// Append what the connection has to `buf`; false once it is closed or failed.
async fn read_more(conn: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match conn.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// The body's length (Content-Length; 0 without one) and whether the caller asked to close.
fn head_facts(head: &[u8]) -> (usize, bool) {
    let mut body = 0;
    let mut close = false;
    for line in head.split(|b| *b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = line.split_at(colon);
        let value = String::from_utf8_lossy(&value[1..])
            .trim()
            .to_ascii_lowercase();
        if name.eq_ignore_ascii_case(b"content-length") {
            body = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case(b"connection") && value == "close" {
            close = true;
        }
    }
    (body, close)
}
