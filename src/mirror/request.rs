//! The shadow copy of a request: its header (the primary's request exactly as Pingora will
//! write it to the primary's backend, minus the mirror's `strip_headers`, plus the marker),
//! how its body will arrive, and the facts about it that logs and samples name.
//!
//! Must not: change anything else in the request: both legs must see the same request.

use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::Version;
use pingora::http::authority::raw_target_authority;
use pingora::http::RequestHeader;

use crate::compare::PairMeta;
use crate::config::{Mirror, Protocol};

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

/// The header of a shadow copy, from `as_sent`: the primary's request as
/// `upstream_request_filter` sees it, that is after Pingora's own normalisation (HTTP/1.1,
/// hop-by-hop and `Connection`-nominated fields removed, `Transfer-Encoding` dropped) and
/// runoff's forwarding headers. Two steps Pingora takes after that filter are taken here too,
/// so the copy is what the primary's backend receives: a body with no framing left (its
/// `Content-Length` was nominated by `Connection`) is sent chunked, and an absolute-form
/// target's authority is the Host. Then the mirror's `strip_headers` go and the marker comes.
pub(crate) fn shadow_request(
    as_sent: &RequestHeader,
    mirror: &Mirror,
    has_body: bool,
) -> pingora::Result<RequestHeader> {
    let mut req = as_sent.clone();
    if has_body
        && !req.headers.contains_key(CONTENT_LENGTH)
        && !req.headers.contains_key(TRANSFER_ENCODING)
    {
        req.insert_header(TRANSFER_ENCODING, "chunked")?;
    }
    let authority = req
        .uri
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| {
            raw_target_authority(req.raw_path())
                .authority()
                .map(<[u8]>::to_vec)
        });
    if let Some(authority) = authority {
        let mut hosts = req.headers.get_all(HOST).iter();
        let same =
            hosts.next().is_some_and(|h| h.as_bytes() == authority) && hosts.next().is_none();
        if !same {
            req.insert_header(HOST, authority)?;
        }
    }
    for name in &mirror.strip_headers {
        req.remove_header(name);
    }
    req.insert_header(mirror.marker_header.clone(), "1")?;
    Ok(req)
}

/// The copy in the shadow backend's protocol. `shadow_request` gives it as HTTP/1.1 carries it
/// (the primary's request may have been HTTP/2, when its own backend speaks it); for an HTTP/2
/// shadow, the conversion Pingora makes for an HTTP/2 primary: no connection-specific fields
/// (RFC 9113 §8.2.2), and `Host` moved into the target's authority (`:authority`).
pub(crate) fn for_protocol(
    mut req: RequestHeader,
    protocol: Protocol,
) -> pingora::Result<RequestHeader> {
    match protocol {
        Protocol::Http1 => req.set_version(Version::HTTP_11),
        Protocol::H2c | Protocol::H2 => {
            for name in [TRANSFER_ENCODING, CONNECTION, UPGRADE] {
                req.remove_header(&name);
            }
            req.remove_header("keep-alive");
            req.remove_header("proxy-connection");
            req.set_version(Version::HTTP_2);
            if let Some(host) = req.remove_header(&HOST) {
                let path = req
                    .uri
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string();
                let uri = http::Uri::builder()
                    .scheme(if protocol == Protocol::H2 {
                        "https"
                    } else {
                        "http"
                    })
                    .authority(host.as_bytes())
                    .path_and_query(path)
                    .build()
                    .map_err(|e| {
                        pingora::Error::because(
                            pingora::ErrorType::InvalidHTTPHeader,
                            "the copy's Host is not an authority",
                            e,
                        )
                    })?;
                req.set_uri(uri);
            }
        }
    }
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
            ..Mirror::with_defaults(1, 100.0)
        }
    }

    #[test]
    fn a_copy_is_the_request_as_sent_minus_stripped_headers_plus_the_marker() {
        let mut req = RequestHeader::build("POST", b"/orders?id=1", None).expect("header");
        for (k, v) in [
            ("host", "shop.example.com"),
            ("cookie", "session=abc"),
            ("content-length", "5"),
            ("x-custom", "v"),
            ("x-request-id", "0123"),
        ] {
            req.append_header(k, v).expect("append");
        }
        let copy = shadow_request(&req, &mirror(), true).expect("copy");
        let get = |k: &str| copy.headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(copy.method, Method::POST);
        assert_eq!(copy.uri.to_string(), "/orders?id=1");
        for (k, v) in [
            ("host", "shop.example.com"),
            ("x-custom", "v"),
            ("content-length", "5"),
            ("x-runoff-shadow", "1"),
            ("x-request-id", "0123"),
        ] {
            assert_eq!(get(k), Some(v), "{k}");
        }
        assert_eq!(get("cookie"), None);
        assert_eq!(get("transfer-encoding"), None);
        assert_eq!(body_plan(&copy), BodyPlan::Length(5));
        assert_eq!(copy.headers.len(), 5);
    }

    #[test]
    fn a_body_whose_framing_was_nominated_away_goes_chunked_as_pingora_sends_it() {
        let mut req = RequestHeader::build("POST", b"/", None).expect("header");
        req.append_header("host", "a").expect("host");
        let copy = shadow_request(&req, &mirror(), true).expect("copy");
        assert_eq!(
            copy.headers.get("transfer-encoding").map(|v| v.as_bytes()),
            Some(&b"chunked"[..])
        );
        assert_eq!(body_plan(&copy), BodyPlan::Streamed);
        let copy = shadow_request(&req, &mirror(), false).expect("copy");
        assert_eq!(body_plan(&copy), BodyPlan::None);
    }

    #[test]
    fn an_absolute_form_target_names_the_host() {
        let mut req =
            RequestHeader::build("GET", b"http://api.example:8080/x", None).expect("header");
        req.append_header("host", "other").expect("host");
        let copy = shadow_request(&req, &mirror(), false).expect("copy");
        assert_eq!(
            copy.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"api.example:8080"[..])
        );
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

    #[test]
    fn an_http2_copy_carries_its_host_as_the_authority_and_no_connection_fields() {
        let mut req = RequestHeader::build("POST", b"/orders?x=1", None).expect("header");
        for (k, v) in [
            ("host", "api.example:8080"),
            ("transfer-encoding", "chunked"),
            ("x-custom", "1"),
        ] {
            req.insert_header(k, v).expect("insert");
        }
        let h2 = for_protocol(req.clone(), Protocol::H2c).expect("h2");
        assert_eq!(h2.version, Version::HTTP_2);
        assert_eq!(h2.uri.to_string(), "http://api.example:8080/orders?x=1");
        assert!(h2.headers.get("host").is_none());
        assert!(h2.headers.get("transfer-encoding").is_none());
        assert_eq!(
            h2.headers.get("x-custom").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
        let mut from_h2 = req;
        from_h2.set_version(Version::HTTP_2);
        let h1 = for_protocol(from_h2, Protocol::Http1).expect("h1");
        assert_eq!(h1.version, Version::HTTP_11);
        assert_eq!(
            h1.headers.get("host").map(|v| v.as_bytes()),
            Some(&b"api.example:8080"[..])
        );
    }
}
