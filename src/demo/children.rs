//! The example apps (`examples/node`, `examples/go`) as the demo's child processes: what they
//! need, starting them on free loopback ports, waiting for their health check, and killing
//! them when the demo ends.
//!
//! Must not: leave a child running after the demo returns, or start anything but the apps in
//! `examples/`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::free_ports;

/// The example apps the demo started, killed when the demo ends (or runoff drains).
pub(super) static CHILDREN: std::sync::Mutex<Vec<std::process::Child>> =
    std::sync::Mutex::new(Vec::new());

/// Kill the example apps the demo started, if any.
pub(super) fn kill_children() {
    let mut children = CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
    for mut c in children.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// What `--backends examples` needs and lacks, in words.
fn missing_for_examples() -> Vec<String> {
    let works = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut missing = Vec::new();
    if !works("node", "--version") {
        missing.push("node (Node.js)".to_string());
    }
    if !works("go", "version") {
        missing.push("go (Debian: golang-go)".to_string());
    }
    if !std::path::Path::new("examples/go/main.go").exists() {
        missing.push("examples/go (run from the repository root)".to_string());
    }
    if !std::path::Path::new("examples/node/node_modules/ws").exists() {
        missing.push("examples/node/node_modules (npm ci)".to_string());
    }
    if !std::path::Path::new("/usr/share/gocode/src/github.com/gorilla/websocket").exists() {
        missing.push("gorilla/websocket (Debian: golang-github-gorilla-websocket-dev)".to_string());
    }
    missing
}

/// Start the example apps on free ports; returns their addresses and pids (node, go).
pub(super) fn start_examples() -> Result<[(SocketAddr, u32); 2], String> {
    let missing = missing_for_examples();
    if !missing.is_empty() {
        return Err(format!(
            "--backends examples needs {}. Install with `bash examples/setup.sh` from the repository root, or use the built-in backends (the default).",
            missing.join(", ")
        ));
    }
    let dir = std::env::temp_dir().join(format!("runoff-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let go_bin = dir.join("runoff-example-go");
    let built = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(&go_bin)
        .arg(".")
        .current_dir("examples/go")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .status()
        .map_err(|e| format!("go build: {e}"))?;
    if !built.success() {
        return Err(format!("go build in examples/go failed: {built}"));
    }
    let node_cmd = {
        let mut c = std::process::Command::new("node");
        c.arg("examples/node/server.js");
        c
    };
    let mut out = Vec::new();
    let ports = free_ports().map_err(|e| e.to_string())?;
    for ((name, mut cmd), port) in [
        ("node", node_cmd),
        ("go", std::process::Command::new(&go_bin)),
    ]
    .into_iter()
    .zip(ports)
    {
        let child = cmd
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the {name} example: {e}"))?;
        let pid = child.id();
        CHILDREN
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if !wait_healthy(addr, Duration::from_secs(20)) {
            kill_children();
            return Err(format!(
                "the {name} example did not answer /healthz on {addr} within 20 s"
            ));
        }
        out.push((addr, pid));
    }
    <[(SocketAddr, u32); 2]>::try_from(out)
        .map_err(|_| "internal: expected two example apps".to_string())
}

/// Poll `GET /healthz` until it answers 200 or the deadline passes.
fn wait_healthy(addr: SocketAddr, within: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /healthz HTTP/1.0\r\nhost: demo\r\n\r\n");
            let mut head = [0u8; 12];
            if s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
                && &head[9..12] == b"200"
            {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
