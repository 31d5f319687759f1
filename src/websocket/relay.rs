//! The relay of an upgraded connection, owned by runoff from the `101` on: bytes both ways at
//! once, each direction's frames counted as they pass, an idle timeout of its own, and close
//! frames of runoff's own on idle timeout, drain or a failed side.
//!
//! Lives here: the two pumps, the end of a connection and its cause. Must not: buffer a whole
//! message (each read is written on before the next), change a byte of either stream, write a
//! frame of its own anywhere but between two frames, or wait on the shadow (it is fed through
//! a non-blocking queue).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::frames::{close_frame, FrameParser, Seen, GOING_AWAY, INTERNAL_ERROR};
use super::idle_read::IdleRead;
use crate::analysis::Recorder;
use crate::metrics::{Direction, FrameKind, WebSocketHandles, WsEnd};

/// Bytes read at once from either side.
const READ_BUF: usize = 8 * 1024;
/// After one side has closed, how long the other may take to finish its close.
const LINGER: Duration = Duration::from_secs(5);

/// Where a relay's counts go.
pub(crate) struct Counting {
    pub(crate) handles: WebSocketHandles,
    /// Message latency (µs), for summaries.
    pub(crate) latency: Option<Arc<Recorder>>,
    /// Data messages each way, for summaries' rates.
    pub(crate) to_backend: Option<Arc<Recorder>>,
    pub(crate) to_client: Option<Arc<Recorder>>,
}

/// Something that takes a copy of every client byte (the shadow's queue); never blocks.
pub(crate) trait Tap: Send {
    fn tap(&mut self, bytes: &[u8]);
}

/// How the relay ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ended {
    pub(crate) cause: WsEnd,
    pub(crate) to_backend_bytes: u64,
    pub(crate) to_client_bytes: u64,
}

/// What ends a relay from outside: the drain signal.
pub(crate) type Drain = tokio::sync::watch::Receiver<bool>;

/// One direction's state, kept outside the pump so that it survives the pump's end.
pub(super) struct Half {
    direction: Direction,
    parser: FrameParser,
    /// A write is under way: the outgoing stream may be mid-frame.
    writing: bool,
    pub(super) bytes: u64,
    unparsed_counted: bool,
}

impl Half {
    pub(super) fn new(direction: Direction) -> Half {
        Half {
            direction,
            parser: FrameParser::default(),
            writing: false,
            bytes: 0,
            unparsed_counted: false,
        }
    }

    /// A frame of runoff's own may be written to this direction's receiver now.
    fn clean(&self) -> bool {
        !self.writing && self.parser.at_boundary() && !self.parser.unparsed()
    }
}

/// What both pumps share: the last activity, who closed first, and the pending message time.
pub(super) struct Shared {
    started: Instant,
    /// Micros since `started` of the last byte either way.
    last: AtomicU64,
    /// 0: no close frame yet; 1: the client sent the first; 2: the backend did.
    first_close: AtomicU8,
    /// Micros since `started` (+1) when a client data message was last relayed whole and not
    /// yet answered; 0 when none.
    asked: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            started: Instant::now(),
            last: AtomicU64::new(0),
            first_close: AtomicU8::new(0),
            asked: AtomicU64::new(0),
        }
    }

    /// The client sent the first close frame.
    pub(super) fn client_closed_first(&self) -> bool {
        self.first_close.load(Ordering::Acquire) == 1
    }

    /// The backend (or shadow) sent the first close frame.
    pub(super) fn backend_closed_first(&self) -> bool {
        self.first_close.load(Ordering::Acquire) == 2
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }
}

enum PumpEnd {
    /// The reader reached its end (the peer closed its side).
    Eof,
    ReadError,
    WriteError,
}

