//! A real Prometheus process on 127.0.0.1 and its query API; promtool.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::harness::{free_port, INSTALL_ALL};

/// NAME on the PATH or in `/usr/bin`; a failure naming the install command when missing.
pub fn tool(name: &str) -> PathBuf {
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
pub fn promtool(args: &[&str], stdin: &str) -> (bool, String) {
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

/// A Prometheus process on 127.0.0.1 with its own config and storage, killed on drop.
pub struct Prometheus {
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
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn has_data(&self) -> bool {
        self.value.is_finite() && self.value != 0.0
    }
}

impl Prometheus {
    /// Start Prometheus scraping the targets in `targets.json` (see `set_target`) every second
    /// as job `runoff`; retry on a port taken in between.
    pub async fn start() -> Prometheus {
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

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Scrape `admin` (labelled `instance="runoff-test"`, whatever its port) from now on.
    pub fn set_target(&self, admin: u16) {
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

    pub async fn api(&self, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
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
    pub async fn query(&self, expr: &str, time: f64) -> Result<Vec<Sample>, String> {
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
    pub async fn wait_for(
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
    pub async fn label_values(&self, selector: &str, label: &str, time: f64) -> Vec<String> {
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

pub const JOB: &str = "runoff";
pub const INSTANCE: &str = "runoff-test";

pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
