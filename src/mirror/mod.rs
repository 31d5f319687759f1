//! Shadow traffic: copies of live requests sent to a candidate backend on their own tasks,
//! measured, and thrown away.
//!
//! Lives here: dispatch (accounting, in-flight and memory bounds), the request-body tee that
//! feeds a copy as the primary's body flows, and the pairing of primary and shadow durations.
//! Must not: block, slow or fail the primary. Nothing here awaits on the primary's path; every
//! copy ends exactly once, as completed (`runoff_requests_total{role="shadow"}`) or dropped
//! (`runoff_mirror_dropped_total{reason}`).

mod shadow;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::connectors::ConnectorOptions;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use prometheus::Histogram;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use crate::access_log::{now_rfc3339, AccessLogger};
use crate::compare::store::{CompareStore, PairMeta, RouteSamples};
use crate::compare::{self, Captured, Verdict};
use crate::config::{Compare, Mirror};
use crate::metrics::{CompareHandles, DropReason, MirrorHandles};

/// Process-wide mirroring resources: the shadow connection pool and the memory budget.
pub struct MirrorRuntime {
    connector: Connector,
    budget: Arc<Budget>,
    access_log: AccessLogger,
}

impl MirrorRuntime {
    pub fn new(memory_bytes: u64, pool_size: usize, access_log: AccessLogger) -> MirrorRuntime {
        MirrorRuntime {
            connector: Connector::new(Some(ConnectorOptions::new(pool_size))),
            budget: Arc::new(Budget {
                used: AtomicU64::new(0),
                limit: memory_bytes,
            }),
            access_log,
        }
    }
}

/// The global budget for request-body bytes waiting to be written to shadows.
struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + n <= self.limit).then_some(used + n)
            })
            .is_ok()
    }

    fn give(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Body bytes charged to the budget until dropped.
struct Budgeted {
    bytes: Bytes,
    budget: Arc<Budget>,
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        self.budget.give(self.bytes.len() as u64);
    }
}

enum BodyEvent {
    Chunk(Budgeted),
    End,
    Abort(DropReason),
}

/// A route's comparison settings and where its results go.
pub struct CompareCtx {
    pub config: Compare,
    pub handles: CompareHandles,
    pub store: Arc<CompareStore>,
    /// The route's name, sample capacity and redactions, for the store.
    pub samples: RouteSamples,
}

