//! Verdicts and ramps end to end: fixture backends of known latency and error rates behind the
//! real runoff, read through `GET /api/analysis`, the metrics and `runoff report --fail-on`.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{bin, fixture, status, Fixture, Ports, Runoff};

fn config(p: &Ports, node: &Fixture, go: &Fixture, route: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{}\" }}\n  go: {{ address: \"{}\" }}\nroutes:\n  - name: api\n{route}",
        p.listen, p.admin, node.addr, go.addr
    )
}

/// `n` GETs from `concurrency` clients (each waits for its answer before the next).
async fn send(runoff: &Runoff, n: usize, concurrency: usize) {
    crate::harness::load(
        &reqwest::Client::new(),
        &runoff.url("/api/x"),
        n,
        concurrency,
    )
    .await;
}

/// The route's analysis, polled until `done` says it is what the test waits for.
async fn analysis_until(runoff: &Runoff, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = runoff.get_json("/api/analysis").await;
        let route = all["routes"][0].clone();
        if done(&route) {
            return route;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 20 s:\n{route:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn criterion<'a>(a: &'a Value, name: &str) -> &'a Value {
    a["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["criterion"] == name)
        .unwrap_or_else(|| panic!("no {name} in {a:#}"))
}

/// `runoff report --fail-on WHAT`: its exit status and output.
fn report_fail_on(runoff: &Runoff, what: &str) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(["report", "--fail-on", what, "--admin"])
        .arg(format!("http://127.0.0.1:{}", runoff.ports.admin))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirrored_candidate_four_times_faster_passes_and_report_lets_ci_through() {
    let node = fixture("node")
        .delay(Duration::from_millis(20))
        .start()
        .await;
    let go = fixture("go").delay(Duration::from_millis(5)).start().await;
    let runoff = Runoff::start(|p| {
        config(p, &node, &go, "    split: { node: 100 }\n    mirror: { to: go }\n    analysis: { min_samples: 100, criteria: { latency_p50: { max_ratio: 1.05 }, error_rate: { max_increase_pp: 5 } } }\n")
    })
    .await;
    // Too few samples: no verdict, whatever they say.
    send(&runoff, 20, 4).await;
    let early = analysis_until(&runoff, "20 pairs counted", |a| {
        criterion(a, "latency_p50")["n_candidate"] == 20
    })
    .await;
    assert_eq!(early["overall"], "inconclusive", "{early:#}");
    assert!(criterion(&early, "latency_p50")["explanation"]
        .as_str()
        .unwrap()
        .contains("fewer than 100 samples"));
    let (code, text) = report_fail_on(&runoff, "inconclusive");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--fail-on: api is inconclusive"), "{text}");

    send(&runoff, 400, 8).await;
    let a = analysis_until(&runoff, "a pass", |a| a["overall"] == "pass").await;
    let p50 = criterion(&a, "latency_p50");
    assert_eq!(
        p50["measures"],
        "median of per-request candidate/baseline latency"
    );
    assert!(p50["upper"].as_f64().unwrap() < 1.05, "{p50:#}");
    assert_eq!(criterion(&a, "error_rate")["verdict"], "pass");
    let m = runoff.scrape().await;
    assert_eq!(
        m.sum(
            "runoff_analysis_verdict",
            &[("route", "api"), ("criterion", "overall")]
        ),
        1.0
    );
    let (code, text) = report_fail_on(&runoff, "inconclusive");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Verdict: PASS"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_candidate_that_only_errs_never_passes_and_fails_ci() {
    let node = fixture("node")
        .delay(Duration::from_millis(2))
        .start()
        .await;
    let go = fixture("go").status(500).start().await;
    let runoff = Runoff::start(|p| {
        config(
            p,
            &node,
            &go,
            "    split: { node: 50, go: 50 }\n    analysis: { min_samples: 50 }\n",
        )
    })
    .await;
    send(&runoff, 400, 8).await;
    let a = analysis_until(&runoff, "a fail", |a| a["overall"] == "fail").await;
    let errors = criterion(&a, "error_rate");
    assert_eq!(errors["verdict"], "fail", "{errors:#}");
    for name in ["latency_p50", "latency_p99"] {
        let c = criterion(&a, name);
        assert_eq!(c["verdict"], "inconclusive", "{c:#}");
        assert!(c["explanation"]
            .as_str()
            .unwrap()
            .contains("the candidate has no successful answer"));
    }
    let (code, text) = report_fail_on(&runoff, "fail");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("--fail-on: api is fail"), "{text}");
    assert!(text.contains("Verdict: FAIL"), "{text}");
    // Starting the analysis again forgets what came before.
    let r = runoff
        .api(reqwest::Method::POST, "/api/analysis/api/reset")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let fresh = runoff.get_json("/api/analysis").await;
    assert_eq!(fresh["routes"][0]["reason"], "reset through the admin API");
    assert_eq!(fresh["routes"][0]["overall"], "inconclusive");
}

/// A split under a ramp of 10 → 50 → 100, judged on the error rate with 40 samples a side,
/// with its state file in `dir`.
fn ramped(p: &Ports, node: &Fixture, go: &Fixture, state: &std::path::Path, hold: &str) -> String {
    format!(
        "{}    split: {{ node: 90, go: 10 }}\n    analysis: {{ min_samples: 40, criteria: {{ error_rate: {{ max_increase_pp: 5 }} }} }}\n    ramp: {{ steps: [10, 50, 100], min_interval: 1s, max_hold: {hold} }}\nserver: {{ ramp_state_file: \"{}\" }}\n",
        config(p, node, go, ""),
        state.display()
    )
}

/// Keep sending requests (4 clients) until `done` holds for the route's analysis.
async fn drive_until(runoff: &Runoff, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        send(runoff, 100, 4).await;
        let all = runoff.get_json("/api/analysis").await;
        let route = all["routes"][0].clone();
        if done(&route) {
            return route;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within 30 s:\n{route:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_candidate_is_ramped_to_the_last_step() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ramp.json");
    let runoff = Runoff::start(|p| ramped(p, &node, &go, &state, "30s")).await;
    let start = runoff.get_json("/api/analysis").await;
    assert_eq!(start["routes"][0]["ramp"]["state"], "ramping", "{start:#}");
    assert_eq!(start["routes"][0]["ramp"]["weight"], 10);
    let done = drive_until(&runoff, "the ramp done", |a| a["ramp"]["state"] == "done").await;
    assert_eq!(done["ramp"]["weight"], 100, "{done:#}");
    let m = runoff.scrape().await;
    assert_eq!(m.sum("runoff_ramp_step", &[("route", "api")]), 100.0);
    assert_eq!(
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "go")]
        ),
        100.0
    );
    // Every step began a new analysis.
    assert!(
        done["reason"]
            .as_str()
            .unwrap()
            .contains("the route changed"),
        "{done:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_is_rolled_back_and_stays_rolled_back_across_a_restart() {
    let node = fixture("node").start().await;
    let go = fixture("go").status(500).start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ramp.json");
    let mut runoff = Runoff::start(|p| ramped(p, &node, &go, &state, "30s")).await;
    let back = drive_until(&runoff, "a rollback", |a| {
        a["ramp"]["state"] == "rolled_back"
    })
    .await;
    assert_eq!(back["ramp"]["weight"], 0, "{back:#}");
    assert!(back["ramp"]["last_decision"]
        .as_str()
        .unwrap()
        .contains("rolled back to 0%: fail: error_rate failed"));
    // No request reaches the candidate any more.
    let before = go.count();
    send(&runoff, 50, 2).await;
    assert_eq!(go.count(), before);
    // A restart reads the state file: the candidate stays out.
    runoff.signal("-TERM");
    runoff.wait_exit(Duration::from_secs(15)).await;
    let again = Runoff::start(|p| ramped(p, &node, &go, &state, "30s")).await;
    let a = again.get_json("/api/analysis").await;
    assert_eq!(a["routes"][0]["ramp"]["state"], "rolled_back", "{a:#}");
    send(&again, 50, 2).await;
    assert_eq!(go.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inconclusive_step_holds_then_rolls_back_and_a_manual_change_pauses() {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("ramp.json");
    // No traffic: the step stays inconclusive, so it holds; past max_hold it rolls back.
    let runoff = Runoff::start(|p| ramped(p, &node, &go, &state, "2s")).await;
    let held = runoff.get_json("/api/analysis").await;
    assert_eq!(held["routes"][0]["ramp"]["state"], "ramping", "{held:#}");
    assert_eq!(held["routes"][0]["overall"], "inconclusive");
    let back = analysis_until(&runoff, "a rollback after max_hold", |a| {
        a["ramp"]["state"] == "rolled_back"
    })
    .await;
    assert!(back["ramp"]["last_decision"]
        .as_str()
        .unwrap()
        .contains("still inconclusive after max_hold (2s)"));
    // Resumed, then a manual weight change pauses it.
    let r = runoff
        .api(reqwest::Method::POST, "/api/routes/api/ramp/resume")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "ramping");
    let r = runoff
        .put_json("/api/routes/api/weights", serde_json::json!({"go": 30}))
        .await;
    assert_eq!(r.status(), 200);
    let a = runoff.get_json("/api/analysis").await;
    assert_eq!(a["routes"][0]["ramp"]["state"], "paused", "{a:#}");
    assert_eq!(
        status(runoff.api(reqwest::Method::POST, "/api/routes/nope/ramp/resume")).await,
        404
    );
}
