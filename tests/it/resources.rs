//! Backend CPU and memory for same-host trials: sampled from /proc, exported, summarized, and
//! reported; a missing process is reported, never fatal.

use std::time::{Duration, Instant};

use crate::harness::{bin, fixture, Runoff};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_processes_are_sampled_summarized_and_reported() {
    // The fixtures run inside this test process: sample it as the `node` backend.
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let me = std::process::id();
    let runoff = Runoff::start(|p| {
        format!(
            "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{}\", process: {{ pid: {me} }} }}\n  go: {{ address: \"{}\", process: {{ pid_file: \"{}/missing.pid\" }} }}\nroutes:\n  - name: api\n    split: {{ node: 100 }}\n    mirror: {{ to: go }}\n",
            p.listen, p.admin, node.addr, go.addr, p.dir.display()
        )
    })
    .await;
    let client = reqwest::Client::new();
    // Some work for this process to do while it is sampled, bounded by count and time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut cpu = 0.0;
    let mut sent = 0;
    while Instant::now() < deadline {
        for _ in 0..50 {
            assert_eq!(
                client.get(runoff.url("/x")).send().await.unwrap().status(),
                200
            );
            sent += 1;
        }
        let m = runoff.scrape().await;
        cpu = m.sum("runoff_backend_cpu_seconds_total", &[("backend", "node")]);
        if cpu > 0.0
            && m.sum(
                "runoff_backend_resident_memory_bytes",
                &[("backend", "node")],
            ) > 0.0
        {
            break;
        }
    }
    assert!(cpu > 0.0, "no CPU sampled for node after {sent} requests");
    let m = runoff.scrape().await;
    assert!(m.has("runoff_backend_cpu_seconds_total"));
    assert_eq!(
        m.sum("runoff_backend_resident_memory_bytes", &[("backend", "go")]),
        0.0
    );

    let summary: Value = runoff.get_json("/api/summary?window=60s").await;
    let node_p = &summary["processes"]["node"];
    assert_eq!(node_p["alive"], true, "{summary}");
    assert!(node_p["pids"]
        .as_array()
        .unwrap()
        .contains(&Value::from(me)));
    assert!(node_p["cpu_seconds_total"].as_f64().unwrap() > 0.0);
    assert!(node_p["resident_memory_bytes"].as_u64().unwrap() > 0);
    let go_p = &summary["processes"]["go"];
    assert_eq!(go_p["alive"], false);
    assert!(
        go_p["problem"].as_str().unwrap().contains("missing.pid"),
        "{go_p}"
    );
    let route = &summary["routes"][0];
    assert_eq!(route["baseline"], "node");
    assert_eq!(route["candidate"], "go");
    assert!(route["backends"][0]["total"]["requests"].as_u64().unwrap() >= sent);

    // `runoff report` reads the same summary over HTTP and shows CPU per request for node.
    let admin = format!("http://127.0.0.1:{}", runoff.ports.admin);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin())
            .args([
                "report", "--admin", &admin, "--route", "api", "--format", "markdown",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cpu_row = text
        .lines()
        .find(|l| l.starts_with("| CPU per request"))
        .unwrap();
    assert!(cpu_row.contains(" ms |"), "{cpu_row}");
    assert!(text.contains("| Requests/sec |"), "{text}");
    // An unknown route is a clear error.
    let admin = format!("http://127.0.0.1:{}", runoff.ports.admin);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin())
            .args(["report", "--admin", &admin, "--route", "nope"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no route named `nope`"));
}
