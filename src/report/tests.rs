//! The report's tables, from a summary whose figures `analysis` derived: exact lines for the
//! example trial, the wording of differences, number formats, and degenerate inputs.

use super::numbers::*;
use super::wording::{points, response_match, times};
use super::*;
use crate::analysis::figures::{derive, difference, ratio};
use crate::analysis::model::{
    BackendSummary, CompareSummary, MirrorSummary, PairStats, ProcessStats, Quantiles, Stats,
};

const PRIMARY: &str = "primary";
const SHADOW: &str = "shadow";

const EXAMPLE: &str = include_str!("../../tests/data/summary-example.json");

fn example() -> Summary {
    serde_json::from_str::<Summary>(EXAMPLE).expect("tests/data/summary-example.json parses")
}

/// The summary as the server would send it: measured figures plus the derived ones.
fn derived(mut summary: Summary) -> Summary {
    derive(&mut summary);
    summary
}

fn render_ok(summary: &Summary, route: Option<&str>, format: Format) -> String {
    render(&derived(summary.clone()), route, format).expect("renders")
}

/// A lower-is-better difference, as the report words analysis' ratio.
fn lower_is_better(base: Option<f64>, cand: Option<f64>, better: &str, worse: &str) -> String {
    times(ratio(base, cand), better, worse)
}

/// A percentage-point difference, as the report words analysis' difference.
fn points_difference(base: Option<f64>, cand: Option<f64>) -> String {
    points(difference(base, cand))
}

fn assert_lines(output: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            output.lines().any(|l| l == *line),
            "missing line {line:?} in:\n{output}"
        );
    }
}

fn assert_finite_text(output: &str) {
    for bad in ["NaN", "nan", "inf", "Inf"] {
        assert!(!output.contains(bad), "{bad:?} in:\n{output}");
    }
}

#[test]
fn markdown_mirror_route() {
    let out = render_ok(&example(), Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "### orders: node (baseline) vs go (candidate), mirror 100%",
            "| Metric | node | go | Difference |",
            "|---|---:|---:|---|",
            "| Requests/sec | 833 | 832 | same traffic (mirror) |",
            "| Avg latency | 122 ms | 41.0 ms | 3.0× faster |",
            "| P50 latency | 98.0 ms | 35.0 ms | 2.8× faster |",
            "| P99 latency | 340 ms | 95.0 ms | 3.6× faster |",
            "| Error rate | 0.4% | 0.1% | \u{2212}0.3 pp |",
            "| CPU per request | 0.85 ms | 0.45 ms | 1.9× less |",
            "| Memory (RSS) | 450 MB | 85 MB | 5.3× less |",
            "| Response match | — | 99.2% | 0.8% differ |",
            "Paired (same requests): candidate/baseline latency median ratio 0.34 → 2.9× faster (49,900 pairs)",
            "Mirror (since start): 480,000 copies, 479,520 completed, 480 dropped",
            "Response match (since start): 474,176 match, 3,824 differ, 1,000 skipped",
            "window: 60 s, generated 2025-11-28T12:00:00Z",
            REMINDER,
        ],
    );
    assert!(!out.contains("users"), "only the route asked for:\n{out}");
    assert!(!out.contains("No process stats"), "{out}");
}

#[test]
fn markdown_split_route() {
    let out = render_ok(&example(), Some("users"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "### users: users-node (baseline) vs users-go (candidate), split",
            "| Metric | users-node | users-go | Difference |",
            "| Requests/sec | 90.0 | 10.0 | 90% / 10% of traffic |",
            "| Avg latency | 12.4 ms | 12.6 ms | same |",
            "| P50 latency | 9.80 ms | 4.10 ms | 2.4× faster |",
            "| P99 latency | 48.0 ms | 67.0 ms | 1.4× slower |",
            "| Error rate | 0.5% | 0.5% | same |",
            "| CPU per request | — | — | n/a |",
            "| Memory (RSS) | — | — | n/a |",
            "| Response match | — | — | n/a |",
            "No process stats for users-node, users-go (no `process:` configured), so no CPU or memory figures.",
        ],
    );
    assert!(!out.contains("Paired"), "no mirror, no pairs:\n{out}");
}

