//! RFC 9112 rules runoff enforces on a caller's request before routing it, where Pingora's
//! parser is lenient: the Host field (§3.2), message framing (§6: one plain Content-Length,
//! `chunked` once and last in Transfer-Encoding), lines ended by a bare LF (§2.2), and header
//! names with underscores (dropped, as nginx does, unless `server.underscores_in_headers`).
//! Also refused here, before routing, what Pingora would refuse only once the primary is
//! connected: a `Connection` field nominating a protected or malformed name.
//!
//! Must not: touch a request it accepts beyond dropping underscore names, or decide anything
//! but accept or refuse (the proxy answers and counts).

use http::header::{HeaderName, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::Version;
use pingora::http::RequestHeader;

use crate::forwarding::connection_tokens;
use crate::metrics::Rejection;
use crate::present::Present;

/// Why a request is refused, and the status it gets. `raw`: its header block as received
/// (HTTP/1), when there is one; `present`: the fields it carries (names not present are not
/// looked up).
pub(crate) fn check(
    req: &RequestHeader,
    raw: Option<&[u8]>,
    present: Present,
) -> Result<(), (Rejection, u16)> {
    if raw.is_some_and(has_bare_lf) {
        return Err((Rejection::BadHeader, 400));
    }
    check_host(req)?;
    check_framing(req, present)?;
    if present.transfer_encoding
        && req.headers.contains_key(TRANSFER_ENCODING)
        && raw.is_some_and(has_content_length)
    {
        // Both framings at once, the classic request-smuggling shape: Pingora's parser drops
        // the Content-Length and goes on (RFC 9112 §6.3 allows it); nginx refuses, as §6.3
        // says it "ought to be handled as an error".
        return Err((Rejection::BadFraming, 400));
    }
    if present.connection {
        check_nominations(req)?;
    }
    Ok(())
}

/// The raw header block has a Content-Length field line.
fn has_content_length(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n').skip(1).any(|line| {
        line.split(|b| *b == b':')
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case(b"content-length"))
    })
}

/// A line of the header block ended by LF alone: Pingora's parser takes `\r\n\n` for the end
/// of the block, forwarding the request without the fields after it (nginx refuses it too).
fn has_bare_lf(raw: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', raw).any(|i| i == 0 || raw[i - 1] != b'\r')
}

/// Pingora's bound on `Connection` nominations (`MAX_CONNECTION_NOMINATIONS` in
/// `pingora-proxy`): this many or more are refused.
const MAX_NOMINATIONS: usize = 10;

/// The `Connection` field's nominations, as Pingora judges them before it writes the primary's
/// request (where its refusal would come too late: after routing, with no copy to stop): at
/// most 9 tokens, each an RFC 9110 token, never a pseudo-header or a field the proxy sets.
fn check_nominations(req: &RequestHeader) -> Result<(), (Rejection, u16)> {
    let bad = (Rejection::BadHeader, 400);
    for (n, token) in connection_tokens(&req.headers).enumerate() {
        if n + 1 >= MAX_NOMINATIONS || !token.iter().all(|b| is_tchar(*b)) {
            return Err(bad);
        }
        let protected = [
            "host",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
        ];
        if protected
            .iter()
            .any(|p| token.eq_ignore_ascii_case(p.as_bytes()))
        {
            return Err(bad);
        }
    }
    Ok(())
}

/// RFC 9110 §5.6.2 `tchar` (a token's characters; a pseudo-header's `:` is not one).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

fn check_framing(req: &RequestHeader, present: Present) -> Result<(), (Rejection, u16)> {
    let bad = (Rejection::BadFraming, 400);
    if !present.content_length && !present.transfer_encoding {
        return Ok(());
    }
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
        checked(&req(version, headers), None).err()
    }

    /// `check` as the proxy calls it, which must decide as it does with every name looked up.
    fn checked(r: &RequestHeader, raw: Option<&[u8]>) -> Result<(), (Rejection, u16)> {
        let id = HeaderName::from_static("x-request-id");
        let got = check(r, raw, Present::of(&r.headers, &id));
        assert_eq!(got, check(r, raw, Present::ALL), "{r:?}");
        got
    }

    #[test]
    fn both_framings_in_the_raw_header_are_refused() {
        // Pingora's parser has dropped Content-Length from the parsed header already.
        let r = req(
            Version::HTTP_11,
            &[("host", "a"), ("transfer-encoding", "chunked")],
        );
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            checked(&r, Some(raw)).err(),
            Some((Rejection::BadFraming, 400))
        );
        let raw = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(checked(&r, Some(raw)).err(), None);
    }

    #[test]
    fn bare_line_feeds_are_refused() {
        let r = req(Version::HTTP_11, &[("host", "a")]);
        let refused = Some((Rejection::BadHeader, 400));
        assert_eq!(
            checked(&r, Some(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")).err(),
            None
        );
        assert_eq!(checked(&r, Some(b"GET / HTTP/1.1\r\n\n")).err(), refused);
        assert_eq!(
            checked(&r, Some(b"GET / HTTP/1.1\nHost: a\n\n")).err(),
            refused
        );
        assert_eq!(
            checked(&r, Some(b"\nGET / HTTP/1.1\r\n\r\n")).err(),
            refused
        );
        // A browser-sized block (the search goes by wide blocks): a bare LF deep in it.
        let long = format!("GET / HTTP/1.1\r\n{}\r\n", "Cookie: a=b\r\n".repeat(40));
        assert_eq!(checked(&r, Some(long.as_bytes())).err(), None);
        let bare = long.replacen("b\r\nCookie", "b\nCookie", 1);
        let late = format!("{}\r\nX: y\n\r\n", long.trim_end());
        assert_eq!(checked(&r, Some(bare.as_bytes())).err(), refused);
        assert_eq!(checked(&r, Some(late.as_bytes())).err(), refused);
    }

    #[test]
    fn connection_nominations_as_pingora_judges_them() {
        let h = |connection: &'static str| {
            verdict(
                Version::HTTP_11,
                &[("host", "a"), ("connection", connection)],
            )
        };
        assert_eq!(h("keep-alive"), None);
        assert_eq!(h("close, X-Private-Hop"), None);
        assert_eq!(h("a, b, c, d, e, f, g, h, i"), None);
        let refused = Some((Rejection::BadHeader, 400));
        for bad in [
            "Host",
            "keep-alive, X-Forwarded-For",
            "x-forwarded-proto",
            "X-Forwarded-Host",
            ":authority",
            "\"X-Forwarded-For\"",
            "a, b, c, d, e, f, g, h, i, j",
        ] {
            assert_eq!(h(bad), refused, "{bad}");
        }
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
