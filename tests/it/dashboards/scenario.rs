//! The load scenario behind the proof: the candidate backend, runoff's config and the mix of
//! requests that gives every panel data.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The "go" backend: a raw HTTP/1.1 server that answers in ~1 ms, except `…/boom` (500),
/// `…/reset` (the connection is reset before any answer) and `…/slow` (300 ms), with the node
/// fixture's body and content type. It closes every 25th keep-alive connection after
/// answering, so that runoff keeps opening new ones.
pub async fn go_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_go(stream));
        }
    });
    (addr, task)
}

pub async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut tmp)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        _ => false,
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub async fn serve_go(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut answered = 0u32;
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let mut end = head_end;
        if let Some(n) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < head_end + n {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            end = head_end + n;
        } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            end = loop {
                if let Some(i) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            };
        }
        buf.drain(..end);

        if path.contains("/reset") {
            // Linger 0: close with RST. (Deprecated in tokio because a non-zero linger blocks
            // on drop; zero does not.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            return;
        }
        let delay = if path.contains("/slow") { 300 } else { 1 };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        answered += 1;
        let close = answered.is_multiple_of(25);
        let status = if path.contains("/boom") {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let body = "hello\n";
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------- load

/// The runoff config of the proof: `api` exercises everything the dashboard shows for one
/// route (a weighted split, a mirror with timeouts and resets, 5xx, upstream errors, bodies);
/// the other routes add a pure mirror, a mirror to a refused shadow and a refused primary.
pub fn config(
    listen: u16,
    admin: u16,
    node: SocketAddr,
    go: SocketAddr,
    refused: u16,
    weights: (u32, u32),
) -> String {
    // The fixtures run in this test process: sample it as both backends' process.
    let me = std::process::id();
    format!(
        "listen: 127.0.0.1:{listen}
admin: {{ listen: 127.0.0.1:{admin} }}
backends:
  node: {{ address: \"{node}\", process: {{ pid: {me} }} }}
  go: {{ address: \"{go}\", process: {{ pid: {me} }} }}
  legacy: {{ address: \"127.0.0.1:{refused}\" }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    split: {{ node: {wn}, go: {wg} }}
    mirror: {{ to: go, percent: 100, timeout: 150ms }}
    compare: {{ status: true }}
  - name: orders
    match: {{ path_prefix: /orders }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100 }}
  - name: reports
    match: {{ path_prefix: /reports }}
    split: {{ node: 100 }}
    mirror: {{ to: legacy, percent: 100 }}
  - name: down
    match: {{ path_prefix: /down }}
    split: {{ legacy: 100 }}
",
        wn = weights.0,
        wg = weights.1,
    )
}

/// The i-th request of a load task: mostly plain GETs on the split route, with errors,
/// slow and reset requests, bodies, the other routes and unrouted paths mixed in.
pub fn request(client: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
    let k = i % 100;
    let path = match k {
        _ if k.is_multiple_of(20) => "/api/boom".to_string(),
        7 | 57 => "/api/reset".to_string(),
        13 => "/api/slow".to_string(),
        _ if k % 10 == 3 => {
            return client
                .post(format!("{base}/api/items"))
                .body(vec![b'x'; 512]);
        }
        _ if k % 25 == 4 => format!("/nowhere/{i}"),
        _ if k % 50 == 9 => "/down".to_string(),
        _ if k % 10 == 5 => format!("/orders/{i}"),
        _ if k % 50 == 11 => "/reports".to_string(),
        _ => format!("/api/users/{i}"),
    };
    client.get(format!("{base}{path}"))
}

/// Send requests from `tasks` tasks, each paced at `pace`, until `duration` has passed or each
/// task has sent `max_per_task`. Returns how many got an answer.
pub async fn drive(
    base: &str,
    tasks: usize,
    max_per_task: usize,
    pace: Duration,
    duration: Duration,
) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let until = Instant::now() + duration;
    let answered = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, base, answered) = (client.clone(), base.to_string(), answered.clone());
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            for n in 0..max_per_task {
                if Instant::now() >= until {
                    break;
                }
                tick.tick().await;
                let i = n * tasks + t;
                if let Ok(resp) = request(&client, &base, i).send().await {
                    let _ = resp.bytes().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    answered.load(Ordering::Relaxed)
}
