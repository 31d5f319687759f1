//! Loopback ports: free ones for the processes a test starts, and refused ones for backends
//! that must refuse every connection.

use std::net::{SocketAddr, TcpListener as StdListener};

use tokio::net::TcpSocket;

/// A port that was free a moment ago (bound to `127.0.0.1:0`, then closed), for a process
/// that binds it itself. Someone else may take it in between: callers retry on address-in-use.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Two free loopback ports, distinct: both are bound at once before either is released (two
/// `free_port()` calls in a row can return the same port).
pub fn free_port_pair() -> (u16, u16) {
    let a = StdListener::bind("127.0.0.1:0").unwrap();
    let b = StdListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
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
