//! Backend resource sampling: once a second, the CPU and resident memory of every backend
//! whose `process:` is configured (process and children), exported as metrics and kept for
//! summaries (CPU per request over a window).
//!
//! Lives here: the sampling loop and the short history it keeps. Must not: fail or stop
//! runoff when a process is missing (it says so and tries again), or touch requests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::config::ProcessSpec;
use crate::process::{Reading, Sampler, Target};
use crate::proxy::state::Shared;
use crate::summary::model::ProcessStats;

/// How often backends are sampled.
const EVERY: Duration = Duration::from_secs(1);
/// History kept for window figures (the longest summary window).
const KEEP: Duration = Duration::from_secs(600);

struct Watched {
    spec: ProcessSpec,
    sampler: Sampler,
    last: Reading,
    /// (when, cumulative CPU seconds), oldest first.
    history: VecDeque<(Instant, f64)>,
}

/// The latest readings, by backend name.
#[derive(Default)]
pub struct Resources {
    watched: Mutex<HashMap<String, Watched>>,
}

impl Resources {
    /// Sample every configured backend once: called by the sampling thread.
    pub fn sample(&self, shared: &Shared) {
        let snapshot = shared.snapshot.load_full();
        let Ok(mut watched) = self.watched.lock() else {
            return;
        };
        watched.retain(|name, w| {
            snapshot
                .config
                .backends
                .iter()
                .any(|b| &b.name == name && b.process.as_ref() == Some(&w.spec))
        });
        for b in &snapshot.config.backends {
            let Some(spec) = &b.process else { continue };
            let w = watched.entry(b.name.clone()).or_insert_with(|| Watched {
                spec: spec.clone(),
                sampler: Sampler::new(match spec {
                    ProcessSpec::Pid(pid) => Target::Pid(*pid),
                    ProcessSpec::PidFile(path) => Target::PidFile(path.clone()),
                }),
                last: Reading::default(),
                history: VecDeque::new(),
            });
            let reading = w.sampler.sample();
            // Never negative; adding 0 still makes the series exist from the first sample.
            let delta = (reading.cpu_seconds - w.last.cpu_seconds).max(0.0);
            shared
                .metrics
                .backend_cpu
                .with_label_values(&[&b.name])
                .inc_by(delta);
            shared
                .metrics
                .backend_rss
                .with_label_values(&[&b.name])
                .set(i64::try_from(reading.resident_memory_bytes).unwrap_or(i64::MAX));
            if !reading.alive && w.last.alive {
                log::warn!(
                    "backend {}: {}; still trying",
                    b.name,
                    reading.problem.as_deref().unwrap_or("process not found")
                );
            }
            let now = Instant::now();
            w.history.push_back((now, reading.cpu_seconds));
            while w
                .history
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > KEEP)
            {
                w.history.pop_front();
            }
            w.last = reading;
        }
    }

    /// The readings for summaries: CPU since start and within `window`, RSS now.
    pub fn stats(&self, window: Duration) -> BTreeMap<String, ProcessStats> {
        let Ok(watched) = self.watched.lock() else {
            return BTreeMap::new();
        };
        let now = Instant::now();
        watched
            .iter()
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
                    },
                )
            })
            .collect()
    }
}

/// Start the sampling thread (it lives as long as the process).
pub fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("runoff-resources".into())
        .spawn(move || loop {
            shared.resources.sample(&shared);
            thread::sleep(EVERY);
        })
        .map(|_| ())
}
