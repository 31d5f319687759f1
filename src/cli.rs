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
    /// Run the proxy on the embedded example config in front of two built-in demo backends
    /// (on 127.0.0.1:3000 and :3001). Nothing else to install or start.
    Demo,
}
