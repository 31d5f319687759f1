//! Assembles and runs the Pingora server: the proxy service, the admin service, extra services
//! a caller adds (the demo's backends), reload triggers (SIGHUP in `signals`, the file watch in
//! `watch`), the process sampler, and shutdown that drains in-flight requests (`drain`),
//! including the SIGQUIT + `--upgrade` listener handoff.
//!
//! Lives here: start-up checks (listeners free, token present), Pingora's `ServerConf`, and
//! `run`, which returns once the server has drained. Must not: decide anything per request,
//! exit the process (the binary does, when `run` returns), or know who its caller is.

mod drain;
mod judge;
mod keepalive;
mod limits;
mod signals;
mod upgrade;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use pingora::apps::HttpServerOptions;
use pingora::connectors::http::Connector;
use pingora::listeners::tls::TlsSettings;
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use pingora::services::ServiceWithDependents;
use prometheus::Registry;

use crate::access_log::AccessLogger;
use crate::admin::Admin;
use crate::config::{Config, Startup};
use crate::control::Control;
use crate::metrics::Metrics;
use crate::pool::dns;
use crate::pool::service::PoolService;
use crate::proxy::Runoff;
use crate::state::Shared;
use drain::LastAcceptGrace;
use signals::{DrainingSignals, ReloadOnHangup};

pub(crate) use signals::Stop;

/// Why runoff could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
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
    #[error("the server stopped unexpectedly (see the log above)")]
    Crashed,
    #[error("server.upgrade_sock: {0}")]
    UpgradeSock(String),
}

/// How `run` was asked to start.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunOptions {
    /// The file the config came from: what SIGHUP, `POST /api/reload` and the watcher re-read.
    pub config_path: Option<PathBuf>,
    /// Take the listeners over from a running runoff (which is then sent SIGQUIT).
    pub upgrade: bool,
    /// Reload when the file changes (also `server.watch: true`).
    pub watch: bool,
}

/// Something to run on its own thread once the server is assembled (the demo's load); it may
/// ask the server to stop.
pub(crate) type OnStart = Box<dyn FnOnce(Stop) + Send>;

/// A service to run beside the proxy and the admin endpoint, listening on `addr`.
pub(crate) struct ExtraService {
    /// What it is, for the start-up check of its address ("demo backend").
    pub what: &'static str,
    pub addr: SocketAddr,
    pub service: Box<dyn ServiceWithDependents>,
}

/// Extra services and a start hook, for callers that embed runoff (the demo).
#[derive(Default)]
pub(crate) struct Extras {
    pub services: Vec<ExtraService>,
    pub on_start: Option<OnStart>,
}

