//! Programs some tests need besides cargo. A test that needs one runs, and fails naming the
//! command that installs it when it is missing: it never passes without having checked
//! anything. `bash scripts/test.sh` installs everything; CI runs it.

use std::path::Path;
use std::process::{Command, Stdio};

/// Installs everything every test needs, then runs the whole suite.
pub const INSTALL_ALL: &str = "bash scripts/test.sh";

/// Installs what the example backends need (Go, Node.js and the Express app's packages).
pub const INSTALL_EXAMPLES: &str = "bash examples/setup.sh";

/// Where Debian's golang-github-gorilla-websocket-dev puts the source the Go app builds with.
const GORILLA: &str = "/usr/share/gocode/src/github.com/gorilla/websocket";

fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Fails the calling test, naming what is missing and the command that installs it, unless
/// the example backends can run: `node`, `go` and examples/node/node_modules.
pub fn require_example_apps(what: &str) {
    let mut missing = Vec::new();
    if !runs("node", "--version") {
        missing.push("`node` (Node.js)");
    }
    if !runs("go", "version") {
        missing.push("`go` (the Go toolchain)");
    }
    let node_modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node/node_modules");
    if !node_modules.join("express").is_dir() || !node_modules.join("ws").is_dir() {
        missing.push("examples/node/node_modules (the Express app's packages, ws included)");
    }
    if !Path::new(GORILLA).is_dir() {
        missing
            .push("gorilla/websocket for the Go app (Debian: golang-github-gorilla-websocket-dev)");
    }
    assert!(
        missing.is_empty(),
        "{what} needs the example backends, and this machine lacks {}. Install them with \
         `{INSTALL_EXAMPLES}` (or `{INSTALL_ALL}`, which installs everything the tests need \
         and runs them).",
        missing.join(", ")
    );
}

/// Installs what the live page's browser test needs (Debian's Chromium, playwright-core).
pub const INSTALL_BROWSER: &str = "bash scripts/browser-deps.sh";

/// Fails the calling test, naming what is missing and the command that installs it, unless
/// the live page can be driven in a browser: `node`, `/usr/bin/chromium` (or `$CHROMIUM`) and
/// tests/browser/node_modules/playwright-core.
pub fn require_browser(what: &str) {
    let mut missing = Vec::new();
    if !runs("node", "--version") {
        missing.push("`node` (Node.js)");
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        missing.push("Chromium (Debian: chromium)");
    }
    let pw =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !pw.is_dir() {
        missing.push("tests/browser/node_modules (playwright-core)");
    }
    assert!(
        missing.is_empty(),
        "{what} needs a browser, and this machine lacks {}. Install them with \
         `{INSTALL_BROWSER}` (or `{INSTALL_ALL}`, which installs everything the tests need and \
         runs them).",
        missing.join(", ")
    );
}
