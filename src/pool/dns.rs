//! Resolving a backend's names while it runs: through a `Resolve` (the system's resolver by
//! default; tests pass their own), each name on its own, keeping a name's last good answer
//! when it fails or comes back empty.
//!
//! Must not: run on the request path or under a lock the proxy or the admin API takes, or
//! drop a backend's last addresses because one resolution failed.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;

use super::Pool;

/// Resolves `host` on `port` to addresses.
#[async_trait]
pub(crate) trait Resolve: Send + Sync {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (getaddrinfo, on tokio's blocking pool).
pub(crate) struct System;

#[async_trait]
impl Resolve for System {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// DNS servers of `server.resolver` (hickory's client, no cache of its own).
pub(crate) struct Servers(hickory_resolver::TokioResolver);

impl Servers {
    pub(crate) fn new(servers: &[SocketAddr]) -> Result<Servers, String> {
        crate::config::dns_client(servers).map(Servers)
    }
}

#[async_trait]
impl Resolve for Servers {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let found = self
            .0
            .lookup_ip(host)
            .await
            .map_err(std::io::Error::other)?;
        Ok(found.iter().map(|ip| SocketAddr::new(ip, port)).collect())
    }
}

/// The resolver `server.resolver` asks for: its DNS servers, else the system's.
pub(crate) fn for_servers(servers: &[SocketAddr]) -> Arc<dyn Resolve> {
    if servers.is_empty() {
        return Arc::new(System);
    }
    match Servers::new(servers) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            log::error!(
                "cannot use the DNS servers of server.resolver ({e}); using the system's resolver"
            );
            Arc::new(System)
        }
    }
}

/// Resolve every name of `pool` again and put the answers in force; returns whether its
/// addresses changed. Counted per name: `ok`, or `error` (then its last good answer stays).
pub(crate) async fn refresh(pool: &Pool, resolver: &Arc<dyn Resolve>) -> bool {
    let view = pool.view();
    let mut answers = Vec::with_capacity(view.answers.len());
    for (text, last) in &view.answers {
        let Ok(crate::config::Entry::Name { host, port }) = crate::config::parse_entry(text) else {
            continue;
        };
        let fresh = match resolver.resolve(&host, port).await {
            Ok(found) if !found.is_empty() => {
                pool.handles.resolved_ok.inc();
                let mut once: Vec<SocketAddr> = Vec::new();
                for a in found {
                    if !once.contains(&a) {
                        once.push(a);
                    }
                }
                once
            }
            Ok(_) => {
                pool.handles.resolved_error.inc();
                log::warn!(
                    "backend {}: `{host}` resolved to no address; keeping {last:?}",
                    pool.name
                );
                last.clone()
            }
            Err(e) => {
                pool.handles.resolved_error.inc();
                log::warn!(
                    "backend {}: cannot resolve `{host}` ({e}); keeping {last:?}",
                    pool.name
                );
                last.clone()
            }
        };
        answers.push((text.clone(), fresh));
    }
    pool.resolved(answers)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::time::Instant;

    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::pool::endpoint::Attempt;
    use crate::pool::Pools;

    /// Answers from a table the test edits; a name missing from it fails.
    #[derive(Default)]
    struct Table(Mutex<HashMap<String, Vec<SocketAddr>>>);

    #[async_trait]
    impl Resolve for Table {
        async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
            let table = self.0.lock().expect("table");
            match table.get(host) {
                Some(addrs) => Ok(addrs
                    .iter()
                    .map(|a| SocketAddr::new(a.ip(), port))
                    .collect()),
                None => Err(std::io::Error::other("no such name")),
            }
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[tokio::test]
    async fn names_follow_their_answers_keep_state_and_survive_failures() {
        let yaml = "listen: 127.0.0.1:8080\nbackends:\n  go: { addresses: [\"localhost:3001\", \"127.0.0.9:3001\"], outlier: { consecutive_errors: 1 } }\nroutes:\n  - name: api\n    split: { go: 1 }\n";
        let config = Config::from_yaml(yaml).expect("config");
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        let pools = Pools::default();
        let pool = pools.sync(&config.live.backends, &metrics).remove(0);
        let table = Arc::new(Table::default());
        let resolver: Arc<dyn Resolve> = table.clone();
        let addrs =
            |p: &Pool| -> Vec<SocketAddr> { p.view().endpoints.iter().map(|e| e.addr).collect() };
        let literal = addr("127.0.0.9:3001");
        assert!(addrs(&pool).contains(&literal));

        // The name now gives two addresses: both join, the literal stays.
        table.0.lock().expect("table").insert(
            "localhost".into(),
            vec![addr("127.0.0.2:1"), addr("127.0.0.3:1")],
        );
        assert!(refresh(&pool, &resolver).await);
        assert_eq!(
            addrs(&pool),
            vec![addr("127.0.0.2:3001"), addr("127.0.0.3:3001"), literal]
        );
        assert_eq!(pool.handles.resolved_ok.get(), 1);

        // An address that stays keeps what runoff knows of it (here: ejected).
        let picked = loop {
            let p = pool.pick(&[]).expect("an address");
            if p.addr() == addr("127.0.0.3:3001") {
                break p;
            }
        };
        pool.report(&picked, Attempt::Failed);
        drop(picked);
        table
            .0
            .lock()
            .expect("table")
            .insert("localhost".into(), vec![addr("127.0.0.3:1")]);
        assert!(refresh(&pool, &resolver).await);
        assert_eq!(addrs(&pool), vec![addr("127.0.0.3:3001"), literal]);
        let ejected = pool.view().endpoints[0].health.state(Instant::now());
        assert_eq!(ejected, crate::pool::endpoint::State::Ejected);

        // A failed resolution keeps the last good answer, counted.
        table.0.lock().expect("table").clear();
        assert!(!refresh(&pool, &resolver).await);
        assert_eq!(addrs(&pool), vec![addr("127.0.0.3:3001"), literal]);
        assert_eq!(pool.handles.resolved_error.get(), 1);

        // An empty answer too.
        table
            .0
            .lock()
            .expect("table")
            .insert("localhost".into(), vec![]);
        assert!(!refresh(&pool, &resolver).await);
        assert_eq!(addrs(&pool), vec![addr("127.0.0.3:3001"), literal]);
        assert_eq!(pool.handles.resolved_error.get(), 2);
    }
}
