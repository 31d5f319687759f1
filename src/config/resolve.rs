//! Turning a backend's `host:port` entries into socket addresses: parsed at load and at every
//! reload (names resolved by the system resolver then), and parsed again by the backend pools,
//! which resolve names while running.
//!
//! Must not: be called on the request path (a resolver may block for seconds).

use std::net::{SocketAddr, ToSocketAddrs};

/// One `host:port` entry of a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An IP address and port: never resolved.
    Literal(SocketAddr),
    /// A name to resolve, possibly to several addresses.
    Name { host: String, port: u16 },
}

/// Parse `host:port` (an IPv6 address in brackets).
pub fn parse_entry(text: &str) -> Result<Entry, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Entry::Literal(addr));
    }
    let Some((host, port)) = text.rsplit_once(':') else {
        return Err(format!("`{text}` is not host:port (the port is missing)"));
    };
    if host.is_empty() {
        return Err(format!("`{text}` is not host:port (the host is missing)"));
    }
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!(
            "`{text}` is not host:port (`{port}` is not a port)"
        ));
    };
    if host.contains(':') || host.contains('[') || host.contains('/') || host.contains(' ') {
        return Err(format!(
            "`{text}` is not host:port (`{host}` is not a host)"
        ));
    }
    Ok(Entry::Name {
        host: host.to_string(),
        port,
    })
}

/// Resolve `host:port` to every address the system resolver gives (each once, in its order).
pub(super) fn resolve_all(text: &str) -> Result<Vec<SocketAddr>, String> {
    match parse_entry(text)? {
        Entry::Literal(a) => Ok(vec![a]),
        Entry::Name { host, port } => match (host.as_str(), port).to_socket_addrs() {
            Ok(found) => {
                let mut addrs: Vec<SocketAddr> = Vec::new();
                for a in found {
                    if !addrs.contains(&a) {
                        addrs.push(a);
                    }
                }
                if addrs.is_empty() {
                    return Err(format!("`{host}` resolves to no address"));
                }
                Ok(addrs)
            }
            Err(e) => Err(format!("cannot resolve `{host}`: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_literals_or_names() {
        assert_eq!(
            parse_entry("127.0.0.1:80"),
            Ok(Entry::Literal("127.0.0.1:80".parse().expect("addr")))
        );
        assert_eq!(
            parse_entry("[::1]:80"),
            Ok(Entry::Literal("[::1]:80".parse().expect("addr")))
        );
        assert_eq!(
            parse_entry("go.svc.cluster.local:3001"),
            Ok(Entry::Name {
                host: "go.svc.cluster.local".into(),
                port: 3001
            })
        );
        for bad in ["go", ":80", "go:http", "go:70000", "::1:80", "a b:80"] {
            assert!(parse_entry(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_name_resolves_to_each_address_once() {
        let addrs = resolve_all("localhost:80").expect("localhost resolves");
        assert!(!addrs.is_empty());
        let mut dedup = addrs.clone();
        dedup.dedup();
        assert_eq!(addrs.len(), dedup.len());
    }
}
