//! One request id for both legs: in the access log, and replaced by runoff's own when the caller's
//! is not fit to keep.

use super::*;
use crate::harness::{self, fixture, Fixture, Runoff};
use std::path::PathBuf;
use std::time::Duration;

/// node and go, runoff mirroring node's route to go, and the access log runoff writes (in a
/// directory that lives as long as the returned guard).
async fn mirrored_with_access_log() -> (Fixture, Fixture, Runoff, tempfile::TempDir, PathBuf) {
    let node = fixture("node").start().await;
    let go = fixture("go").start().await;
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("access.jsonl");
    let (n, g, log) = (
        node.addr.to_string(),
        go.addr.to_string(),
        log_path.display().to_string(),
    );
    let runoff = Runoff::start(|p| format!("access_log: {log}\n{}", config(p, &n, &g, ""))).await;
    (node, go, runoff, dir, log_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_shows_both_legs_under_one_request_id() {
    let (_node, _go, runoff, _dir, log_path) = mirrored_with_access_log().await;
    let r = reqwest::get(runoff.url("/orders/9?x=1")).await.unwrap();
    assert_eq!(r.status(), 200);
    let lines = harness::json_lines(&log_path, 2).await;
    assert_eq!(lines.len(), 2, "{lines:?}");
    let primary = lines.iter().find(|l| l["role"] == "primary").unwrap();
    let copy = lines.iter().find(|l| l["role"] == "shadow").unwrap();
    assert_eq!(primary["request_id"], copy["request_id"]);
    assert_eq!(copy["backend"], "go");
    assert_eq!(copy["path"], "/orders/9?x=1");
    assert_eq!(copy["status"], 200);
    assert_eq!(copy["response_bytes"], 14);
}

/// A caller's request id is kept only when it is fit to keep (1 to 200 visible ASCII bytes);
/// otherwise runoff replaces it with its own, the same on both legs and in the access log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_request_id_is_replaced_on_both_legs_and_in_the_access_log() {
    let (node, go, runoff, _dir, log_path) = mirrored_with_access_log().await;
    let too_long = "a".repeat(201);
    let at_limit = "b".repeat(200);
    let cases: [(&str, &[u8], bool); 4] = [
        ("too long", too_long.as_bytes(), false),
        ("a space", b"has space", false),
        ("a non-ASCII byte", b"caf\xc3\xa9", false),
        ("200 bytes", at_limit.as_bytes(), true),
    ];
    let client = reqwest::Client::new();
    for (i, (what, id, kept)) in cases.iter().enumerate() {
        let value = reqwest::header::HeaderValue::from_bytes(id).unwrap();
        let path = format!("/orders/{i}");
        let r = client
            .get(runoff.url(&path))
            .header("x-request-id", value)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{what}");
        go.wait_for(i as u64 + 1, Duration::from_secs(10)).await;
        let lines = harness::json_lines(&log_path, 2 * (i + 1)).await;
        let primary = node.received()[i].clone();
        let copy = go.received()[i].clone();
        let sent_up = primary.headers_named("x-request-id");
        assert_eq!(sent_up.len(), 1, "{what}: one id upstream, {sent_up:?}");
        let id_up = sent_up[0].to_string();
        assert_eq!(
            copy.headers_named("x-request-id"),
            vec![id_up.as_str()],
            "{what}: the shadow gets the primary's id"
        );
        let logged: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["path"] == path.as_str())
            .collect();
        assert_eq!(logged.len(), 2, "{what}: {lines:?}");
        for l in logged {
            assert_eq!(l["request_id"], id_up.as_str(), "{what}: {l}");
        }
        if *kept {
            assert_eq!(id_up.as_bytes(), *id, "{what}: kept as sent");
        } else {
            assert_ne!(id_up.as_bytes(), *id, "{what}: replaced");
            assert_eq!(id_up.len(), 32, "{what}: a generated id, {id_up}");
            assert!(id_up.bytes().all(|b| b.is_ascii_hexdigit()), "{id_up}");
        }
    }
}
