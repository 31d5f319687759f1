//! A route's judge: compares one pair (primary and shadow answers of the same request) and
//! records the verdict in the route's counters and in the samples store.
//!
//! Must not: run on the primary's path (the mirror calls it once both legs completed, off the
//! proxy's threads), or keep anything beyond what the store bounds.

use std::sync::Arc;

use super::store::{CompareStore, RouteSamples};
use super::{compare, Captured};
use crate::access_log::now_rfc3339;
use crate::analysis::tally::Tally;
use crate::config::Compare;
use crate::metrics::{CompareHandles, CompareResult};

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

    /// Judge one pair and record the verdict (counters, samples, path counts).
    pub(crate) fn judge(&self, meta: &PairMeta, primary: &Captured, shadow: &Captured) {
        let verdict = compare(primary, shadow, &self.config);
        self.handles.judged(verdict.result(), &verdict.parts());
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
