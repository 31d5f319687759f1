//! The demo's embedded configs: the built-in trial (a split route and a mirrored, compared
//! route) and the example apps' trial, and where the built-in backends listen.
//!
//! Must not: name any address but loopback ones the demo picked.

use std::net::SocketAddr;

use super::backends::DemoBackend;
use crate::config::Config;

/// The embedded demo config: `users` is split 80/20 with sticky users (a local caller may force
/// a backend with `x-runoff-backend`); `orders` is served by the baseline and mirrored to the
/// candidate, whose answers are compared; `chat` carries WebSockets, mirrored too.
pub(super) fn demo_config(
    listen: SocketAddr,
    admin: SocketAddr,
    node: SocketAddr,
    go: SocketAddr,
) -> String {
    let head = head(
        listen,
        admin,
        &format!(r#"{{ address: "{node}" }}"#),
        &format!(r#"{{ address: "{go}" }}"#),
    );
    format!(
        r#"{head}routes:
  - name: users
    match: {{ path_prefix: /api/users }}
    split: {{ node: 80, go: 20 }}
    sticky: {{ header: x-user-id }}
    force: {{ from: [127.0.0.0/8, "::1/128"] }}
    analysis: {{}}
  - name: orders
    match: {{ path_prefix: /api/orders }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, methods: [GET, POST] }}
    compare:
      body: {{ json: {{ ignore_paths: [/generated_at] }} }}
    analysis: {{}}
  - name: chat
    match: {{ path_prefix: /ws }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, websocket: true }}
"#
    )
}

/// The demo backends placed at the addresses a config gives `node` and `go` (used by the
/// quick start's `config.example.yaml` too).
pub(super) fn backends_for(config: &Config) -> Vec<(SocketAddr, DemoBackend)> {
    let find = |name: &str| {
        config
            .live
            .backends
            .iter()
            .find(|b| b.name == name)
            .and_then(|b| b.addrs().first().copied())
    };
    let mut out = Vec::new();
    if let Some(a) = find("node") {
        out.push((a, DemoBackend::baseline("node")));
    }
    if let Some(a) = find("go") {
        out.push((a, DemoBackend::candidate("go")));
    }
    out
}

/// The demo config for the example apps: the seed's experiment, Node mirrored to Go on /api,
/// answers compared, and WebSockets on /ws mirrored (ws against gorilla/websocket), both
/// processes sampled.
pub(super) fn examples_config(
    listen: SocketAddr,
    admin: SocketAddr,
    node: (SocketAddr, u32),
    go: (SocketAddr, u32),
) -> String {
    let backend = |(addr, pid): (SocketAddr, u32)| {
        format!(r#"{{ address: "{addr}", process: {{ pid: {pid} }} }}"#)
    };
    let head = head(listen, admin, &backend(node), &backend(go));
    format!(
        r#"{head}routes:
  - name: api
    match: {{ path_prefix: /api }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, methods: [GET, HEAD, POST] }}
    compare: {{}}
  - name: ws
    match: {{ path_prefix: /ws }}
    split: {{ node: 100 }}
    mirror: {{ to: go, percent: 100, websocket: true }}
"#
    )
}

/// What both demo configs start with: the listeners, and the backends `node` and `go` (each
/// given as a YAML flow mapping).
fn head(listen: SocketAddr, admin: SocketAddr, node: &str, go: &str) -> String {
    format!(
        "listen: {listen}\nserver: {{ threads: 2, drain_timeout: 2s }}\nadmin: {{ listen: {admin} }}\nbackends:\n  node: {node}\n  go: {go}\n"
    )
}