impl CompareCtx {
    /// Judge one pair and record the verdict (counters, samples, path counts).
    fn judge(&self, meta: &PairMeta, primary: &Captured, shadow: &Captured) {
        let verdict = compare::compare(primary, shadow, &self.config);
        match &verdict {
            Verdict::Match => self.handles.results[0].inc(),
            Verdict::Mismatch(diff) => {
                for part in diff.parts() {
                    self.handles.parts[part as usize].inc();
                }
                self.handles.results[1].inc();
            }
            Verdict::Skipped(_) => self.handles.results[2].inc(),
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

/// One route's mirror, as the snapshot holds it.
pub struct RouteMirror {
    pub config: Mirror,
    pub handles: MirrorHandles,
    pub peer: HttpPeer,
    pub route_name: String,
    pub backend_name: String,
    pub request_id_header: http::HeaderName,
    /// Copies under way for this route.
    pub in_flight: Arc<AtomicUsize>,
    /// Compare the two answers, when the route says so.
    pub compare: Option<Arc<CompareCtx>>,
    /// Exact latency of completed copies, for summaries.
    pub shadow_latency: Arc<crate::summary::Recorder>,
    /// Exact shadow ÷ primary ratios, for summaries.
    pub ratio: Arc<crate::summary::Recorder>,
}

/// How the copy's body will arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body: the copy is complete once its header is sent.
    None,
    /// `Content-Length: n` (n > 0).
    Length(u64),
    /// Chunked or otherwise unknown length.
    Streamed,
}

/// Send a copy of a request. Counts it as dispatched; returns the handle that feeds its body,
/// or `None` when it was dropped on the spot (and counted so).
pub fn dispatch(
    rt: &Arc<MirrorRuntime>,
    rm: &Arc<RouteMirror>,
    header: RequestHeader,
    body: BodyPlan,
    start: Instant,
) -> Option<CopyHandle> {
    let h = &rm.handles;
    h.requests.inc();
    if let BodyPlan::Length(n) = body {
        if n > rm.config.max_body_bytes {
            h.dropped(DropReason::BodyTooLarge);
            return None;
        }
    }
    if rm.in_flight.fetch_add(1, Ordering::AcqRel) >= rm.config.max_in_flight {
        rm.in_flight.fetch_sub(1, Ordering::AcqRel);
        h.dropped(DropReason::Overloaded);
        return None;
    }
    let meta = rm.compare.as_ref().map(|_| PairMeta {
        method: header.method.as_str().to_string(),
        path: header
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        request_id: header
            .headers
            .get(&rm.request_id_header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    });
    let judge = rm.compare.clone().zip(meta);
    let pair = Arc::new(Pair::new(
        h.ratio.clone(),
        Some(Arc::clone(&rm.ratio)),
        judge,
    ));
    let (tx, rx) = if body == BodyPlan::None {
        (None, None)
    } else {
        let (tx, rx) = unbounded_channel();
        (Some(tx), Some(rx))
    };
    tokio::spawn(shadow::run(shadow::Job {
        rt: Arc::clone(rt),
        rm: Arc::clone(rm),
        header,
        body: rx,
        pair: Arc::clone(&pair),
        start,
    }));
    Some(CopyHandle {
        tx,
        teed: 0,
        max_body: rm.config.max_body_bytes,
        budget: Arc::clone(&rt.budget),
        pair,
    })
}

/// The primary side of one copy: feeds it the request body and reports the primary's outcome.
pub struct CopyHandle {
    /// `None` once the body is complete or abandoned (or there is none).
    tx: Option<UnboundedSender<BodyEvent>>,
    /// Body bytes already passed to the copy.
    teed: u64,
    max_body: u64,
    budget: Arc<Budget>,
    pair: Arc<Pair>,
}

impl CopyHandle {
    /// Pass on a piece of the request body as it flows to the primary.
    ///
    /// `attempt_end` is the offset, within the body, just past `chunk` in the current upstream
    /// attempt: a retry replays the body from 0, and only bytes past what was already teed
    /// are new. Never blocks; a copy over `max_body_bytes` or over the memory budget is
    /// abandoned (its connection is then closed, never sent truncated as if complete).
    pub fn tee(&mut self, chunk: Option<&Bytes>, attempt_end: u64, end_of_stream: bool) {
        let Some(tx) = &self.tx else { return };
        if let Some(chunk) = chunk {
            let len = chunk.len() as u64;
            if attempt_end > self.teed {
                let fresh = (attempt_end - self.teed).min(len);
                let bytes = chunk.slice((len - fresh) as usize..);
                if self.teed + fresh > self.max_body {
                    self.abandon(DropReason::BodyTooLarge);
                    return;
                }
                if !self.budget.try_take(fresh) {
                    self.abandon(DropReason::Overloaded);
                    return;
                }
                self.teed += fresh;
                let event = BodyEvent::Chunk(Budgeted {
                    bytes,
                    budget: Arc::clone(&self.budget),
                });
                if tx.send(event).is_err() {
                    // The copy already ended (timeout, upstream error): nothing more to feed.
                    self.tx = None;
                    return;
                }
            }
        }
        if end_of_stream {
            if let Some(tx) = self.tx.take() {
                let _ = tx.send(BodyEvent::End);
            }
        }
    }

    fn abandon(&mut self, reason: DropReason) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(BodyEvent::Abort(reason));
        }
    }

    /// The primary is done. `duration`: its full duration if it completed, for the paired
    /// ratio; `answer`: its response as captured for comparison. `caller_gone`: the caller
    /// aborted (else a body that stopped short means the primary failed, so the copy's body
    /// never arrived).
    pub fn primary_done(
        &mut self,
        duration: Option<Duration>,
        answer: Option<Captured>,
        caller_gone: bool,
    ) {
        self.abandon(if caller_gone {
            DropReason::ClientAborted
        } else {
            DropReason::PrimaryFailed
        });
        self.pair.primary(duration.map(|d| (d, answer)));
    }

    /// Whether this copy's answers will be compared (then the primary's answer is captured).
    pub fn compares(&self) -> Option<usize> {
        self.pair.judge.as_ref().map(|c| c.config.body_max_bytes)
    }
}

impl Drop for CopyHandle {
    fn drop(&mut self) {
        self.abandon(DropReason::ClientAborted);
    }
}

/// A completed leg: its duration and, when the route compares, its captured answer.
type Done = (Duration, Option<Captured>);

/// One leg's outcome: `None` while under way, `Some(None)` failed, `Some(Some(done))`.
type Leg = Option<Option<Done>>;

/// The two legs, and what the comparison needs to know about the request (taken once).
struct PairState {
    legs: (Leg, Leg),
    meta: Option<PairMeta>,
}

/// Primary and shadow legs of one request; the second to finish records the paired ratio and
/// hands both answers to the comparison, on a blocking-pool thread.
struct Pair {
    ratio: Histogram,
    /// The route's exact ratio recorder, for summaries.
    exact_ratio: Option<Arc<crate::summary::Recorder>>,
    judge: Option<Arc<CompareCtx>>,
    state: Mutex<PairState>,
}

impl Pair {
    fn new(
        ratio: Histogram,
        exact_ratio: Option<Arc<crate::summary::Recorder>>,
        judge: Option<(Arc<CompareCtx>, PairMeta)>,
    ) -> Pair {
        let (judge, meta) = judge.unzip();
        Pair {
            ratio,
            exact_ratio,
            judge,
            state: Mutex::new(PairState {
                legs: (None, None),
                meta,
            }),
        }
    }

