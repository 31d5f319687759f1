//! The `runoff` binary: parse the command line, load the config, run. No logic here.

use std::process::ExitCode;

use clap::Parser;

use runoff::cli::{Cli, Command};
use runoff::config::Config;
use runoff::demo::{self, DemoOptions};
use runoff::report::{self, Format};
use runoff::server::{self, Extras, RunOptions};
use runoff::summary;

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
            Err(e) => invalid(&config, &e),
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
            Err(e) => invalid(&config, &e),
        },
        Command::Demo {
            duration,
            rps,
            listen,
            admin_listen,
            keep_running,
            backends,
        } => {
            let backends = match backends.parse() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("runoff demo: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = DemoOptions {
                backends,
                duration,
                rps,
                keep_running,
                admin: admin_listen,
            };
            run_demo(listen, opts)
        }
        Command::Report {
            admin,
            route,
            window,
            format,
            token,
        } => {
            let format: Format = match format.parse() {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("runoff report: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let rendered = summary::fetch(&admin, &window, token.as_deref()).and_then(|s| {
                report::render(&s, route.as_deref(), format).map_err(|e| e.to_string())
            });
            match rendered {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("runoff report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn invalid(path: &std::path::Path, e: &runoff::error::ConfigError) -> ExitCode {
    eprintln!("{}: invalid config", path.display());
    for p in e.problems() {
        eprintln!("  {p}");
    }
    ExitCode::FAILURE
}

fn run_demo(listen: std::net::SocketAddr, opts: DemoOptions) -> ExitCode {
    let yaml = if opts.backends == demo::Backends::Examples {
        match demo::start_examples() {
            Ok([node, go]) => demo::examples_config(listen, opts.admin, node, go),
            Err(e) => {
                eprintln!("runoff demo: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        let ports = (demo::free_port(), demo::free_port());
        let (Ok(node), Ok(go)) = ports else {
            eprintln!("runoff demo: cannot find free loopback ports for the demo backends");
            return ExitCode::FAILURE;
        };
        demo::demo_config(
            listen,
            opts.admin,
            ([127, 0, 0, 1], node).into(),
            ([127, 0, 0, 1], go).into(),
        )
    };
    let config = match Config::from_yaml(&yaml) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runoff demo: the embedded config is invalid: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", demo::banner(listen, opts.admin, &opts));
    let builtin = opts.backends == demo::Backends::Builtin;
    let extras = Extras {
        demo_backends: if builtin {
            demo::backends_for(&config)
        } else {
            Vec::new()
        },
        on_start: Some(Box::new(move |control| demo::drive(control, listen, opts))),
        on_exit: Some(Box::new(demo::kill_children)),
    };
    let result = finish(server::run(config, RunOptions::default(), extras));
    demo::kill_children();
    result
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
