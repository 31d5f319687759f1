//! Signals: SIGTERM, SIGINT and an in-process [`Stop`] drain; SIGQUIT hands the listeners over
//! (`--upgrade`); SIGHUP reloads the config file.
//!
//! Must not: exit the process (stopping is the drain's and the caller's), or reload on the
//! proxy's threads.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::control::Control;

/// A request, from inside the process, to stop the way SIGTERM does (drain, then return from
/// `server::run`). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<Notify>);

impl Stop {
    /// Ask the server to drain and stop.
    pub(crate) fn request(&self) {
        self.0.notify_one();
    }
}

/// SIGTERM, SIGINT and a [`Stop`] request drain (Pingora's SIGINT is immediate); SIGQUIT hands
/// the listeners to a new process started with `--upgrade` (Pingora's zero-downtime upgrade).
pub(super) struct DrainingSignals {
    pub(super) stop: Stop,
}

#[async_trait]
impl ShutdownSignalWatch for DrainingSignals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) else {
            log::error!("cannot install signal handlers; runoff will only stop when killed");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => { log::info!("SIGTERM: draining"); ShutdownSignal::GracefulTerminate }
            _ = int.recv() => { log::info!("SIGINT: draining"); ShutdownSignal::GracefulTerminate }
            _ = quit.recv() => { log::info!("SIGQUIT: handing the listeners over"); ShutdownSignal::GracefulUpgrade }
            _ = self.stop.0.notified() => { log::info!("stop requested: draining"); ShutdownSignal::GracefulTerminate }
        }
    }
}

/// SIGHUP reloads the config file.
pub(super) struct ReloadOnHangup {
    pub(super) control: Arc<Control>,
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            log::error!("cannot listen for SIGHUP; reload with POST /api/reload instead");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    log::info!("SIGHUP: reloading the config");
                    let control = Arc::clone(&self.control);
                    // `reload` logs and counts its own outcome.
                    let _ = tokio::task::spawn_blocking(move || control.reload()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
