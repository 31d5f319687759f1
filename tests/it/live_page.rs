//! The live page on the admin port, in Debian's Chromium (headless, driven by playwright-core:
//! tests/browser/live_page.mjs) against a real runoff with fixture backends: the token asked
//! for first and a wrong one refused visibly, the tables agreeing with `/api/summary`, a
//! planted mismatch with its path one click from an `ignore_paths` entry, a weight change by
//! keyboard alone that the next requests follow, a phone-wide screen, dark and light, no
//! console error. Screenshots of each width (and dark) are saved under the test's output folder
//! (`target/tmp/live-page/`); `RUNOFF_SCREENSHOT=1` also copies them to docs/ (README shows
//! them).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{fixture, require_browser, wait_until, ws_connect, Runoff};

const TOKEN: &str = "page-test-token";

/// "1,234" → 1234.
fn count(cell: &Value) -> u64 {
    cell.as_str()
        .unwrap_or_default()
        .replace(',', "")
        .parse()
        .unwrap_or(0)
}

/// The route named `name` in an admin API answer's `routes`.
fn route<'a>(answer: &'a Value, name: &str) -> &'a Value {
    answer["routes"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no route {name} in {answer}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_runoffs_figures_in_a_real_browser() {
    require_browser("the live page test");
    let node = fixture("node")
        .websocket()
        .header("content-type", "application/json")
        .body(r#"{"id":1,"total":10,"items":[1,2]}"#)
        .start()
        .await;
    let go = fixture("go")
        .header("content-type", "application/json")
        .body(r#"{"id":1,"total":11,"items":[1,2]}"#)
        .start()
        .await;
    let (n, g) = (node.addr, go.addr);
    let runoff = Runoff::start_with(
        |p| {
            format!(
                "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{}, token_env: RUNOFF_TEST_TOKEN }}\nbackends:\n  node: {{ address: \"{n}\" }}\n  go: {{ address: \"{g}\" }}\nroutes:\n  - name: canary\n    match: {{ path_prefix: /canary }}\n    split: {{ node: 50, go: 50 }}\n  - name: orders\n    match: {{ path_prefix: /orders }}\n    split: {{ node: 100 }}\n    mirror: {{ to: go }}\n    compare: {{ headers: {{ compare: [content-type] }} }}\n  - name: chat\n    match: {{ path_prefix: /ws }}\n    split: {{ node: 100 }}\n",
                p.listen, p.admin
            )
        },
        &[],
        &[("RUNOFF_TEST_TOKEN", TOKEN)],
    )
    .await;
    let client = reqwest::Client::new();
    for i in 0..60 {
        for path in [format!("/canary/{i}"), format!("/orders/{i}")] {
            let r = client.get(runoff.url(&path)).send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    }
    // One WebSocket open while the page looks (its table row).
    let (_socket, _) = ws_connect(
        &format!("ws://127.0.0.1:{}/ws/room", runoff.ports.listen),
        &[],
    )
    .await;
    wait_until("every pair compared", Duration::from_secs(10), || {
        node.count() + go.count() == 181
    })
    .await;
    let mut pairs = 0.0;
    for _ in 0..200 {
        pairs = runoff
            .scrape()
            .await
            .sum("runoff_compare_total", &[("route", "orders")]);
        if pairs == 60.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(pairs, 60.0);

    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-page");
    std::fs::create_dir_all(&shots).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/live_page.mjs");
    let admin = format!("http://127.0.0.1:{}/", runoff.ports.admin);
    let run = tokio::task::spawn_blocking({
        let shots = shots.clone();
        move || {
            Command::new("node")
                .arg(script)
                .arg(admin)
                .arg(shots)
                .arg(TOKEN)
                .arg("canary")
                .output()
        }
    });
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the browser run took over 2 minutes")
        .unwrap()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let got: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON from the browser run ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(got["failure"].is_null(), "{}", got["failure"]);
    assert_eq!(got["consoleErrors"], serde_json::json!([]), "{got}");
    assert_eq!(got["sectionsBeforeToken"], 0, "data shown before the token");
    assert!(
        got["wrongTokenMessage"]
            .as_str()
            .is_some_and(|m| m.contains("wrong token")),
        "{got}"
    );
    assert_eq!(got["wrongTokenVisible"], true);
    assert_eq!(
        got["sectionsAfterWrongToken"], 0,
        "data shown for a wrong token"
    );
    // The wrong token's refusals are the only failed loads.
    for e in got["wrongTokenErrors"].as_array().unwrap() {
        assert!(e.as_str().unwrap_or("").contains("403"), "{got}");
    }

    // The tables agree with runoff's own summary (same window, no traffic since).
    let summary = runoff
        .get_json_with_token("/api/summary?window=60s", TOKEN)
        .await;
    // (chat has one backend: no candidate to face.) Charts: latency, errors, and on the
    // mirrored route the paired ratios.
    for (name, charts) in [("canary", 2), ("orders", 3)] {
        let c = &route(&summary, name)["comparison"];
        let want = [
            c["baseline"]["stats"]["requests"].as_u64().unwrap(),
            c["candidate"]["stats"]["requests"].as_u64().unwrap(),
        ];
        let cells = got["routes"][name]["requests"].as_array().unwrap();
        let shown = [count(&cells[1]), count(&cells[2])];
        assert_eq!(shown, want, "{name}: {got}");
        assert!(want.iter().all(|n| *n > 0), "{name}: {want:?}");
        assert_eq!(got["routes"][name]["charts"], charts, "{got}");
    }
    assert_eq!(got["routes"]["chat"]["wsRows"], 1, "{got}");
    assert_eq!(
        got["routes"]["orders"]["requests"][1].as_str(),
        Some("60"),
        "{got}"
    );

    // The planted mismatch, its path, and the entry to paste.
    let orders = &got["routes"]["orders"];
    assert!(
        orders["paths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/total")),
        "{got}"
    );
    assert!(
        orders["diffPaths"]
            .as_array()
            .unwrap()
            .contains(&Value::from("/total")),
        "{got}"
    );
    assert_eq!(got["snippet"], "ignore_paths: [/total]");

    // The weight change made by keyboard took effect.
    assert!(
        got["status"].as_str().unwrap_or("").contains("changed"),
        "{got}"
    );
    let routes = runoff.get_json_with_token("/api/routes", TOKEN).await;
    let weights: Vec<(String, u64)> = route(&routes, "canary")["split"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["backend"].as_str().unwrap().to_string(),
                s["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights,
        vec![("node".to_string(), 100), ("go".to_string(), 0)]
    );
    // And the next requests follow it.
    let (node_before, go_before) = (node.count(), go.count());
    for i in 0..40 {
        let r = client
            .get(runoff.url(&format!("/canary/after/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!((node.count(), go.count()), (node_before + 40, go_before));

    // A phone, and both colour schemes.
    assert!(got["phoneScrollWidth"].as_u64().unwrap() <= 390, "{got}");
    assert_eq!(got["darkBackground"], "rgb(13, 17, 23)");
    assert_eq!(got["lightBackground"], "rgb(255, 255, 255)");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for png in ["live-page.png", "live-page-phone.png", "live-page-dark.png"] {
        let shot = shots.join(png);
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "{png}"
        );
        if std::env::var_os("RUNOFF_SCREENSHOT").is_some() {
            std::fs::copy(&shot, docs.join(png)).unwrap();
        }
    }
}