/// Check that every address runoff will listen on is free now, so a clash is a clear error at
/// start instead of a panic inside a Pingora service.
fn check_listeners(config: &Config, extras: &Extras) -> Result<(), StartError> {
    let startup = &config.startup;
    let mut all: Vec<(&'static str, SocketAddr)> =
        startup.listen.iter().map(|a| ("listen", *a)).collect();
    all.push(("admin.listen", startup.admin.listen));
    all.extend(startup.listen_tls.iter().map(|l| ("listen_tls", l.address)));
    all.extend(extras.services.iter().map(|s| (s.what, s.addr)));
    for (what, addr) in all {
        TcpListener::bind(addr).map_err(|source| StartError::Listen { what, addr, source })?;
    }
    Ok(())
}

/// The admin API token from the environment variable `admin.token_env` names, if any.
fn admin_token(config: &Config) -> Result<Option<String>, StartError> {
    let Some(name) = &config.startup.admin.token_env else {
        return Ok(None);
    };
    match std::env::var(name) {
        Ok(t) if !t.is_empty() => Ok(Some(t)),
        _ => Err(StartError::Token(name.clone())),
    }
}

/// Build and run the server until it is told to stop (a signal, or a [`Stop`] request);
/// returns once in-flight requests have drained.
pub(crate) fn run(config: Config, options: RunOptions, extras: Extras) -> Result<(), StartError> {
    // The config's own problems first, then the machine's.
    let token = admin_token(&config)?;
    let upgrade_sock = upgrade::socket(config.startup.server.upgrade_sock.as_deref())?;
    if !options.upgrade {
        check_listeners(&config, &extras)?;
    }
    log::info!("{}", limits::raise_open_files());
    let metrics = Arc::new(Metrics::new(Registry::new())?);
    metrics.control.stamp_good_load();
    let access_log = AccessLogger::start(
        &config.startup.access_log,
        metrics.access_log_dropped.clone(),
    )
    .map_err(StartError::AccessLog)?;
    let shadow_threads = crate::mirror::start_shadow_threads(config.startup.server.shadow_threads)
        .map_err(StartError::Thread)?;
    let shared = Arc::new(Shared::new(
        &config,
        Arc::clone(&metrics),
        access_log,
        shadow_threads,
    ));
    let startup = config.startup.clone();
    let ramp_file = startup.server.ramp_state_file.clone().or_else(|| {
        options.config_path.as_deref().map(|p| {
            p.parent()
                .unwrap_or_else(|| std::path::Path::new("."))
                .join(crate::config::defaults::RAMP_STATE_FILE)
        })
    });
    let control = Arc::new(Control::new(
        Arc::clone(&shared),
        config,
        options.config_path.clone(),
        ramp_file,
    ));
    if options.watch || startup.server.watch {
        if let Some(path) = &options.config_path {
            watch::watch_config(Arc::clone(&control), path)?;
        }
    }
    let sampled = Arc::clone(&shared);
    crate::analysis::resources::start(
        Arc::clone(&shared.resources),
        Arc::clone(&metrics),
        move || {
            let specs = sampled.snapshot.load().process_specs();
            specs
                .into_iter()
                .map(|(name, spec)| {
                    let open = sampled.book.open_to(&name);
                    (name, spec, open)
                })
                .collect()
        },
    )
    .map_err(StartError::Thread)?;

    judge::start(Arc::clone(&shared), Arc::clone(&control)).map_err(StartError::Thread)?;

    let stop = Stop::default();
    let server = assemble(
        &upgrade_sock,
        &startup,
        &options,
        &shared,
        &control,
        token,
        extras.services,
    );
    let phases = server.watch_execution_phase();
    if let Some(hook) = extras.on_start {
        let stop = stop.clone();
        thread::Builder::new()
            .name("runoff-start-hook".into())
            .spawn(move || {
                // A hook that panics (the demo printing to a closed pipe, `runoff demo | head`)
                // must not leave the server running with no one to stop it.
                let guard = stop.clone();
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(stop))).is_err() {
                    guard.request();
                }
            })
            .map_err(StartError::Thread)?;
    }
    log::info!(
        "runoff listening on {:?}, admin on {}",
        startup.listen,
        startup.admin.listen
    );
    let running = thread::Builder::new()
        .name("runoff-server".into())
        .spawn(move || {
            server.run(RunArgs {
                shutdown_signal: Box::new(DrainingSignals { stop }),
            })
        })
        .map_err(StartError::Thread)?;
    drain::wait_for_drain(phases, &shared, startup.server.drain_timeout);
    // Drained; Pingora may still be sitting out its grace period, which the process need not.
    if running.is_finished() && running.join().is_err() {
        return Err(StartError::Crashed);
    }
    Ok(())
}

/// How callers' connections are spoken to: HTTP/1.1, and with `server.h2c` HTTP/2 with prior
/// knowledge on the same port (detected by its preface, as Envoy's `codec_type: AUTO` does),
/// with Pingora's bounds (100 concurrent streams, a 64 KiB header list, h2's 64 KiB windows and
/// its rapid-reset limit of 20 streams reset before they are accepted) and the HTTP/1.1
/// keep-alive timeout as the idle timeout of an HTTP/2 connection.
fn http_options(server: &crate::config::ServerSettings) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    options.h2c = server.h2c;
    options.h2_idle_timeout = Some(server.keepalive_timeout);
    options
}