/// Relay `client` ↔ `backend` until the connection ends, counting into `counting`; the client's
/// bytes also go to `tap`. `preread` are client bytes read before the relay began.
pub(crate) async fn relay<C, B>(
    client: C,
    backend: B,
    preread: Bytes,
    idle_timeout: Duration,
    mut drain: Drain,
    counting: &Counting,
    mut tap: Option<&mut (dyn Tap + '_)>,
) -> Ended
where
    C: AsyncRead + AsyncWrite + Send,
    B: AsyncRead + AsyncWrite + Send,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut br, mut bw) = tokio::io::split(backend);
    let shared = Shared::new();
    let mut up = Half::new(Direction::ToBackend);
    let mut down = Half::new(Direction::ToClient);
    if !preread.is_empty() {
        count(&mut up, &preread, &shared, counting);
        if let Some(t) = tap.as_mut() {
            t.tap(&preread);
        }
        if bw.write_all(&preread).await.is_err() {
            return ended(WsEnd::Error, &up, &down);
        }
    }
    drop(preread);

    let outside = {
        let mut c2b = Box::pin(pump(&mut cr, &mut bw, &mut up, &shared, counting, tap));
        let mut b2c = Box::pin(pump(&mut br, &mut cw, &mut down, &shared, counting, None));
        let idle = idle_watch(&shared, idle_timeout);
        tokio::pin!(idle);
        let first = tokio::select! {
            e = &mut c2b => First::Pump(Direction::ToBackend, e),
            e = &mut b2c => First::Pump(Direction::ToClient, e),
            () = &mut idle => First::Going(WsEnd::IdleTimeout),
            () = wait_drain(&mut drain) => First::Going(WsEnd::Drain),
        };
        match first {
            // A side closed its stream: pass its close on and let the other side finish
            // its own, within the linger.
            First::Pump(d, PumpEnd::Eof) => {
                let cause = match (shared.first_close.load(Ordering::Acquire), d) {
                    (1, _) => WsEnd::ClientClosed,
                    (2, _) => WsEnd::BackendClosed,
                    (_, Direction::ToBackend) => WsEnd::ClientClosed,
                    (_, Direction::ToClient) => WsEnd::BackendClosed,
                };
                // Pass the end of stream on, and let the other side's pump run on (its close
                // frame, its last bytes) until that side ends too, within the linger.
                match d {
                    Direction::ToBackend => {
                        drop(c2b);
                        let _ = tokio::time::timeout(Duration::from_secs(1), bw.shutdown()).await;
                        let _ = tokio::time::timeout(LINGER, b2c).await;
                    }
                    Direction::ToClient => {
                        drop(b2c);
                        let _ = tokio::time::timeout(Duration::from_secs(1), cw.shutdown()).await;
                        let _ = tokio::time::timeout(LINGER, c2b).await;
                    }
                }
                Outcome::Closed(cause)
            }
            First::Pump(d, _) => Outcome::Failed(d),
            First::Going(cause) => Outcome::Going(cause),
        }
    };
    // The pumps are gone: the write halves are free for runoff's own frames.
    let end = match outside {
        Outcome::Closed(cause) => {
            let _ = tokio::time::timeout(Duration::from_secs(1), cw.shutdown()).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), bw.shutdown()).await;
            cause
        }
        Outcome::Failed(side) => {
            // Tell the side still there, if a frame can go in cleanly.
            match side {
                Direction::ToBackend if down.clean() => {
                    let _ = cw
                        .write_all(&close_frame(INTERNAL_ERROR, "backend failed", None))
                        .await;
                }
                Direction::ToClient if up.clean() => {
                    let _ = bw
                        .write_all(&close_frame(INTERNAL_ERROR, "client failed", Some(mask())))
                        .await;
                }
                _ => {}
            }
            let _ = cw.shutdown().await;
            let _ = bw.shutdown().await;
            WsEnd::Error
        }
        Outcome::Going(cause) => {
            let reason = if cause == WsEnd::Drain {
                "runoff is going away"
            } else {
                "idle timeout"
            };
            if down.clean() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    cw.write_all(&close_frame(GOING_AWAY, reason, None)),
                )
                .await;
            }
            if up.clean() {
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    bw.write_all(&close_frame(GOING_AWAY, reason, Some(mask()))),
                )
                .await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), cw.shutdown()).await;
            let _ = tokio::time::timeout(Duration::from_secs(1), bw.shutdown()).await;
            cause
        }
    };
    ended(end, &up, &down)
}

