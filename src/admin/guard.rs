//! Who the admin listener obeys: the checks a request to `/api/*` (or any page) passes before
//! it is dispatched. A `Host` that names this listener (DNS rebinding sends a name the
//! attacker controls), no foreign `Origin` (a cross-site page), `Content-Type:
//! application/json` on writes (what a page can only send after a CORS preflight, which is
//! never granted), and the bearer token when one is configured.
//!
//! Lives here: plain functions over the request head, unit-tested. Must not: guard `/metrics`,
//! `/healthz` or `/readyz` (Prometheus and probes reach those by any name), or compare the
//! token in anything but constant time.

use std::net::{IpAddr, SocketAddr};

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderMap, Method, StatusCode};
use subtle::ConstantTimeEq;

use crate::metrics::labels::AdminRefusal;

/// What the guard knows about its listener.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// The listener's address (unspecified: every address of the machine).
    pub(crate) listen: SocketAddr,
    /// Further host names it answers to (`admin.allowed_hosts`, lower case).
    pub(crate) allowed_hosts: Vec<String>,
    /// The bearer token `/api/*` requires.
    pub(crate) token: Option<String>,
}

/// Why a request was refused, with the status and a message saying what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) reason: AdminRefusal,
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

fn refuse(reason: AdminRefusal, status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        status,
        message: message.into(),
    }
}

impl Guard {
    /// Whether the request may go on. `api`: the path is under `/api` (the token applies).
    pub(crate) fn check(
        &self,
        method: &Method,
        headers: &HeaderMap,
        api: bool,
    ) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !self.names_me(host) {
            return Err(refuse(
                AdminRefusal::Host,
                StatusCode::FORBIDDEN,
                format!(
                    "Host `{}` does not name this admin listener: use its address or a loopback name, or add the name to admin.allowed_hosts",
                    host.escape_default()
                ),
            ));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(authority_of_origin)
                .is_some_and(|a| a.eq_ignore_ascii_case(host));
            if !same {
                return Err(refuse(
                    AdminRefusal::Origin,
                    StatusCode::FORBIDDEN,
                    "cross-origin requests are refused (send no Origin, or this listener's own)",
                ));
            }
        }
        let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if write && !is_json(headers) {
            return Err(refuse(
                AdminRefusal::ContentType,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "writes need `Content-Type: application/json`",
            ));
        }
        if api {
            self.token_ok(headers)?;
        }
        Ok(())
    }

    fn token_ok(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        match &self.token {
            Some(token) => {
                let presented = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
                match presented {
                    None => Err(refuse(
                        AdminRefusal::TokenMissing,
                        StatusCode::UNAUTHORIZED,
                        "this endpoint needs `Authorization: Bearer <token>`",
                    )),
                    Some(p) if bool::from(p.ct_eq(token.as_bytes())) => Ok(()),
                    Some(_) => Err(refuse(
                        AdminRefusal::TokenWrong,
                        StatusCode::FORBIDDEN,
                        "wrong token",
                    )),
                }
            }
            None if self.listen.ip().is_loopback() => Ok(()),
            None => Err(refuse(
                AdminRefusal::NotLoopback,
                StatusCode::FORBIDDEN,
                "the admin API needs admin.token_env on a non-loopback listener",
            )),
        }
    }

    /// A `Host` naming this listener: a loopback name (`localhost`, `*.localhost`, RFC 6761),
    /// a loopback address, the listener's own address (any address when it listens on all of
    /// them: an address literal cannot be rebound), or a name in `allowed_hosts`.
    fn names_me(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name.is_empty() {
            return false;
        }
        if name == "localhost" || name.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let me = self.listen.ip();
            return ip.is_loopback() || me.is_unspecified() || ip == me;
        }
        self.allowed_hosts.contains(&name)
    }
}

