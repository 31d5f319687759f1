//! The Grafana dashboard (`dashboards/runoff-overview.json`) and the deploy files, proved
//! against a real Prometheus scraping a real runoff under load: every panel's query returns
//! data (a finite, non-zero sample), except the panels of features not built yet, which are
//! listed in `ALLOWLIST` and must return none.
//!
//! Needs Debian's `prometheus` package (`/usr/bin/prometheus`, `/usr/bin/promtool`).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{self, fixture, free_port, refused_port, Runoff, INSTALL_ALL};

/// Panels (by title) and annotations (by name) of features runoff does not have yet: each
/// uses a metric that docs/METRICS.md reserves (*not yet exported*), and every panel that uses
/// one is listed here. Their queries must return no data today; the test fails as soon as one
/// does, so that the entry is removed and the panel is held to real data from then on.
const ALLOWLIST: &[&str] = &[
    // WebSockets (runoff_websocket_*).
    "WebSocket connections open",
    "WebSocket messages per second",
    "WebSocket connection duration",
];

/// What the dashboard's datasource must be, everywhere.
const DATASOURCE_UID: &str = "${datasource}";

/// Grafana's built-in variables the dashboard may use, with the value the test gives them.
/// `$__rate_interval` is short on purpose: the data has to come from the load itself.
const BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "10s"),
    ("__interval", "5s"),
    ("__interval_ms", "5000"),
    ("__range", "1m"),
    ("__range_s", "60"),
    ("__range_ms", "60000"),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(&read("dashboards/runoff-overview.json"))
        .unwrap_or_else(|e| panic!("dashboards/runoff-overview.json is not valid JSON: {e}"))
}

/// The metric contract, docs/METRICS.md: the names runoff serves, and the names it reserves
/// for features not built yet.
struct Contract {
    exported: BTreeSet<String>,
    reserved: BTreeSet<String>,
}

const CONTRACT: &str = "docs/METRICS.md";

impl Contract {
    /// Every markdown table row whose first cell holds backticked `runoff_…` names; a row whose
    /// meaning says `*not yet exported*` reserves its names.
    fn read() -> Contract {
        let text = read(CONTRACT);
        let (mut exported, mut reserved) = (BTreeSet::new(), BTreeSet::new());
        for line in text.lines() {
            let Some(first) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
                continue;
            };
            let names = first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| n.starts_with("runoff_"));
            let into = if line.contains("*not yet exported*") {
                &mut reserved
            } else {
                &mut exported
            };
            into.extend(names.map(str::to_string));
        }
        assert!(
            exported.contains("runoff_requests_total"),
            "{CONTRACT}: no metric table found"
        );
        Contract { exported, reserved }
    }

    /// Whether the contract names `series` (a histogram's series by its family).
    fn names(&self, series: &str) -> bool {
        let name = family(series);
        self.exported.contains(name) || self.reserved.contains(name)
    }

    fn is_reserved(&self, series: &str) -> bool {
        self.reserved.contains(family(series))
    }
}

// ---------------------------------------------------------------- reading the dashboard

/// Every panel, rows' nested panels included.
fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

fn is_layout(panel: &Value) -> bool {
    matches!(panel["type"].as_str(), Some("row" | "text"))
}

/// A query the dashboard runs: where it is, and its PromQL.
struct Query {
    /// Panel title or annotation name: what `ALLOWLIST` holds.
    owner: String,
    /// For messages: `panel 12 "title" target B`.
    place: String,
    expr: String,
}

fn queries(dash: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in all_panels(dash).into_iter().filter(|p| !is_layout(p)) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                owner: title.clone(),
                place: format!(
                    "panel {} {title:?} target {}",
                    p["id"],
                    t["refId"].as_str().unwrap_or("?")
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            let name = a["name"].as_str().unwrap_or_default().to_string();
            out.push(Query {
                place: format!("annotation {name:?}"),
                owner: name,
                expr: expr.to_string(),
            });
        }
    }
    out
}

fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_string(),
    }
}

/// The variables `text` references: `$name` or `${name}` (or `${name:format}`).
fn referenced_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            let name = braced[..end].split(':').next().unwrap_or_default();
            (name.to_string(), &braced[end..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push(name);
        rest = after;
    }
    out
}

