//! How runoff reaches a backend, the same for the primary and the shadow: the Pingora peer with
//! the backend's timeouts, and what taking a connection cost.
//!
//! Must not: decide which backend (that is `routing`'s), or classify failures (`outcome`).

use std::net::SocketAddr;
use std::time::Duration;

use pingora::protocols::Digest;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;

use crate::config::Backend;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::sync::Arc;

/// Pooled upstream connections idle longer than this are closed by runoff first, which avoids
/// racing a backend's own keep-alive timeout (Node's default is 5 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(4);

/// An HTTP/1 plaintext peer for one of the backend's addresses, with the backend's timeouts
/// (Pingora's defaults are none).
pub(crate) fn peer_for(b: &Backend, addr: SocketAddr) -> HttpPeer {
    // No name to send (an IP address, `verify: false`): rustls takes the IP, and sends no SNI.
    let sni = b.tls.as_ref().map_or_else(String::new, |t| {
        if t.sni.is_empty() {
            addr.ip().to_string()
        } else {
            t.sni.clone()
        }
    });
    let mut peer = HttpPeer::new(addr, b.tls.is_some(), sni);
    if let Some(tls) = &b.tls {
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        if let Some(ca) = &tls.ca {
            // DER checked as trust anchors when the config loaded.
            let certs: Vec<WrappedX509> = ca
                .iter()
                .map(|der| WrappedX509::new(der.clone(), parse_x509))
                .collect();
            peer.options.ca = Some(Arc::from(certs));
        }
    }
    peer.options.connection_timeout = Some(b.connect_timeout);
    peer.options.read_timeout = Some(b.read_timeout);
    peer.options.write_timeout = Some(b.write_timeout);
    peer.options.idle_timeout = Some(POOL_IDLE_TIMEOUT);
    if b.protocol.is_h2() {
        // HTTP/2 only: by ALPN over TLS, by prior knowledge in cleartext.
        peer.options.alpn = ALPN::H2;
        peer.options.max_h2_streams = b.max_streams;
    }
    peer
}

/// How long a new connection took to establish, from its digest (`None` when not timed).
pub(crate) fn connect_time(digest: Option<&Digest>) -> Option<Duration> {
    digest
        .and_then(|d| d.timing_digest.first())
        .and_then(Option::as_ref)
        .and_then(|t| t.establishment_duration)
}
