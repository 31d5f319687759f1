//! RFC 9112 rules runoff enforces on a caller's request before routing it, where Pingora's
//! parser is lenient: the Host field (§3.2), message framing (§6: one plain Content-Length,
//! `chunked` once and last in Transfer-Encoding) and header names with underscores (dropped,
//! as nginx does, unless `server.underscores_in_headers`).
//!
//! Must not: touch a request it accepts beyond dropping underscore names, or decide anything
//! but accept or refuse (the proxy answers and counts).

use http::header::{HeaderName, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::Version;
use pingora::http::RequestHeader;

use crate::metrics::Rejection;

/// Why a request is refused, and the status it gets.
pub(crate) fn check(req: &RequestHeader) -> Result<(), (Rejection, u16)> {
    check_host(req)?;
    check_framing(req)
}

fn check_host(req: &RequestHeader) -> Result<(), (Rejection, u16)> {
    let bad = (Rejection::BadHost, 400);
    let mut hosts = req.headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) if req.version == Version::HTTP_11 => return Err(bad),
        (None, _) => return Ok(()),
        (Some(_), Some(_)) => return Err(bad),
        (Some(h), None) => h.as_bytes(),
    };
    // uri-host [ ":" port ]: no path, query, userinfo or whitespace; empty only without an
    // authority, which an origin-form request line never carries.
    let valid = !host.is_empty()
        && host
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'?' | b'#' | b'@' | b'\\'));
    if valid {
        Ok(())
    } else {
        Err(bad)
    }
}

fn check_framing(req: &RequestHeader) -> Result<(), (Rejection, u16)> {
    let bad = (Rejection::BadFraming, 400);
    let lengths: Vec<&[u8]> = req
        .headers
        .get_all(CONTENT_LENGTH)
        .iter()
        .map(|v| v.as_bytes())
        .collect();
    match lengths.as_slice() {
        [] => {}
        [one] if !one.is_empty() && one.iter().all(u8::is_ascii_digit) => {}
        _ => return Err(bad),
    }
    let codings: Vec<String> = req
        .headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| String::from_utf8_lossy(t).trim().to_ascii_lowercase())
        .collect();
    if codings.is_empty() {
        return Ok(());
    }
    if !lengths.is_empty() {
        // Both framings at once: the classic request-smuggling shape (§6.3 allows refusing).
        return Err(bad);
    }
    if codings.iter().any(|c| c != "chunked") {
        // A coding runoff cannot undo for the backend: nginx answers 501 too.
        return Err((Rejection::UnsupportedCoding, 501));
    }
    if codings.len() > 1 {
        // `chunked` applied twice (§6.1: never more than once).
        return Err(bad);
    }
    Ok(())
}

/// What a refused request's body says.
pub(crate) fn refusal_body(status: u16) -> &'static [u8] {
    if status == 501 {
        b"runoff: this transfer coding is not supported\n"
    } else {
        b"runoff: malformed request\n"
    }
}

/// Header names holding an underscore (dropped unless allowed): a proxy that maps them to
/// CGI-style variables cannot tell `X_Forwarded_For` from `X-Forwarded-For`.
pub(crate) fn underscore_names(req: &RequestHeader) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = req
        .headers
        .keys()
        .filter(|n| n.as_str().contains('_'))
        .cloned()
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(version: Version, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/x", None).expect("header");
        r.set_version(version);
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("append");
        }
        r
    }

    fn verdict(version: Version, headers: &[(&str, &str)]) -> Option<(Rejection, u16)> {
        check(&req(version, headers)).err()
    }

    #[test]
    fn host_rules() {
        let h11 = Version::HTTP_11;
        assert_eq!(verdict(h11, &[("host", "api.example:8080")]), None);
        assert_eq!(verdict(h11, &[("host", "[::1]:8080")]), None);
        assert_eq!(verdict(Version::HTTP_10, &[]), None);
        for bad in [
            &[][..],
            &[("host", "")],
            &[("host", "a/b?c")],
            &[("host", "user@a")],
            &[("host", "a"), ("host", "a")],
        ] {
            assert_eq!(
                verdict(h11, bad),
                Some((Rejection::BadHost, 400)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn framing_rules() {
        let h = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![("host", "a")];
            all.extend_from_slice(extra);
            verdict(Version::HTTP_11, &all)
        };
        assert_eq!(h(&[("content-length", "5")]), None);
        assert_eq!(h(&[("transfer-encoding", "chunked")]), None);
        assert_eq!(h(&[("transfer-encoding", "Chunked")]), None);
        let bad_framing = Some((Rejection::BadFraming, 400));
        assert_eq!(h(&[("content-length", "5, 5")]), bad_framing);
        assert_eq!(
            h(&[("content-length", "5"), ("content-length", "5")]),
            bad_framing
        );
        assert_eq!(h(&[("content-length", "-1")]), bad_framing);
        assert_eq!(h(&[("transfer-encoding", "chunked, chunked")]), bad_framing);
        assert_eq!(
            h(&[("content-length", "3"), ("transfer-encoding", "chunked")]),
            bad_framing
        );
        let unsupported = Some((Rejection::UnsupportedCoding, 501));
        assert_eq!(h(&[("transfer-encoding", "gzip, chunked")]), unsupported);
        assert_eq!(
            h(&[("transfer-encoding", "identity, chunked")]),
            unsupported
        );
    }

    #[test]
    fn underscores_are_found() {
        let r = req(
            Version::HTTP_11,
            &[("host", "a"), ("x_forwarded_for", "1.2.3.4"), ("x-ok", "1")],
        );
        assert_eq!(
            underscore_names(&r),
            vec![HeaderName::from_static("x_forwarded_for")]
        );
    }
}