/// `text` with every variable replaced by its value in `values`.
fn substitute(text: &str, values: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            (
                braced[..end].split(':').next().unwrap_or_default(),
                &braced[end + 1..],
            )
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push_str(
            values
                .get(name)
                .ok_or(format!("unknown variable ${name}"))?,
        );
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Metric names (`runoff_…`) in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("runoff_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// A histogram's series name without its `_bucket`/`_sum`/`_count` suffix.
fn family(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base;
        }
    }
    name
}

fn allowlisted(owner: &str) -> bool {
    ALLOWLIST.contains(&owner)
}

// ---------------------------------------------------------------- structure (no Prometheus)

#[test]
fn dashboard_is_well_formed() {
    let dash = dashboard();
    let mut problems = Vec::new();

    assert!(
        dash["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion {} is older than Grafana 9",
        dash["schemaVersion"]
    );
    assert!(dash["uid"].as_str().is_some_and(|u| !u.is_empty()));

    // Variables: a datasource variable for Prometheus, query variables on it.
    let vars = variables(&dash);
    let names: BTreeSet<String> = vars
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let ds = vars
        .iter()
        .find(|v| v["name"] == "datasource")
        .expect("a `datasource` template variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for want in ["job", "instance", "route", "baseline", "candidate"] {
        assert!(names.contains(want), "no `{want}` template variable");
    }
    let builtins: BTreeSet<&str> = BUILTINS.iter().map(|(n, _)| *n).collect();
    let known = |name: &str| names.contains(name) || builtins.contains(name);
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap();
        if v["datasource"]["uid"] != DATASOURCE_UID || v["datasource"]["type"] != "prometheus" {
            problems.push(format!("variable {name}: datasource {}", v["datasource"]));
        }
        for r in referenced_variables(&variable_query(v)) {
            if !known(&r) || r == name {
                problems.push(format!("variable {name}: references unknown ${r}"));
            }
        }
    }

    // Panels: unique ids and titles (the allowlist names titles), a datasource and PromQL
    // targets on every non-layout panel.
    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in all_panels(&dash) {
        let title = p["title"].as_str().unwrap_or_default();
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {title:?} has no id"));
        if !ids.insert(id) {
            problems.push(format!("panel id {id} is used twice (again by {title:?})"));
        }
        if is_layout(p) {
            continue;
        }
        if !titles.insert(title) {
            problems.push(format!("panel title {title:?} is used twice"));
        }
        if p["datasource"]["uid"] != DATASOURCE_UID || p["datasource"]["type"] != "prometheus" {
            problems.push(format!("panel {title:?}: datasource {}", p["datasource"]));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if !targets
            .iter()
            .any(|t| t["expr"].as_str().is_some_and(|e| !e.trim().is_empty()))
        {
            problems.push(format!("panel {title:?}: no target with an expr"));
        }
        let mut refs = BTreeSet::new();
        for t in &targets {
            if t["datasource"]["uid"] != DATASOURCE_UID {
                problems.push(format!(
                    "panel {title:?} target {}: datasource {}",
                    t["refId"], t["datasource"]
                ));
            }
            if !refs.insert(t["refId"].as_str().unwrap_or_default().to_string()) {
                problems.push(format!("panel {title:?}: refId {} twice", t["refId"]));
            }
        }
    }
    // Annotations from Prometheus use the same datasource variable.
    for a in dash["annotations"]["list"].as_array().unwrap() {
        if a["builtIn"] == 1 {
            continue;
        }
        if a["datasource"]["uid"] != DATASOURCE_UID {
            problems.push(format!(
                "annotation {}: datasource {}",
                a["name"], a["datasource"]
            ));
        }
    }
    // No hard-coded datasource uid anywhere (only the variable, and Grafana's own annotations).
    let mut uids = Vec::new();
    collect_datasource_uids(&dash, &mut uids);
    for uid in uids {
        if uid != DATASOURCE_UID && uid != "-- Grafana --" {
            problems.push(format!("hard-coded datasource uid {uid:?}"));
        }
    }

    // Every variable an expr uses exists; every metric is in the contract.
    let contract = Contract::read();
    let mut all_exprs: Vec<(String, String)> = queries(&dash)
        .into_iter()
        .map(|q| (q.place, q.expr))
        .collect();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        all_exprs.push((format!("variable {}", v["name"]), variable_query(v)));
    }
    for (place, expr) in &all_exprs {
        for r in referenced_variables(expr) {
            if !known(&r) {
                problems.push(format!("{place}: ${r} is neither a template variable nor a Grafana built-in this test knows"));
            }
        }
        let names = metric_names(expr);
        if names.is_empty() && !place.starts_with("variable") {
            problems.push(format!("{place}: no runoff_ metric in {expr:?}"));
        }
        for name in names {
            if !contract.names(&name) {
                problems.push(format!(
                    "{place}: {name} is not in the metric contract ({CONTRACT})"
                ));
            }
        }
    }

    // The allowlist names real panels or annotations, exactly those that use a reserved name.
    let mut owners: BTreeSet<String> = BTreeSet::new();
    let mut owners_of_reserved: BTreeSet<String> = BTreeSet::new();
    for q in queries(&dash) {
        for name in metric_names(&q.expr) {
            if contract.is_reserved(&name) {
                owners_of_reserved.insert(q.owner.clone());
                if !allowlisted(&q.owner) {
                    problems.push(format!(
                        "{}: {name} is not yet exported ({CONTRACT}): put {:?} on the ALLOWLIST",
                        q.place, q.owner
                    ));
                }
            }
        }
        owners.insert(q.owner);
    }
    for entry in ALLOWLIST {
        if !owners.contains(*entry) {
            problems.push(format!(
                "ALLOWLIST entry {entry:?} names no panel or annotation"
            ));
        } else if !owners_of_reserved.contains(*entry) {
            problems.push(format!(
                "ALLOWLIST entry {entry:?} uses no metric that {CONTRACT} marks not yet \
                 exported: remove it, and the panel is held to real data"
            ));
        }
    }

    // Layout: inside 24 columns, no two panels on the same cells.
    let mut cells: HashMap<(u64, u64), String> = HashMap::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        let title = p["title"].as_str().unwrap_or_default().to_string();
        if x + w > 24 || w == 0 || h == 0 {
            problems.push(format!(
                "panel {title:?}: gridPos {g} is outside the 24 columns"
            ));
        }
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.clone()) {
                    problems.push(format!("panels {other:?} and {title:?} overlap"));
                }
            }
        }
    }

    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    assert!(
        problems.is_empty(),
        "dashboard problems:\n{}",
        problems.join("\n")
    );
}