enum First {
    Pump(Direction, PumpEnd),
    Going(WsEnd),
}

/// How the relay ended.
enum Outcome {
    Closed(WsEnd),
    Failed(Direction),
    Going(WsEnd),
}

fn ended(cause: WsEnd, up: &Half, down: &Half) -> Ended {
    Ended {
        cause,
        to_backend_bytes: up.bytes,
        to_client_bytes: down.bytes,
    }
}

/// A fresh masking key for a frame runoff sends to a backend.
fn mask() -> [u8; 4] {
    rand::random()
}

async fn wait_drain(drain: &mut Drain) {
    loop {
        if *drain.borrow_and_update() {
            return;
        }
        if drain.changed().await.is_err() {
            // No one can signal a drain any more: never.
            std::future::pending::<()>().await;
        }
    }
}

/// Resolves once nothing has crossed the connection for `idle`.
async fn idle_watch(shared: &Shared, idle: Duration) {
    let idle_us = idle.as_micros() as u64;
    loop {
        let last = shared.last.load(Ordering::Acquire);
        let quiet = shared.now().saturating_sub(last);
        if quiet >= idle_us {
            return;
        }
        tokio::time::sleep(Duration::from_micros(idle_us - quiet)).await;
    }
}

async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    half: &mut Half,
    shared: &Shared,
    counting: &Counting,
    mut tap: Option<&mut (dyn Tap + '_)>,
) -> PumpEnd
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut idle = IdleRead::new(READ_BUF);
    loop {
        let bytes = match idle.read(reader).await {
            Ok([]) => return PumpEnd::Eof,
            Ok(bytes) => bytes,
            Err(_) => return PumpEnd::ReadError,
        };
        shared.last.store(shared.now(), Ordering::Release);
        count(half, bytes, shared, counting);
        if let Some(t) = tap.as_mut() {
            t.tap(bytes);
        }
        half.writing = true;
        if writer.write_all(bytes).await.is_err() || writer.flush().await.is_err() {
            return PumpEnd::WriteError;
        }
        half.writing = false;
        shared.last.store(shared.now(), Ordering::Release);
    }
}

/// Count what one read of a direction held.
pub(super) fn count(half: &mut Half, bytes: &[u8], shared: &Shared, counting: &Counting) {
    half.bytes += bytes.len() as u64;
    let seen: Seen = half.parser.feed(bytes);
    let h = counting.handles.direction(half.direction);
    if seen.data_frames > 0 {
        h.frames.inc_by(FrameKind::Data, seen.data_frames);
    }
    if seen.control_frames > 0 {
        h.frames.inc_by(FrameKind::Control, seen.control_frames);
    }
    if seen.payload_bytes > 0 {
        h.payload.inc_by(seen.payload_bytes);
    }
    if seen.messages > 0 {
        h.messages.inc_by(seen.messages);
        let rec = match half.direction {
            Direction::ToBackend => &counting.to_backend,
            Direction::ToClient => &counting.to_client,
        };
        if let Some(r) = rec {
            r.record_count(seen.messages);
        }
    }
    if seen.close.is_some() {
        let who = match half.direction {
            Direction::ToBackend => 1,
            Direction::ToClient => 2,
        };
        let _ = shared
            .first_close
            .compare_exchange(0, who, Ordering::AcqRel, Ordering::Acquire);
    }
    match half.direction {
        // A client message relayed whole: the backend's next message answers it.
        Direction::ToBackend if seen.messages > 0 => {
            shared.asked.store(shared.now() + 1, Ordering::Release);
        }
        Direction::ToClient if seen.messages_started > 0 => {
            let asked = shared.asked.swap(0, Ordering::AcqRel);
            if asked > 0 {
                let us = (shared.now() + 1).saturating_sub(asked);
                counting.handles.latency.observe(us as f64 / 1e6);
                if let Some(r) = &counting.latency {
                    r.record(us, false);
                }
            }
        }
        _ => {}
    }
    if half.parser.unparsed() && !half.unparsed_counted {
        half.unparsed_counted = true;
        counting.handles.unparsed.inc();
    }
}
