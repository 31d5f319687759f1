//! A minimal HTTP/1 client on Pingora's pooled connector, for runoff's own requests: the demo's
//! load and `runoff report`'s read of `/api/summary`.
//!
//! Must not: carry shadow copies (those stream a body as it arrives and record timings; see
//! `mirror`), or talk to anything but the addresses it is given.

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;

/// Send one request (with its body, if any), read the whole response, and return the
/// connection to the pool. The request must carry its own framing headers for a body.
pub(crate) async fn exchange(
    connector: &Connector,
    peer: &HttpPeer,
    req: RequestHeader,
    body: Option<Bytes>,
) -> pingora::Result<(u16, Vec<u8>)> {
    let (mut session, _reused) = connector.get_http_session(peer).await?;
    session.write_request_header(Box::new(req)).await?;
    if let Some(b) = body {
        session.write_request_body(b, true).await?;
    }
    session.finish_request_body().await?;
    session.read_response_header().await?;
    let status = session
        .response_header()
        .map(|h| h.status.as_u16())
        .unwrap_or(0);
    let mut answer = Vec::new();
    while !session.response_done() {
        match session.read_response_body().await? {
            Some(b) => answer.extend_from_slice(&b),
            None => break,
        }
    }
    connector
        .release_http_session(session, peer, peer.options.idle_timeout)
        .await;
    Ok((status, answer))
}
