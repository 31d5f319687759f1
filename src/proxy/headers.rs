//! Request headers runoff adds on the way to a backend: `X-Forwarded-*` and the request id.
//!
//! Lives here: plain functions computing header values. Must not: remove or rewrite anything
//! else (forwarding is transparent; Pingora strips hop-by-hop headers itself).

use std::net::IpAddr;

use http::header::{HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use pingora::http::RequestHeader;
use rand::Rng;

use crate::config::{Forwarding, Mirror};
use crate::mirror::BodyPlan;

/// Add runoff's forwarding headers to a request on its way to a backend: the request id when
/// runoff generated it, `X-Forwarded-For` (appended), `-Proto` and `-Host` (when absent).
pub fn apply_forwarding(
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
const HOP_BY_HOP: [&str; 7] = [
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
fn nominated(headers: &http::HeaderMap, keep: &[&str]) -> Vec<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !keep.contains(&t.as_str()))
        .collect()
}

/// The header of a shadow copy: the caller's request as the primary gets it (same request id
/// and forwarding headers), minus hop-by-hop fields and the mirror's `strip_headers`, plus the
/// marker header.
pub fn shadow_request(
    original: &RequestHeader,
    fwd: &Forwarding,
    mirror: &Mirror,
    client: Option<IpAddr>,
    generated_request_id: Option<&HeaderValue>,
) -> pingora::Result<RequestHeader> {
    let mut req = original.clone();
    req.set_version(http::Version::HTTP_11);
    for name in nominated(&req.headers, &["close", "keep-alive"]) {
        req.remove_header(name.as_str());
    }
    for name in HOP_BY_HOP {
        req.remove_header(name);
    }
    for name in &mirror.strip_headers {
        req.remove_header(name);
    }
    apply_forwarding(&mut req, fwd, client, generated_request_id)?;
    req.insert_header(mirror.marker_header.clone(), "1")?;
    Ok(req)
}

/// Remove hop-by-hop fields from a backend's response before it goes on to the caller:
/// `Keep-Alive`, `Proxy-Connection` and whatever `Connection` nominates (Pingora writes the
/// caller's own `Connection` and framing). A `101` keeps `Upgrade`, which it needs.
pub fn strip_response_hops(resp: &mut pingora::http::ResponseHeader) {
    for name in nominated(&resp.headers, &["close", "keep-alive", "upgrade"]) {
        resp.remove_header(name.as_str());
    }
    resp.remove_header("keep-alive");
    resp.remove_header("proxy-connection");
}

/// How a request's body arrives, from its framing headers (RFC 9112 section 6.3: a request
/// with neither `Transfer-Encoding` nor `Content-Length` has no body).
pub fn body_plan(req: &RequestHeader) -> BodyPlan {
    let chunked = req
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().is_empty());
    if chunked {
        return BodyPlan::Streamed;
    }
    match req
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(0) | None => BodyPlan::None,
        Some(n) => BodyPlan::Length(n),
    }
}

/// `X-Forwarded-For` after this hop: the existing list with the client address appended.
pub fn forwarded_for(existing: Option<&[u8]>, client: IpAddr) -> String {
    match existing.map(|v| String::from_utf8_lossy(v).trim().to_string()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    }
}

/// A fresh request id: 32 lower-case hex digits (128 random bits).
pub fn new_request_id() -> String {
    let id: u128 = rand::rng().random();
    format!("{id:032x}")
}

/// Whether a request id a caller sent is fit to keep (printable, bounded).
pub fn usable_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 200 && value.iter().all(|b| (0x21..0x7f).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderName;
    use http::Method;

    fn mirror() -> Mirror {
        Mirror {
            to: 1,
            percent: 100.0,
            methods: vec![Method::GET],
            max_body_bytes: 1 << 20,
            max_in_flight: 8,
            timeout: std::time::Duration::from_secs(5),
            marker_header: HeaderName::from_static("x-runoff-shadow"),
            strip_headers: vec![HeaderName::from_static("cookie")],
        }
    }

    fn forwarding() -> Forwarding {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            request_id_header: HeaderName::from_static("x-request-id"),
        }
    }

    #[test]
    fn a_copy_keeps_the_request_but_not_its_hops_or_stripped_headers() {
        let mut req = RequestHeader::build("POST", b"/orders?id=1", None).expect("header");
        for (k, v) in [
            ("host", "shop.example.com"),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("cookie", "session=abc"),
            ("transfer-encoding", "chunked"),
            ("x-custom", "v"),
        ] {
            req.append_header(k, v).expect("append");
        }
        let id = HeaderValue::from_static("0123");
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let copy =
            shadow_request(&req, &forwarding(), &mirror(), Some(ip), Some(&id)).expect("copy");
        let get = |k: &str| copy.headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(copy.method, Method::POST);
        assert_eq!(copy.uri.to_string(), "/orders?id=1");
        assert_eq!(get("host"), Some("shop.example.com"));
        assert_eq!(get("x-custom"), Some("v"));
        assert_eq!(get("transfer-encoding"), Some("chunked"));
        assert_eq!(get("x-runoff-shadow"), Some("1"));
        assert_eq!(get("x-request-id"), Some("0123"));
        assert_eq!(get("x-forwarded-for"), Some("10.1.2.3"));
        for gone in ["connection", "keep-alive", "x-secret-hop", "cookie"] {
            assert_eq!(get(gone), None, "{gone}");
        }
        assert_eq!(body_plan(&copy), BodyPlan::Streamed);
    }

    #[test]
    fn body_plans() {
        let mut req = RequestHeader::build("GET", b"/", None).expect("header");
        assert_eq!(body_plan(&req), BodyPlan::None);
        req.insert_header("content-length", "0").expect("cl");
        assert_eq!(body_plan(&req), BodyPlan::None);
        req.insert_header("content-length", "1024").expect("cl");
        assert_eq!(body_plan(&req), BodyPlan::Length(1024));
    }

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
}
