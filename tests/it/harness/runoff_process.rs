//! The real `runoff` binary, one process per test, on ports the test picks.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::ports::free_port_pair;

pub struct Ports {
    pub listen: u16,
    pub admin: u16,
    /// A per-process temporary directory, mode 0700 (for upgrade sockets, logs, ...).
    pub dir: PathBuf,
}

/// A running `runoff run` process, killed on drop.
pub struct Runoff {
    pub child: Option<Child>,
    pub ports: Ports,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_runoff")
}

impl Runoff {
    /// Start runoff on a config made from fresh ports; retry on address-in-use.
    pub async fn start(make_config: impl Fn(&Ports) -> String) -> Runoff {
        Self::start_with(make_config, &[], &[]).await
    }

    /// Start with extra `run` flags and environment variables.
    pub async fn start_with(
        make_config: impl Fn(&Ports) -> String,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Runoff {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            // runoff's own only: an upgrade socket may live here.
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )
            .unwrap();
            let (listen, admin) = free_port_pair();
            let ports = Ports {
                listen,
                admin,
                dir: dir.path().to_path_buf(),
            };
            let config_path = dir.path().join("runoff.yaml");
            std::fs::write(&config_path, make_config(&ports)).unwrap();
            let child = spawn_run(&config_path, args, env, dir.path());
            let mut r = Runoff {
                child: Some(child),
                ports,
                dir,
                config_path,
            };
            match r.wait_ready(Duration::from_secs(20)).await {
                Ok(()) => return r,
                Err(stderr) if stderr.contains("cannot listen") => continue,
                Err(stderr) => panic!("runoff did not become ready:\n{stderr}"),
            }
        }
        panic!("runoff could not find free ports in 5 attempts");
    }

    /// A second process on the same config and ports, started with `run --upgrade` (it waits
    /// for this one's listeners); not waited for.
    pub fn spawn_upgrade(&self) -> Runoff {
        let dir = tempfile::tempdir().unwrap();
        let child = spawn_run(&self.config_path, &["--upgrade"], &[], dir.path());
        Runoff {
            child: Some(child),
            ports: Ports {
                listen: self.ports.listen,
                admin: self.ports.admin,
                dir: self.ports.dir.clone(),
            },
            dir,
            config_path: self.config_path.clone(),
        }
    }

    /// `GET` an admin API path and parse its JSON answer.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        json_of(self.api(reqwest::Method::GET, path)).await
    }

    /// `GET` an admin API path with the admin token.
    pub async fn get_json_with_token(&self, path: &str, token: &str) -> serde_json::Value {
        json_of(self.api(reqwest::Method::GET, path).bearer_auth(token)).await
    }

    /// `PUT` a JSON body on an admin API path.
    pub async fn put_json(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.api(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// POST/PUT/GET on the admin API; writes say `Content-Type: application/json`, as the
    /// admin API requires.
    pub fn api(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let write = method != reqwest::Method::GET && method != reqwest::Method::HEAD;
        let req = reqwest::Client::new().request(
            method,
            format!("http://127.0.0.1:{}{path}", self.ports.admin),
        );
        if write {
            req.header("content-type", "application/json")
        } else {
            req
        }
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        let url = format!("http://127.0.0.1:{}/readyz", self.ports.admin);
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("exited with {status}: {}", self.stderr()));
            }
            if let Ok(resp) = client
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("not ready in {within:?}: {}", self.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports.listen)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait for the process to exit, with a deadline.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "runoff did not exit within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn scrape(&self) -> Metrics {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.ports.admin))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        Metrics::parse(&text)
    }

    /// Scrape until `name{labels}` equals `want` (sum over matching series), or fail at 10 s.
    pub async fn expect_metric(&self, name: &str, labels: &[(&str, &str)], want: f64) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self.scrape().await;
            let got = m.sum(name, labels);
            if got == want {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "{name}{labels:?} = {got}, expected {want}\n{}",
                    m.dump(name)
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Send `request` and parse its answer as JSON.
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request.send().await.unwrap().json().await.unwrap()
}

fn spawn_run(
    config: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    logs: &std::path::Path,
) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"])
        .arg(config)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(std::fs::File::create(logs.join("stdout")).unwrap())
        .stderr(std::fs::File::create(logs.join("stderr")).unwrap())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

impl Drop for Runoff {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.tell_why();
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Runoff {
    /// A failing test's evidence, printed (the test harness shows it with the failure): this
    /// process's log and the counters that say where requests went when they did not arrive.
    /// Never panics: it runs in `drop` while the test is already panicking.
    fn tell_why(&self) {
        let log = self.stderr();
        // From a character boundary: a log line may hold non-ASCII text.
        let from = (log.len().saturating_sub(8192)..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        let pid = self.child.as_ref().map(Child::id);
        eprintln!(
            "--- runoff (pid {pid:?}) stderr, last 8 KiB ---\n{}",
            &log[from..]
        );
        if let Some(text) = admin_get(self.ports.admin, "/metrics") {
            eprintln!("--- runoff /metrics: requests, drops, refusals, errors (not 0) ---");
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.ends_with(" 0"))
                .filter(|l| {
                    ["dropped", "rejected", "refused", "error", "requests_total"]
                        .iter()
                        .any(|k| l.contains(k))
                })
                .for_each(|l| eprintln!("{l}"));
        }
    }
}

/// A plain blocking GET on the admin listener (usable where no runtime is, e.g. in `drop`);
/// `None` when it does not answer within a second.
fn admin_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// The config of a runoff in front of one backend `name` on one route `api`; `options` are
/// extra fields of the backend (e.g. `, read_timeout: 200ms`).
pub fn one_backend(
    p: &Ports,
    name: &str,
    address: impl std::fmt::Display,
    options: &str,
) -> String {
    one_backend_with(p, "", name, address, options)
}

/// `one_backend` with `server` fields (e.g. `keepalive_timeout: 2s`).
pub fn one_backend_with(
    p: &Ports,
    server: &str,
    name: &str,
    address: impl std::fmt::Display,
    options: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:{}\nserver: {{ {server} }}\nadmin: {{ listen: 127.0.0.1:{} }}\nbackends:\n  {name}: {{ address: \"{address}\"{options} }}\nroutes:\n  - name: api\n    split: {{ {name}: 1 }}\n",
        p.listen, p.admin
    )
}
