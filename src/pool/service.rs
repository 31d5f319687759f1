//! The pools' background work: every tick, each pool whose health checks are due has each of
//! its addresses checked, and each pool whose names are due is resolved again; the address
//! gauges are refreshed. Each check and resolution runs in its own task, so a slow one delays
//! nothing else.
//!
//! Must not: run on the request path, hold the registry's lock across an await, or start a
//! second resolution of a pool while one is under way.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::connectors::http::Connector;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::dns::{self, Resolve};
use super::{checks, Pool, Pools, TICK};

/// Runs the checks and re-resolutions of every pool.
pub(crate) struct PoolService {
    pub pools: Arc<Pools>,
    pub resolver: Arc<dyn Resolve>,
    pub connector: Arc<Connector>,
}

#[async_trait]
impl BackgroundService for PoolService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    for pool in self.pools.all() {
                        self.tend(pool);
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

impl PoolService {
    fn tend(&self, pool: Arc<Pool>) {
        let view = pool.view();
        let now = Instant::now();
        let (check_due, resolve_due) = {
            let mut due = pool.due.lock().unwrap_or_else(|p| p.into_inner());
            let check_due = view.backend.pool.health.as_ref().is_some_and(|hc| {
                due.checked
                    .is_none_or(|t| now.duration_since(t) >= hc.interval)
            });
            if check_due {
                due.checked = Some(now);
            }
            let resolve_due = !view.answers.is_empty()
                && due
                    .resolved
                    .is_none_or(|t| now.duration_since(t) >= view.backend.pool.resolve_every);
            if resolve_due {
                due.resolved = Some(now);
            }
            (check_due, resolve_due)
        };
        if let (true, Some(hc)) = (check_due, view.backend.pool.health.clone()) {
            for e in &view.endpoints {
                let (pool, e, hc) = (Arc::clone(&pool), Arc::clone(e), hc.clone());
                let connector = Arc::clone(&self.connector);
                tokio::spawn(async move { checks::check(&connector, &pool, e, hc).await });
            }
        }
        if resolve_due && pool.begin_resolving() {
            let resolver = Arc::clone(&self.resolver);
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                dns::refresh(&pool, &resolver).await;
                pool.end_resolving();
                pool.refresh_gauges();
            });
        }
        pool.refresh_gauges();
    }
}
