//! What runoff changes in a request or a response on its way through, the same for the primary
//! and its shadow copy: `X-Forwarded-*`, the request id (the caller's when fit to keep, else a
//! new one), and the hop-by-hop fields a hop must drop (RFC 9110 section 7.6.1).
//!
//! Lives here: plain functions over headers, unit-tested. Must not: remove or rewrite anything
//! else (forwarding is transparent; Pingora strips hop-by-hop request headers itself).

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use pingora::http::RequestHeader;
use rand::Rng;

use crate::config::Forwarding;

/// Add runoff's forwarding headers to a request on its way to a backend: the request id when
/// runoff generated it, `X-Forwarded-For` (appended), `-Proto` and `-Host` (when absent).
pub(crate) fn apply_forwarding(
    req: &mut RequestHeader,
    fwd: &Forwarding,
    client: Option<IpAddr>,
    generated_request_id: Option<&HeaderValue>,
) -> pingora::Result<()> {
    if let Some(id) = generated_request_id {
        req.insert_header(fwd.request_id_header.clone(), id.clone())?;
    }
    if fwd.x_forwarded_for {
        if let Some(ip) = client {
            let existing = req
                .headers
                .get("x-forwarded-for")
                .map(HeaderValue::as_bytes);
            let value = forwarded_for(existing, ip);
            req.insert_header("x-forwarded-for", value)?;
        }
    }
    if fwd.x_forwarded_proto && !req.headers.contains_key("x-forwarded-proto") {
        req.insert_header("x-forwarded-proto", "http")?;
    }
    if fwd.x_forwarded_host && !req.headers.contains_key("x-forwarded-host") {
        if let Some(host) = req.headers.get(HOST).cloned() {
            req.insert_header("x-forwarded-host", host)?;
        }
    }
    Ok(())
}

/// Hop-by-hop fields (RFC 9110 section 7.6.1) a copy must not carry; body framing
/// (`Transfer-Encoding`, `Content-Length`) stays, since the copy's body is the same.
pub(crate) const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

/// The header names a `Connection` field nominates as hop-by-hop (lower case), minus `keep`
/// (connection options such as `close`, and fields handled elsewhere).
pub(crate) fn nominated(headers: &http::HeaderMap, keep: &[&str]) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !keep.contains(&t.as_str()))
        .collect()
}

/// Remove hop-by-hop fields from a backend's response before it goes on to the caller:
/// `Keep-Alive`, `Proxy-Connection` and whatever `Connection` nominates (Pingora writes the
/// caller's own `Connection` and framing). A `101` keeps `Upgrade`, which it needs.
pub(crate) fn strip_response_hops(resp: &mut pingora::http::ResponseHeader) {
    for name in nominated(&resp.headers, &["close", "keep-alive", "upgrade"]) {
        resp.remove_header(name.as_str());
    }
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
}

/// `X-Forwarded-For` after this hop: the existing list with the client address appended.
pub(crate) fn forwarded_for(existing: Option<&[u8]>, client: IpAddr) -> String {
    match existing.map(|v| String::from_utf8_lossy(v).trim().to_string()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    }
}

/// A fresh request id: 32 lower-case hex digits (128 random bits).
pub(crate) fn new_request_id() -> String {
    let id: u128 = rand::rng().random();
    format!("{id:032x}")
}

/// The longest request id a caller may send and have kept.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 200;

/// Whether a request id a caller sent is fit to keep: 1 to [`MAX_REQUEST_ID_BYTES`] visible
/// ASCII characters (it goes into both backends' logs, the access log and mismatch samples).
pub(crate) fn usable_request_id(value: &[u8]) -> bool {
    !value.is_empty()
        && value.len() <= MAX_REQUEST_ID_BYTES
        && value.iter().all(|b| (0x21..0x7f).contains(b))
}

/// The request id of a request: the caller's when it is fit to keep, else a new one, which is
/// then `generated` (sent upstream in place of whatever the caller sent, on both legs).
#[derive(Debug, Clone)]
pub(crate) struct RequestId {
    pub value: HeaderValue,
    pub generated: bool,
}

impl RequestId {
    pub(crate) fn of(req: &RequestHeader, header: &HeaderName) -> RequestId {
        match req.headers.get(header) {
            Some(v) if usable_request_id(v.as_bytes()) => RequestId {
                value: v.clone(),
                generated: false,
            },
            _ => RequestId {
                value: HeaderValue::from_str(&new_request_id())
                    .unwrap_or_else(|_| HeaderValue::from_static("0")),
                generated: true,
            },
        }
    }

    /// The id to add upstream: only a generated one (a kept one is already in the request).
    pub(crate) fn to_add(&self) -> Option<&HeaderValue> {
        self.generated.then_some(&self.value)
    }

    /// As text (always visible ASCII).
    pub(crate) fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends() {
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(forwarded_for(None, ip), "10.0.0.7");
        assert_eq!(forwarded_for(Some(b""), ip), "10.0.0.7");
        assert_eq!(forwarded_for(Some(b"1.2.3.4"), ip), "1.2.3.4, 10.0.0.7");
        let v6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(
            forwarded_for(Some(b"1.2.3.4, 5.6.7.8"), v6),
            "1.2.3.4, 5.6.7.8, ::1"
        );
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(usable_request_id(a.as_bytes()));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id(b"has space"));
    }

    #[test]
    fn a_callers_request_id_is_kept_only_when_fit() {
        let header = HeaderName::from_static("x-request-id");
        let with = |v: &[u8]| {
            let mut req = RequestHeader::build("GET", b"/", None).expect("header");
            req.insert_header("x-request-id", HeaderValue::from_bytes(v).expect("value"))
                .expect("insert");
            RequestId::of(&req, &header)
        };
        let kept = with(b"abc-123");
        assert!(!kept.generated);
        assert_eq!(kept.as_str(), "abc-123");
        assert_eq!(kept.to_add(), None);
        let at_limit = "a".repeat(MAX_REQUEST_ID_BYTES);
        assert!(!with(at_limit.as_bytes()).generated);
        for bad in [
            "a".repeat(MAX_REQUEST_ID_BYTES + 1).into_bytes(),
            b"has space".to_vec(),
            b"tab\there".to_vec(),
            vec![b'a', 0xff, b'b'],
        ] {
            let id = with(&bad);
            assert!(id.generated, "{bad:?} must be replaced");
            assert_eq!(id.as_str().len(), 32);
            assert_eq!(id.to_add(), Some(&id.value));
        }
        let none = RequestId::of(
            &RequestHeader::build("GET", b"/", None).expect("header"),
            &header,
        );
        assert!(none.generated);
    }
}
