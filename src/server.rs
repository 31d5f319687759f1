//! Assembles and runs the Pingora server: the proxy service, the admin service, optional demo
//! backends, reload triggers (SIGHUP, file watch), shutdown that drains in-flight requests, and
//! the SIGQUIT + `--upgrade` listener handoff.
//!
//! Lives here: start-up checks (listeners free, token present), Pingora `ServerConf`, our
//! signal handling and the drain watcher. Must not: decide anything per request.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use notify::{EventKind, RecursiveMode, Watcher};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{
    ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use prometheus::Registry;
use tokio::signal::unix::{signal, SignalKind};

use crate::access_log::AccessLogger;
use crate::admin::Admin;
use crate::config::Config;
use crate::control::Control;
use crate::demo::DemoBackend;
use crate::metrics::Metrics;
use crate::proxy::state::Shared;
use crate::proxy::Runoff;

/// Why runoff could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{what} {addr}: cannot listen: {source}")]
    Listen {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("access_log: cannot open: {0}")]
    AccessLog(std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("admin.token_env: the environment variable {0} is unset or empty; set it to the admin API's bearer token")]
    Token(String),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
    #[error("server.watch: cannot watch {path}: {reason}")]
    Watch { path: PathBuf, reason: String },
}

/// How `run` was asked to start.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The file the config came from: what SIGHUP, `POST /api/reload` and the watcher re-read.
    pub config_path: Option<PathBuf>,
    /// Take the listeners over from a running runoff (which is then sent SIGQUIT).
    pub upgrade: bool,
    /// Reload when the file changes (also `server.watch: true`).
    pub watch: bool,
}

/// Something to run on its own thread once the server is assembled (the demo's load).
pub type OnStart = Box<dyn FnOnce(Arc<Control>) + Send>;

/// Something to run just before a drained process exits (the demo stops its example apps).
pub type OnExit = Box<dyn FnOnce() + Send>;

/// Extra in-process services (the demo backends) and a start hook.
#[derive(Default)]
pub struct Extras {
    pub demo_backends: Vec<(SocketAddr, DemoBackend)>,
    pub on_start: Option<OnStart>,
    pub on_exit: Option<OnExit>,
}

/// Check that every address runoff will listen on is free now, so a clash is a clear error at
/// start instead of a panic inside a Pingora service.
fn check_listeners(config: &Config, extras: &Extras) -> Result<(), StartError> {
    let mut all: Vec<(&'static str, SocketAddr)> =
        config.listen.iter().map(|a| ("listen", *a)).collect();
    all.push(("admin.listen", config.admin.listen));
    all.extend(
        extras
            .demo_backends
            .iter()
            .map(|(a, _)| ("demo backend", *a)),
    );
    for (what, addr) in all {
        TcpListener::bind(addr).map_err(|source| StartError::Listen { what, addr, source })?;
    }
    Ok(())
}

/// The admin API token from the environment variable `admin.token_env` names, if any.
fn admin_token(config: &Config) -> Result<Option<String>, StartError> {
    let Some(name) = &config.admin.token_env else {
        return Ok(None);
    };
    match std::env::var(name) {
        Ok(t) if !t.is_empty() => Ok(Some(t)),
        _ => Err(StartError::Token(name.clone())),
    }
}

/// How long, after the listeners stop accepting, connections accepted in the last instant still
/// get their first request read and served before idle keep-alive connections are closed.
const LAST_ACCEPT_GRACE: Duration = Duration::from_millis(1500);

/// Wraps the proxy application so that stopping to accept and closing idle connections are
/// two steps, not one. Pingora closes every connection still waiting for a request header the
/// moment its accept loops end, which includes a connection accepted a microsecond earlier
/// whose request bytes are still on the wire: during a SIGQUIT handoff that is a failed
/// request. Delaying the close by a short grace lets those requests in (and served, with
/// keep-alive off since the shutdown flag is up).
struct LastAcceptGrace<A> {
    inner: Arc<A>,
}

#[async_trait]
impl<A> pingora::apps::ServerApp for LastAcceptGrace<A>
where
    A: pingora::apps::ServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        session: pingora::protocols::Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<pingora::protocols::Stream> {
        self.inner.process_new(session, shutdown).await
    }

    async fn cleanup(&self) {
        tokio::time::sleep(LAST_ACCEPT_GRACE).await;
        self.inner.cleanup().await;
    }
}

/// SIGTERM and SIGINT both drain (Pingora's SIGINT is immediate); SIGQUIT hands the listeners
/// to a new process started with `--upgrade` (Pingora's zero-downtime upgrade).
struct DrainingSignals;

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
        }
    }
}

