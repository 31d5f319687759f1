//! Turning a backend's `host:port` entries into socket addresses: parsed at load and at every
//! reload (names resolved then, by the system's resolver or by `server.resolver`'s DNS
//! servers), and parsed again by the backend pools, which resolve names while running.
//!
//! Must not: be called on the request path (a resolver may block for seconds).

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// How long one name's resolution through `server.resolver` may take at load.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// A DNS client asking `servers` (UDP, then TCP for a truncated answer), with no cache of its
/// own: the pools keep the answers and ask again every `resolve_every`. Names are taken as
/// fully qualified (no search domains).
pub fn dns_client(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    let name_servers = servers
        .iter()
        .map(|s| {
            let mut ns = NameServerConfig::udp_and_tcp(s.ip());
            for c in &mut ns.connections {
                c.port = s.port();
            }
            ns
        })
        .collect();
    let mut builder = TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    );
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    opts.timeout = Duration::from_secs(2);
    opts.attempts = 2;
    builder.build().map_err(|e| e.to_string())
}

/// Resolve `host` through `servers`, from synchronous code (a load): on a thread of its own
/// with its own runtime, so it works inside and outside a tokio runtime alike.
fn resolve_through(
    servers: &[SocketAddr],
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let client = dns_client(servers)?;
                match tokio::time::timeout(LOAD_TIMEOUT, client.lookup_ip(host)).await {
                    Ok(Ok(found)) => Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {}s", LOAD_TIMEOUT.as_secs())),
                }
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the resolver thread failed".to_string()))
    })
}

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

/// Resolve `host:port` to every address the resolver gives (each once, in its order): the
/// system's, or the DNS servers of `dns` when there are any.
pub(super) fn resolve_all(text: &str, dns: &[SocketAddr]) -> Result<Vec<SocketAddr>, String> {
    match parse_entry(text)? {
        Entry::Literal(a) => Ok(vec![a]),
        Entry::Name { host, port } => match lookup(&host, port, dns) {
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

fn lookup(host: &str, port: u16, dns: &[SocketAddr]) -> Result<Vec<SocketAddr>, String> {
    if dns.is_empty() {
        (host, port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|e| e.to_string())
    } else {
        resolve_through(dns, host, port)
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
        let addrs = resolve_all("localhost:80", &[]).expect("localhost resolves");
        assert!(!addrs.is_empty());
        let mut dedup = addrs.clone();
        dedup.dedup();
        assert_eq!(addrs.len(), dedup.len());
    }
}
