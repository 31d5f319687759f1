//! A route's tally for its verdicts: what the baseline and the candidate did since the
//! analysis' start point (process start, a reload or override that changed the route, a ramp
//! step, or `POST /api/analysis/ROUTE/reset`), never over a sliding window.
//!
//! Lives here: the accumulators the request path is handed (latency histograms per side,
//! requests and errors, per-request ratios and paired errors on mirrored routes, compared
//! pairs) and a consistent copy of them for the statistics. A tally is one set per core
//! ([`Shards`]): an update counts into the set of the core it runs on, a snapshot adds them all
//! up under every lock at once. Must not: hold a lock for more than one update or more than
//! one set's lock to count, or decide anything.

use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use super::shards::Shards;

/// Largest recordable latency: an hour in microseconds (larger values are clamped).
const MAX_MICROS: u64 = 3_600_000_000;
/// Ratios are kept × this, to three significant digits.
pub const RATIO_SCALE: f64 = 1000.0;

/// Grown as far as the largest value recorded (values are clamped to `MAX_MICROS`).
fn histogram() -> Option<Histogram<u64>> {
    Histogram::new(3).ok()
}

/// Which side of the comparison a leg belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Baseline,
    Candidate,
}

/// One side's counts.
#[derive(Debug, Clone)]
pub struct SideTally {
    /// Latency (µs, upstream-side) of the answers received.
    pub latency: Histogram<u64>,
    /// Requests counted (answers, and failures that count as errors).
    pub requests: u64,
    /// Of those, 5xx answers and failures.
    pub errors: u64,
}

/// Everything counted since the start point.
#[derive(Debug, Clone)]
pub struct TallySnapshot {
    /// The start point, and why it is there.
    pub since: SystemTime,
    pub reason: String,
    pub baseline: SideTally,
    pub candidate: SideTally,
    /// Mirrored routes: candidate ÷ baseline latency of the same request (× `RATIO_SCALE`),
    /// for pairs where both answered.
    pub ratios: Histogram<u64>,
    /// Mirrored routes: pairs counted for errors, and those where only the candidate erred
    /// (`worse`) or only the baseline did (`better`).
    pub pairs: u64,
    pub worse: u64,
    pub better: u64,
    /// Compared pairs that matched and that did not (skipped ones are not counted).
    pub matched: u64,
    pub mismatched: u64,
}

/// A route's tally (shared by the proxy, the mirror and the judge).
pub struct Tally {
    shards: Shards<Option<TallySnapshot>>,
}

impl TallySnapshot {
    fn new(since: SystemTime, reason: &str) -> Option<TallySnapshot> {
        let side = || {
            Some(SideTally {
                latency: histogram()?,
                requests: 0,
                errors: 0,
            })
        };
        Some(TallySnapshot {
            since,
            reason: reason.to_string(),
            baseline: side()?,
            candidate: side()?,
            ratios: histogram()?,
            pairs: 0,
            worse: 0,
            better: 0,
            matched: 0,
            mismatched: 0,
        })
    }

    /// Add another core's share (the same start point) into this one.
    fn add(&mut self, other: &TallySnapshot) {
        for (into, from) in [
            (&mut self.baseline, &other.baseline),
            (&mut self.candidate, &other.candidate),
        ] {
            let _ = into.latency.add(&from.latency);
            into.requests += from.requests;
            into.errors += from.errors;
        }
        let _ = self.ratios.add(&other.ratios);
        self.pairs += other.pairs;
        self.worse += other.worse;
        self.better += other.better;
        self.matched += other.matched;
        self.mismatched += other.mismatched;
    }

    fn side(&mut self, side: Side) -> &mut SideTally {
        match side {
            Side::Baseline => &mut self.baseline,
            Side::Candidate => &mut self.candidate,
        }
    }
}

impl Tally {
    /// A tally counting from now.
    pub fn new(reason: &str) -> Tally {
        let since = SystemTime::now();
        Tally {
            shards: Shards::new(|| TallySnapshot::new(since, reason)),
        }
    }

    fn with(&self, f: impl FnOnce(&mut TallySnapshot)) {
        self.shards.with(|s| {
            if let Some(s) = s.as_mut() {
                f(s);
            }
        });
    }

    /// One request of a side: its upstream-side latency when an answer arrived, and whether
    /// it counts as an error (a 5xx, or no answer).
    pub fn request(&self, side: Side, latency: Option<Duration>, error: bool) {
        self.with(|s| {
            let t = s.side(side);
            t.requests += 1;
            t.errors += u64::from(error);
            if let Some(d) = latency {
                let micros = d.as_micros().clamp(1, u128::from(MAX_MICROS)) as u64;
                let _ = t.latency.record(micros);
            }
        });
    }

    /// One mirrored request whose two legs both settled (pairs with an excluded leg are not
    /// counted): whether each erred, and candidate ÷ baseline latency when both answered.
    pub fn pair(&self, baseline_error: bool, candidate_error: bool, ratio: Option<f64>) {
        self.with(|s| {
            s.pairs += 1;
            s.worse += u64::from(candidate_error && !baseline_error);
            s.better += u64::from(baseline_error && !candidate_error);
            if let Some(r) = ratio.filter(|r| r.is_finite() && *r > 0.0) {
                let scaled = (r * RATIO_SCALE).round().clamp(1.0, MAX_MICROS as f64) as u64;
                let _ = s.ratios.record(scaled);
            }
        });
    }

    /// One compared pair (skipped ones are not counted).
    pub fn compared(&self, matched: bool) {
        self.with(|s| {
            if matched {
                s.matched += 1;
            } else {
                s.mismatched += 1;
            }
        });
    }

    /// Start counting again from now.
    pub fn restart(&self, reason: &str) {
        let since = SystemTime::now();
        self.shards.all(|shards| {
            for s in shards.iter_mut() {
                **s = TallySnapshot::new(since, reason);
            }
        });
    }

    /// A copy of everything counted so far (every core's share, at one instant).
    pub fn snapshot(&self) -> Option<TallySnapshot> {
        self.shards.all(|shards| {
            let mut parts = shards.iter();
            let mut sum = parts.next()?.as_ref()?.clone();
            for part in parts {
                sum.add(part.as_ref()?);
            }
            Some(sum)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn counts_from_many_threads_add_up_and_a_restart_clears_every_copy() {
        let tally = Arc::new(Tally::new("test"));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let tally = Arc::clone(&tally);
                std::thread::spawn(move || {
                    for i in 0..500u64 {
                        let side = if t % 2 == 0 {
                            Side::Baseline
                        } else {
                            Side::Candidate
                        };
                        tally.request(side, Some(Duration::from_micros(100 + i)), i % 10 == 0);
                        tally.pair(false, i % 100 == 0, Some(1.5));
                        tally.compared(i % 4 != 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let s = tally.snapshot().expect("snapshot");
        assert_eq!((s.baseline.requests, s.baseline.errors), (1000, 100));
        assert_eq!((s.candidate.requests, s.candidate.errors), (1000, 100));
        assert_eq!(s.baseline.latency.len(), 1000);
        assert_eq!((s.pairs, s.worse, s.better), (2000, 20, 0));
        assert_eq!(s.ratios.len(), 2000);
        assert_eq!((s.matched, s.mismatched), (1500, 500));

        tally.restart("reset");
        let s = tally.snapshot().expect("snapshot");
        assert_eq!(s.reason, "reset");
        assert_eq!(
            (s.baseline.requests, s.candidate.requests, s.pairs),
            (0, 0, 0)
        );
        assert_eq!((s.matched, s.mismatched), (0, 0));
    }
}
