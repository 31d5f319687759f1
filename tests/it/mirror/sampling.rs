//! Which requests are copied: by sticky key exactly (independently of the split), else at random by
//! percent; never to the backend that served.

use crate::harness::{fixture, load, Fixture, Ports, Runoff};
use std::collections::HashMap;
use std::time::Duration;

fn three(p: &Ports, node: &str, go: &str, cand: &str, route_extra: &str, mirror: &str) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  node: {{ address: \"{node}\" }}\n  go: {{ address: \"{go}\" }}\n  cand: {{ address: \"{cand}\" }}\nroutes:\n  - name: orders\n    split: {{ node: 50, go: 50 }}\n{route_extra}    mirror: {{ to: {mirror} }}\n",
        p.listen, p.admin
    )
}

/// The fixtures `node`, `go` and `cand`.
async fn three_fixtures() -> [Fixture; 3] {
    [
        fixture("node").start().await,
        fixture("go").start().await,
        fixture("cand").start().await,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_by_key_is_exact_and_independent_of_the_split() {
    use runoff::routing::hash::{sample_point, sampled};
    let [node, go, cand] = three_fixtures().await;
    let [n, g, c] = [&node, &go, &cand].map(|f| f.addr.to_string());
    let runoff = Runoff::start(|p| {
        three(
            p,
            &n,
            &g,
            &c,
            "    sticky: { header: x-user-id }\n",
            "cand, percent: 50",
        )
    })
    .await;
    let client = reqwest::Client::new();
    let keys = 1000;
    let mut expected: u32 = 0;
    // (served, mirrored) per side.
    let mut side: HashMap<String, (u32, u32)> = HashMap::new();
    for k in 0..keys {
        let key = format!("user-{k}");
        let before = cand.count();
        let resp = client
            .get(runoff.url("/o"))
            .header("x-user-id", &key)
            .send()
            .await
            .unwrap();
        let served = resp.headers()["x-fixture"].to_str().unwrap().to_string();
        assert_eq!(resp.status(), 200);
        let should = sampled(sample_point(key.as_bytes()), 50.0);
        if should {
            expected += 1;
            cand.wait_for(before + 1, Duration::from_secs(10)).await;
        }
        let e = side.entry(served).or_default();
        e.0 += 1;
        e.1 += u32::from(should);
    }
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "shadow")],
            f64::from(expected),
        )
        .await;
    assert_eq!(cand.count(), u64::from(expected));
    assert_eq!(
        m.sum("runoff_mirror_requests_total", &[("backend", "cand")]),
        f64::from(expected)
    );
    // Half of each side is mirrored: the sampling hash (seed 1) is not the split's (seed 0).
    for (name, (served, mirrored)) in side {
        let share = f64::from(mirrored) / f64::from(served);
        let sd = (0.25 / f64::from(served)).sqrt();
        assert!(
            (share - 0.5).abs() < 5.0 * sd,
            "{name}: {mirrored} of {served} mirrored"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_sampling_follows_percent_and_the_target_is_never_copied_to_itself() {
    let [node, go, cand] = three_fixtures().await;
    let [n, g, c] = [&node, &go, &cand].map(|f| f.addr.to_string());
    // Mirror to go, which also serves half the traffic: only node's half is copied, at 30%.
    let runoff = Runoff::start(|p| three(p, &n, &g, &c, "", "go, percent: 30")).await;
    let client = reqwest::Client::new();
    let total = 2000usize;
    let statuses = load(&client, &runoff.url("/o"), total, 8).await;
    assert_eq!(statuses, HashMap::from([(200, total)]));
    let node_served = node.count() as f64;
    let m = runoff
        .expect_metric(
            "runoff_requests_total",
            &[("role", "primary")],
            total as f64,
        )
        .await;
    let copies = m.sum("runoff_mirror_requests_total", &[("backend", "go")]);
    let sd = (node_served * 0.3 * 0.7).sqrt();
    assert!(
        (copies - 0.3 * node_served).abs() < 5.0 * sd,
        "{copies} copies of {node_served} node requests"
    );
    // go received its own primary share plus exactly the completed copies.
    let m = runoff
        .expect_metric("runoff_requests_total", &[("role", "shadow")], copies)
        .await;
    assert_eq!(
        go.count() as f64,
        m.sum(
            "runoff_requests_total",
            &[("backend", "go"), ("role", "primary")]
        ) + copies
    );
    assert_eq!(cand.count(), 0);
}