#[test]
fn every_route_by_default_and_footer_once() {
    let out = render_ok(&example(), None, Format::Markdown);
    assert!(out.contains("### orders: "), "{out}");
    assert!(out.contains("### users: "), "{out}");
    assert!(out.find("### orders").lt(&out.find("### users")));
    assert_eq!(out.matches(REMINDER).count(), 1, "{out}");
    assert_eq!(out.matches("window: 60 s").count(), 1, "{out}");
    let table = render_ok(&example(), None, Format::Table);
    assert_eq!(table.matches(REMINDER).count(), 1, "{table}");
    assert!(table.contains("orders: node (baseline) vs go (candidate), mirror 100%\n"));
    assert!(table.contains("users: users-node (baseline) vs users-go (candidate), split\n"));
}

#[test]
fn plain_table_is_aligned() {
    let out = render_ok(&example(), Some("orders"), Format::Table);
    assert_lines(
        &out,
        &[
            "orders: node (baseline) vs go (candidate), mirror 100%",
            "======================================================",
            "Metric              node       go  Difference",
            "---------------  -------  -------  ---------------------",
            "Requests/sec         833      832  same traffic (mirror)",
            "Avg latency       122 ms  41.0 ms  3.0× faster",
            "P50 latency      98.0 ms  35.0 ms  2.8× faster",
            "P99 latency       340 ms  95.0 ms  3.6× faster",
            "Error rate          0.4%     0.1%  \u{2212}0.3 pp",
            "CPU per request  0.85 ms  0.45 ms  1.9× less",
            "Memory (RSS)      450 MB    85 MB  5.3× less",
            "Response match         —    99.2%  0.8% differ",
            "Paired (same requests): candidate/baseline latency median ratio 0.34 → 2.9× faster (49,900 pairs)",
            "window: 60 s, generated 2025-11-28T12:00:00Z",
        ],
    );
    assert!(!out.contains('|'), "no Markdown in the plain table:\n{out}");
    assert!(out.lines().all(|l| l == l.trim_end()), "trailing spaces");
}

