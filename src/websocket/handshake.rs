//! The upgrade handshake with a backend, on runoff's own connection (an upgraded connection is
//! never pooled): connect, send the request head, read the answer. A `101` hands back the
//! upgraded byte stream (with any bytes the backend sent right after it); any other answer is
//! handed back with its body, to be relayed as an ordinary response.
//!
//! Lives here: hyper's HTTP/1 client for one exchange, and the mapping of its failures to the
//! error types the rest of runoff classifies. Must not: change the request (the caller built
//! it, forwarding headers included), or pool the connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use pingora::http::RequestHeader;
use pingora::{Error, ErrorType};

/// How patiently to connect (the address is the pool's choice, per connection).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dial {
    pub(crate) connect_timeout: Duration,
    /// For the answer's head.
    pub(crate) read_timeout: Duration,
}

/// The backend's answer.
pub(crate) enum Answer {
    /// `101`: the connection is now the WebSocket stream.
    Upgraded {
        head: http::response::Parts,
        io: TokioIo<Upgraded>,
    },
    /// Anything else: relay it as a response.
    Refused {
        head: http::response::Parts,
        body: hyper::body::Incoming,
    },
}

pub(crate) struct Handshake {
    /// Time to establish the TCP connection.
    pub(crate) connect: Duration,
    /// Request sent to the answer's head received.
    pub(crate) ttfb: Duration,
    pub(crate) answer: Answer,
}

impl Handshake {
    /// The backend's status: 101, or what it answered instead.
    pub(crate) fn status(&self) -> u16 {
        match &self.answer {
            Answer::Upgraded { head, .. } | Answer::Refused { head, .. } => head.status.as_u16(),
        }
    }
}

fn upstream(etype: ErrorType, context: String) -> Box<Error> {
    let mut e = Error::explain(etype, context);
    e.esource = pingora::ErrorSource::Upstream;
    e
}

/// Connect to `addr` and send `req`; the answer, or an upstream error typed as Pingora's
/// would be (refused, timed out, reset, protocol).
pub(crate) async fn handshake(
    dial: Dial,
    addr: SocketAddr,
    req: &RequestHeader,
) -> pingora::Result<Handshake> {
    let started = Instant::now();
    let tcp = match tokio::time::timeout(dial.connect_timeout, tokio::net::TcpStream::connect(addr))
        .await
    {
        Err(_) => {
            return Err(upstream(
                ErrorType::ConnectTimedout,
                format!("connecting to {}", addr),
            ))
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            return Err(upstream(
                ErrorType::ConnectRefused,
                format!("connecting to {}", addr),
            ))
        }
        Ok(Err(e)) => {
            return Err(upstream(
                ErrorType::ConnectError,
                format!("connecting to {}: {e}", addr),
            ))
        }
        Ok(Ok(tcp)) => tcp,
    };
    let _ = tcp.set_nodelay(true);
    let connect = started.elapsed();
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| upstream(ErrorType::ConnectError, format!("HTTP/1 handshake: {e}")))?;
    tokio::spawn(async move {
        // Ends when the exchange does, or hands the connection over on a 101.
        let _ = conn.with_upgrades().await;
    });
    let request = to_hyper(req)?;
    let sent = Instant::now();
    let response = match tokio::time::timeout(dial.read_timeout, sender.send_request(request)).await
    {
        Err(_) => {
            return Err(upstream(
                ErrorType::ReadTimedout,
                format!("waiting for the upgrade's answer from {}", addr),
            ))
        }
        Ok(Err(e)) => return Err(hyper_error(&e)),
        Ok(Ok(r)) => r,
    };
    let ttfb = sent.elapsed();
    let answer = if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let (head, body) = response.into_parts();
        let mut rebuilt = http::Response::from_parts(head.clone(), body);
        let io = hyper::upgrade::on(&mut rebuilt)
            .await
            .map_err(|e| hyper_error(&e))?;
        Answer::Upgraded {
            head,
            io: TokioIo::new(io),
        }
    } else {
        let (head, body) = response.into_parts();
        Answer::Refused { head, body }
    };
    Ok(Handshake {
        connect,
        ttfb,
        answer,
    })
}

/// The request as hyper sends it: same method, target, headers (`Host` included).
fn to_hyper(req: &RequestHeader) -> pingora::Result<http::Request<Empty<Bytes>>> {
    let target = req.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = http::Request::builder()
        .method(req.method.clone())
        .uri(target)
        .version(http::Version::HTTP_11)
        .body(Empty::new())
        .map_err(|e| {
            Error::explain(
                ErrorType::InternalError,
                format!("building the upgrade request: {e}"),
            )
        })?;
    *out.headers_mut() = req.headers.clone();
    Ok(out)
}

/// A hyper failure as the error type Pingora would have given it.
fn hyper_error(e: &hyper::Error) -> Box<Error> {
    let reset = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset);
    let etype = if e.is_parse() || e.is_parse_status() {
        ErrorType::InvalidHTTPHeader
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() || reset {
        ErrorType::ConnectionClosed
    } else {
        ErrorType::ReadError
    };
    upstream(etype, format!("upgrade exchange: {e}"))
}
