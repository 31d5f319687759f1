//! Process lifecycle: `check`, refusing bad configs at start, draining on SIGTERM and Ctrl-C.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{self, bin, fixture, free_port, free_port_pair, Runoff};

fn slow_config(p: &harness::Ports, addr: std::net::SocketAddr) -> String {
    format!(
        "listen: 127.0.0.1:{}\nserver: {{ drain_timeout: 60s }}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{addr}\" }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n",
        p.listen, p.admin
    )
}

async fn drains_on(signal: &str) {
    let slow = fixture("node")
        .delay(Duration::from_secs(3))
        .body("finished\n")
        .start()
        .await;
    let mut runoff = Runoff::start(|p| slow_config(p, slow.addr)).await;
    let url = runoff.url("/api/slow");
    let in_flight = tokio::spawn(async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    slow.wait_for(1, Duration::from_secs(10)).await;
    runoff.signal(signal);

    // New connections are refused soon after the signal, while the slow request is still on.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let connect = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen));
        if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), connect).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting connections after {signal}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the in-flight request ended before its backend answered"
    );

    let (status, body) = in_flight.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body, "finished\n");
    // It exits once drained, not after the whole drain_timeout (60 s here): waiting would
    // outlast this deadline.
    let exit = runoff.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "exit status {exit}: {}", runoff.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits_0() {
    drains_on("-TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_drains_too() {
    drains_on("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_is_bounded_by_drain_timeout() {
    let hung = fixture("node").delay(Duration::from_secs(30)).start().await;
    let mut runoff = Runoff::start(|p| {
        slow_config(p, hung.addr).replace("drain_timeout: 60s", "drain_timeout: 500ms")
    })
    .await;
    let url = runoff.url("/api/hang");
    let pending = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    hung.wait_for(1, Duration::from_secs(10)).await;
    runoff.signal("-TERM");
    let exit = runoff.wait_exit(Duration::from_secs(10)).await;
    assert!(exit.success(), "exit status {exit}");
    // The cut request fails at the caller rather than hanging.
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(outcome.is_err(), "{outcome:?}");
}

/// `runoff check` on the shipped example config.
fn check_the_example() -> Command {
    let mut cmd = Command::new(bin());
    cmd.args([
        "check",
        "--config",
        concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.yaml"),
    ]);
    cmd
}

#[test]
fn check_accepts_the_shipped_example() {
    let out = check_the_example().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
}

const BAD: &str = "listen: 127.0.0.1:8080\nbackends:\n  node: { address: 127.0.0.1:3000 }\nroutes:\n  - name: api\n    split: { node: 0, rust: 5 }\n  - name: api\n    match: { path_prefix: nope }\n    split: { node: 1 }\n";

/// `runoff COMMAND --config FILE` with `config` as the file's contents, run to completion.
fn on_config(command: &str, config: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, config).unwrap();
    Command::new(bin())
        .arg(command)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn check_prints_every_problem_and_exits_1() {
    let out = on_config("check", BAD);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "routes[0].split.rust: no such backend",
        "routes[1].name: `api` is already the name of another route",
        "routes[1].match.path_prefix: `nope` must start with `/`",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn run_refuses_a_bad_config_and_a_missing_file() {
    let out = on_config("run", BAD);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[0].split.rust: no such backend"));

    let out = Command::new(bin())
        .args(["run", "--config", "/nonexistent/runoff.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /nonexistent/runoff.yaml"));
}

#[test]
fn run_reports_a_busy_listen_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.yaml");
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: 127.0.0.1:9 }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n",
        free_port()
    );
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(bin())
        .arg("run")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("listen 127.0.0.1:{port}: cannot listen")),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("runoff "));
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "demo"] {
        assert!(help.contains(cmd), "{help}");
    }
}

/// The binary's allocator carries the options built into it (`.cargo/config.toml`): thread
/// caches that keep Pingora's 64 KiB body buffers, beside the background purge thread. jemalloc
/// prints its options at exit when asked to through the environment.
#[test]
fn the_allocator_keeps_its_built_in_options() {
    let out = check_the_example()
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stats = String::from_utf8_lossy(&out.stderr);
    for option in ["opt.tcache_max: 65536", "opt.background_thread: true"] {
        assert!(
            stats.lines().any(|l| l
                .trim()
                .strip_prefix(option)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))),
            "{option} missing from:\n{}",
            stats.chars().take(4000).collect::<String>()
        );
    }
}

/// Read one HTTP/1.1 response from `s`; its head, lowercased.
async fn read_response(s: &mut tokio::net::TcpStream) -> String {
    read_responses(s, 1).await.remove(0)
}

