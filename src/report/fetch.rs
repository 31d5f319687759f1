//! Reading a running runoff's admin API over HTTP: `GET /api/summary` for `runoff report` and
//! the demo's live view, and any other JSON answer (the demo's differing fields).
//!
//! Must not: talk to anything but the admin address it is given, or wait without a bound.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use serde::de::DeserializeOwned;

use crate::analysis::model::Summary;

/// `GET /api/summary?window=WINDOW` from a running runoff's admin endpoint (`http://host:port`).
pub(crate) fn summary(admin: &str, window: &str, token: Option<&str>) -> Result<Summary, String> {
    get(admin, &format!("/api/summary?window={window}"), token)
}

/// `GET PATH` from the admin endpoint, parsed as JSON of type `T`.
pub(crate) fn get<T: DeserializeOwned>(
    admin: &str,
    path: &str,
    token: Option<&str>,
) -> Result<T, String> {
    let hostport = admin
        .strip_prefix("http://")
        .ok_or_else(|| format!("`{admin}`: the admin URL must start with http://"))?
        .trim_end_matches('/');
    let addr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("`{hostport}`: {e}"))?
        .next()
        .ok_or_else(|| format!("`{hostport}` resolves to no address"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (status, body) = rt.block_on(exchange(addr, hostport, path, token))?;
    if status != 200 {
        return Err(format!(
            "{admin}{path} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{admin}{path}: unexpected answer: {e}"))
}

async fn exchange(
    addr: SocketAddr,
    host: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let err = |e: Box<pingora::Error>| format!("http://{host}{path}: {e}");
    let connector = Connector::new(None);
    let mut peer = HttpPeer::new(addr, false, String::new());
    peer.options.connection_timeout = Some(Duration::from_secs(3));
    peer.options.read_timeout = Some(Duration::from_secs(10));
    let mut req = RequestHeader::build("GET", path.as_bytes(), None).map_err(err)?;
    req.insert_header("host", host).map_err(err)?;
    if let Some(t) = token {
        req.insert_header("authorization", format!("Bearer {t}"))
            .map_err(err)?;
    }
    crate::client::exchange(&connector, &peer, req, None)
        .await
        .map_err(err)
}