    fn primary(&self, done: Option<Done>) {
        self.settle(|l| l.0 = Some(done));
    }

    fn shadow(&self, done: Option<Done>) {
        self.settle(|l| l.1 = Some(done));
    }

    fn settle(&self, f: impl FnOnce(&mut (Leg, Leg))) {
        let Ok(mut s) = self.state.lock() else { return };
        f(&mut s.legs);
        if !matches!(s.legs, (Some(Some(_)), Some(Some(_)))) {
            return;
        }
        // Both completed: take them out (so this happens once).
        let (Some(Some((pd, pa))), Some(Some((sd, sa)))) =
            std::mem::replace(&mut s.legs, (Some(None), Some(None)))
        else {
            return;
        };
        let meta = s.meta.take();
        drop(s);
        if pd > Duration::ZERO {
            let r = sd.as_secs_f64() / pd.as_secs_f64();
            if let Some(exact) = &self.exact_ratio {
                exact.record((r * crate::summary::RATIO_SCALE) as u64, false);
            }
            self.ratio.observe(r);
        }
        if let (Some(ctx), Some(meta), Some(p), Some(sh)) = (&self.judge, meta, pa, sa) {
            let ctx = Arc::clone(ctx);
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn_blocking(move || ctx.judge(&meta, &p, &sh));
                }
                Err(_) => ctx.judge(&meta, &p, &sh),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_goes_over_its_limit() {
        let b = Budget {
            used: AtomicU64::new(0),
            limit: 10,
        };
        assert!(b.try_take(6));
        assert!(!b.try_take(5));
        assert!(b.try_take(4));
        b.give(6);
        assert_eq!(b.used.load(Ordering::Acquire), 4);
    }

    fn handle(
        max_body: u64,
        limit: u64,
    ) -> (
        CopyHandle,
        tokio::sync::mpsc::UnboundedReceiver<BodyEvent>,
        Arc<Budget>,
    ) {
        let (tx, rx) = unbounded_channel();
        let budget = Arc::new(Budget {
            used: AtomicU64::new(0),
            limit,
        });
        let ratio =
            Histogram::with_opts(prometheus::HistogramOpts::new("r", "r")).expect("histogram");
        let h = CopyHandle {
            tx: Some(tx),
            teed: 0,
            max_body,
            budget: Arc::clone(&budget),
            pair: Arc::new(Pair::new(ratio, None, None)),
        };
        (h, rx, budget)
    }

    fn drain(
        rx: &mut tokio::sync::mpsc::UnboundedReceiver<BodyEvent>,
    ) -> (Vec<u8>, Option<&'static str>) {
        let mut body = Vec::new();
        let mut end = None;
        while let Ok(e) = rx.try_recv() {
            match e {
                BodyEvent::Chunk(c) => body.extend_from_slice(&c.bytes),
                BodyEvent::End => end = Some("end"),
                BodyEvent::Abort(r) => end = Some(r.as_str()),
            }
        }
        (body, end)
    }

    #[test]
    fn retry_replays_are_not_teed_twice() {
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        let a = Bytes::from_static(b"hello ");
        let b = Bytes::from_static(b"world");
        h.tee(Some(&a), 6, false);
        // Retry: the body replays from 0.
        h.tee(Some(&a), 6, false);
        h.tee(Some(&Bytes::from_static(b"hello wo")), 8, false);
        h.tee(Some(&Bytes::from_static(b"rld")), 11, true);
        let (body, end) = drain(&mut rx);
        assert_eq!(body, b"hello world");
        assert_eq!(end, Some("end"));
        // Further pieces after the end are ignored.
        h.tee(Some(&b), 16, true);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn over_the_cap_the_copy_is_abandoned_not_truncated() {
        let (mut h, mut rx, budget) = handle(10, 1 << 20);
        h.tee(Some(&Bytes::from_static(b"0123456")), 7, false);
        h.tee(Some(&Bytes::from_static(b"789ab")), 12, true);
        let (body, end) = drain(&mut rx);
        assert_eq!(body, b"0123456");
        assert_eq!(end, Some("body_too_large"));
        // Consumed chunks gave their bytes back.
        assert_eq!(budget.used.load(Ordering::Acquire), 0);
    }

    #[test]
    fn over_the_memory_budget_the_copy_is_dropped_as_overloaded() {
        let (mut h, mut rx, _) = handle(1 << 20, 4);
        h.tee(Some(&Bytes::from_static(b"0123456")), 7, true);
        let (body, end) = drain(&mut rx);
        assert!(body.is_empty());
        assert_eq!(end, Some("overloaded"));
    }

    #[test]
    fn a_primary_that_stops_short_aborts_the_copy() {
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        h.tee(Some(&Bytes::from_static(b"part")), 4, false);
        h.primary_done(None, None, true);
        assert_eq!(drain(&mut rx).1, Some("client_aborted"));
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        h.primary_done(None, None, false);
        assert_eq!(drain(&mut rx).1, Some("primary_failed"));
        // A finished body is not aborted afterwards.
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        h.tee(None, 0, true);
        h.primary_done(Some(Duration::from_millis(3)), None, false);
        assert_eq!(drain(&mut rx).1, Some("end"));
    }

    #[test]
    fn the_pair_records_one_ratio_when_both_complete() {
        let ratio =
            Histogram::with_opts(prometheus::HistogramOpts::new("r", "r")).expect("histogram");
        let p = Pair::new(ratio.clone(), None, None);
        p.shadow(Some((Duration::from_millis(30), None)));
        p.primary(Some((Duration::from_millis(10), None)));
        assert_eq!(ratio.get_sample_count(), 1);
        assert!((ratio.get_sample_sum() - 3.0).abs() < 1e-9);
        let p = Pair::new(ratio.clone(), None, None);
        p.primary(None);
        p.shadow(Some((Duration::from_millis(30), None)));
        assert_eq!(ratio.get_sample_count(), 1);
    }
}
