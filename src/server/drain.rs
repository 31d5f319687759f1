//! Stopping without losing a request: the grace between "stop accepting" and "close idle
//! connections", and the wait for in-flight requests once a graceful stop begins. The wrapper
//! that holds that grace also admits each accepted connection and moves it into a task of
//! runoff's own (Pingora's per-connection task is sized for a TLS handshake).
//!
//! Must not: exit the process (`server::run` returns and the binary exits), or wait longer than
//! `server.drain_timeout`.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ExecutionPhase, ShutdownWatch};

use super::keepalive::{self, Between};
use crate::caller_io::Watched;
use crate::metrics::{H2Goaway, PerLabel, Rejection};
use crate::state::{Connections, Shared};

/// How long, after the listeners stop accepting, connections accepted in the last instant still
/// get their first request read and served before idle keep-alive connections are closed.
const LAST_ACCEPT_GRACE: Duration = Duration::from_millis(1500);

/// Wraps the proxy application: each accepted connection is admitted (or refused past the cap)
/// and served in a task of runoff's own (`process_new`), and stopping to accept and closing
/// idle connections are two steps, not one. Pingora closes every connection still waiting for
/// a request header the moment its accept loops end, which includes a connection accepted a
/// microsecond earlier whose request bytes are still on the wire: during a SIGQUIT handoff
/// that is a failed request. Delaying the close by a short grace lets those requests in (and
/// served, with keep-alive off since the shutdown flag is up).
pub(super) struct LastAcceptGrace<A> {
    pub(super) inner: Arc<A>,
    /// Every caller's connection takes a slot for its life; past `server.max_connections` one
    /// is closed as soon as it is accepted (counted), so accepting never runs runoff out of
    /// descriptors or memory.
    pub(super) connections: Arc<Connections>,
    /// Each accepted connection is watched beneath Pingora's parser (`caller_io`): its header
    /// blocks' deadline, and refusals counted here.
    pub(super) header_timeout: Duration,
    pub(super) rejections: PerLabel<Rejection>,
    pub(super) goaways: PerLabel<H2Goaway>,
    /// Between requests runoff waits for the next one itself (`keepalive`): the keep-alive
    /// timeout, and the close of those waits once the grace is over.
    pub(super) between: Between,
}

#[async_trait]
impl<A> pingora::apps::ServerApp for LastAcceptGrace<A>
where
    A: pingora::apps::HttpServerApp + Send + Sync + 'static,
{
    /// Takes the connection into a task of runoff's own and returns at once, which ends
    /// Pingora's task for it: that task is sized for the largest thing it may do (a TLS
    /// handshake, ~9 KiB), and every open connection held one for its whole life. Pingora
    /// does nothing with a connection after this returns `None`, so the connection is the
    /// same one either way; the new task is only as large as serving it needs.
    async fn process_new(
        self: &Arc<Self>,
        session: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        let slot = self.connections.admit()?;
        let this = Arc::clone(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut next = Some(session);
            // Pingora's own loop over a connection it gets back (an HTTP/2 or custom
            // protocol app may hand one back), kept here.
            while let Some(session) = next {
                next = this.serve(session, &shutdown).await;
            }
        });
        None
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LAST_ACCEPT_GRACE).await;
        self.between.closing.close();
        pingora::apps::ServerApp::cleanup(self.inner.as_ref()).await;
    }
}

impl<A> LastAcceptGrace<A>
where
    A: pingora::apps::HttpServerApp + Send + Sync + 'static,
{
    async fn serve(
        &self,
        session: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        let watched = if Watched::of(Some(&session)).is_some() {
            session.into_any().downcast::<Watched>().ok()?
        } else {
            Box::new(Watched::new(
                session,
                self.header_timeout,
                self.rejections.clone(),
                self.goaways.clone(),
            ))
        };
        keepalive::serve(&self.inner, watched, shutdown, &self.between).await
    }
}

/// Once a graceful stop begins (listeners closed by Pingora: at once on SIGTERM/SIGINT, a few
/// seconds after handing them over on SIGQUIT), wait for in-flight requests to finish, bounded
/// by `drain`, then return, without sitting out Pingora's fixed grace period. Also returns if
/// the server ends by itself.
pub(super) fn wait_for_drain(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    shared: &Shared,
    drain: Duration,
) {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(ExecutionPhase::Terminated)
            | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
        }
    }
    // Upgraded connections do not end by themselves: tell them to close (1001).
    shared.start_drain();
    let deadline = Instant::now() + drain;
    // A request whose bytes were accepted just before the listeners closed may not be counted
    // yet: require the count to stay at zero for a short while.
    let mut idle_since: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if shared.in_flight() == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= Duration::from_millis(100) {
                log::info!("drained: no request in flight");
                break;
            }
        } else {
            idle_since = None;
        }
        if now >= deadline {
            log::warn!(
                "drain timeout ({}) reached with {} request(s) still in flight; exiting",
                humantime::format_duration(drain),
                shared.in_flight()
            );
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    shared.access_log.flush(Duration::from_secs(1));
}
