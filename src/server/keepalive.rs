//! A caller's HTTP/1.x connection from one request to the next. Pingora's own loop calls its
//! HTTP application for the next request at once, and that call boxes the whole per-request
//! state (the proxy's future, ~13 KiB, and a 4 KiB header buffer) before a byte of the request
//! has come: an idle keep-alive connection holds all of it. Here runoff waits for the next
//! request's first bytes itself (`Watched::read_ahead`, no buffer held while idle) and only then
//! hands the connection to Pingora, whose parser reads those bytes first; the rest is Pingora's
//! loop as it is (keep-alive settings carried from one request to the next, the request limit).
//!
//! HTTP/2 (ALPN `h2`, or the h2c preface on a plaintext listener) and custom protocols go to
//! Pingora's loop untouched.
//!
//! Must not: read a byte Pingora does not then parse, wait while Pingora may already hold the
//! next request (pipelined bytes read with the last one: then Pingora reads, as before), wait
//! longer than the keep-alive timeout between requests, or past a stop's last-accept grace.

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::caller_io::Watched;

/// Pingora's keep-alive timeout for a connection's first request (`pingora-core` sets 60 s
/// before the proxy's hooks set runoff's own).
const PINGORA_FIRST_KEEPALIVE_SECS: u64 = 60;

/// Closing time for connections waiting between requests: set once a stop's last-accept grace
/// is over (as Pingora's own wait ends then).
#[derive(Default)]
pub(super) struct Closing {
    closed: AtomicBool,
    notify: Notify,
}

impl Closing {
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// A registration for the close, made ready before the flag is read (`is_closed`): a
    /// close in between is missed by neither.
    fn registration(&self) -> Pin<Box<Notified<'_>>> {
        let mut closed = Box::pin(self.notify.notified());
        closed.as_mut().enable();
        closed
    }
}

/// How the connection loop waits between requests.
pub(super) struct Between {
    /// `server.keepalive_timeout`: how long an idle connection waits for its next request.
    pub(super) keepalive: Duration,
    pub(super) closing: Closing,
}

/// Serve one caller's connection (already watched) with `app` until it closes.
pub(super) async fn serve<A>(
    app: &Arc<A>,
    stream: Box<Watched>,
    shutdown: &ShutdownWatch,
    between: &Between,
) -> Option<Stream>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    let h2c = app.server_options().is_some_and(|o| o.h2c);
    let custom = app.server_options().is_some_and(|o| o.force_custom)
        || matches!(stream.selected_alpn_proto(), Some(ALPN::Custom(_)));
    if stream.is_h2() || custom {
        return app.process_new(stream, shutdown).await;
    }
    let mut stream = stream;
    // One timer and one close registration for the connection's life, not one of each per
    // wait: a wait moves the timer's deadline (later each time: a compare-and-swap, the timer
    // stays where it is in Tokio's wheel and is moved only when its old deadline comes) and
    // polls both. Made and dropped per wait, each wait inserted the timer into the wheel and
    // removed it, and pushed the registration onto the `Notify`'s list and unlinked it, each
    // under a lock (~150 instructions a request under callgrind).
    let mut wait = Wait::new(between);
    // The first request: under the header deadline (`Watched`), not the keep-alive timeout.
    if !wait.next_bytes(&mut stream, false).await {
        return None;
    }
    if h2c && stream.get_ssl_digest().is_none() && stream.may_be_h2_preface() {
        // Pingora peeks for the preface (the bytes read are read again) and speaks HTTP/2.
        return app.process_new(stream, shutdown).await;
    }
    let mut session = ServerSession::new_http1(stream);
    if *shutdown.borrow() {
        session.set_keepalive(None);
    } else {
        session.set_keepalive(Some(PINGORA_FIRST_KEEPALIVE_SECS));
    }
    session.set_keepalive_reuses_remaining(
        app.server_options().and_then(|o| o.keepalive_request_limit),
    );
    loop {
        let (next, settings) = app.process_new_http(session, shutdown).await?.consume();
        // Pingora hands back the stream it was given: the `Watched` above.
        let mut watched = next.into_any().downcast::<Watched>().ok()?;
        if watched.at_boundary() && !wait.next_bytes(&mut watched, true).await {
            return None;
        }
        session = ServerSession::new_http1(watched);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
    }
}