fn collect_datasource_uids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "datasource" {
                    if let Some(uid) = child["uid"].as_str() {
                        out.push(uid.to_string());
                    } else if let Some(s) = child.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_datasource_uids(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_datasource_uids(i, out)),
        _ => {}
    }
}

// ---------------------------------------------------------------- tools

/// NAME on the PATH or in `/usr/bin`; a failure naming the install command when missing.
fn tool(name: &str) -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    candidates.push(Path::new("/usr/bin").join(name));
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return found;
    }
    panic!(
        "`{name}` is not installed: the dashboard tests need a real Prometheus and promtool. \
         Install them with `{INSTALL_ALL}` (it installs everything the tests need and runs \
         them), or Debian's prometheus package alone with \
         `apt-get install -y --no-install-recommends prometheus`"
    );
}

/// Run `promtool ARGS` with `stdin`; (success, everything it printed).
fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

// ---------------------------------------------------------------- deploy files

#[test]
fn deploy_files_are_valid() {
    // Prometheus's scrape config.
    let path = repo("deploy/prometheus.yml");
    let (ok, printed) = promtool(&["check", "config", path.to_str().unwrap()], "");
    assert!(
        ok,
        "promtool check config deploy/prometheus.yml:\n{printed}"
    );
    let prom: serde_yaml::Value = serde_yaml::from_str(&read("deploy/prometheus.yml")).unwrap();
    let job = &prom["scrape_configs"][0];
    assert_eq!(job["job_name"].as_str(), Some("runoff"));
    assert_eq!(
        job["static_configs"][0]["targets"][0].as_str(),
        Some("runoff:9100")
    );

    // Grafana provisioning: the datasource is compose's Prometheus, the dashboards folder is
    // where compose mounts dashboards/.
    let ds: serde_yaml::Value =
        serde_yaml::from_str(&read("dashboards/provisioning/datasources/prometheus.yml")).unwrap();
    let d = &ds["datasources"][0];
    assert_eq!(d["type"].as_str(), Some("prometheus"));
    assert_eq!(d["url"].as_str(), Some("http://prometheus:9090"));
    let provider: serde_yaml::Value =
        serde_yaml::from_str(&read("dashboards/provisioning/dashboards/runoff.yml")).unwrap();
    let p = &provider["providers"][0];
    assert_eq!(p["type"].as_str(), Some("file"));
    let dash_dir = p["options"]["path"].as_str().unwrap();

    let compose: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/docker-compose.yml")).unwrap();
    let services = &compose["services"];
    for s in ["runoff", "prometheus", "grafana"] {
        assert!(services[s].is_mapping(), "compose has no `{s}` service");
    }
    let grafana_mounts: Vec<&str> = services["grafana"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        grafana_mounts.contains(&format!("../dashboards:{dash_dir}:ro").as_str()),
        "compose must mount ../dashboards at the provider's path {dash_dir}: {grafana_mounts:?}"
    );
    assert!(grafana_mounts.contains(&"../dashboards/provisioning:/etc/grafana/provisioning:ro"));
    assert_eq!(
        services["runoff"]["build"]["dockerfile"].as_str(),
        Some("deploy/Dockerfile")
    );
    assert!(repo("deploy/Dockerfile").is_file());

    // runoff's compose config is valid, apart from compose's DNS names that only resolve there.
    let config = read("deploy/runoff.yaml")
        .replace("node:3000", "127.0.0.1:3000")
        .replace("go:3001", "127.0.0.1:3001");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("runoff.yaml");
    std::fs::write(&file, config).unwrap();
    let out = Command::new(harness::bin())
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "runoff check deploy/runoff.yaml:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- a real Prometheus

/// A Prometheus process on 127.0.0.1 with its own config and storage, killed on drop.
struct Prometheus {
    child: Child,
    base: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One sample of a query result.
#[derive(Debug)]
struct Sample {
    labels: serde_json::Map<String, Value>,
    value: f64,
}

impl Sample {
    fn has_data(&self) -> bool {
        self.value.is_finite() && self.value != 0.0
    }
}

impl Prometheus {
    /// Start Prometheus scraping the targets in `targets.json` (see `set_target`) every second
    /// as job `runoff`; retry on a port taken in between.
    async fn start() -> Prometheus {
        let binary = tool("prometheus");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let config = format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: runoff\n    file_sd_configs:\n      - files: [\"{}\"]\n        refresh_interval: 1s\n",
                dir.path().join("targets.json").display()
            );
            std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
            std::fs::write(dir.path().join("targets.json"), "[]").unwrap();
            let port = free_port();
            let log = std::fs::File::create(dir.path().join("log")).unwrap();
            let child = Command::new(&binary)
                .arg(format!(
                    "--config.file={}",
                    dir.path().join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--storage.tsdb.retention.time=1h")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let mut prom = Prometheus {
                child,
                base: format!("http://127.0.0.1:{port}"),
                dir,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap(),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if prom.child.try_wait().unwrap().is_some() {
                    last_log = prom.log();
                    break;
                }
                if let Ok(r) = prom
                    .client
                    .get(format!("{}/-/ready", prom.base))
                    .send()
                    .await
                {
                    if r.status() == 200 {
                        return prom;
                    }
                }
                if Instant::now() > deadline {
                    panic!("prometheus not ready within 30 s:\n{}", prom.log());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            if !last_log.contains("address already in use") {
                break;
            }
        }
        panic!("prometheus did not start:\n{last_log}");
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Scrape `admin` (labelled `instance="runoff-test"`, whatever its port) from now on.
    fn set_target(&self, admin: u16) {
        let tmp = self.dir.path().join("targets.json.tmp");
        std::fs::write(
            &tmp,
            format!(
                "[{{\"targets\": [\"127.0.0.1:{admin}\"], \"labels\": {{\"instance\": \"{INSTANCE}\"}}}}]"
            ),
        )
        .unwrap();
        std::fs::rename(&tmp, self.dir.path().join("targets.json")).unwrap();
    }

    async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"].clone())
    }

    /// An instant query at `time` (unix seconds).
    async fn query(&self, expr: &str, time: f64) -> Result<Vec<Sample>, String> {
        let data = self
            .api(
                "/api/v1/query",
                &[("query", expr.to_string()), ("time", format!("{time:.3}"))],
            )
            .await?;
        let value = |v: &Value| -> f64 {
            match v[1].as_str().unwrap_or("NaN") {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                s => s.parse().unwrap_or(f64::NAN),
            }
        };
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| Sample {
                    labels: s["metric"].as_object().cloned().unwrap_or_default(),
                    value: value(&s["value"]),
                })
                .collect()),
            Some("scalar") => Ok(vec![Sample {
                labels: Default::default(),
                value: value(&data["result"]),
            }]),
            other => Err(format!("unexpected result type {other:?}")),
        }
    }

    /// Poll `expr` until `ok` holds for its result, or fail after `within`.
    async fn wait_for(
        &self,
        what: &str,
        expr: &str,
        within: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) {
        let deadline = Instant::now() + within;
        loop {
            let got = self.query(expr, now()).await;
            if let Ok(samples) = &got {
                if ok(samples) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: `{expr}` gave {got:?} after {within:?}\nprometheus log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Values of `label` over the series matching `selector` (Grafana's `label_values`).
    async fn label_values(&self, selector: &str, label: &str, time: f64) -> Vec<String> {
        let data = self
            .api(
                "/api/v1/series",
                &[
                    ("match[]", selector.to_string()),
                    ("start", format!("{:.3}", time - 300.0)),
                    ("end", format!("{time:.3}")),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("series {selector}: {e}"));
        let values: BTreeSet<String> = data
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s[label].as_str().map(str::to_string))
            .collect();
        values.into_iter().collect()
    }
}

const JOB: &str = "runoff";
const INSTANCE: &str = "runoff-test";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------- the candidate backend

/// The "go" backend: a raw HTTP/1.1 server that answers in ~1 ms, except `…/boom` (500),
/// `…/reset` (the connection is reset before any answer) and `…/slow` (300 ms), with the node
/// fixture's body and content type. It closes every 25th keep-alive connection after
/// answering, so that runoff keeps opening new ones.
async fn go_backend() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_go(stream));
        }
    });
    (addr, task)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    match tokio::time::timeout(Duration::from_secs(30), stream.read(&mut tmp)).await {
        Ok(Ok(n)) if n > 0 => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
        _ => false,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn serve_go(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut answered = 0u32;
    loop {
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let mut end = head_end;
        if let Some(n) = header("content-length:").and_then(|v| v.parse::<usize>().ok()) {
            while buf.len() < head_end + n {
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            }
            end = head_end + n;
        } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            end = loop {
                if let Some(i) = find(&buf[head_end..], b"0\r\n\r\n") {
                    break head_end + i + 5;
                }
                if !read_more(&mut stream, &mut buf).await {
                    return;
                }
            };
        }
        buf.drain(..end);

        if path.contains("/reset") {
            // Linger 0: close with RST. (Deprecated in tokio because a non-zero linger blocks
            // on drop; zero does not.)
            #[allow(deprecated)]
            let _ = stream.set_linger(Some(Duration::ZERO));
            return;
        }
        let delay = if path.contains("/slow") { 300 } else { 1 };
        tokio::time::sleep(Duration::from_millis(delay)).await;
        answered += 1;
        let close = answered.is_multiple_of(25);
        let status = if path.contains("/boom") {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let body = "hello\n";
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------- load

/// The runoff config of the proof: `api` exercises everything the dashboard shows for one
/// route (a weighted split, a mirror with timeouts and resets, 5xx, upstream errors, bodies);
/// the other routes add a pure mirror, a mirror to a refused shadow and a refused primary.
fn config(
    listen: u16,
    admin: u16,
    node: SocketAddr,
    go: SocketAddr,
    refused: u16,
    weights: (u32, u32),
) -> String {
    // The fixtures run in this test process: sample it as both backends' process.
    let me = std::process::id();
    format!(
        "listen: 127.0.0.1:{listen}
admin: {{ listen: 127.0.0.1:{admin} }}
backends:
  node: {{ address: \"{node}\", process: {{ pid: {me} }} }}
  go: {{ address: \"{go}\", process: {{ pid: {me} }} }}
  legacy: {{ address: \"127.0.0.1:{refused}\" }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    split: {{ node: {wn}, go: {wg} }}
    mirror: {{ to: go, percent: 100, timeout: 150ms }}
    compare: {{ status: true }}
  - name: orders
    match: {{ path_prefix: /orders }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100 }}
  - name: reports
    match: {{ path_prefix: /reports }}
    split: {{ node: 100 }}
    mirror: {{ to: legacy, percent: 100 }}
  - name: down
    match: {{ path_prefix: /down }}
    split: {{ legacy: 100 }}
",
        wn = weights.0,
        wg = weights.1,
    )
}

/// The i-th request of a load task: mostly plain GETs on the split route, with errors,
/// slow and reset requests, bodies, the other routes and unrouted paths mixed in.
fn request(client: &reqwest::Client, base: &str, i: usize) -> reqwest::RequestBuilder {
    let k = i % 100;
    let path = match k {
        _ if k.is_multiple_of(20) => "/api/boom".to_string(),
        7 | 57 => "/api/reset".to_string(),
        13 => "/api/slow".to_string(),
        _ if k % 10 == 3 => {
            return client
                .post(format!("{base}/api/items"))
                .body(vec![b'x'; 512]);
        }
        _ if k % 25 == 4 => format!("/nowhere/{i}"),
        _ if k % 50 == 9 => "/down".to_string(),
        _ if k % 10 == 5 => format!("/orders/{i}"),
        _ if k % 50 == 11 => "/reports".to_string(),
        _ => format!("/api/users/{i}"),
    };
    client.get(format!("{base}{path}"))
}

/// Send requests from `tasks` tasks, each paced at `pace`, until `duration` has passed or each
/// task has sent `max_per_task`. Returns how many got an answer.
async fn drive(
    base: &str,
    tasks: usize,
    max_per_task: usize,
    pace: Duration,
    duration: Duration,
) -> u64 {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let until = Instant::now() + duration;
    let answered = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (client, base, answered) = (client.clone(), base.to_string(), answered.clone());
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            for n in 0..max_per_task {
                if Instant::now() >= until {
                    break;
                }
                tick.tick().await;
                let i = n * tasks + t;
                if let Ok(resp) = request(&client, &base, i).send().await {
                    let _ = resp.bytes().await;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    answered.load(Ordering::Relaxed)
}

// ---------------------------------------------------------------- the proof

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let started = Instant::now();
    let dash = dashboard();
    let prom = Prometheus::start().await;

    // The same body and content type as go's: compared pairs match, except on `/boom`.
    let node = fixture("node")
        .delay(Duration::from_millis(4))
        .body("hello\n")
        .header("content-type", "text/plain")
        .start()
        .await;
    let (go, _go_task) = go_backend().await;
    let refused = refused_port();

    // runoff with the split at 90/10, until Prometheus has its weights; then a file reload
    // to 70/30, so that the reload and weight-change annotations have something to mark.
    let runoff =
        Runoff::start(|p| config(p.listen, p.admin, node.addr, go, refused.port(), (90, 10))).await;
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
        config(listen, admin, node.addr, go, refused.port(), (70, 30)),
    )
    .unwrap();
    let reload = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{admin}/api/reload"))
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
    let answered = drive(
        &runoff.url(""),
        4,
        3000,
        Duration::from_millis(10),
        Duration::from_secs(12),
    )
    .await;
    assert!(answered > 500, "only {answered} requests answered");
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
