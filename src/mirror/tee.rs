//! The primary's side of a copy (`CopyHandle`): it sends the copy once the primary's request is
//! final, and, as the primary's body flows, passes each new piece to the copy's task through an
//! unbounded channel whose bytes are charged to a global memory budget.
//!
//! Must not: block or slow the primary (nothing here awaits), send a copy of a request that
//! never went upstream, tee a retry's replay twice, or let a copy complete with a truncated
//! body (a copy over its limits is abandoned instead).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::RequestHeader;
use tokio::sync::mpsc::UnboundedSender;

use super::pair::{Completed, Outcome, Pair};
use super::request;
use super::shadow::Pending;
use crate::compare::Captured;
use crate::metrics::DropReason;

/// The global budget for request-body bytes waiting to be written to shadows.
pub(super) struct Budget {
    used: AtomicU64,
    limit: u64,
}

impl Budget {
    pub(super) fn new(limit: u64) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            limit,
        }
    }

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

/// Captured answers are charged to the same budget as copies' request bodies.
impl crate::compare::Charge for Budget {
    fn take(&self, bytes: u64) -> bool {
        self.try_take(bytes)
    }

    fn give(&self, bytes: u64) {
        Budget::give(self, bytes);
    }
}

/// Body bytes charged to the budget until dropped.
pub(super) struct Budgeted {
    pub(super) bytes: Bytes,
    budget: Arc<Budget>,
}

impl Drop for Budgeted {
    fn drop(&mut self) {
        self.budget.give(self.bytes.len() as u64);
    }
}

/// What the tee tells the copy's task.
pub(super) enum BodyEvent {
    Chunk(Budgeted),
    End,
    Abort(DropReason),
}

/// The primary side of one copy: feeds it the request body and reports the primary's outcome.
pub(crate) struct CopyHandle {
    /// `None` once the body is complete or abandoned (or there is none).
    pub(super) tx: Option<UnboundedSender<BodyEvent>>,
    /// Body bytes already passed to the copy.
    pub(super) teed: u64,
    pub(super) max_body: u64,
    pub(super) budget: Arc<Budget>,
    pub(super) pair: Arc<Pair>,
    /// The copy until it is sent (`send`).
    pub(super) pending: Option<Pending>,
}

impl CopyHandle {
    /// Send the copy, once: `as_sent` is the primary's request as `upstream_request_filter`
    /// sees it (`request::shadow_request` says what the copy adds to it), `has_body` whether
    /// a body follows. `true` when it was sent by this call (the first attempt's).
    pub(crate) fn send(&mut self, as_sent: &RequestHeader, has_body: bool) -> bool {
        let Some(pending) = self.pending.take() else {
            return false;
        };
        let rm = pending.reserved.rm();
        let copy = request::shadow_request(as_sent, &rm.config, has_body)
            .and_then(|r| request::for_protocol(r, rm.protocol));
        match copy {
            Ok(header) => {
                pending.send(header);
                true
            }
            Err(e) => {
                // Not seen: the copy only adds valid fields to a request Pingora accepted.
                log::warn!("cannot build a shadow copy: {e}");
                self.abandon(DropReason::PrimaryFailed);
                pending.cancel(DropReason::PrimaryFailed);
                false
            }
        }
    }

    /// Pass on a piece of the request body as it flows to the primary.
    ///
    /// `attempt_end` is the offset, within the body, just past `chunk` in the current upstream
    /// attempt: a retry replays the body from 0, and only bytes past what was already teed
    /// are new. Never blocks; a copy over `max_body_bytes` or over the memory budget is
    /// abandoned (its connection is then closed, never sent truncated as if complete).
    pub(crate) fn tee(&mut self, chunk: Option<&Bytes>, attempt_end: u64, end_of_stream: bool) {
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

    /// The primary is done. `duration`: its upstream-side duration if it completed, for the
    /// paired ratio; `error`: its answer was a 5xx; `answer`: its response as captured for comparison. `caller_gone`: the caller
    /// aborted (else a body that stopped short means the primary failed, so the copy's body
    /// never arrived).
    pub(crate) fn primary_done(
        &mut self,
        duration: Option<Duration>,
        answer: Option<Captured>,
        caller_gone: bool,
        error: bool,
    ) {
        let reason = if caller_gone {
            DropReason::ClientAborted
        } else {
            DropReason::PrimaryFailed
        };
        self.abandon(reason);
        if let Some(pending) = self.pending.take() {
            // The primary's request never went upstream: neither does its copy.
            pending.cancel(reason);
        }
        self.pair.primary(match duration {
            Some(duration) => Outcome::Completed(Completed {
                duration,
                error,
                answer,
            }),
            None if caller_gone => Outcome::Excluded,
            None => Outcome::Failed,
        });
    }

    /// When this copy's answers will be compared: a capture of the primary's answer, its body
    /// charged to the mirror's memory budget.
    pub(crate) fn capture(&self, status: u16, headers: http::HeaderMap) -> Option<Captured> {
        let limit = self.pair.body_limit()?;
        let budget: Arc<dyn crate::compare::Charge> = self.budget.clone();
        Some(Captured::new(status, headers, limit).charged(budget))
    }
}

impl Drop for CopyHandle {
    fn drop(&mut self) {
        self.abandon(DropReason::ClientAborted);
        if let Some(pending) = self.pending.take() {
            pending.cancel(DropReason::ClientAborted);
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

    use tokio::sync::mpsc::unbounded_channel;

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
        let ratio = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("r", "r"))
            .expect("histogram");
        let h = CopyHandle {
            tx: Some(tx),
            teed: 0,
            max_body,
            budget: Arc::clone(&budget),
            pair: Arc::new(Pair::new(
                super::super::pair::Sinks {
                    ratio,
                    exact_ratio: None,
                    tally: None,
                },
                None,
            )),
            pending: None,
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
        h.primary_done(None, None, true, false);
        assert_eq!(drain(&mut rx).1, Some("client_aborted"));
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        h.primary_done(None, None, false, false);
        assert_eq!(drain(&mut rx).1, Some("primary_failed"));
        // A finished body is not aborted afterwards.
        let (mut h, mut rx, _) = handle(1 << 20, 1 << 20);
        h.tee(None, 0, true);
        h.primary_done(Some(Duration::from_millis(3)), None, false, false);
        assert_eq!(drain(&mut rx).1, Some("end"));
    }
}
