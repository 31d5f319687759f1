//! The pairing of one request's two legs: the primary's and the shadow's outcome meet here, and
//! the second to finish records the paired latency ratio and hands both answers to the route's
//! judge, on a blocking-pool thread.
//!
//! Must not: block either leg (one short lock per leg), or judge a pair twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Histogram;

use crate::analysis::Recorder;
use crate::compare::{Captured, Judge, PairMeta};

/// A leg that completed: its upstream-side duration (from its own request starting to go
/// upstream to the last response byte received) and, when the route compares, its captured
/// answer.
pub(super) struct Completed {
    pub duration: Duration,
    pub answer: Option<Captured>,
}

/// Where one leg stands.
enum Leg {
    Pending,
    Failed,
    Completed(Completed),
}

/// The two legs, and what the comparison needs to know about the request (taken once).
struct PairState {
    primary: Leg,
    shadow: Leg,
    meta: Option<PairMeta>,
}

/// Primary and shadow legs of one request.
pub(super) struct Pair {
    ratio: Histogram,
    /// The route's exact ratio recorder, for summaries.
    exact_ratio: Option<Arc<Recorder>>,
    judge: Option<Arc<Judge>>,
    state: Mutex<PairState>,
}

impl Pair {
    pub(super) fn new(
        ratio: Histogram,
        exact_ratio: Option<Arc<Recorder>>,
        judge: Option<(Arc<Judge>, PairMeta)>,
    ) -> Pair {
        let (judge, meta) = judge.unzip();
        Pair {
            ratio,
            exact_ratio,
            judge,
            state: Mutex::new(PairState {
                primary: Leg::Pending,
                shadow: Leg::Pending,
                meta,
            }),
        }
    }

    /// How much of each answer's body to keep, when the pair will be judged.
    pub(super) fn body_limit(&self) -> Option<usize> {
        self.judge.as_ref().map(|j| j.body_limit())
    }

    /// The primary finished: completed, or `None` when it failed.
    pub(super) fn primary(&self, done: Option<Completed>) {
        self.settle(|s| s.primary = leg(done));
    }

    /// The shadow finished: completed, or `None` when it was dropped.
    pub(super) fn shadow(&self, done: Option<Completed>) {
        self.settle(|s| s.shadow = leg(done));
    }

    fn settle(&self, f: impl FnOnce(&mut PairState)) {
        let Ok(mut s) = self.state.lock() else { return };
        f(&mut s);
        if !matches!(
            (&s.primary, &s.shadow),
            (Leg::Completed(_), Leg::Completed(_))
        ) {
            return;
        }
        // Both completed: take them out (so this happens once).
        let primary = std::mem::replace(&mut s.primary, Leg::Failed);
        let shadow = std::mem::replace(&mut s.shadow, Leg::Failed);
        let (Leg::Completed(p), Leg::Completed(sh)) = (primary, shadow) else {
            return;
        };
        let meta = s.meta.take();
        drop(s);
        if p.duration > Duration::ZERO {
            let r = sh.duration.as_secs_f64() / p.duration.as_secs_f64();
            if let Some(exact) = &self.exact_ratio {
                exact.record_ratio(r);
            }
            self.ratio.observe(r);
        }
        if let (Some(judge), Some(meta), Some(pa), Some(sa)) =
            (&self.judge, meta, p.answer, sh.answer)
        {
            let judge = Arc::clone(judge);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || judge.judge(&meta, &pa, &sa));
                }
                Err(_) => judge.judge(&meta, &pa, &sa),
            }
        }
    }
}

fn leg(done: Option<Completed>) -> Leg {
    match done {
        Some(c) => Leg::Completed(c),
        None => Leg::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completed(ms: u64) -> Option<Completed> {
        Some(Completed {
            duration: Duration::from_millis(ms),
            answer: None,
        })
    }

    #[test]
    fn the_pair_records_one_ratio_when_both_complete() {
        let ratio =
            Histogram::with_opts(prometheus::HistogramOpts::new("r", "r")).expect("histogram");
        let p = Pair::new(ratio.clone(), None, None);
        p.shadow(completed(30));
        p.primary(completed(10));
        assert_eq!(ratio.get_sample_count(), 1);
        assert!((ratio.get_sample_sum() - 3.0).abs() < 1e-9);
        let p = Pair::new(ratio.clone(), None, None);
        p.primary(None);
        p.shadow(completed(30));
        assert_eq!(ratio.get_sample_count(), 1);
    }
}