/// A connection's waits for its next request: its keep-alive timer and its registration for
/// a stop's close, both kept from one wait to the next.
struct Wait<'c> {
    /// Made at the connection's first wait between requests: a connection that carries one
    /// request never has one.
    idle: Option<Pin<Box<Sleep>>>,
    closed: Pin<Box<Notified<'c>>>,
    between: &'c Between,
}

impl<'c> Wait<'c> {
    /// Made once per connection (one small allocation, and one more for the timer once there
    /// is a wait between requests).
    fn new(between: &'c Between) -> Wait<'c> {
        Wait {
            idle: None,
            closed: between.closing.registration(),
            between,
        }
    }

    /// Wait for the connection's next bytes: `false` when it closed, its read failed, the
    /// keep-alive timeout passed with nothing read (`keepalive`: between requests; the first
    /// request's wait is under the header deadline only), or a stop's grace ended first.
    /// The bytes come first: when they are there at once, neither the timer nor the close
    /// registration is touched.
    async fn next_bytes(&mut self, stream: &mut Watched, keepalive: bool) -> bool {
        if self.between.closing.is_closed() {
            return false;
        }
        let read = stream.read_ahead();
        tokio::pin!(read);
        let mut armed = false;
        poll_fn(|cx| {
            if let Poll::Ready(got) = read.as_mut().poll(cx) {
                return Poll::Ready(got);
            }
            if keepalive {
                if !armed {
                    // From the first moment the wait is a wait (the last answer was sent).
                    let deadline = Instant::now() + self.between.keepalive;
                    match self.idle.as_mut() {
                        Some(idle) => idle.as_mut().reset(deadline),
                        None => self.idle = Some(Box::pin(tokio::time::sleep_until(deadline))),
                    }
                    armed = true;
                }
                if let Some(idle) = self.idle.as_mut() {
                    if idle.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(false);
                    }
                }
            }
            if self.closed.as_mut().poll(cx).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller_io::tests::pair;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn between(keepalive: Duration) -> Between {
        Between {
            keepalive,
            closing: Closing::default(),
        }
    }

    #[tokio::test]
    async fn a_close_ends_a_wait_under_way_and_every_wait_after_it() {
        let between = between(Duration::from_secs(60));
        let (mut conn, _caller) = pair().await;
        let mut wait = Wait::new(&between);
        let close = async {
            tokio::task::yield_now().await;
            between.closing.close();
        };
        let (got, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(wait.next_bytes(&mut conn, true), close)
        })
        .await
        .expect("the close ended the wait");
        assert!(!got, "closed, nothing read");
        assert!(
            !wait.next_bytes(&mut conn, true).await,
            "a later wait ends at once"
        );
        let mut late = Wait::new(&between);
        assert!(
            !late.next_bytes(&mut conn, false).await,
            "so does a new connection's"
        );
    }

    #[tokio::test]
    async fn the_keepalive_timeout_counts_from_each_wait_not_the_first() {
        // Four waits of 0.8 s under a 2 s timeout: 3.2 s in all. A timer armed once and
        // never moved would end the third wait (at 2 s); one not armed again once it fired
        // would end the wait after a long request at once.
        let between = between(Duration::from_secs(2));
        let (mut conn, mut caller) = pair().await;
        let mut wait = Wait::new(&between);
        for round in 0..4 {
            let send = async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                caller.write_all(b"x").await.expect("write");
            };
            let (got, ()) = tokio::join!(wait.next_bytes(&mut conn, true), send);
            assert!(got, "wait {round}: its bytes came within the timeout");
            let mut byte = [0u8; 1];
            conn.read_exact(&mut byte)
                .await
                .expect("the byte read ahead");
            assert_eq!(&byte, b"x");
        }
        // A request longer than the timeout (the timer's old deadline passes, unpolled, while
        // the connection is busy): the next wait still gets a whole timeout of its own.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let send = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            caller.write_all(b"y").await.expect("write");
        };
        let (got, ()) = tokio::join!(wait.next_bytes(&mut conn, true), send);
        assert!(
            got,
            "the wait after a long request: its bytes came within the timeout"
        );
        let mut byte = [0u8; 1];
        conn.read_exact(&mut byte)
            .await
            .expect("the byte read ahead");
        // Nothing more comes: the timeout ends the wait, the caller still connected.
        let got = tokio::time::timeout(Duration::from_secs(30), wait.next_bytes(&mut conn, true))
            .await
            .expect("the keep-alive timeout ended the wait");
        assert!(!got);
    }
}
