//! The `runoff` binary: parse the command line, make one call per subcommand. No logic here.

use std::process::ExitCode;

use clap::Parser;

use runoff::cli::{Cli, Command};
use runoff::commands;

/// jemalloc rather than glibc's malloc: memory freed after a burst (of connections, of
/// buffered bodies) goes back to the system, by its background thread after a 10 s decay,
/// instead of staying resident (bench/soak.sh). Its options are built in
/// (`.cargo/config.toml`, `JEMALLOC_SYS_WITH_MALLOC_CONF`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Command::Check(args) => commands::check(args),
        Command::Run(args) => commands::run(args),
        Command::Demo(args) => commands::demo(args),
        Command::Report(args) => commands::report(args),
    }
}
