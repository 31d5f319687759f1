//! The pairing of one request's two legs: the primary's and the shadow's outcome meet here, and
//! the second to settle records the paired latency ratio, the pair's errors for the verdicts,
//! and hands both answers to the route's judge, on a blocking-pool thread.
//!
//! Must not: block either leg (one short lock per leg), or judge a pair twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::Histogram;

use crate::analysis::tally::Tally;
use crate::analysis::Recorder;
use crate::compare::{Captured, Judge, PairMeta};

/// A leg that completed: its upstream-side duration (from its own request starting to go
/// upstream to the last response byte received), whether its answer was an error (5xx), and,
/// when the route compares, its captured answer.
pub(super) struct Completed {
    pub duration: Duration,
    pub error: bool,
    pub answer: Option<Captured>,
}

/// How a leg ended.
pub(super) enum Outcome {
    Completed(Completed),
    /// No complete answer, counted as an error of that leg (a primary failure; a copy dropped
    /// for an upstream error or a timeout).
    Failed,
    /// Says nothing about the backend (the caller aborted; a copy dropped for overload, size,
    /// pacing, or because its body never came): the pair is left out of the verdicts.
    Excluded,
}

/// Where one leg stands.
enum Leg {
    Pending,
    Settled(Outcome),
}

/// The two legs, and what the comparison needs to know about the request (taken once).
struct PairState {
    primary: Leg,
    shadow: Leg,
    meta: Option<PairMeta>,
}

/// Where a pair's results go.
pub(super) struct Sinks {
    pub ratio: Histogram,
    /// The route's exact ratio recorder, for summaries.
    pub exact_ratio: Option<Arc<Recorder>>,
    /// The route's verdict tally, when it has an `analysis`.
    pub tally: Option<Arc<Tally>>,
}

/// Primary and shadow legs of one request.
pub(super) struct Pair {
    sinks: Sinks,
    judge: Option<Arc<Judge>>,
    state: Mutex<PairState>,
}

impl Pair {
    /// A pair whose answers `judge` compares, once the request is named (`name`).
    pub(super) fn new(sinks: Sinks, judge: Option<Arc<Judge>>) -> Pair {
        Pair {
            sinks,
            judge,
            state: Mutex::new(PairState {
                primary: Leg::Pending,
                shadow: Leg::Pending,
                meta: None,
            }),
        }
    }

    /// Whether the pair's answers will be compared (then the request must be named).
    pub(super) fn judged(&self) -> bool {
        self.judge.is_some()
    }

    /// Name the request for the comparison's samples (once the copy's header is final).
    pub(super) fn name(&self, meta: PairMeta) {
        if let Ok(mut s) = self.state.lock() {
            s.meta = Some(meta);
        }
    }

    /// How much of each answer's body to keep, when the pair will be judged.
    pub(super) fn body_limit(&self) -> Option<usize> {
        self.judge.as_ref().map(|j| j.body_limit())
    }

    pub(super) fn primary(&self, outcome: Outcome) {
        self.settle(|s| s.primary = Leg::Settled(outcome));
    }

    pub(super) fn shadow(&self, outcome: Outcome) {
        self.settle(|s| s.shadow = Leg::Settled(outcome));
    }

    fn settle(&self, f: impl FnOnce(&mut PairState)) {
        let Ok(mut s) = self.state.lock() else { return };
        f(&mut s);
        if matches!(s.primary, Leg::Pending) || matches!(s.shadow, Leg::Pending) {
            return;
        }
        // Both settled: take them out (so this happens once).
        let primary = std::mem::replace(&mut s.primary, Leg::Settled(Outcome::Excluded));
        let shadow = std::mem::replace(&mut s.shadow, Leg::Settled(Outcome::Excluded));
        let meta = s.meta.take();
        drop(s);
        let (Leg::Settled(p), Leg::Settled(sh)) = (primary, shadow) else {
            return;
        };
        let ratio = match (&p, &sh) {
            (Outcome::Completed(p), Outcome::Completed(sh)) if p.duration > Duration::ZERO => {
                Some(sh.duration.as_secs_f64() / p.duration.as_secs_f64())
            }
            _ => None,
        };
        if let Some(r) = ratio {
            if let Some(exact) = &self.sinks.exact_ratio {
                exact.record_ratio(r);
            }
            self.sinks.ratio.observe(r);
        }
        if let Some(tally) = &self.sinks.tally {
            let erred = |o: &Outcome| match o {
                Outcome::Completed(c) => Some(c.error),
                Outcome::Failed => Some(true),
                Outcome::Excluded => None,
            };
            if let (Some(pe), Some(se)) = (erred(&p), erred(&sh)) {
                tally.pair(pe, se, ratio);
            }
        }
        let (Outcome::Completed(p), Outcome::Completed(sh)) = (p, sh) else {
            return;
        };
        if let (Some(judge), Some(meta), Some(pa), Some(sa)) =
            (&self.judge, meta, p.answer, sh.answer)
        {
            let Some(slot) = judge.slot() else {
                return;
            };
            let judge = Arc::clone(judge);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || {
                        judge.judge(&meta, &pa, &sa);
                        drop(slot);
                    });
                }
                Err(_) => judge.judge(&meta, &pa, &sa),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tally::Tally;

    fn completed(ms: u64, error: bool) -> Outcome {
        Outcome::Completed(Completed {
            duration: Duration::from_millis(ms),
            error,
            answer: None,
        })
    }

    fn pair(ratio: &Histogram, tally: &Arc<Tally>) -> Pair {
        Pair::new(
            Sinks {
                ratio: ratio.clone(),
                exact_ratio: None,
                tally: Some(Arc::clone(tally)),
            },
            None,
        )
    }

    #[test]
    fn the_pair_records_one_ratio_when_both_complete() {
        let ratio =
            Histogram::with_opts(prometheus::HistogramOpts::new("r", "r")).expect("histogram");
        let tally = Arc::new(Tally::new("test"));
        let p = pair(&ratio, &tally);
        p.shadow(completed(30, false));
        p.primary(completed(10, false));
        assert_eq!(ratio.get_sample_count(), 1);
        assert!((ratio.get_sample_sum() - 3.0).abs() < 1e-9);
        let p = pair(&ratio, &tally);
        p.primary(Outcome::Failed);
        p.shadow(completed(30, false));
        assert_eq!(ratio.get_sample_count(), 1);
        let t = tally.snapshot().expect("tally");
        assert_eq!((t.pairs, t.worse, t.better, t.ratios.len()), (2, 0, 1, 1));
    }

    #[test]
    fn errors_are_paired_and_excluded_legs_leave_the_pair_out() {
        let ratio =
            Histogram::with_opts(prometheus::HistogramOpts::new("r", "r")).expect("histogram");
        let tally = Arc::new(Tally::new("test"));
        for (primary, shadow) in [
            (completed(1, false), completed(1, true)), // worse
            (completed(1, false), Outcome::Failed),    // worse
            (completed(1, true), completed(1, false)), // better
            (completed(1, true), completed(1, true)),  // both erred
            (completed(1, false), Outcome::Excluded),  // left out
            (Outcome::Excluded, completed(1, false)),  // left out
        ] {
            let p = pair(&ratio, &tally);
            p.primary(primary);
            p.shadow(shadow);
        }
        let t = tally.snapshot().expect("tally");
        assert_eq!((t.pairs, t.worse, t.better), (4, 2, 1));
    }
}
