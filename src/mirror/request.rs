//! The shadow copy of a request: its header (the caller's request as the primary gets it, minus
//! hop-by-hop fields and the mirror's `strip_headers`, plus the marker), how its body will
//! arrive, and the facts about it that logs and samples name.
//!
//! Must not: change anything else in the request: both legs must see the same request.

use http::header::{HeaderName, CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

use crate::compare::PairMeta;
use crate::config::{Forwarding, Mirror};
use crate::forwarding::{apply_forwarding, nominated, Peer, RequestId, HOP_BY_HOP};

/// How the copy's body will arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyPlan {
    /// No body: the copy is complete once its header is sent.
    None,
    /// `Content-Length: n` (n > 0).
    Length(u64),
    /// Chunked or otherwise unknown length.
    Streamed,
}

/// What the access log and mismatch samples say about a copy, taken from its header once.
pub(super) fn facts(header: &RequestHeader, request_id: &HeaderName) -> PairMeta {
    PairMeta {
        method: header.method.as_str().to_string(),
        path: header
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into()),
        request_id: header
            .headers
            .get(request_id)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    }
}

/// The header of a shadow copy: the caller's request as the primary gets it (same request id
/// and forwarding headers), minus hop-by-hop fields and the mirror's `strip_headers`, plus the
/// marker header.
pub(crate) fn shadow_request(
    original: &RequestHeader,
    fwd: &Forwarding,
    mirror: &Mirror,
    peer: &Peer,
    request_id: &RequestId,
    strip: &[HeaderName],
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
    apply_forwarding(&mut req, fwd, peer, request_id.to_add(), strip)?;
    req.insert_header(mirror.marker_header.clone(), "1")?;
    Ok(req)
}

/// How a request's body arrives, from its framing headers (RFC 9112 section 6.3: a request
/// with neither `Transfer-Encoding` nor `Content-Length` has no body).
pub(crate) fn body_plan(req: &RequestHeader) -> BodyPlan {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;
    use http::Method;
    use std::net::IpAddr;

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
            ..Mirror::with_defaults(1, 100.0)
        }
    }

    fn forwarding() -> Forwarding {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            request_id_header: HeaderName::from_static("x-request-id"),
            trusted_proxies: Vec::new(),
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
        let id = RequestId {
            value: HeaderValue::from_static("0123"),
            generated: true,
        };
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let peer = Peer {
            addr: Some(ip),
            trusted: false,
            client: Some(ip),
        };
        let copy = shadow_request(&req, &forwarding(), &mirror(), &peer, &id, &[]).expect("copy");
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
    fn copy_facts_name_the_request() {
        let mut req = RequestHeader::build("POST", b"/orders?id=1", None).expect("header");
        req.insert_header("x-request-id", "abc").expect("id");
        let facts = facts(&req, &HeaderName::from_static("x-request-id"));
        assert_eq!(
            (
                facts.method.as_str(),
                facts.path.as_str(),
                facts.request_id.as_str()
            ),
            ("POST", "/orders?id=1", "abc")
        );
    }
}
