//! Command-line interface (clap derive).
//!
//! Lives here: the commands and their flags. Must not: hold logic or import runoff modules.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "runoff",
    version,
    about = "A transparent benchmarking reverse proxy: split or mirror live traffic between two backends and measure both"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy in the foreground. SIGTERM or Ctrl-C drains in-flight requests, then exits
    /// 0; SIGHUP reloads the config file; SIGQUIT hands the listeners to a process started with
    /// `--upgrade`.
    Run {
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Reload whenever the config file changes (same as `server.watch: true`).
        #[arg(long)]
        watch: bool,
        /// Take the listening sockets over from a running runoff (zero-downtime upgrade):
        /// start this, then send the old process SIGQUIT.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: exit 0, or print every problem and exit 1.
    Check {
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// See what runoff tells you, in one command: two built-in demo backends (a baseline and a
    /// candidate that differs on purpose), the proxy splitting one route and mirroring another,
    /// a bounded synthetic load with a live table, then the report. Nothing to install.
    Demo {
        /// How long to send load.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Requests per second of the synthetic load.
        #[arg(long, default_value_t = 200)]
        rps: u32,
        /// The proxy's listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The admin endpoint (/metrics, /api/summary): point Prometheus or `runoff report` here.
        #[arg(long, default_value = "127.0.0.1:9100")]
        admin_listen: std::net::SocketAddr,
        /// Keep serving after the report (Ctrl-C to stop), e.g. to browse the dashboards.
        #[arg(long)]
        keep_running: bool,
        /// `builtin` (no install needed) or `examples`: the real Express and Go apps in
        /// examples/ (needs node, go and `bash examples/setup.sh`; run from the repository root).
        #[arg(long, default_value = "builtin")]
        backends: String,
    },
    /// Print the baseline-vs-candidate comparison of a running runoff (from its admin API).
    Report {
        /// The admin endpoint of the running runoff.
        #[arg(long, default_value = "http://127.0.0.1:9100")]
        admin: String,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// The sliding window to report on.
        #[arg(long, default_value = "60s")]
        window: String,
        /// table, markdown or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Bearer token, if the admin API needs one (default: $RUNOFF_ADMIN_TOKEN).
        #[arg(long, env = "RUNOFF_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}
