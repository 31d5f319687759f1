//! runoff: a transparent benchmarking reverse proxy on Pingora.
//!
//! The folders follow a request: it enters `proxy`, is routed by `routing`, may be copied by
//! `mirror`, its answers are judged by `compare`, and it leaves traces in `metrics` and in
//! `analysis`' recorders. `config` says what to do, `state` holds it live, `control` changes it,
//! `admin` shows it, `server` assembles and runs it all; `report` and `demo` are tools around
//! it. README's "Layout" section maps each folder to its stage and states the import rules.
//! This crate root only declares the modules: the binary's entry points (`cli`, `commands`),
//! and what integration tests and users may name (`config`, `routing`, `analysis`), are
//! public; everything else is the crate's own.
#![warn(unreachable_pub)]

mod access_log;
mod admin;
pub mod analysis;
#[doc(hidden)]
pub mod benching;
mod caller_io;
pub mod cli;
mod client;
pub mod commands;
mod compare;
pub mod config;
mod control;
mod demo;
pub mod error;
mod forwarding;
#[doc(hidden)]
pub mod fuzzing;
mod metrics;
mod mirror;
mod outcome;
mod pool;
mod present;
mod proxy;
mod ramp;
mod redact;
mod report;
pub mod routing;
mod server;
mod state;
mod strict;
mod thousands;
mod tls;
mod upstream;
mod websocket;

/// The example config, documented field by field (its tests check it stays valid).
pub const EXAMPLE_CONFIG: &str = include_str!("../config.example.yaml");
