//! The `runoff` binary: parse the command line, load the config, run. No logic here.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use runoff::cli::{Cli, Command};
use runoff::config::Config;
use runoff::demo::DemoBackend;
use runoff::server::{self, Extras};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} backend(s), {} route(s))",
                    config.display(),
                    c.backends.len(),
                    c.routes.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: invalid config", config.display());
                for p in e.problems() {
                    eprintln!("  {p}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match Config::load(&config) {
            Ok(c) => finish(server::run(c, Extras::default())),
            Err(e) => {
                eprintln!("{}: invalid config", config.display());
                for p in e.problems() {
                    eprintln!("  {p}");
                }
                ExitCode::FAILURE
            }
        },
        Command::Demo => demo(),
    }
}

fn demo() -> ExitCode {
    let config = match Config::from_yaml(runoff::EXAMPLE_CONFIG) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("embedded example config is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = |name: &str, ms: u64| -> Option<(SocketAddr, DemoBackend)> {
        let b = config.backends.iter().find(|b| b.name == name)?;
        Some((
            b.addr,
            DemoBackend {
                name: name.to_string(),
                delay: Duration::from_millis(ms),
            },
        ))
    };
    let demo_backends = [backend("node", 4), backend("go", 1)]
        .into_iter()
        .flatten()
        .collect();
    let listen = config
        .listen
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    println!(
        "runoff demo: proxy on http://{listen}, admin on http://{}",
        config.admin.listen
    );
    println!("  demo backends: node (4 ms) on 127.0.0.1:3000, go (1 ms) on 127.0.0.1:3001");
    println!("  try:   curl -s http://{listen}/api/users -H 'x-user-id: 42'");
    println!("         curl -s http://{listen}/api/users -H 'x-runoff-backend: go'");
    println!(
        "  then:  curl -s http://{}/metrics | grep runoff_requests_total",
        config.admin.listen
    );
    println!("  Ctrl-C drains and stops.");
    finish(server::run(config, Extras { demo_backends }))
}

fn finish(result: Result<(), server::StartError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("runoff: {e}");
            ExitCode::FAILURE
        }
    }
}
