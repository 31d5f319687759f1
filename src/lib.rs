//! runoff: a transparent benchmarking reverse proxy on Pingora.
//!
//! A request enters `proxy`, is routed by `routing`, and leaves traces in `metrics`; `config`
//! says what to do, `admin` shows what happened. `server` assembles the Pingora server.
//! This crate root only exposes the modules (so `tests/` drive the real app); no logic here.

pub mod access_log;
pub mod admin;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod control;
pub mod demo;
pub mod error;
pub mod metrics;
pub mod mirror;
pub mod outcome;
pub mod process;
pub mod proxy;
pub mod report;
pub mod resources;
pub mod routing;
pub mod server;
pub mod summary;

/// The example config, documented field by field (its tests check it stays valid).
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.yaml");
