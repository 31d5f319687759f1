//! What each subcommand does, from parsed arguments to an exit code: the glue between `cli`
//! and the modules that do the work, and the one place that prints a command's outcome.
//!
//! Must not: hold logic of its own beyond choosing what to call and what to print.

use std::path::Path;
use std::process::ExitCode;

use crate::analysis::model::{Summary, Verdict};
use crate::cli::{CheckArgs, DemoArgs, DemoBackends, FailOn, ReportArgs, ReportFormat, RunArgs};
use crate::config::{defaults, Config};
use crate::demo::{self, Backends, DemoOptions};
use crate::error::ConfigError;
use crate::report::{self, fetch, Format};
use crate::server::{self, Extras, RunOptions};

/// `runoff check`: every problem with its path, or a one-line summary.
pub fn check(args: CheckArgs) -> ExitCode {
    match Config::load(&args.config) {
        Ok(c) => {
            println!(
                "{}: ok ({} backend(s), {} route(s))",
                args.config.display(),
                c.live.backends.len(),
                c.live.routes.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => invalid(&args.config, &e),
    }
}

/// `runoff run`: the proxy in the foreground until it is stopped and drained.
pub fn run(args: RunArgs) -> ExitCode {
    let config = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => return invalid(&args.config, &e),
    };
    let options = RunOptions {
        config_path: Some(args.config),
        upgrade: args.upgrade,
        watch: args.watch,
    };
    match server::run(config, options, Extras::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed("runoff", &e),
    }
}

/// `runoff demo`.
pub fn demo(args: DemoArgs) -> ExitCode {
    let opts = DemoOptions {
        backends: match args.backends {
            DemoBackends::Builtin => Backends::Builtin,
            DemoBackends::Examples => Backends::Examples,
        },
        duration: args.duration,
        rps: args.rps,
        keep_running: args.keep_running,
        listen: args.listen,
        admin: args.admin_listen.unwrap_or(defaults::ADMIN_LISTEN),
    };
    match demo::run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed("runoff demo", &e),
    }
}

/// `runoff report`: a running runoff's summary, rendered.
pub fn report(args: ReportArgs) -> ExitCode {
    let admin = args
        .admin
        .unwrap_or_else(|| format!("http://{}", defaults::ADMIN_LISTEN));
    let format = match args.format {
        ReportFormat::Table => Format::Table,
        ReportFormat::Markdown => Format::Markdown,
        ReportFormat::Json => Format::Json,
    };
    let rendered = fetch::summary(&admin, &args.window, args.token.as_deref()).and_then(|s| {
        let text = report::render(&s, args.route.as_deref(), format).map_err(|e| e.to_string())?;
        Ok((text, s))
    });
    match rendered {
        Ok((text, summary)) => {
            println!("{text}");
            match args
                .fail_on
                .map(|f| judged(&summary, args.route.as_deref(), f))
            {
                Some(Err(e)) => failed("runoff report", &e),
                Some(Ok(())) | None => ExitCode::SUCCESS,
            }
        }
        Err(e) => failed("runoff report", &e),
    }
}

/// `--fail-on`: every judged route's overall verdict is good enough, or why not.
fn judged(summary: &Summary, route: Option<&str>, fail_on: FailOn) -> Result<(), String> {
    let judged: Vec<(&str, Verdict)> = summary
        .routes
        .iter()
        .filter(|r| route.is_none_or(|name| r.name == name))
        .filter_map(|r| r.analysis.as_ref().map(|a| (r.name.as_str(), a.overall)))
        .collect();
    if judged.is_empty() {
        return Err("--fail-on: no reported route has an `analysis:` to judge".to_string());
    }
    let bad: Vec<String> = judged
        .iter()
        .filter(|(_, v)| match fail_on {
            FailOn::Fail => *v == Verdict::Fail,
            FailOn::Inconclusive => *v != Verdict::Pass,
        })
        .map(|(name, v)| format!("{name} is {}", v.as_str()))
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("--fail-on: {}", bad.join(", ")))
    }
}

fn invalid(path: &Path, e: &ConfigError) -> ExitCode {
    eprintln!("{}: invalid config", path.display());
    for p in e.problems() {
        eprintln!("  {p}");
    }
    ExitCode::FAILURE
}

fn failed(what: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{what}: {e}");
    ExitCode::FAILURE
}
