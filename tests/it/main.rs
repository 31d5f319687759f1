//! The integration tests: one crate, one binary. Each module drives the real `runoff` binary
//! (or its library, for the process sampler) through the shared `harness`.
#![allow(clippy::unwrap_used)]

mod harness;

mod analysis;
mod compare;
mod control;
mod dashboards;
mod demo;
mod examples;
mod forwarding;
mod grpc;
mod http2;
mod lifecycle;
mod live_page;
mod mirror;
mod odd_requests;
mod pools;
mod process;
mod proxy;
mod resources;
mod tls;
mod trust;
mod websocket;
