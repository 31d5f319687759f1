//! Mirroring a WebSocket: after the primary's `101`, a shadow connection to the candidate with
//! the same request, offering only the subprotocol and extensions the primary accepted. Every
//! client byte is copied to it through a bounded queue; its frames are read, counted
//! (`role="shadow"`) and thrown away.
//!
//! Lives here: the shadow's own task and its accounting (one mirrored connection is one copy:
//! completed when it stayed open until the primary closed, else dropped with a reason). Must
//! not: make the primary wait (the queue never blocks; a full one closes the shadow as
//! `overloaded`), or outlive the primary by more than a short linger.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
use pingora::http::RequestHeader;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::handshake::{handshake, Answer, Dial};
use super::idle_read::IdleRead;
use super::relay::{count, Half, Shared, Tap};
use super::{LazySide, WsSide};
use crate::config::Mirror;
use crate::metrics::{Direction, DropReason, MirrorHandles, StatusClass, UpgradeFailure, WsEnd};
use crate::outcome::error_kind;
use crate::pool::endpoint::Attempt;
use crate::pool::Pool;

/// After the primary closed, how long the shadow may take to finish its close.
const LINGER: Duration = Duration::from_secs(2);

/// What the primary's backend accepted in its `101`: the shadow must accept the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) protocol: Option<HeaderValue>,
    pub(crate) extensions: Option<HeaderValue>,
}

impl Accepted {
    pub(crate) fn of(headers: &http::HeaderMap) -> Accepted {
        Accepted {
            protocol: headers.get(SEC_WEBSOCKET_PROTOCOL).cloned(),
            extensions: headers.get(SEC_WEBSOCKET_EXTENSIONS).cloned(),
        }
    }
}

/// One route's WebSocket mirror, built with its config.
pub(crate) struct WsMirror {
    dial: Dial,
    /// The shadow backend's addresses: each connection dials one in rotation.
    pool: Arc<Pool>,
    handles: MirrorHandles,
    side: LazySide,
    route: String,
    backend: String,
    /// Shadow connections open now, and the most allowed.
    open: Arc<AtomicUsize>,
    max: usize,
    queue_bytes: usize,
    marker: HeaderName,
    strip: Vec<HeaderName>,
}

impl WsMirror {
    pub(crate) fn new(
        mirror: &Mirror,
        pool: Arc<Pool>,
        dial: Dial,
        handles: MirrorHandles,
        route: &str,
        backend: &str,
    ) -> WsMirror {
        WsMirror {
            dial,
            pool,
            handles,
            side: LazySide::default(),
            route: route.to_string(),
            backend: backend.to_string(),
            open: Arc::new(AtomicUsize::new(0)),
            max: mirror.websocket_max_connections,
            queue_bytes: mirror.websocket_queue_bytes,
            marker: mirror.marker_header.clone(),
            strip: mirror.strip_headers.clone(),
        }
    }

    /// The shadow's request: the primary's as sent upstream, minus the mirror's
    /// `strip_headers`, plus the marker, offering only what the primary accepted.
    pub(crate) fn request(
        &self,
        primary: &RequestHeader,
        accepted: &Accepted,
    ) -> Option<RequestHeader> {
        let mut req = primary.clone();
        for name in &self.strip {
            req.remove_header(name);
        }
        req.insert_header(self.marker.clone(), "1").ok()?;
        for (name, value) in [
            (SEC_WEBSOCKET_PROTOCOL, &accepted.protocol),
            (SEC_WEBSOCKET_EXTENSIONS, &accepted.extensions),
        ] {
            match value {
                Some(v) => {
                    req.insert_header(name, v.clone()).ok()?;
                }
                None => {
                    req.remove_header(&name);
                }
            }
        }
        Some(req)
    }

