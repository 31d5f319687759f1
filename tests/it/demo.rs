//! `runoff demo`, the README's first command: what it prints must show what the demo planted.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{bin, free_port_pair, require_example_apps};

#[test]
fn the_demo_report_shows_what_was_planted() {
    let mut last = String::new();
    for _attempt in 0..3 {
        let (listen, admin) = free_port_pair();
        let mut child = Command::new(bin())
            .args(["demo", "--duration", "5s", "--rps", "120"])
            .args(["--listen", &format!("127.0.0.1:{listen}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("runoff demo did not finish in 90 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !status.success() && stderr.contains("cannot listen") {
            last = stderr;
            continue;
        }
        assert!(
            status.success(),
            "demo failed: {status}\n{stdout}\n{stderr}"
        );
        check(&stdout);
        return;
    }
    panic!("no free ports for the demo after 3 attempts: {last}");
}

/// The row of a route's table that starts with `metric`.
fn row<'a>(report: &'a str, route: &str, metric: &str) -> &'a str {
    let start = report
        .find(&format!("{route}: node (baseline) vs go (candidate)"))
        .unwrap_or_else(|| panic!("no table for {route}:\n{report}"));
    report[start..]
        .lines()
        .find(|l| l.starts_with(metric))
        .unwrap_or_else(|| panic!("no {metric} row for {route}:\n{report}"))
}

fn numbers(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .filter_map(|w| w.trim_end_matches('%').parse::<f64>().ok())
        .collect()
}

/// The row of a route's WebSocket table that starts with `metric`.
fn ws_row<'a>(report: &'a str, route: &str, metric: &str) -> &'a str {
    let start = report
        .find(&format!("{route}: WebSockets"))
        .unwrap_or_else(|| panic!("no WebSocket table for {route}:\n{report}"));
    report[start..]
        .lines()
        .find(|l| l.starts_with(metric))
        .unwrap_or_else(|| panic!("no {metric} row for {route}:\n{report}"))
}

fn check(report: &str) {
    // The WebSocket part: the same 20 connections on both (mirrored), the candidate's planted
    // faster echo.
    let peak = numbers(ws_row(report, "chat", "Peak connections"));
    assert_eq!(peak, vec![20.0, 20.0], "{report}");
    let rates = numbers(ws_row(report, "chat", "Messages/sec to backend"));
    assert!(
        rates.len() == 2 && rates[0] > 0.0 && rates[0] == rates[1],
        "{report}"
    );
    assert!(
        ws_row(report, "chat", "Message latency P50").contains("faster"),
        "{report}"
    );
    for route in ["users", "orders"] {
        // Both backends served (or, for the mirror, got copies of) a non-zero share.
        let rps = numbers(row(report, route, "Requests/sec"));
        assert!(
            rps.len() >= 2 && rps[0] > 0.0 && rps[1] > 0.0,
            "{route}: {rps:?}\n{report}"
        );
        // The candidate was planted faster: the difference says so.
        let avg = row(report, route, "Avg latency");
        assert!(avg.contains("faster"), "{route}: {avg}\n{report}");
    }
    assert!(row(report, "orders", "Requests/sec").contains("same traffic (mirror)"));
    // Its planted errors show, for the candidate only.
    let errors = row(report, "orders", "Error rate");
    let rates = numbers(errors);
    assert_eq!(rates[0], 0.0, "{errors}");
    assert!(rates[1] > 0.0, "{errors}");
    // The planted field difference is a mismatch, and named.
    let matching = row(report, "orders", "Response match");
    assert!(matching.contains("differ"), "{matching}");
    let fields = report
        .find("Fields that differ on route orders")
        .map(|i| &report[i..])
        .unwrap_or_else(|| panic!("no mismatch paths:\n{report}"));
    let first = fields.lines().nth(1).unwrap_or("");
    assert!(first.trim_start().starts_with("/currency"), "{fields}");
    // The verdict on orders: every answer differs, so the match rate fails, and so does the
    // route, with its reasons.
    let orders = &report[report.find("orders: node (baseline)").unwrap()..];
    let verdict = orders
        .lines()
        .find(|l| l.starts_with("Verdict: "))
        .unwrap_or_else(|| panic!("no verdict for orders:\n{report}"));
    assert!(verdict.starts_with("Verdict: FAIL"), "{verdict}");
    assert!(verdict.contains("match_rate"), "{verdict}");
    assert!(
        orders.lines().any(|l| l
            .trim_start()
            .starts_with("match_rate: share of compared pairs that match 0.00%")
            && l.contains("→ fail")),
        "{report}"
    );
}

#[test]
fn the_demo_runs_the_real_example_apps() {
    require_example_apps("`runoff demo --backends examples`");
    let (listen, admin) = free_port_pair();
    let out = Command::new(bin())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "--backends",
            "examples",
            "--duration",
            "4s",
            "--rps",
            "60",
        ])
        .args(["--listen", &format!("127.0.0.1:{listen}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = report
        .find("api: node (baseline) vs go (candidate), mirror 100%")
        .unwrap_or_else(|| panic!("{report}"));
    let table = &report[start..];
    let line = |metric: &str| {
        table
            .lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("no {metric}:\n{table}"))
    };
    assert!(line("Requests/sec").contains("same traffic (mirror)"));
    // Both processes were sampled: CPU per request and memory for each.
    assert_eq!(
        line("CPU per request").matches(" ms").count(),
        2,
        "{}",
        line("CPU per request")
    );
    assert_eq!(
        line("Memory (RSS)").matches(" MB").count(),
        2,
        "{}",
        line("Memory (RSS)")
    );
    // The two apps answer identical JSON.
    assert!(
        line("Response match").contains("none differ"),
        "{}",
        line("Response match")
    );
    // The seed's WebSocket table, from the apps' own WebSocket servers: the same connections
    // on both, and memory per connection from both processes.
    let ws = &report[report
        .find("ws: WebSockets")
        .unwrap_or_else(|| panic!("no WebSocket table:\n{report}"))..];
    let ws_line = |metric: &str| {
        ws.lines()
            .find(|l| l.starts_with(metric))
            .unwrap_or_else(|| panic!("no {metric}:\n{ws}"))
    };
    assert_eq!(
        ws_line("Peak connections")
            .split_whitespace()
            .filter(|w| *w == "20")
            .count(),
        2,
        "{ws}"
    );
    assert_eq!(
        ws_line("Memory/connection").matches(" KB").count(),
        2,
        "{ws}"
    );
    // Nothing left running.
    let left = Command::new("pgrep")
        .args(["-f", "runoff-example-go"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "the Go example is still running"
    );
}
