//! Live control end to end: reloads and API changes under load lose nothing, in-flight
//! requests finish on their config, the admin API lets no one in without the token, and a
//! binary upgrade hands the listeners over without a failed request.

mod api;
mod reload;
mod upgrade;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{self, Fixture, Ports, Runoff};

pub(super) fn config(p: &Ports, node: &Fixture, go: &Fixture, node_w: u32, go_w: u32) -> String {
    format!(
        "listen: 127.0.0.1:{}\nadmin: {{ listen: 127.0.0.1:{} }}\nserver: {{ upgrade_sock: \"{}/upgrade.sock\" }}\nbackends:\n  node: {{ address: \"{}\" }}\n  go: {{ address: \"{}\" }}\nroutes:\n  - name: api\n    split: {{ node: {node_w}, go: {go_w} }}\n",
        p.listen,
        p.admin,
        p.dir.display(),
        node.addr,
        go.addr
    )
}

/// Client tasks sending GETs until told to stop (bounded by count and time too); each
/// outcome is counted: status, or 0 for a connection error.
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<HashMap<u16, u64>>>,
}

impl Load {
    pub(super) fn start(url: String, tasks: usize, fresh_connections: bool) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|_| {
                let (stop, url) = (stop.clone(), url.clone());
                tokio::spawn(async move {
                    let mut builder = reqwest::Client::builder();
                    if fresh_connections {
                        builder = builder.pool_max_idle_per_host(0);
                    }
                    let client = builder.build().unwrap();
                    let deadline = Instant::now() + Duration::from_secs(120);
                    let mut seen: HashMap<u16, u64> = HashMap::new();
                    for _ in 0..200_000 {
                        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                            break;
                        }
                        *seen
                            .entry(harness::get_status(&client, &url).await)
                            .or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        Load { stop, tasks }
    }

    async fn finish(self) -> HashMap<u16, u64> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = HashMap::new();
        for t in self.tasks {
            for (k, v) in t.await.unwrap() {
                *all.entry(k).or_default() += v;
            }
        }
        all
    }
}

pub(super) fn only_200(outcomes: &HashMap<u16, u64>) -> u64 {
    assert_eq!(
        outcomes.keys().copied().collect::<Vec<_>>(),
        vec![200],
        "failed requests (0 = connection error): {outcomes:?}"
    );
    outcomes[&200]
}

pub(super) async fn weights(runoff: &Runoff) -> (f64, f64) {
    let m = runoff.scrape().await;
    (
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "node")],
        ),
        m.sum(
            "runoff_route_weight",
            &[("route", "api"), ("backend", "go")],
        ),
    )
}
