//! Loopback ports for the processes a test starts.

use std::net::TcpListener as StdListener;

/// A loopback port with nothing listening (bound, then closed).
pub fn closed_port() -> u16 {
    free_port()
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
