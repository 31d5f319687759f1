//! `ws-bench`: the WebSocket load client of `bench/websocket.sh` (loopback only).
//!
//! - `hold URL N SECS`: open N WebSockets (256 handshakes at a time), one echoed message each
//!   so every hop has seen traffic, print `open N failed F`, hold them idle for SECS, then
//!   close each with 1000 and print `closed`.
//! - `echo URL CONNS SECS SIZE [WINDOW]`: CONNS connections, each sending SIZE-byte binary
//!   messages for SECS with at most WINDOW (default 1: request/reply) sent and not yet echoed;
//!   print `messages M seconds S rate R failed F` (R: echoed messages per second, all
//!   connections together).
//!
//! Must not: talk to anything but the URL it is given (the script passes loopback URLs), or
//! run without a bound (every phase has a time limit).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const LIMIT: Duration = Duration::from_secs(10);

fn usage() -> ! {
    eprintln!("usage: ws-bench hold URL N SECS | ws-bench echo URL CONNS SECS SIZE [WINDOW]");
    std::process::exit(2)
}

fn arg<T: std::str::FromStr>(args: &[String], i: usize) -> T {
    args.get(i)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| usage())
}

/// Connect and exchange one message; `None` on failure or after `LIMIT`.
async fn open(url: &str) -> Option<Ws> {
    tokio::time::timeout(LIMIT, async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.ok()?;
        ws.send(Message::text("hello")).await.ok()?;
        ws.next().await?.ok()?;
        Some(ws)
    })
    .await
    .ok()
    .flatten()
}

async fn hold(url: String, n: usize, secs: u64) {
    let gate = Arc::new(Semaphore::new(256));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, gate, failed) = (url.clone(), Arc::clone(&gate), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let ws = {
                let _permit = gate.acquire().await.ok()?;
                open(&url).await
            };
            if ws.is_none() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            ws
        }));
    }
    let mut sockets = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(Some(ws)) = t.await {
            sockets.push(ws);
        }
    }
    println!(
        "open {} failed {}",
        sockets.len(),
        failed.load(Ordering::Relaxed)
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let closing: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let _ = tokio::time::timeout(LIMIT, async {
                    ws.close(None).await.ok()?;
                    while let Some(Ok(_)) = ws.next().await {}
                    Some(())
                })
                .await;
            })
        })
        .collect();
    for c in closing {
        let _ = c.await;
    }
    println!("closed");
}

async fn echo(url: String, conns: usize, secs: u64, size: usize, window: usize) {
    let messages = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(conns);
    for _ in 0..conns {
        let (url, messages, failed) = (url.clone(), Arc::clone(&messages), Arc::clone(&failed));
        tasks.push(tokio::spawn(async move {
            let Some(ws) = open(&url).await else {
                failed.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let payload = bytes::Bytes::from(vec![b'x'; size]);
            let (mut tx, mut rx) = ws.split();
            let credit = Arc::new(Semaphore::new(window));
            let sender_done = std::sync::atomic::AtomicBool::new(false);
            let sender = {
                let (credit, sender_done) = (Arc::clone(&credit), &sender_done);
                async move {
                    let mut sent = 0u64;
                    while Instant::now() < end {
                        let Ok(permit) = credit.acquire().await else {
                            break;
                        };
                        permit.forget();
                        if tx.send(Message::Binary(payload.clone())).await.is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    sender_done.store(true, Ordering::Release);
                    (tx, sent)
                }
            };
            let receiver = async {
                let mut got = 0u64;
                loop {
                    // Done once the sender has stopped and every message came back.
                    if sender_done.load(Ordering::Acquire) && credit.available_permits() >= window {
                        return got;
                    }
                    if Instant::now() >= end + LIMIT {
                        return got;
                    }
                    match tokio::time::timeout(Duration::from_millis(100), rx.next()).await {
                        Ok(Some(Ok(m))) if m.len() == size => {
                            got += 1;
                            messages.fetch_add(1, Ordering::Relaxed);
                            credit.add_permits(1);
                        }
                        Ok(_) => return got,
                        Err(_) => {}
                    }
                }
            };
            let ((mut tx, sent), got) = tokio::join!(sender, receiver);
            if got < sent {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            let _ = tokio::time::timeout(LIMIT, tx.close()).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let m = messages.load(Ordering::Relaxed);
    println!(
        "messages {m} seconds {seconds:.2} rate {:.0} failed {}",
        m as f64 / seconds,
        failed.load(Ordering::Relaxed)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ws-bench: cannot start a runtime: {e}");
            std::process::exit(1)
        }
    };
    match args.get(1).map(String::as_str) {
        Some("hold") => rt.block_on(hold(arg(&args, 2), arg(&args, 3), arg(&args, 4))),
        Some("echo") => rt.block_on(echo(
            arg(&args, 2),
            arg(&args, 3),
            arg(&args, 4),
            arg(&args, 5),
            args.get(6).and_then(|w| w.parse().ok()).unwrap_or(1),
        )),
        _ => usage(),
    }
}