#[test]
fn unknown_route_lists_the_known_ones() {
    let err = render(&example(), Some("payments"), Format::Table).expect_err("no such route");
    match &err {
        ReportError::NoSuchRoute(name, known) => {
            assert_eq!(name, "payments");
            assert_eq!(known, &["orders".to_string(), "users".to_string()]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "no route named `payments` in the summary (known routes: orders, users)"
    );
    let empty = Summary::default();
    let err = render(&empty, Some("orders"), Format::Json).expect_err("no routes at all");
    assert_eq!(
        err.to_string(),
        "no route named `orders` in the summary (known routes: none)"
    );
}

#[test]
fn json_round_trips() {
    let summary = derived(example());
    let all = render_ok(&summary, None, Format::Json);
    let back: Summary = serde_json::from_str(&all).expect("JSON output parses");
    assert_eq!(back, summary);

    let one = render_ok(&summary, Some("orders"), Format::Json);
    let back: Summary = serde_json::from_str(&one).expect("JSON output parses");
    assert_eq!(back.routes, vec![summary.routes[0].clone()]);
    assert_eq!(back.generated_at, summary.generated_at);
    assert_eq!(back.window_seconds, summary.window_seconds);
    assert_eq!(
        back.processes, summary.processes,
        "node and go serve orders"
    );

    let users = render_ok(&summary, Some("users"), Format::Json);
    let back: Summary = serde_json::from_str(&users).expect("JSON output parses");
    assert_eq!(back.routes.len(), 1);
    assert!(back.processes.is_empty(), "no process of users' backends");
}

/// A summary where nothing has happened yet: no requests, no pairs, processes at zero.
fn empty_summary() -> Summary {
    let idle = |backend: &str, role: &str| BackendSummary {
        backend: backend.to_string(),
        role: role.to_string(),
        protocol: None,
        window: Stats::default(),
        total: Stats::default(),
    };
    let zero_process = ProcessStats {
        alive: true,
        ..ProcessStats::default()
    };
    Summary {
        version: "0.1.0".to_string(),
        generated_at: "2025-11-28T12:00:00Z".to_string(),
        uptime_seconds: 0.0,
        window_seconds: 0.0,
        routes: vec![
            RouteSummary {
                name: "orders".to_string(),
                baseline: "node".to_string(),
                candidate: Some("go".to_string()),
                backends: vec![idle("node", PRIMARY), idle("go", SHADOW)],
                mirror: Some(MirrorSummary {
                    to: "go".to_string(),
                    percent: 100.0,
                    ..MirrorSummary::default()
                }),
                compare: Some(CompareSummary::default()),
                comparison: None,
                analysis: None,
                websocket: Vec::new(),
                websocket_comparison: None,
            },
            RouteSummary {
                name: "users".to_string(),
                baseline: "node".to_string(),
                candidate: Some("go".to_string()),
                backends: vec![idle("node", PRIMARY), idle("go", PRIMARY)],
                mirror: None,
                compare: None,
                comparison: None,
                analysis: None,
                websocket: Vec::new(),
                websocket_comparison: None,
            },
        ],
        processes: [
            ("node".to_string(), zero_process.clone()),
            ("go".to_string(), zero_process),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn zero_requests_never_nan_or_inf() {
    let summary = empty_summary();
    for format in [Format::Table, Format::Markdown, Format::Json] {
        let out = render_ok(&summary, None, format);
        assert_finite_text(&out);
    }
    let out = render_ok(&summary, Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "| Requests/sec | — | — | same traffic (mirror) |",
            "| Avg latency | — | — | n/a |",
            "| Error rate | — | — | n/a |",
            "| CPU per request | — | — | n/a |",
            "| Memory (RSS) | — | — | n/a |",
            "| Response match | — | — | n/a |",
            "Paired (same requests): no completed pairs yet",
            "window: 0 s, generated 2025-11-28T12:00:00Z",
        ],
    );
    let out = render_ok(&summary, Some("users"), Format::Markdown);
    assert_lines(&out, &["| Requests/sec | — | — | n/a |"]);
}

#[test]
fn degenerate_figures_never_nan_or_inf() {
    // Zero latencies and CPU, requests without latency, a zero ratio.
    let mut summary = example();
    for route in &mut summary.routes {
        for b in &mut route.backends {
            b.window.rps = 0.0;
            b.window.latency_ms = Some(Quantiles::default());
        }
        route.backends[1].window.latency_ms = None;
    }
    if let Some(mirror) = &mut summary.routes[0].mirror {
        mirror.window.ratio_p50 = Some(0.0);
    }
    for p in summary.processes.values_mut() {
        p.cpu_seconds_window = 0.0;
    }
    for format in [Format::Table, Format::Markdown] {
        let out = render_ok(&summary, None, format);
        assert_finite_text(&out);
    }
    let out = render_ok(&summary, Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "| Avg latency | 0.00 ms | — | n/a |",
            "| CPU per request | 0.000 ms | 0.000 ms | same |",
            "Paired (same requests): 49,900 pairs, median ratio unavailable",
        ],
    );
}

#[test]
fn falls_back_to_since_start_when_the_window_is_empty() {
    let mut summary = example();
    let go = &mut summary.routes[1].backends[1];
    go.window = Stats::default();
    let out = render_ok(&summary, Some("users"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "| Metric | users-node | users-go (since start) | Difference |",
            "| Avg latency | 12.4 ms | 12.5 ms | same |",
            "| Requests/sec | 90.0 | 9.67 | 100% / 0% of traffic |",
        ],
    );

    // The whole trial idle in the window: CPU per request since start, marked.
    let mut summary = example();
    for b in &mut summary.routes[0].backends {
        b.window = Stats::default();
    }
    if let Some(mirror) = &mut summary.routes[0].mirror {
        mirror.window = PairStats::default();
    }
    let out = render_ok(&summary, Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "| Metric | node (since start) | go (since start) | Difference |",
            "| Requests/sec | 800 | 799 | same traffic (mirror) |",
            "| CPU per request | 0.83 ms† | 0.44 ms† | 1.9× less |",
            "† CPU per request since start (no requests in the window).",
            "Paired (same requests): candidate/baseline latency median ratio 0.35 → 2.9× faster (479,000 pairs, since start)",
        ],
    );
}

#[test]
fn differences_wording() {
    assert_eq!(
        lower_is_better(Some(122.0), Some(41.0), "faster", "slower"),
        "3.0× faster"
    );
    assert_eq!(
        lower_is_better(Some(48.0), Some(67.0), "faster", "slower"),
        "1.4× slower"
    );
    assert_eq!(
        lower_is_better(Some(100.0), Some(101.9), "faster", "slower"),
        "same"
    );
    assert_eq!(
        lower_is_better(Some(100.0), Some(96.0), "faster", "slower"),
        "1.04× faster"
    );
    assert_eq!(lower_is_better(Some(0.0), Some(3.0), "less", "more"), "n/a");
    assert_eq!(lower_is_better(None, Some(3.0), "less", "more"), "n/a");
    assert_eq!(
        lower_is_better(Some(f64::NAN), Some(3.0), "less", "more"),
        "n/a"
    );
    assert_eq!(points_difference(Some(0.4), Some(0.1)), "\u{2212}0.3 pp");
    assert_eq!(points_difference(Some(0.1), Some(0.3)), "+0.2 pp");
    assert_eq!(points_difference(Some(0.5), Some(0.5)), "same");
    assert_eq!(points_difference(Some(0.5), None), "n/a");
}

#[test]
fn number_formats() {
    assert_eq!(fmt_ms(4.256), "4.26 ms");
    assert_eq!(fmt_ms(41.0), "41.0 ms");
    assert_eq!(fmt_ms(122.4), "122 ms");
    assert_eq!(fmt_ms(1250.0), "1,250 ms");
    assert_eq!(fmt_ms(f64::INFINITY), "—");
    assert_eq!(fmt_rps(8200.0), "8,200");
    assert_eq!(fmt_rps(90.0), "90.0");
    assert_eq!(fmt_rps(2.5), "2.50");
    assert_eq!(fmt_ratio(2.9756), "3.0×");
    assert_eq!(fmt_ratio(1.04), "1.04×");
    assert_eq!(fmt_ratio(f64::INFINITY), "—");
    assert_eq!(fmt_mb(450_000_000), "450 MB");
    assert_eq!(fmt_mb(1_250_000_000), "1,250 MB");
    assert_eq!(fmt_error_percent(0.01), "<0.1%");
    assert_eq!(fmt_error_percent(0.0), "0.0%");
    assert_eq!(fmt_share(99.8), ">99%");
    assert_eq!(fmt_share(0.2), "<1%");
    assert_eq!(fmt_trim(60.0), "60");
    assert_eq!(fmt_trim(12.5), "12.5");
    assert_eq!(group(0), "0");
    assert_eq!(group(999), "999");
    assert_eq!(group(1_000), "1,000");
    assert_eq!(group(12_345_678), "12,345,678");
}

#[test]
fn response_match_wording() {
    let compare = |matched, mismatched, match_rate| CompareSummary {
        matched,
        mismatched,
        skipped: 0,
        match_rate,
    };
    assert_eq!(
        response_match(Some(&compare(992, 8, Some(0.992)))),
        ("99.2%".to_string(), "0.8% differ".to_string())
    );
    assert_eq!(
        response_match(Some(&compare(10, 0, Some(1.0)))),
        ("100.0%".to_string(), "none differ".to_string())
    );
    assert_eq!(
        response_match(Some(&compare(99_999, 1, Some(0.99999)))),
        (">99.9%".to_string(), "<0.1% differ".to_string())
    );
    assert_eq!(
        response_match(Some(&compare(0, 0, None))),
        ("—".to_string(), "n/a".to_string())
    );
    assert_eq!(response_match(None), ("—".to_string(), "n/a".to_string()));
}

#[test]
fn process_problems_and_no_candidate() {
    let mut summary = example();
    if let Some(go) = summary.processes.get_mut("go") {
        go.alive = false;
        go.problem = Some("pid file /run/go.pid missing".to_string());
    }
    let out = render_ok(&summary, Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "| CPU per request | 0.85 ms | — | n/a |",
            "| Memory (RSS) | 450 MB | — | n/a |",
            "go: process not sampled (pid file /run/go.pid missing).",
        ],
    );

    let mut summary = example();
    let users = &mut summary.routes[1];
    users.candidate = None;
    users.backends.truncate(1);
    let out = render_ok(&summary, Some("users"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "### users: users-node (baseline), no candidate, single backend",
            "| Metric | users-node | — | Difference |",
            "| Requests/sec | 90.0 | — | n/a |",
            "| Avg latency | 12.4 ms | — | n/a |",
        ],
    );
    assert_finite_text(&out);
}

#[test]
fn partial_mirror_and_split_plus_mirror() {
    let mut summary = example();
    let orders = &mut summary.routes[0];
    if let Some(mirror) = &mut orders.mirror {
        mirror.percent = 25.0;
    }
    orders.backends.push(BackendSummary {
        backend: "go".to_string(),
        role: PRIMARY.to_string(),
        ..BackendSummary::default()
    });
    let out = render_ok(&summary, Some("orders"), Format::Markdown);
    assert_lines(
        &out,
        &[
            "### orders: node (baseline) vs go (candidate), split + mirror 25%",
            "| Requests/sec | 833 | 832 | mirror of 25% of traffic |",
        ],
    );
}

#[test]
fn a_load_that_biases_the_mirror_is_said_and_latencies_say_what_they_measure() {
    let mut summary = example();
    if let Some(mirror) = &mut summary.routes[0].mirror {
        mirror.pace_window = crate::analysis::model::Pace {
            copies: 1_000,
            ahead: 340,
        };
    }
    summary.routes[0].backends[0].window.caller_latency_ms = Some(Quantiles {
        p50: 99.0,
        p99: 351.0,
        ..Quantiles::default()
    });
    let out = render_ok(&summary, Some("orders"), Format::Table);
    assert_lines(
        &out,
        &[
            "Biased by the load's shape: 34% of copies (340 of 1,000) were sent while the shadow ran far ahead of the primary (copies under way > 4× the primary's + 4). The load is paced by the primary's answers (a closed-loop load test?) or the shadow fell behind, so the shadow's latency includes queueing the primary never had; for such loads use `mirror: { pacing: matched }`.",
            "Latency is upstream-side on both legs: each from its own request going upstream (connect included) to the last response byte back. Callers saw (runoff included): node p50 99.0 ms, p99 351 ms.",
        ],
    );
    // Under 5% of copies, or too few copies to say: no warning.
    for (copies, ahead) in [(1_000, 50), (19, 19)] {
        let mut calm = example();
        if let Some(mirror) = &mut calm.routes[0].mirror {
            mirror.pace_window = crate::analysis::model::Pace { copies, ahead };
        }
        let out = render_ok(&calm, Some("orders"), Format::Table);
        assert!(!out.contains("Biased by"), "{copies}/{ahead}:\n{out}");
    }
}