/// SIGHUP reloads the config file.
struct ReloadOnHangup {
    control: Arc<Control>,
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

/// Reload when the config file changes, debounced (editors write files in several steps).
/// The directory is watched, not the file, so a file replaced by a rename is still seen. Only
/// writes, creations, renames and removals count: reading the file (as a reload does) must
/// not trigger another reload.
fn watch_config(control: Arc<Control>, path: &std::path::Path) -> Result<(), StartError> {
    let watch_err = |reason: String| StartError::Watch {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::canonicalize(path).map_err(|e| watch_err(e.to_string()))?;
    let dir = file
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| watch_err("no parent directory".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(tx).map_err(|e| watch_err(e.to_string()))?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| watch_err(e.to_string()))?;
    let changed = move |event: &notify::Result<notify::Event>| match event {
        Ok(e) => {
            matches!(
                e.kind,
                EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_)
            ) && e.paths.iter().any(|p| p == &file)
        }
        Err(e) => {
            log::warn!("config watch: {e}");
            false
        }
    };
    thread::Builder::new()
        .name("runoff-watch".into())
        .spawn(move || {
            let _watcher = watcher;
            while let Ok(event) = rx.recv() {
                if !changed(&event) {
                    continue;
                }
                // Debounce: wait until the directory has been quiet for a moment.
                loop {
                    match rx.recv_timeout(Duration::from_millis(300)) {
                        Ok(_) => continue,
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break,
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                log::info!("the config file changed: reloading");
                // `reload` logs and counts its own outcome.
                let _ = control.reload();
            }
        })
        .map_err(StartError::Thread)?;
    Ok(())
}

/// Build and run the server until it is told to stop. Returns after a drain.
pub fn run(config: Config, options: RunOptions, extras: Extras) -> Result<(), StartError> {
    // The config's own problems first, then the machine's.
    let token = admin_token(&config)?;
    if !options.upgrade {
        check_listeners(&config, &extras)?;
    }
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new(Registry::new())?);
    metrics.stamp_good_load();
    let access_log = AccessLogger::start(&config.access_log, metrics.access_log_dropped.clone())
        .map_err(StartError::AccessLog)?;
    let shared = Arc::new(Shared::new(
        Arc::clone(&config),
        Arc::clone(&metrics),
        access_log,
    ));
    let control = Arc::new(Control::new(
        Arc::clone(&shared),
        options.config_path.clone(),
    ));
    if options.watch || config.server.watch {
        if let Some(path) = &options.config_path {
            watch_config(Arc::clone(&control), path)?;
        }
    }

    let drain = config.server.drain_timeout;
    let mut conf = ServerConf {
        threads: config.server.threads,
        upstream_keepalive_pool_size: config.server.upstream_keepalive_pool_size,
        // Pingora sleeps the whole grace period; the drain watcher below exits as soon as the
        // last in-flight request is done, so this is only the upper bound.
        grace_period_seconds: Some(drain.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    conf.pid_file = std::env::temp_dir()
        .join(format!("runoff-{}.pid", std::process::id()))
        .to_string_lossy()
        .into_owned();
    conf.upgrade_sock = config.server.upgrade_sock.to_string_lossy().into_owned();
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let proxy_app =
        pingora::proxy::http_proxy(&server.configuration, Runoff::new(Arc::clone(&shared)));
    let mut proxy = Service::new(
        "runoff proxy".to_string(),
        LastAcceptGrace {
            inner: Arc::new(proxy_app),
        },
    );
    for addr in &config.listen {
        proxy.add_tcp(&addr.to_string());
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "runoff admin".to_string(),
        Admin::new(
            metrics.registry.clone(),
            config.listen.clone(),
            Arc::clone(&control),
            token,
            config.admin.listen,
        ),
    );
    admin.threads = Some(1);
    admin.add_tcp(&config.admin.listen.to_string());
    server.add_service(admin);

    for (addr, backend) in extras.demo_backends {
        let mut svc = Service::new(format!("demo backend {}", backend.name), backend);
        svc.threads = Some(1);
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }

    let on_exit = extras.on_exit;
    if let Some(hook) = extras.on_start {
        let control = Arc::clone(&control);
        thread::Builder::new()
            .name("runoff-start-hook".into())
            .spawn(move || hook(control))
            .map_err(StartError::Thread)?;
    }

    let mut hup = background_service("reload on SIGHUP", ReloadOnHangup { control });
    hup.threads = Some(1);
    server.add_service(hup);

    crate::resources::start(Arc::clone(&shared)).map_err(StartError::Thread)?;

    let phases = server.watch_execution_phase();
    thread::Builder::new()
        .name("runoff-drain".into())
        .spawn(move || watch_for_drain(phases, shared, drain, on_exit))
        .map_err(StartError::Thread)?;

    log::info!(
        "runoff listening on {:?}, admin on {}",
        config.listen,
        config.admin.listen
    );
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainingSignals),
    });
    Ok(())
}

/// Once a graceful stop begins (listeners closed by Pingora: at once on SIGTERM/SIGINT, a few
/// seconds after handing them over on SIGQUIT), wait for in-flight requests to finish, bounded
/// by `drain`, then exit 0 without sitting out Pingora's fixed grace period.
fn watch_for_drain(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    shared: Arc<Shared>,
    drain: Duration,
    on_exit: Option<OnExit>,
) {
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => break,
            Ok(ExecutionPhase::Terminated)
            | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
        }
    }
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
    if let Some(hook) = on_exit {
        hook();
    }
    std::process::exit(0);
}
