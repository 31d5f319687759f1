//! Loopback ports: free ones for the processes a test starts, and refused ones for backends
//! that must refuse every connection.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::LazyLock;

use tokio::net::TcpSocket;

/// Ports below the kernel's ephemeral range, handed out in turn. A port freed after a
/// `bind("127.0.0.1:0")` is the very next one the kernel gives any `bind(0)` in this process
/// (a parallel test's fixture): a runoff told to listen there could find a fixture on it, and
/// a fixture answers `/readyz` and every request with 200, so a test would talk to another
/// test's server. Below the range only this counter hands ports out; neither `bind(0)` nor an
/// outgoing connection ever takes one.
static NEXT: AtomicU32 = AtomicU32::new(0);
const SPAN: u32 = 8192;

/// The first port of the range this harness hands out: just below the ephemeral range (read
/// once), and where in it this test binary starts (two binaries may run at once).
static RANGE: LazyLock<(u32, u32)> = LazyLock::new(|| {
    let start = range_start();
    (start, std::process::id().wrapping_mul(7919) % SPAN)
});

fn range_start() -> u32 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    assert!(
        low >= 1024 + SPAN,
        "the ephemeral port range starts at {low}: no room below it for test ports"
    );
    low - SPAN
}

/// A port free now and never handed out by this process before, for a process that binds it
/// itself. Another program may still take it in between: callers retry on address-in-use.
pub fn free_port() -> u16 {
    let (start, offset) = *RANGE;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (start + (offset + n) % SPAN) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {start}..{}", start + SPAN);
}

/// Two free loopback ports, distinct.
pub fn free_port_pair() -> (u16, u16) {
    (free_port(), free_port())
}

/// A loopback address that refuses connections for as long as this guard lives: a socket
/// bound to `127.0.0.1:0` that never listens. Connecting to it gets a reset (refused), and
/// while it stays bound no other socket can take the port (it is bound without
/// `SO_REUSEADDR`, and ports taken by `bind` are not handed out to outgoing connections
/// either), so a parallel test's fixture cannot start answering on it. Keep it for the
/// whole test: `let refused = refused_port();`.
pub struct RefusedPort {
    addr: SocketAddr,
    _socket: TcpSocket,
}

pub fn refused_port() -> RefusedPort {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    RefusedPort {
        addr: socket.local_addr().unwrap(),
        _socket: socket,
    }
}

impl RefusedPort {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
