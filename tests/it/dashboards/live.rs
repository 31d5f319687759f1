//! The proof: a real Prometheus scrapes a real runoff under load, and every dashboard query
//! returns data, except the allowlisted panels', which return none.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::contract::{Contract, CONTRACT};
use super::grafana::{metric_names, queries, substitute, variable_query, variables};
use super::prometheus::{now, promtool, Prometheus, Sample, INSTANCE, JOB};
use super::scenario::{churn_websockets, config, drive, go_backend, node_backend, open_websockets};
use super::{allowlisted, dashboard, BUILTINS};
use crate::harness::{refused_port, Runoff};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let started = Instant::now();
    let dash = dashboard();
    let prom = Prometheus::start().await;

    let (node, go) = (node_backend().await, go_backend().await);
    let refused = refused_port();

    // runoff with the split at 90/10, until Prometheus has its weights; then a file reload
    // to 70/30, so that the reload and weight-change annotations have something to mark.
    let runoff = Runoff::start(|p| {
        config(
            p.listen,
            p.admin,
            node.addr,
            go.addr,
            refused.port(),
            (90, 10),
        )
    })
    .await;
    prom.set_target(runoff.ports.admin);
    let go_weight = format!(
        "runoff_route_weight{{job=\"{JOB}\", instance=\"{INSTANCE}\", route=\"api\", backend=\"go\"}}"
    );
    prom.wait_for(
        "Prometheus scrapes runoff (90/10)",
        &format!("count_over_time({go_weight}[1m])"),
        Duration::from_secs(30),
        |s| s.first().is_some_and(|s| s.value >= 2.0),
    )
    .await;
    let (listen, admin) = (runoff.ports.listen, runoff.ports.admin);
    std::fs::write(
        &runoff.config_path,
        config(listen, admin, node.addr, go.addr, refused.port(), (70, 30)),
    )
    .unwrap();
    let reload = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{admin}/api/reload"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = reload.status();
    assert_eq!(status, 200, "reload: {}", reload.text().await.unwrap());
    prom.wait_for(
        "Prometheus scrapes the reloaded weights (70/30)",
        &go_weight,
        Duration::from_secs(30),
        |s| s.first().is_some_and(|s| s.value == 30.0),
    )
    .await;
    let ws_base = format!("ws://127.0.0.1:{}", runoff.ports.listen);
    // Open through the queries: the open-connections panel reads them.
    let _open = open_websockets(&ws_base, 6).await;
    let churn = {
        let ws_base = ws_base.clone();
        tokio::spawn(async move { churn_websockets(&ws_base, Duration::from_secs(11)).await })
    };
    let answered = drive(
        &runoff.url(""),
        4,
        3000,
        Duration::from_millis(10),
        Duration::from_secs(12),
    )
    .await;
    assert!(answered > 500, "only {answered} requests answered");
    let messages = churn.await.unwrap();
    assert!(messages > 20, "only {messages} WebSocket messages echoed");
    let at = now();
    // Every query is evaluated at `at`: wait for a scrape after it.
    prom.wait_for(
        "a scrape after the load",
        &format!("timestamp(runoff_build_info{{job=\"{JOB}\", instance=\"{INSTANCE}\"}})"),
        Duration::from_secs(20),
        |s| s.first().is_some_and(|s| s.value >= at + 1.0),
    )
    .await;

    // promtool is happy with runoff's real /metrics.
    let scrape = reqwest::get(format!("http://127.0.0.1:{}/metrics", runoff.ports.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (ok, printed) = {
        let scrape = scrape.clone();
        tokio::task::spawn_blocking(move || promtool(&["check", "metrics"], &scrape))
            .await
            .unwrap()
    };
    assert!(
        ok && printed.trim().is_empty(),
        "promtool check metrics on runoff's /metrics (ok={ok}):\n{printed}"
    );
    let scraped: BTreeSet<String> = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_string())
        .collect();

    let mut values: HashMap<String, String> = BUILTINS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in [
        ("job", JOB),
        ("instance", INSTANCE),
        ("route", "api"),
        ("baseline", "node"),
        ("candidate", "go"),
    ] {
        values.insert(k.to_string(), v.to_string());
    }

    let mut problems = Vec::new();
    let mut report = Vec::new();

    // What the contract reserves, runoff does not serve yet.
    let contract = Contract::read();
    for name in scraped.iter().filter(|n| contract.is_reserved(n)) {
        problems.push(format!(
            "runoff serves {name}, which {CONTRACT} marks not yet exported: update the contract \
             (and the ALLOWLIST)"
        ));
    }

    // The variables resolve as documented.
    for v in variables(&dash)
        .into_iter()
        .filter(|v| v["type"] == "query")
    {
        let name = v["name"].as_str().unwrap();
        let q = substitute(&variable_query(v), &values).unwrap();
        let got: Vec<String> = if let Some(args) = q
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
        {
            let (selector, label) = args.rsplit_once(',').unwrap();
            prom.label_values(selector.trim(), label.trim(), at).await
        } else if let Some(expr) = q
            .strip_prefix("query_result(")
            .and_then(|r| r.strip_suffix(')'))
        {
            match prom.query(expr, at).await {
                Ok(samples) => samples
                    .iter()
                    .filter_map(|s| s.labels.get("backend").and_then(|b| b.as_str()))
                    .map(str::to_string)
                    .collect(),
                Err(e) => {
                    problems.push(format!("variable {name}: {e}"));
                    continue;
                }
            }
        } else {
            problems.push(format!("variable {name}: unexpected query {q}"));
            continue;
        };
        let ok = match name {
            "job" => got.contains(&JOB.to_string()),
            "instance" => got.contains(&INSTANCE.to_string()),
            "route" => ["api", "orders", "reports", "down"]
                .iter()
                .all(|r| got.contains(&r.to_string())),
            // The largest weight first: the default is the baseline.
            "baseline" => got.first().map(String::as_str) == Some("node"),
            "candidate" => got == ["go"],
            _ => !got.is_empty(),
        };
        report.push(format!("variable {name}: {got:?}"));
        if !ok {
            problems.push(format!("variable {name}: {q} gave {got:?}"));
        }
    }

    // Every panel and annotation query.
    for q in queries(&dash) {
        let expr = match substitute(&q.expr, &values) {
            Ok(e) => e,
            Err(e) => {
                problems.push(format!("{}: {e}", q.place));
                continue;
            }
        };
        let allowed = allowlisted(&q.owner);
        if !allowed {
            for name in metric_names(&q.expr) {
                if !scraped.contains(&name) {
                    problems.push(format!("{}: {name} is not in runoff's /metrics", q.place));
                }
            }
        }
        match prom.query(&expr, at).await {
            Err(e) => problems.push(format!("{}: query failed: {e}\n  {expr}", q.place)),
            Ok(samples) => {
                let with_data: Vec<&Sample> = samples.iter().filter(|s| s.has_data()).collect();
                report.push(format!(
                    "{}{}: {} series, {} with data{}",
                    q.place,
                    if allowed { " [allowlisted]" } else { "" },
                    samples.len(),
                    with_data.len(),
                    with_data
                        .first()
                        .map(|s| format!(", e.g. {:?} = {}", s.labels, s.value))
                        .unwrap_or_default()
                ));
                if allowed && !with_data.is_empty() {
                    problems.push(format!(
                        "{}: feature now exists: remove {:?} from the allowlist",
                        q.place, q.owner
                    ));
                }
                if !allowed && with_data.is_empty() {
                    problems.push(format!(
                        "{}: no finite non-zero sample (got {samples:?})\n  {expr}",
                        q.place
                    ));
                }
            }
        }
    }

    eprintln!(
        "{}\n{answered} requests answered; {:.1} s in all",
        report.join("\n"),
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n\nrunoff stderr:\n{}\nprometheus log:\n{}",
        problems.len(),
        problems.join("\n"),
        runoff.stderr(),
        prom.log()
    );
}