    /// Open a shadow connection for one primary connection; `None` when the route's cap is
    /// reached (counted `overloaded`). The returned feed takes the client's bytes; dropping
    /// it tells the shadow the primary closed.
    pub(crate) fn start(
        self: &Arc<Self>,
        make_side: impl FnOnce(&str, &str) -> WsSide,
        request: RequestHeader,
        accepted: Accepted,
    ) -> Option<Feed> {
        self.handles.requests.inc();
        if !self.pool.available() {
            self.handles.dropped(DropReason::Unhealthy);
            return None;
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.handles.dropped(DropReason::Overloaded);
            return None;
        }
        let side = self.side.get(|| make_side(&self.route, &self.backend));
        let (tx, rx) = unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let overflowed = Arc::new(AtomicBool::new(false));
        let feed = Feed {
            tx: Some(tx),
            queued: Arc::clone(&queued),
            limit: self.queue_bytes,
            overflowed: Arc::clone(&overflowed),
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = me
                .run(&side, request, accepted, rx, &queued, &overflowed)
                .await;
            me.settle(&side, outcome);
            me.open.fetch_sub(1, Ordering::AcqRel);
        });
        Some(feed)
    }

    async fn run(
        &self,
        side: &Arc<WsSide>,
        request: RequestHeader,
        accepted: Accepted,
        rx: UnboundedReceiver<Bytes>,
        queued: &AtomicUsize,
        overflowed: &AtomicBool,
    ) -> Outcome {
        let started = Instant::now();
        // Boxed, and the request dropped after: this task lives as long as the connection,
        // and an inlined handshake future (and request) would stay in it until the end.
        let Some(picked) = self.pool.pick(&[]).or_else(|| self.pool.any()) else {
            return Outcome::Dropped(DropReason::Unhealthy);
        };
        let h = Box::pin(handshake(self.dial, picked.addr(), &request)).await;
        drop(request);
        self.pool.report(
            &picked,
            match &h {
                Ok(h) => Attempt::Answered(h.status()),
                Err(_) => Attempt::Failed,
            },
        );
        let h = match h {
            Ok(h) => h,
            Err(e) => {
                self.handles.shadow.error(error_kind(&e));
                side.handles().upgrade_failures.inc(UpgradeFailure::Failed);
                return Outcome::Dropped(DropReason::UpstreamError);
            }
        };
        self.handles.backend.connection(false, Some(h.connect));
        let io = match h.answer {
            Answer::Upgraded { head, io } if Accepted::of(&head.headers) == accepted => io,
            Answer::Upgraded { .. } => return Outcome::Dropped(DropReason::HandshakeMismatch),
            Answer::Refused { .. } => {
                side.handles()
                    .upgrade_failures
                    .inc(UpgradeFailure::Rejected);
                return Outcome::Dropped(DropReason::HandshakeMismatch);
            }
        };
        let upgraded = started.elapsed();
        let guard = side.open();
        let opened = Instant::now();
        let end = pump(io, rx, queued, overflowed, side).await;
        drop(guard);
        let handles = side.handles();
        handles.duration.observe(opened.elapsed().as_secs_f64());
        handles.ended.inc(end.cause);
        self.handles.shadow.request_bytes.inc_by(end.to_shadow);
        self.handles.shadow.response_bytes.inc_by(end.from_shadow);
        match end.result {
            Ok(()) => Outcome::Completed(upgraded),
            Err(reason) => Outcome::Dropped(reason),
        }
    }

    /// Count the copy once: completed (a shadow request of class 1xx) or dropped.
    fn settle(&self, _side: &Arc<WsSide>, outcome: Outcome) {
        match outcome {
            Outcome::Completed(upgraded) => {
                let s = &self.handles.shadow;
                s.duration.observe(upgraded.as_secs_f64());
                s.upstream_duration.observe(upgraded.as_secs_f64());
                s.finished(StatusClass::Informational);
            }
            Outcome::Dropped(reason) => self.handles.dropped(reason),
        }
    }
}

enum Outcome {
    /// Open until the primary closed; the time its upgrade took.
    Completed(Duration),
    Dropped(DropReason),
}

struct PumpEnd {
    cause: WsEnd,
    result: Result<(), DropReason>,
    to_shadow: u64,
    from_shadow: u64,
}

