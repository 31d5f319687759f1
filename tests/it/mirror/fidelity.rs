//! Fidelity: each leg is timed on its own clock, from its own request going upstream to its
//! last response byte; a load paced by the primary's answers is flagged as biasing the
//! comparison, and `pacing: matched` sends only the copies that keep both legs' concurrency
//! alike (the others dropped as `paced`).

use std::time::{Duration, SystemTime};

use super::*;
use crate::harness::{self, bin, fixture, load, Fixture, Runoff};

fn at(v: &serde_json::Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

/// The upstream window a log line claims for its leg.
fn window(line: &serde_json::Value) -> (SystemTime, SystemTime) {
    let start = at(&line["upstream_start"]);
    let ms = line["upstream_ms"].as_f64().unwrap();
    // The start is printed truncated to the microsecond.
    (
        start,
        start + Duration::from_secs_f64(ms / 1000.0) + Duration::from_micros(1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_leg_is_timed_from_its_own_upstream_send_to_its_last_byte() {
    let node = fixture("node")
        .delay(Duration::from_millis(30))
        .start()
        .await;
    let go = fixture("go").delay(Duration::from_millis(60)).start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let (n, g, log) = (
        node.addr.to_string(),
        go.addr.to_string(),
        log_path.display().to_string(),
    );
    let runoff = Runoff::start(|p| format!("access_log: {log}\n{}", config(p, &n, &g, ""))).await;
    let client = reqwest::Client::new();
    for i in 0..5 {
        let r = client
            .get(runoff.url(&format!("/orders/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let lines = harness::json_lines(&log_path, 10).await;
    assert_eq!(lines.len(), 10, "{lines:?}");
    for i in 0..5 {
        let path = format!("/orders/{i}");
        for (role, fixture) in [("primary", &node), ("shadow", &go)] {
            let line = lines
                .iter()
                .find(|l| l["path"] == path.as_str() && l["role"] == role)
                .unwrap_or_else(|| panic!("no {role} line for {path}: {lines:?}"));
            let got = fixture
                .received()
                .into_iter()
                .find(|r| r.uri == path)
                .unwrap();
            let (start, end) = window(line);
            // The leg's clock starts before its backend got the request and ends after the
            // backend answered: it covers that backend's work and nothing that happened
            // before the leg itself went upstream.
            assert!(start <= got.arrived_at, "{role} {path}: {line}");
            assert!(got.answered_at.unwrap() <= end, "{role} {path}: {line}");
        }
        let primary = lines
            .iter()
            .find(|l| l["path"] == path.as_str() && l["role"] == "primary")
            .unwrap();
        // The caller-side duration (since runoff saw the request, to the caller's last
        // byte) contains the upstream one.
        assert!(
            primary["upstream_ms"].as_f64().unwrap() <= primary["duration_ms"].as_f64().unwrap(),
            "{primary}"
        );
    }
    // The same clocks in the metrics: every completed leg has an upstream duration.
    let m = runoff
        .expect_metric("runoff_requests_total", &shadow(&[]), 5.0)
        .await;
    for role in ["primary", "shadow"] {
        assert_eq!(
            m.sum(
                "runoff_upstream_duration_seconds_count",
                &[("route", "orders"), ("role", role)]
            ),
            5.0,
            "{role}"
        );
    }
}

/// node answers at once and go takes 100 ms; two clients each wait for their answer before
/// sending the next request (a closed loop, as `wrk -c2` does), 200 requests in all.
async fn closed_loop_against_a_slower_shadow(mirror: &str) -> (Runoff, Fixture, Fixture) {
    let node = fixture("node").start().await;
    let go = fixture("go")
        .delay(Duration::from_millis(100))
        .start()
        .await;
    let (n, g) = (node.addr.to_string(), go.addr.to_string());
    let runoff = Runoff::start(|p| config(p, &n, &g, mirror)).await;
    let seen = load(&reqwest::Client::new(), &runoff.url("/orders/1"), 200, 2).await;
    assert_eq!(seen.get(&200), Some(&200), "{seen:?}");
    // Every copy settles: completed or dropped.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let m = runoff.scrape().await;
        let sent = m.sum("runoff_mirror_requests_total", ROUTE_GO);
        let settled = m.sum("runoff_requests_total", &shadow(&[]))
            + m.sum("runoff_mirror_dropped_total", ROUTE_GO);
        if sent == 200.0 && settled == sent {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "copies not settled: {sent} sent, {settled} settled\n{}",
            m.dump("runoff_mirror")
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    (runoff, node, go)
}

/// `runoff report` of a running runoff, as text.
fn report(runoff: &Runoff) -> String {
    let out = std::process::Command::new(bin())
        .args(["report", "--admin"])
        .arg(format!("http://127.0.0.1:{}", runoff.ports.admin))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_paced_by_the_primary_is_flagged_as_biasing_the_comparison() {
    let (runoff, _node, _go) = closed_loop_against_a_slower_shadow("").await;
    let m = runoff.scrape().await;
    let ahead = m.sum("runoff_mirror_biased_total", ROUTE_GO);
    assert!(ahead > 0.0, "{}", m.dump("runoff_mirror"));
    // No copy is refused for it: without pacing, every copy is sent and completes.
    assert_eq!(m.sum("runoff_requests_total", &shadow(&[])), 200.0);
    let summary = runoff.get_json("/api/summary?window=60s").await;
    let mirror = &summary["routes"][0]["mirror"];
    assert_eq!(mirror["pace_window"]["copies"], 200, "{mirror}");
    assert_eq!(
        mirror["pace_window"]["ahead"].as_f64(),
        Some(ahead),
        "{mirror}"
    );
    let bias = &summary["routes"][0]["comparison"]["bias"];
    assert_eq!(bias["biased"], true, "{bias}");
    assert!(report(&runoff).contains("Biased by the load's shape"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pacing_matched_keeps_the_shadow_level_with_the_primary_and_counts_what_it_drops() {
    let (runoff, _node, go) = closed_loop_against_a_slower_shadow(", pacing: matched").await;
    let m = runoff.scrape().await;
    let paced = m.sum(
        "runoff_mirror_dropped_total",
        &[("route", "orders"), ("reason", "paced")],
    );
    let completed = m.sum("runoff_requests_total", &shadow(&[]));
    assert!(paced > 0.0, "{}", m.dump("runoff_mirror"));
    assert!(completed > 0.0, "{}", m.dump("runoff_mirror"));
    assert_eq!(paced + completed, 200.0, "{}", m.dump("runoff_mirror"));
    assert_eq!(go.count() as f64, completed);
    assert_eq!(m.sum("runoff_mirror_biased_total", ROUTE_GO), 0.0);
    let summary = runoff.get_json("/api/summary?window=60s").await;
    assert_eq!(summary["routes"][0]["comparison"]["bias"]["biased"], false);
    assert!(!report(&runoff).contains("Biased by"));
}