/// Read `n` HTTP/1.1 responses from `s`, in order; their heads, lowercased.
async fn read_responses(s: &mut tokio::net::TcpStream, n: usize) -> Vec<String> {
    let mut pending = Vec::new();
    let mut heads = Vec::new();
    for _ in 0..n {
        let head = harness::next_response(s, &mut pending)
            .await
            .expect("a whole response within 10 s");
        heads.push(head);
    }
    heads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| {
        harness::one_backend_with(p, "keepalive_timeout: 2s", "node", node.addr, "")
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
        .await
        .expect("connect");
    let request = b"GET /api/one HTTP/1.1\r\nHost: runoff.test\r\n\r\n";
    s.write_all(request).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    // Within the timeout the connection is reused ...
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.write_all(request).await.expect("write");
    assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
    // ... and once idle that long, runoff closes it (Pingora alone would keep it forever).
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), s.read(&mut rest))
        .await
        .expect("runoff closes the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing but the close");
    assert_eq!(node.count(), 2);
}

/// The limit line of `/proc/PID/limits` for open files: (soft, hard).
fn open_files_limit(pid: u32) -> Option<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    Some((fields.next()?.to_string(), fields.next()?.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_files_soft_limit_is_raised_to_the_hard_one_at_start() {
    let node = fixture("node").start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (listen, admin) = free_port_pair();
    let config = dir.path().join("runoff.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{listen}\nadmin: {{ listen: 127.0.0.1:{admin} }}\nbackends:\n  node: {{ address: \"{}\" }}\nroutes:\n  - name: api\n    split: {{ node: 1 }}\n",
            node.addr
        ),
    )
    .expect("write config");
    let stderr = dir.path().join("stderr");
    // prlimit execs runoff with the lower soft limit (same process).
    let mut child = Command::new("prlimit")
        .args(["--nofile=1024:4096", bin(), "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("prlimit (util-linux) runs");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    let logged = "open files: soft limit raised from 1024 to 4096";
    loop {
        let log = std::fs::read_to_string(&stderr).unwrap_or_default();
        if log.contains(logged) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `{logged}` in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        open_files_limit(pid),
        Some(("4096".to_string(), "4096".to_string()))
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_connections_a_connection_is_closed_at_once_and_counted() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| {
        harness::one_backend_with(p, "max_connections: 3", "node", node.addr, "")
    })
    .await;
    let request = b"GET /api/x HTTP/1.1\r\nHost: runoff.test\r\n\r\n";
    let connect = || tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen));
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut s = connect().await.expect("connect");
        s.write_all(request).await.expect("write");
        assert!(read_response(&mut s).await.starts_with("http/1.1 200"));
        open.push(s);
    }
    // The fourth is accepted by the kernel, then closed by runoff without an answer.
    let mut fourth = connect().await.expect("connect");
    let _ = fourth.write_all(request).await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), fourth.read(&mut buf))
        .await
        .expect("closed, not left hanging")
        .unwrap_or(0);
    assert_eq!(n, 0, "no answer past the limit");
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_connections_refused_total",
            &[("reason", "too_many_connections")]
        ),
        1.0
    );
    assert_eq!(m.sum("runoff_downstream_connections", &[]), 3.0);
    // A slot freed is a connection served again.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    while runoff
        .scrape()
        .await
        .sum("runoff_downstream_connections", &[])
        > 2.0
    {
        assert!(
            Instant::now() < deadline,
            "the closed connection kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut again = connect().await.expect("connect");
    again.write_all(request).await.expect("write");
    assert!(read_response(&mut again).await.starts_with("http/1.1 200"));
    assert_eq!(node.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_each_answered_in_order_mirrored_and_counted() {
    use tokio::io::AsyncWriteExt;
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    // Route `orders`: node serves, go gets the copies.
    let runoff = Runoff::start(|p| {
        crate::mirror::config(p, &node.addr.to_string(), &go.addr.to_string(), "")
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
        .await
        .expect("connect");
    let pipelined: String = (1..=3)
        .map(|i| format!("GET /api/p{i} HTTP/1.1\r\nHost: runoff.test\r\n\r\n"))
        .collect();
    s.write_all(pipelined.as_bytes()).await.expect("write");
    for head in read_responses(&mut s, 3).await {
        assert!(head.starts_with("http/1.1 200"), "{head}");
    }
    go.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(node.count(), 3);
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_requests_total",
            &[("route", "orders"), ("role", "primary")]
        ),
        3.0
    );
}

/// Between requests runoff waits for the next one itself (`server::keepalive`), unless Pingora
/// may hold bytes of it already: requests pipelined after plain ones, around `Content-Length`
/// and chunked bodies, and a next request cut in two across writes are all answered, in order,
/// none left waiting (each answer is due within 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_pipelined_after_plain_ones_and_around_bodies_are_all_answered() {
    use tokio::io::AsyncWriteExt;
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", node.addr, "")).await;
    let get = |i: u32| format!("GET /api/k{i} HTTP/1.1\r\nHost: runoff.test\r\n\r\n");
    let post = |i: u32| {
        format!("POST /api/k{i} HTTP/1.1\r\nHost: runoff.test\r\nContent-Length: 3\r\n\r\nabc")
    };
    let chunked = |i: u32| {
        format!(
            "POST /api/k{i} HTTP/1.1\r\nHost: runoff.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             3\r\nabc\r\n0\r\n\r\n"
        )
    };
    // Each connection: writes, and how many answers each write is due.
    let half = get(31);
    let (head, tail) = half.split_at(12);
    let connections: Vec<Vec<(String, usize)>> = vec![
        vec![(get(1), 1), (get(2) + &get(3), 2), (get(4), 1), (get(5), 1)],
        vec![(post(11), 1), (post(12) + &get(13), 2), (get(14), 1)],
        vec![
            (chunked(21), 1),
            (get(22), 1),
            (chunked(23) + &get(24), 2),
            (get(25), 1),
        ],
        vec![
            (get(30), 1),
            (get(32) + head, 1),
            (tail.to_string(), 1),
            (get(33), 1),
        ],
    ];
    let mut sent = 0;
    for writes in &connections {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
            .await
            .expect("connect");
        for (bytes, answers) in writes {
            s.write_all(bytes.as_bytes()).await.expect("write");
            for head in read_responses(&mut s, *answers).await {
                assert!(head.starts_with("http/1.1 200"), "{head}");
            }
            sent += answers;
        }
    }
    assert_eq!(node.count(), sent as u64);
}

/// A caller that sends part of a body and stalls: answered 408, counted as its own fault.
async fn stalled_body(server: &str, backend: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = fixture("node").start().await;
    let runoff =
        Runoff::start(|p| harness::one_backend_with(p, server, "node", node.addr, backend)).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
        .await
        .expect("connect");
    s.write_all(
        b"POST /api/upload HTTP/1.1\r\nHost: runoff.test\r\nContent-Length: 100\r\n\r\n0123456789",
    )
    .await
    .expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "got: {text}");
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_request_body_timeouts_total",
            &[("route", "api"), ("backend", "node")]
        ),
        1.0
    );
    assert_eq!(
        m.sum("runoff_upstream_errors_total", &[]),
        0.0,
        "not the backend's"
    );
    assert_eq!(m.sum("runoff_requests_total", &[("route", "api")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_past_client_body_timeout_is_the_callers_408() {
    stalled_body("client_body_timeout: 1s", "").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_past_the_backends_read_timeout_is_still_the_callers_408() {
    stalled_body("client_body_timeout: 60s", ", read_timeout: 1s").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_by_a_clean_close_is_a_protocol_error_not_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let backend = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "request head");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
            .await
            .expect("write");
        // A clean close (FIN), 91 bytes short.
        s.shutdown().await.expect("shutdown");
    });
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", addr, "")).await;
    // The body cannot complete; whatever reqwest makes of it is fine.
    let _ = reqwest::get(runoff.url("/api/short")).await;
    backend.await.expect("backend");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut m = runoff.scrape().await;
    while m.sum("runoff_upstream_errors_total", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "no upstream error counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
        m = runoff.scrape().await;
    }
    assert_eq!(
        m.sum("runoff_upstream_errors_total", &[("kind", "protocol")]),
        1.0,
        "{}",
        m.dump("runoff_upstream_errors_total")
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_accepting_waits_and_resumes() {
    use tokio::io::AsyncWriteExt;
    let node = fixture("node").start().await;
    let runoff = Runoff::start(|p| harness::one_backend(p, "node", node.addr, "")).await;
    let pid = runoff.pid();
    // Leave runoff 16 descriptors to spare, then open more idle connections than that.
    let limit = open_fds(pid) + 16;
    let status = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={limit}:{limit}"))
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success());
    let mut idle = Vec::new();
    for _ in 0..40 {
        // The kernel completes the handshake (backlog) even when runoff cannot accept.
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", runoff.ports.listen))
                .await
                .expect("connect"),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while open_fds(pid) < limit {
        assert!(
            Instant::now() < deadline,
            "runoff never ran out: {} of {limit} descriptors open",
            open_fds(pid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Out of descriptors (accept fails with EMFILE): runoff lives on, and once callers leave,
    // it accepts and serves again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "runoff died"
    );
    for mut s in idle.drain(..) {
        let _ = s.shutdown().await;
    }
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = tokio::time::timeout(
            Duration::from_secs(5),
            client.get(runoff.url("/api/after")).send(),
        )
        .await
        .ok()
        .and_then(Result::ok)
        .is_some_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "runoff did not serve again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(runoff.scrape().await.has("runoff_requests_total"));
    assert!(
        runoff.stderr().contains("Too many open files"),
        "accept() never hit EMFILE:\n{}",
        runoff.stderr()
    );
}