/// The host of a `Host` value, without its port (`[::1]:9100` → `[::1]`).
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `scheme://authority` → `authority` (an opaque `null` origin has none).
fn authority_of_origin(origin: &str) -> Option<&str> {
    let (scheme, rest) = origin.split_once("://")?;
    matches!(scheme, "http" | "https").then_some(rest.trim_end_matches('/'))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, token: Option<&str>) -> Guard {
        Guard {
            listen: listen.parse().expect("addr"),
            allowed_hosts: vec!["runoff.internal".into()],
            token: token.map(str::to_string),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    fn reason(r: Result<(), Refusal>) -> Option<AdminRefusal> {
        r.err().map(|r| r.reason)
    }

    #[test]
    fn host_must_name_the_listener() {
        let g = guard("127.0.0.1:9100", None);
        for ok in [
            "127.0.0.1:9100",
            "localhost:9100",
            "LOCALHOST",
            "app.localhost:9100",
            "[::1]:9100",
            "runoff.internal:9100",
            "127.0.0.2",
        ] {
            assert_eq!(
                reason(g.check(&Method::GET, &headers(&[("host", ok)]), true)),
                None,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:9100",
            "10.0.0.5:9100",
            "",
            "localhost.evil.example",
        ] {
            assert_eq!(
                reason(g.check(&Method::GET, &headers(&[("host", bad)]), true)),
                Some(AdminRefusal::Host),
                "{bad}"
            );
        }
        assert_eq!(
            reason(g.check(&Method::GET, &HeaderMap::new(), true)),
            Some(AdminRefusal::Host)
        );
        let any = guard("0.0.0.0:9100", Some("t"));
        let h = headers(&[("host", "10.0.0.5:9100"), ("authorization", "Bearer t")]);
        assert_eq!(reason(any.check(&Method::GET, &h, true)), None);
    }

    #[test]
    fn origin_must_be_our_own() {
        let g = guard("127.0.0.1:9100", None);
        let with = |origin: &str| {
            headers(&[
                ("host", "127.0.0.1:9100"),
                ("origin", origin),
                ("content-type", "application/json"),
            ])
        };
        assert_eq!(
            reason(g.check(&Method::POST, &with("http://127.0.0.1:9100"), true)),
            None
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:9101",
            "http://localhost:9100",
        ] {
            assert_eq!(
                reason(g.check(&Method::GET, &with(bad), true)),
                Some(AdminRefusal::Origin),
                "{bad}"
            );
        }
    }

    #[test]
    fn writes_need_json_and_the_token_is_checked_last() {
        let g = guard("127.0.0.1:9100", Some("sekrit"));
        let base = [
            ("host", "127.0.0.1:9100"),
            ("authorization", "Bearer sekrit"),
        ];
        let plain = headers(&[base[0], base[1], ("content-type", "text/plain")]);
        assert_eq!(
            reason(g.check(&Method::POST, &plain, true)),
            Some(AdminRefusal::ContentType)
        );
        assert_eq!(
            reason(g.check(&Method::POST, &headers(&base), true)),
            Some(AdminRefusal::ContentType)
        );
        let json = headers(&[
            base[0],
            base[1],
            ("content-type", "Application/JSON; charset=utf-8"),
        ]);
        assert_eq!(reason(g.check(&Method::PUT, &json, true)), None);
        assert_eq!(reason(g.check(&Method::GET, &headers(&base), true)), None);
        let wrong = headers(&[base[0], ("authorization", "Bearer nope")]);
        assert_eq!(
            reason(g.check(&Method::GET, &wrong, true)),
            Some(AdminRefusal::TokenWrong)
        );
        assert_eq!(
            reason(g.check(&Method::GET, &headers(&[base[0]]), true)),
            Some(AdminRefusal::TokenMissing)
        );
        // A page outside /api needs a good Host, not the token.
        assert_eq!(
            reason(g.check(&Method::GET, &headers(&[base[0]]), false)),
            None
        );
        let open = guard("0.0.0.0:9100", None);
        assert_eq!(
            reason(open.check(&Method::GET, &headers(&[("host", "10.0.0.5")]), true)),
            Some(AdminRefusal::NotLoopback)
        );
    }
}