/// Write the queued client bytes to the shadow and read (count, discard) what it sends,
/// until the primary closes (the queue ends) or the shadow does.
async fn pump(
    io: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Send,
    mut rx: UnboundedReceiver<Bytes>,
    queued: &AtomicUsize,
    overflowed: &AtomicBool,
    side: &WsSide,
) -> PumpEnd {
    let (mut r, mut w) = tokio::io::split(io);
    let shared = Shared::new();
    let counting = &side.counting;
    let mut up = Half::new(Direction::ToBackend);
    let mut down = Half::new(Direction::ToClient);
    let (cause, result) = {
        let writer = async {
            while let Some(bytes) = rx.recv().await {
                queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                count(&mut up, &bytes, &shared, counting);
                if w.write_all(&bytes).await.is_err() {
                    return Err(DropReason::UpstreamError);
                }
            }
            if overflowed.load(Ordering::Acquire) {
                return Err(DropReason::Overloaded);
            }
            // The primary closed (its close frame, if any, went through the queue): end the
            // shadow's stream too.
            let _ = w.shutdown().await;
            Ok(())
        };
        let reader = async {
            let mut idle = IdleRead::new(4096);
            loop {
                match idle.read(&mut r).await {
                    // After the client's close frame went through, the shadow ending is the
                    // close handshake finishing, not an early close.
                    Ok([]) if shared.client_closed_first() => return Ok(()),
                    Ok([]) => return Err(DropReason::ClosedEarly),
                    Ok(bytes) => {
                        count(&mut down, bytes, &shared, counting);
                        // The shadow began closing while the primary is open: it closed early.
                        if shared.backend_closed_first() {
                            return Err(DropReason::ClosedEarly);
                        }
                    }
                    Err(_) => return Err(DropReason::UpstreamError),
                }
            }
        };
        tokio::pin!(writer);
        tokio::pin!(reader);
        tokio::select! {
            done = &mut writer => match done {
                // The primary closed: give the shadow a moment to finish its close.
                Ok(()) => {
                    let _ = tokio::time::timeout(LINGER, &mut reader).await;
                    (WsEnd::ClientClosed, Ok(()))
                }
                // The client had begun closing: the shadow finished first, that is all.
                Err(DropReason::UpstreamError) if shared.client_closed_first() => {
                    (WsEnd::ClientClosed, Ok(()))
                }
                // Writing failed because the shadow had closed: it closed early.
                Err(DropReason::UpstreamError) if shared.backend_closed_first() => {
                    (WsEnd::BackendClosed, Err(DropReason::ClosedEarly))
                }
                Err(reason) => (WsEnd::Error, Err(reason)),
            },
            ended = &mut reader => match ended {
                Err(DropReason::ClosedEarly) => (WsEnd::BackendClosed, Err(DropReason::ClosedEarly)),
                Err(reason) => (WsEnd::Error, Err(reason)),
                Ok(()) => (WsEnd::ClientClosed, Ok(())),
            },
        }
    };
    PumpEnd {
        cause,
        result,
        to_shadow: up.bytes,
        from_shadow: down.bytes,
    }
}

/// The primary's side of the shadow queue: takes a copy of every client byte, never waits.
pub(crate) struct Feed {
    tx: Option<UnboundedSender<Bytes>>,
    queued: Arc<AtomicUsize>,
    limit: usize,
    overflowed: Arc<AtomicBool>,
}

impl Tap for Feed {
    fn tap(&mut self, bytes: &[u8]) {
        let Some(tx) = &self.tx else { return };
        let queued = self.queued.fetch_add(bytes.len(), Ordering::AcqRel) + bytes.len();
        if queued > self.limit {
            // The shadow cannot keep up: close it rather than hold more of the client's bytes.
            self.overflowed.store(true, Ordering::Release);
            self.tx = None;
            return;
        }
        if tx.send(Bytes::copy_from_slice(bytes)).is_err() {
            self.tx = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn the_shadow_is_offered_only_what_the_primary_accepted() {
        let mut mirror = Mirror::with_defaults(1, 100.0);
        mirror.strip_headers = vec![HeaderName::from_static("cookie")];
        let metrics = Metrics::new(prometheus::Registry::new()).expect("metrics");
        let config = crate::config::Config::from_yaml(
            "listen: 127.0.0.1:8080\nbackends:\n  go: { address: 127.0.0.1:1 }\nroutes:\n  - name: chat\n    split: { go: 1 }\n",
        )
        .expect("config");
        let pool = crate::pool::Pools::default()
            .sync(&config.live.backends, &metrics)
            .remove(0);
        let ws = WsMirror::new(
            &mirror,
            pool,
            Dial {
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
            },
            metrics.mirror_handles("chat", "go"),
            "chat",
            "go",
        );
        let mut primary = RequestHeader::build("GET", b"/ws", None).expect("header");
        for (k, v) in [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("cookie", "sid=1"),
            ("sec-websocket-protocol", "chat.v2, chat.v1"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ] {
            primary.append_header(k, v).expect("append");
        }
        let chose = Accepted {
            protocol: Some(HeaderValue::from_static("chat.v1")),
            extensions: None,
        };
        let req = ws.request(&primary, &chose).expect("request");
        let get = |k: &str| req.headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("sec-websocket-protocol"), Some("chat.v1"));
        assert_eq!(get("sec-websocket-extensions"), None);
        assert_eq!(get("cookie"), None);
        assert_eq!(get("x-runoff-shadow"), Some("1"));
        assert_eq!(get("upgrade"), Some("websocket"));
        assert_eq!(Accepted::of(&req.headers), chose);
    }
}
