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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Ssl, Stream, ALPN};
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

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

    async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the flag is read: a close in between is not missed.
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
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
    // The first request: under the header deadline (`Watched`), not the keep-alive timeout.
    if !next_bytes(&mut stream, None, between).await {
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
        if watched.at_boundary()
            && !next_bytes(&mut watched, Some(between.keepalive), between).await
        {
            return None;
        }
        session = ServerSession::new_http1(watched);
        if let Some(settings) = settings {
            settings.apply_to_session(&mut session);
        }
    }
}

/// Wait for the connection's next bytes: `false` when it closed, its read failed, `limit`
/// passed with nothing read, or a stop's grace ended first.
async fn next_bytes(stream: &mut Watched, limit: Option<Duration>, between: &Between) -> bool {
    if between.closing.is_closed() {
        return false;
    }
    let read = async {
        match limit {
            Some(limit) => tokio::time::timeout(limit, stream.read_ahead())
                .await
                .unwrap_or(false),
            None => stream.read_ahead().await,
        }
    };
    tokio::select! {
        biased;
        got = read => got,
        () = between.closing.wait() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn closing_wakes_a_waiter_and_is_seen_by_a_late_one() {
        let closing = Arc::new(Closing::default());
        let early = {
            let c = Arc::clone(&closing);
            tokio::spawn(async move { c.wait().await })
        };
        tokio::task::yield_now().await;
        closing.close();
        tokio::time::timeout(Duration::from_secs(5), early)
            .await
            .expect("the waiter woke")
            .expect("joined");
        tokio::time::timeout(Duration::from_secs(5), closing.wait())
            .await
            .expect("a wait begun after the close returns at once");
    }
}
