//! `runoff demo`: everything a newcomer needs to see what runoff tells them, in one command.
//! Two demo backends (built in, or the real example apps), the proxy on an embedded config that
//! splits one route and mirrors and compares another, a bounded synthetic load, a live table,
//! and the report at the end.
//!
//! Lives here: the glue (this file), the built-in backends (`backends`), the embedded configs
//! (`configs`), the load (`load`), the live view (`live`) and the example apps as child
//! processes (`children`). The demo is a client of runoff like any user: it starts the server
//! through `server::run` and reads the admin API over HTTP. Must not: be imported by anything
//! but the command that runs it, or send traffic anywhere but runoff's and its backends'
//! loopback listeners.

mod backends;
mod children;
mod configs;
mod live;
mod load;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::services::listening::Service;

use crate::analysis::model::Summary;
use crate::compare::store::PathCounts;
use crate::config::Config;
use crate::report::{self, fetch, Format};
use crate::server::{self, ExtraService, Extras, RunOptions, Stop};
use load::{close_websockets, generate_load, generate_websocket_load, LoadCounts};

/// Which backends the demo runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backends {
    /// The built-in demo backends, in-process.
    Builtin,
    /// The real example apps (`examples/node`, `examples/go`) as child processes.
    Examples,
}

/// Options of `runoff demo`.
#[derive(Debug, Clone)]
pub(crate) struct DemoOptions {
    pub backends: Backends,
    pub duration: Duration,
    pub rps: u32,
    /// Keep serving after the report instead of exiting.
    pub keep_running: bool,
    /// The proxy's listen address.
    pub listen: SocketAddr,
    /// The admin endpoint's address.
    pub admin: SocketAddr,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DemoError {
    #[error("{0}")]
    Examples(String),
    #[error("cannot find free loopback ports for the demo backends: {0}")]
    Ports(std::io::Error),
    #[error("the embedded config is invalid: {0}")]
    Config(#[from] crate::error::ConfigError),
    #[error(transparent)]
    Start(#[from] server::StartError),
}

/// Run the demo until its report is printed (or, with `keep_running`, until Ctrl-C).
pub(crate) fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let result = run_trial(opts);
    // The example apps never outlive the demo, however it ended.
    children::kill_children();
    result
}

fn run_trial(opts: DemoOptions) -> Result<(), DemoError> {
    let yaml = match opts.backends {
        Backends::Examples => {
            let [node, go] = children::start_examples().map_err(DemoError::Examples)?;
            configs::examples_config(opts.listen, opts.admin, node, go)
        }
        Backends::Builtin => {
            let [node, go] = free_ports().map_err(DemoError::Ports)?;
            configs::demo_config(
                opts.listen,
                opts.admin,
                ([127, 0, 0, 1], node).into(),
                ([127, 0, 0, 1], go).into(),
            )
        }
    };
    let config = Config::from_yaml(&yaml)?;
    println!("{}", banner(&opts));
    let services = match opts.backends {
        Backends::Builtin => configs::backends_for(&config)
            .into_iter()
            .map(|(addr, backend)| {
                let mut svc = Service::new(format!("demo backend {}", backend.name), backend);
                svc.threads = Some(1);
                svc.add_tcp(&addr.to_string());
                ExtraService {
                    what: "demo backend",
                    addr,
                    service: Box::new(svc),
                }
            })
            .collect(),
        Backends::Examples => Vec::new(),
    };
    let extras = Extras {
        services,
        on_start: Some(Box::new(move |stop| drive(stop, opts))),
    };
    server::run(config, RunOptions::default(), extras)?;
    Ok(())
}

/// What `runoff demo` prints before it starts.
fn banner(opts: &DemoOptions) -> String {
    let trial = match opts.backends {
        Backends::Builtin => "\x20 backends: node (baseline, 6-16 ms) and go (candidate, 2-6 ms, 2.5% errors, one field differs)\n\
             \x20 route users:  split node 80 / go 20, sticky by x-user-id\n\
             \x20 route orders: served by node, mirrored to go, answers compared\n\
             \x20 route chat:   20 WebSockets (echo: node 2-4 ms, go 0-1 ms), served by node, mirrored to go\n",
        Backends::Examples => "\x20 backends: node (examples/node, Express and ws) and go (examples/go, net/http and gorilla/websocket)\n\
             \x20 route api: served by node, mirrored to go, answers compared\n\
             \x20 route ws:  20 WebSockets, served by node, mirrored to go\n",
    };
    format!(
        "runoff demo: {} of load at {} req/s through http://{}\n{trial}\
         \x20 admin: http://{}/metrics and /api/summary (Prometheus and `runoff report` can watch it)\n",
        humantime::format_duration(opts.duration),
        opts.rps,
        opts.listen,
        opts.admin,
    )
}

/// Whether `addr` accepts a TCP connection within `limit` (polled every 20 ms).
fn wait_listening(addr: SocketAddr, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Two free loopback ports, distinct (both bound at once, then released).
fn free_ports() -> std::io::Result<[u16; 2]> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

/// Drive the demo once the server is up: load with a live view, then the report; then stop
/// the server (drained), unless asked to keep it running.
fn drive(stop: Stop, opts: DemoOptions) {
    let admin = format!("http://{}", opts.admin);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runoff demo: cannot start the load generator: {e}");
            stop.request();
            return;
        }
    };
    // The hook runs as the services start: load sent before the proxy listens would fail
    // (and a WebSocket that fails to connect is not retried), so wait for both listeners.
    for addr in [opts.listen, opts.admin] {
        if !wait_listening(addr, Duration::from_secs(10)) {
            eprintln!("runoff demo: {addr} is not accepting connections after 10s");
            stop.request();
            return;
        }
    }
    let counts = Arc::new(LoadCounts::default());
    let started = Instant::now();
    let load = rt.spawn(generate_load(
        opts.listen,
        opts.rps,
        opts.duration,
        Arc::clone(&counts),
        opts.backends,
    ));
    let ws_load = rt.spawn(generate_websocket_load(
        opts.listen,
        "/ws",
        opts.duration,
        Arc::clone(&counts),
    ));
    let tty = std::io::stdout().is_terminal();
    let mut drawn = 0usize;
    while !load.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let summary = fetch::summary(&admin, "10s", None).ok();
        let lines = live::live_view(summary.as_ref(), started.elapsed(), &counts);
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
    let sockets = rt.block_on(ws_load).unwrap_or_default();
    let window = humantime::format_duration(opts.duration + Duration::from_secs(10)).to_string();
    match settled_summary(&admin, &window) {
        Ok(summary) => print_report(&admin, &summary),
        Err(e) => eprintln!("runoff demo: cannot read the summary: {e}"),
    }
    rt.block_on(close_websockets(sockets));
    if opts.backends == Backends::Builtin {
        println!(
            "\nThe candidate (go) was planted with another latency profile, 2.5% errors and one field spelled differently (/currency).\nThe verdicts say what that means: go is faster (the latency criteria pass once there are enough samples), but it errs more\nand answers differently (error_rate and, on orders, match_rate fail), so overall it fails: faster is not enough.\nRun it on real services: `runoff demo --backends examples`, and examples/README.md."
        );
    }
    if opts.keep_running {
        println!(
            "\nStill serving: proxy http://{}, admin {admin} (metrics, /api/summary).\nLive page: {admin}/ (open it in a browser). Ctrl-C to stop.",
            opts.listen
        );
        let _ = std::io::stdout().flush();
        return;
    }
    let _ = std::io::stdout().flush();
    stop.request();
}

/// The summary once every copy has settled (copies and comparisons finish shortly after their
/// primaries): polled until no copy is in flight, for at most 5 seconds.
fn settled_summary(admin: &str, window: &str) -> Result<Summary, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let summary = fetch::summary(admin, window, None)?;
        let in_flight: u64 = summary
            .routes
            .iter()
            .filter_map(|r| r.mirror.as_ref())
            .map(|m| m.in_flight)
            .sum();
        if in_flight == 0 || Instant::now() >= deadline {
            return Ok(summary);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The report, then the fields that differ most on each compared route.
fn print_report(admin: &str, summary: &Summary) {
    println!();
    match report::render(summary, None, Format::Table) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("runoff demo: cannot render the report: {e}"),
    }
    for r in summary.routes.iter().filter(|r| r.compare.is_some()) {
        let path = format!("/api/mismatches/paths?route={}", r.name);
        let Ok(counts) = fetch::get::<PathCounts>(admin, &path, None) else {
            continue;
        };
        if counts.paths.is_empty() {
            continue;
        }
        println!(
            "Fields that differ on route {} (share of compared pairs):",
            r.name
        );
        for p in counts.paths.iter().take(5) {
            println!("  {:<24} {:>5.1}%", p.path, p.share * 100.0);
        }
    }
}
