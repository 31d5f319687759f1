//! A route's judge: compares one pair (primary and shadow answers of the same request) and
//! records the verdict in the route's counters and in the samples store.
//!
//! Must not: run on the primary's path (the mirror calls it once both legs completed, off the
//! proxy's threads), or keep anything beyond what the store bounds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::store::{CompareStore, RouteSamples};
use super::{compare, Captured, Verdict};
use crate::access_log::now_rfc3339;
use crate::analysis::tally::Tally;
use crate::config::Compare;
use crate::metrics::{CompareHandles, CompareResult, SkipReason};

/// Comparisons running at once, process-wide (each is a blocking task: a JSON diff of up to
/// two `compare.body.max_bytes` bodies). Past it a pair is skipped (`busy`), never queued:
/// compare work must not pile up behind, or take threads from, the traffic it measures.
pub(crate) const MAX_COMPARE_JOBS: usize = 64;

static RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A running comparison's place under `MAX_COMPARE_JOBS`; released on drop.
pub(crate) struct JobSlot(());

impl Drop for JobSlot {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a pair is about, taken from the request when its copy was dispatched.
#[derive(Debug, Clone)]
pub(crate) struct PairMeta {
    pub method: String,
    /// Path and query string.
    pub path: String,
    pub request_id: String,
}

/// A route's comparison settings and where its results go, fixed when its config loads.
pub(crate) struct Judge {
    config: Compare,
    handles: CompareHandles,
    store: Arc<CompareStore>,
    samples: RouteSamples,
    /// The route's verdict tally, when it has an `analysis`.
    tally: Option<Arc<Tally>>,
}

impl Judge {
    pub(crate) fn new(
        config: Compare,
        handles: CompareHandles,
        store: Arc<CompareStore>,
        samples: RouteSamples,
        tally: Option<Arc<Tally>>,
    ) -> Judge {
        Judge {
            config,
            handles,
            store,
            samples,
            tally,
        }
    }

    /// How much of each answer's body is kept for comparison.
    pub(crate) fn body_limit(&self) -> usize {
        self.config.body_max_bytes
    }

    /// Pairs judged so far: matched, mismatched, skipped.
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        use crate::metrics::CompareResult::{Match, Mismatch, Skipped};
        (
            self.handles.count(Match),
            self.handles.count(Mismatch),
            self.handles.count(Skipped),
        )
    }

    /// A place to compare one pair now, or `None` (the pair counted skipped, `busy`).
    pub(crate) fn slot(&self) -> Option<JobSlot> {
        self.slot_within(MAX_COMPARE_JOBS)
    }

    fn slot_within(&self, max: usize) -> Option<JobSlot> {
        if RUNNING.fetch_add(1, Ordering::AcqRel) >= max {
            RUNNING.fetch_sub(1, Ordering::AcqRel);
            self.handles.skipped(SkipReason::Busy);
            return None;
        }
        Some(JobSlot(()))
    }

    /// Judge one pair and record the verdict (counters, samples, path counts).
    pub(crate) fn judge(&self, meta: &PairMeta, primary: &Captured, shadow: &Captured) {
        let verdict = compare(primary, shadow, &self.config);
        match &verdict {
            Verdict::Skipped(why) => self.handles.skipped(*why),
            v => self.handles.judged(v.result(), &v.parts()),
        }
        if let Some(t) = &self.tally {
            match verdict.result() {
                CompareResult::Match => t.compared(true),
                CompareResult::Mismatch => t.compared(false),
                CompareResult::Skipped => {}
            }
        }
        self.store.record(
            &self.samples,
            meta,
            (primary.status, shadow.status),
            &verdict,
            now_rfc3339(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::redact::Redactor;

    #[test]
    fn past_the_job_limit_a_pair_is_skipped_as_busy() {
        let c = Config::from_yaml(
            "listen: 127.0.0.1:8080\nbackends:\n  node: { address: \"127.0.0.1:3000\" }\n  go: { address: \"127.0.0.1:3001\" }\nroutes:\n  - name: api\n    split: { node: 1 }\n    mirror: { to: go }\n    compare: {}\n",
        )
        .expect("valid");
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        let judge = Judge::new(
            c.live.routes[0].compare.clone().expect("compare"),
            metrics.compare_handles("api"),
            Arc::new(CompareStore::default()),
            RouteSamples {
                route: "api".into(),
                capacity: 1,
                redact: Arc::new(Redactor::new(&c.live.redact, &[])),
            },
            None,
        );
        assert!(judge.slot_within(0).is_none());
        assert_eq!(judge.counts(), (0, 0, 1), "counted skipped");
        let busy: f64 = metrics
            .registry
            .gather()
            .iter()
            .filter(|f| f.name() == "runoff_compare_skipped_total")
            .flat_map(|f| f.get_metric())
            .filter(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "reason" && l.value() == "busy")
            })
            .map(|m| m.get_counter().get_value())
            .sum();
        assert_eq!(busy, 1.0, "runoff_compare_skipped_total{{reason=\"busy\"}}");
        assert!(judge.slot_within(usize::MAX).is_some());
        assert_eq!(judge.counts(), (0, 0, 1));
    }
}
