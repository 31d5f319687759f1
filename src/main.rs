//! The `runoff` binary: parse the command line, load the config, run. No logic here.

use std::process::ExitCode;

use clap::Parser;

use runoff::cli::{Cli, Command};
use runoff::config::Config;
use runoff::demo;
use runoff::server::{self, Extras, RunOptions};

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
        Command::Run {
            config,
            watch,
            upgrade,
        } => match Config::load(&config) {
            Ok(c) => {
                let options = RunOptions {
                    config_path: Some(config),
                    upgrade,
                    watch,
                };
                finish(server::run(c, options, Extras::default()))
            }
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
    println!("{}", demo::banner(&config));
    let demo_backends = demo::backends_for(&config);
    finish(server::run(
        config,
        RunOptions::default(),
        Extras { demo_backends },
    ))
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