/// The Pingora server with every service added, bootstrapped (an `--upgrade` takes the
/// listeners over here).
fn assemble(
    upgrade_sock: &Path,
    startup: &Startup,
    options: &RunOptions,
    shared: &Arc<Shared>,
    control: &Arc<Control>,
    token: Option<String>,
    extra: Vec<ExtraService>,
) -> Server {
    let drain = startup.server.drain_timeout;
    let mut conf = ServerConf {
        threads: startup.server.threads,
        upstream_keepalive_pool_size: startup.server.upstream_keepalive_pool_size,
        // Pingora sleeps the whole grace period; the drain watch returns as soon as the last
        // in-flight request is done, so this is only the upper bound.
        grace_period_seconds: Some(drain.as_secs() + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        // Every timeout of a second or more on Tokio's timer, none on Pingora's "fast" one.
        // runoff's timeouts (keep-alive, backend read and write, connect) are seconds long and
        // nearly always cancelled within milliseconds; Pingora's fast timer keeps each until its
        // deadline and reads the clock to check its own timer thread on every timed read or
        // write (6.5 times a request here). Pingora's own documentation of this setting says
        // Tokio's timer, which removes a cancelled timeout, suits such timeouts better.
        fast_timeout_to_tokio_threshold_seconds: Some(0),
        ..ServerConf::default()
    };
    conf.pid_file = std::env::temp_dir()
        .join(format!("runoff-{}.pid", std::process::id()))
        .to_string_lossy()
        .into_owned();
    conf.upgrade_sock = upgrade_sock.to_string_lossy().into_owned();
    let opt = Opt {
        upgrade: options.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let mut proxy_app =
        pingora::proxy::http_proxy(&server.configuration, Runoff::new(Arc::clone(shared)));
    proxy_app.server_options = Some(http_options(&startup.server));
    let mut proxy = Service::new(
        "runoff proxy".to_string(),
        LastAcceptGrace {
            inner: Arc::new(proxy_app),
            connections: Arc::clone(&shared.connections),
            header_timeout: startup.server.client_header_timeout,
            rejections: shared.metrics.rejected_requests.clone(),
            goaways: shared.metrics.h2_goaways.clone(),
            between: keepalive::Between {
                keepalive: startup.server.keepalive_timeout,
                closing: keepalive::Closing::default(),
            },
        },
    );
    for certs in &shared.tls {
        let mut tls = match TlsSettings::intermediate("", "") {
            Ok(t) => t,
            Err(e) => {
                log::error!("TLS listener {}: {e}", certs.address);
                continue;
            }
        };
        tls.set_cert_resolver(Arc::clone(certs) as Arc<dyn rustls::server::ResolvesServerCert>);
        // ALPN: h2 preferred, http/1.1 allowed.
        tls.enable_h2();
        proxy.add_tls_with_settings(&certs.address.to_string(), None, tls);
    }
    for addr in &startup.listen {
        // No L4 read buffer on callers' connections: Pingora's default puts a 64 KiB one
        // (zero-filled, so resident) in front of every accepted socket for its whole life,
        // which made each idle WebSocket (and each idle keep-alive connection) cost 64 KiB.
        // Pingora's HTTP/1 reader reads into its own buffer; the L4 buffer saves syscalls for
        // TLS's small reads, and runoff's listeners are plaintext. bench/run.sh measured no
        // loss (43 against 49 µs of CPU per request with the buffer, same run).
        // No L4 write buffer either: Pingora allocates its 1,460 bytes with the connection and
        // keeps them for its life; `Watched` gathers small writes the same way, holding a
        // buffer only while a response is being written.
        proxy.add_listener(
            ListenerConfig::tcp(addr.to_string()).l4_buffer(L4BufferSettings::unbuffered()),
        );
    }
    server.add_service(proxy);

    let mut admin = Service::new(
        "runoff admin".to_string(),
        Admin::new(
            shared.metrics.registry.clone(),
            startup.listen.clone(),
            (Arc::clone(control), Arc::clone(shared)),
            token,
            &startup.admin,
        ),
    );
    admin.threads = Some(1);
    admin.add_tcp(&startup.admin.listen.to_string());
    server.add_service(admin);

    for s in extra {
        server.add_boxed_service(s.service);
    }

    let mut pools = background_service(
        "backend pools",
        PoolService {
            pools: Arc::clone(&shared.pools),
            resolver: dns::for_servers(&startup.server.resolver),
            connector: Arc::new(Connector::new(None)),
        },
    );
    pools.threads = Some(1);
    server.add_service(pools);

    let mut hup = background_service(
        "reload on SIGHUP",
        ReloadOnHangup {
            control: Arc::clone(control),
        },
    );
    hup.threads = Some(1);
    server.add_service(hup);
    server
}
