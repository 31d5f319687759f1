//! Test harness: real fixture backends on 127.0.0.1:0, the real `runoff` binary per test on
//! ports the test picks, and `/metrics` scraping with exact-count assertions.
//!
//! - `fixture`: fixture backends, and a builder for how each behaves
//! - `runoff_process`: the `runoff` process (start, readiness, signals, admin API, scrapes)
//! - `metrics`: Prometheus text parsed for exact sums
//! - `client`: load, statuses, access-log lines; `raw`: raw HTTP/1.1 on an async socket
//! - `ports`: free ports for processes, refused ports held for a whole test
//! - `poll`: waiting for a condition with a deadline
//! - `prerequisites`: programs beyond cargo, and the command that installs them

mod client;
mod fixture;
mod metrics;
mod poll;
mod ports;
mod prerequisites;
mod raw;
mod runoff_process;
mod ws;

pub use client::{get_status, json_lines, load, status};
pub use fixture::{fixture, Fixture, FixtureBuilder, Received};
pub use metrics::Metrics;
pub use poll::wait_until;
pub use ports::{free_port, free_port_pair, refused_port};
pub use prerequisites::{require_browser, require_example_apps, INSTALL_ALL};
pub use raw::{next_response, raw_chunked_post, status_of, RawConn};
pub use runoff_process::{bin, one_backend, one_backend_with, Ports, Runoff};
pub use ws::{client_frame, raw_upgrade, ws_connect, ws_fixture, WsBehaviour, WsClient, WsFixture};
