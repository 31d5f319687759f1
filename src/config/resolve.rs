//! Turning a backend's `host:port` into a socket address: at load and at every reload.
//!
//! Must not: be called on the request path (a resolver may block for seconds).

use std::net::{SocketAddr, ToSocketAddrs};

/// Resolve `host:port` to one socket address (the first the resolver gives).
pub(super) fn resolve_address(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` is not host:port (the port is missing)"));
    };
    if host.is_empty() {
        return Err(format!("`{text}` is not host:port (the host is missing)"));
    }
    if port.parse::<u16>().is_err() {
        return Err(format!(
            "`{text}` is not host:port (`{port}` is not a port)"
        ));
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address")),
        Err(e) => Err(format!("cannot resolve `{host}`: {e}")),
    }
}
