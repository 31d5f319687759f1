//! Command-line interface (clap derive): the subcommands, their flags, and the closed choices
//! as `ValueEnum`s, so clap rejects a bad value with the list of good ones.
//!
//! Lives here: the commands and their flags. Must not: hold logic or import runoff modules
//! (`commands` turns these into calls).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    Run(RunArgs),
    /// Validate a config file: exit 0, or print every problem and exit 1.
    Check(CheckArgs),
    /// See what runoff tells you, in one command: two built-in demo backends (a baseline and a
    /// candidate that differs on purpose), the proxy splitting one route and mirroring another,
    /// a bounded synthetic load with a live table, then the report. Nothing to install.
    Demo(DemoArgs),
    /// Print the baseline-vs-candidate comparison of a running runoff (from its admin API).
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML config file.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
    /// Reload whenever the config file changes (same as `server.watch: true`).
    #[arg(long)]
    pub watch: bool,
    /// Take the listening sockets over from a running runoff (zero-downtime upgrade):
    /// start this, then send the old process SIGQUIT.
    #[arg(long)]
    pub upgrade: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The YAML config file.
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to send load.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Requests per second of the synthetic load.
    #[arg(long, default_value_t = 200)]
    pub rps: u32,
    /// The proxy's listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The admin endpoint (/metrics, /api/summary): point Prometheus or `runoff report` here
    /// [default: the config's default admin address, 127.0.0.1:9100].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Keep serving after the report (Ctrl-C to stop), e.g. to browse the dashboards.
    #[arg(long)]
    pub keep_running: bool,
    /// Which backends to run.
    #[arg(long, value_enum, default_value_t = DemoBackends::Builtin)]
    pub backends: DemoBackends,
}

/// `runoff demo --backends`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoBackends {
    /// Built-in demo backends, in-process: nothing to install.
    Builtin,
    /// The real Express and Go apps in examples/ (needs node, go and `bash examples/setup.sh`;
    /// run from the repository root).
    Examples,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The admin endpoint of the running runoff, e.g. http://127.0.0.1:9100
    /// [default: the config's default admin address].
    #[arg(long)]
    pub admin: Option<String>,
    /// Only this route.
    #[arg(long)]
    pub route: Option<String>,
    /// The sliding window to report on.
    #[arg(long, default_value = "60s")]
    pub window: String,
    /// The output format.
    #[arg(long, value_enum, ignore_case = true, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Bearer token, if the admin API needs one (default: $RUNOFF_ADMIN_TOKEN).
    #[arg(long, env = "RUNOFF_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Exit 1 when a reported route's overall verdict is this bad: `fail`, or `inconclusive`
    /// (then anything but pass); for CI pipelines. Routes without `analysis:` are not judged.
    #[arg(long, value_enum)]
    pub fail_on: Option<FailOn>,
}

/// `runoff report --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Exit 1 when a verdict is fail.
    Fail,
    /// Exit 1 when a verdict is fail or inconclusive.
    Inconclusive,
}

/// `runoff report --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// Plain text with aligned columns, for a terminal.
    Table,
    /// A GitHub Markdown table.
    Markdown,
    /// The summary (with its derived comparison) as JSON.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("runoff").chain(args.iter().copied()))
    }

    fn format_of(args: &[&str]) -> Option<ReportFormat> {
        match parse(args).ok()?.command {
            Command::Report(r) => Some(r.format),
            _ => None,
        }
    }

    #[test]
    fn report_formats() {
        assert_eq!(format_of(&["report"]), Some(ReportFormat::Table));
        assert_eq!(
            format_of(&["report", "--format", "table"]),
            Some(ReportFormat::Table)
        );
        assert_eq!(
            format_of(&["report", "--format", "markdown"]),
            Some(ReportFormat::Markdown)
        );
        assert_eq!(
            format_of(&["report", "--format", "json"]),
            Some(ReportFormat::Json)
        );
        assert_eq!(
            format_of(&["report", "--format", "JSON"]),
            Some(ReportFormat::Json)
        );
        let err = parse(&["report", "--format", "html"]).expect_err("unknown format");
        let text = err.to_string();
        assert!(text.contains("invalid value 'html'"), "{text}");
        assert!(
            text.contains("[possible values: table, markdown, json]"),
            "{text}"
        );
    }

    #[test]
    fn demo_backends() {
        let backends = |args: &[&str]| match parse(args).ok()?.command {
            Command::Demo(d) => Some(d.backends),
            _ => None,
        };
        assert_eq!(backends(&["demo"]), Some(DemoBackends::Builtin));
        assert_eq!(
            backends(&["demo", "--backends", "examples"]),
            Some(DemoBackends::Examples)
        );
        let err = parse(&["demo", "--backends", "python"]).expect_err("unknown backends");
        assert!(
            err.to_string()
                .contains("[possible values: builtin, examples]"),
            "{err}"
        );
    }
}
