//! Backend resource sampling: once a second, the CPU and resident memory of every backend
//! whose `process:` is configured (process and children), exported as metrics and kept for
//! summaries (CPU per request over a window).
//!
//! Lives here: the readings and the short history kept for window figures, and the sampling
//! thread. Must not: fail or stop runoff when a process is missing (it says so and tries
//! again), touch requests, know where the list of processes comes from (the caller hands it
//! over at each sample), or hold the lock summaries take while it reads `/proc` or a pid file
//! (a summary never waits on a sample).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::model::ProcessStats;
use super::process::{Reading, Sampler};
use crate::config::ProcessSpec;
use crate::metrics::ResourceMetrics;

/// How often backends are sampled.
const EVERY: Duration = Duration::from_secs(1);
/// History kept for window figures (the longest summary window).
const KEEP: Duration = Duration::from_secs(600);

/// What the sampling side keeps of a backend (only `sample` touches it).
struct Watched {
    spec: ProcessSpec,
    sampler: Sampler,
}

/// What summaries read of a backend: the latest reading and the CPU history.
#[derive(Default)]
struct Kept {
    last: Reading,
    /// RSS at the last sample with no WebSocket connection open to the backend.
    idle_rss: Option<u64>,
    /// (when, cumulative CPU seconds), oldest first.
    history: VecDeque<(Instant, f64)>,
}

/// The latest readings, by backend name.
#[derive(Default)]
pub struct Resources {
    /// The samplers; held while sampling (which may take a while).
    watched: Mutex<HashMap<String, Watched>>,
    /// The readings; held only to copy in or out.
    kept: Mutex<HashMap<String, Kept>>,
}

impl Resources {
    /// Sample each backend's process once (`specs`: backend name, its process as the config
    /// in force says, and the WebSocket connections open to it now), recording into
    /// `metrics`. Backends no longer listed are forgotten.
    pub fn sample(&self, specs: &[(String, ProcessSpec, i64)], metrics: &ResourceMetrics) {
        let Ok(mut watched) = self.watched.lock() else {
            return;
        };
        watched.retain(|name, w| {
            specs
                .iter()
                .any(|(n, spec, _)| n == name && *spec == w.spec)
        });
        if let Ok(mut kept) = self.kept.lock() {
            kept.retain(|name, _| watched.contains_key(name));
        }
        for (name, spec, open) in specs {
            let w = watched.entry(name.clone()).or_insert_with(|| Watched {
                spec: spec.clone(),
                sampler: Sampler::new(spec.clone()),
            });
            let reading = w.sampler.sample();
            let Ok(mut kept) = self.kept.lock() else {
                return;
            };
            let k = kept.entry(name.clone()).or_default();
            metrics.sampled(
                name,
                reading.cpu_seconds - k.last.cpu_seconds,
                reading.resident_memory_bytes,
            );
            if !reading.alive && k.last.alive {
                log::warn!(
                    "backend {}: {}; still trying",
                    name,
                    reading.problem.as_deref().unwrap_or("process not found")
                );
            }
            let now = Instant::now();
            k.history.push_back((now, reading.cpu_seconds));
            while k
                .history
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > KEEP)
            {
                k.history.pop_front();
            }
            if reading.alive && *open == 0 {
                k.idle_rss = Some(reading.resident_memory_bytes);
            }
            k.last = reading;
        }
    }

    /// The readings for summaries: CPU since start and within `window`, RSS now.
    pub fn stats(&self, window: Duration) -> BTreeMap<String, ProcessStats> {
        let Ok(kept) = self.kept.lock() else {
            return BTreeMap::new();
        };
        let now = Instant::now();
        kept.iter()
            .map(|(name, w)| {
                let start = w
                    .history
                    .iter()
                    .find(|(t, _)| now.duration_since(*t) <= window)
                    .map(|(_, cpu)| *cpu)
                    .unwrap_or(w.last.cpu_seconds);
                (
                    name.clone(),
                    ProcessStats {
                        alive: w.last.alive,
                        problem: w.last.problem.clone(),
                        pids: w.last.pids.clone(),
                        cpu_seconds_total: w.last.cpu_seconds,
                        cpu_seconds_window: (w.last.cpu_seconds - start).max(0.0),
                        resident_memory_bytes: w.last.resident_memory_bytes,
                        idle_resident_memory_bytes: w.idle_rss,
                    },
                )
            })
            .collect()
    }
}

/// Start the sampling thread (it lives as long as the process): every second, `specs()` says
/// which processes the config in force names, and each is sampled into `resources` and
/// `metrics`.
pub fn start(
    resources: Arc<Resources>,
    metrics: Arc<crate::metrics::Metrics>,
    specs: impl Fn() -> Vec<(String, ProcessSpec, i64)> + Send + 'static,
) -> std::io::Result<()> {
    thread::Builder::new()
        .name("runoff-resources".into())
        .spawn(move || loop {
            resources.sample(&specs(), &metrics.resources);
            thread::sleep(EVERY);
        })
        .map(|_| ())
}
