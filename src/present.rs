//! Which of the fields runoff looks up before routing a request are in it at all
//! (`Present`), from one pass over the request's field names. Nearly every request carries
//! none of them, and each lookup of an absent name still hashes the name and probes the header
//! map: runoff's checks made about ten such lookups per request. Those checks skip
//! a lookup whose name is not present; with `Present::ALL` they look every name up, and they
//! decide the same either way (the unit tests of each say so). The same pass says whether the
//! request carries any hop-by-hop field, which tells the proxy whether Pingora's standard
//! upstream request policy has anything to do (`forwarding::Hops`).
//!
//! Must not: read a field's value, or decide anything about a request (its callers do).

use http::header::{
    HeaderName, CONNECTION, CONTENT_LENGTH, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

use crate::forwarding::{KEEP_ALIVE, PROXY_CONNECTION};

static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The looked-up fields a request carries (any number of times).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Present {
    pub(crate) content_length: bool,
    pub(crate) transfer_encoding: bool,
    pub(crate) connection: bool,
    pub(crate) upgrade: bool,
    /// `forwarding.request_id_header`.
    pub(crate) request_id: bool,
    /// A name with an underscore (dropped unless `server.underscores_in_headers`).
    pub(crate) underscore: bool,
    /// Another field Pingora's standard upstream request policy removes (RFC 9110 section
    /// 7.6.1 and its own list): `Keep-Alive`, `Proxy-Connection`, `Proxy-Authenticate`,
    /// `Proxy-Authorization`, `TE`, `Trailer`, `HTTP2-Settings`.
    pub(crate) hop_by_hop: bool,
}

impl Present {
    /// As if every field were there: each check then looks its names up.
    pub(crate) const ALL: Present = Present {
        content_length: true,
        transfer_encoding: true,
        connection: true,
        upgrade: true,
        request_id: true,
        underscore: true,
        hop_by_hop: true,
    };

    /// A field Pingora's standard upstream request policy removes or rewrites, other than
    /// `Connection`: `Transfer-Encoding`, `Upgrade` or another hop-by-hop one.
    pub(crate) fn hop_fields_besides_connection(self) -> bool {
        self.transfer_encoding || self.upgrade || self.hop_by_hop
    }

    /// One pass over `headers`' names (each name once, however many values it has).
    pub(crate) fn of(headers: &HeaderMap, request_id: &HeaderName) -> Present {
        let mut present = Present::default();
        for name in headers.keys() {
            // Standard names compare as a one-byte tag; none of them has an underscore.
            if name == CONTENT_LENGTH {
                present.content_length = true;
            } else if name == TRANSFER_ENCODING {
                present.transfer_encoding = true;
            } else if name == CONNECTION {
                present.connection = true;
            } else if name == UPGRADE {
                present.upgrade = true;
            } else if name == TE
                || name == TRAILER
                || name == PROXY_AUTHORIZATION
                || name == PROXY_AUTHENTICATE
                || name == KEEP_ALIVE
                || name == PROXY_CONNECTION
                || name == HTTP2_SETTINGS
            {
                present.hop_by_hop = true;
            } else if name.as_str().contains('_') {
                present.underscore = true;
            }
            if name == request_id {
                present.request_id = true;
            }
        }
        present
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_is_seen_in_any_case_and_nothing_else_is() {
        let id = HeaderName::from_static("x-request-id");
        let of = |pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.append(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                );
            }
            Present::of(&h, &id)
        };
        assert_eq!(of(&[("host", "a"), ("accept", "*/*")]), Present::default());
        let all = of(&[
            ("Content-Length", "1"),
            ("TRANSFER-ENCODING", "chunked"),
            ("connection", "close"),
            ("connection", "upgrade"),
            ("Upgrade", "websocket"),
            ("X-Request-Id", "abc"),
            ("x_private", "1"),
            ("Keep-Alive", "timeout=5"),
        ]);
        assert_eq!(all, Present::ALL);
        for name in [
            "TE",
            "trailer",
            "Proxy-Authorization",
            "proxy-authenticate",
            "keep-alive",
            "Proxy-Connection",
            "HTTP2-Settings",
        ] {
            assert_eq!(
                of(&[("host", "a"), (name, "x")]),
                Present {
                    hop_by_hop: true,
                    ..Present::default()
                },
                "{name}"
            );
        }
        assert_eq!(
            of(&[("x-request-id", "abc")]),
            Present {
                request_id: true,
                ..Present::default()
            }
        );
        // The request id name may be any name, a standard one too.
        let h = {
            let mut h = HeaderMap::new();
            h.insert(CONNECTION, "close".parse().expect("value"));
            h
        };
        assert_eq!(
            Present::of(&h, &CONNECTION),
            Present {
                connection: true,
                request_id: true,
                ..Present::default()
            }
        );
        // A value with an underscore is not a name with one.
        assert_eq!(of(&[("accept", "a_b")]), Present::default());
    }
}
