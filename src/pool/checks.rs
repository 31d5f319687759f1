//! Active health checks: one `GET` of the configured path to one address, with the check's
//! timeout and Host, judged by its status; the result goes to the address's streaks.
//!
//! Must not: run on the request path, let two checks of one address overlap, or follow
//! redirects (a 3xx is a status like any other).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;

use super::endpoint::Endpoint;
use super::Pool;
use crate::config::HealthCheck;

/// Check `e` once and record the result. Skipped when a check of it is still under way.
pub(crate) async fn check(connector: &Connector, pool: &Pool, e: Arc<Endpoint>, hc: HealthCheck) {
    if e.health.checking.swap(true, Ordering::AcqRel) {
        return;
    }
    let status = tokio::time::timeout(hc.timeout, probe(connector, &e, &hc)).await;
    e.health.checking.store(false, Ordering::Release);
    let pass = match &status {
        Ok(Ok(code)) => hc
            .expect_status
            .iter()
            .any(|(lo, hi)| (lo..=hi).contains(&code)),
        _ => false,
    };
    if pass {
        pool.handles.check_pass.inc();
    } else {
        pool.handles.check_fail.inc();
    }
    if let Some(up) = e.health.checked(pass, &hc) {
        let why = match status {
            Ok(Ok(code)) => format!("status {code}"),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!(
                "no answer within {}",
                humantime::format_duration(hc.timeout)
            ),
        };
        if up {
            log::info!(
                "backend {}: {} passes its health checks again",
                pool.name,
                e.addr
            );
        } else {
            log::warn!(
                "backend {}: {} fails its health checks ({why})",
                pool.name,
                e.addr
            );
        }
        pool.refresh_gauges();
    }
}

async fn probe(connector: &Connector, e: &Endpoint, hc: &HealthCheck) -> pingora::Result<u16> {
    let mut req = RequestHeader::build("GET", hc.path.as_bytes(), Some(3))?;
    req.insert_header("host", hc.host.as_deref().unwrap_or(&e.entry))?;
    req.insert_header(
        "user-agent",
        concat!("runoff-health/", env!("CARGO_PKG_VERSION")),
    )?;
    let mut peer = e.peer.clone();
    peer.options.connection_timeout = Some(
        hc.timeout
            .min(peer.options.connection_timeout.unwrap_or(hc.timeout)),
    );
    peer.options.read_timeout = Some(hc.timeout);
    peer.options.idle_timeout = Some(Duration::from_secs(1).min(hc.interval));
    let (status, _) = crate::client::exchange(connector, &peer, req, None).await?;
    Ok(status)
}
