//! What runoff changes in a request or a response on its way through, the same for the primary
//! and its shadow copy: `X-Forwarded-*`, the request id (the caller's when fit to keep, else a
//! new one), and the hop-by-hop fields a hop must drop (RFC 9110 section 7.6.1).
//!
//! Lives here: plain functions over headers, unit-tested. Must not: remove or rewrite anything
//! else (forwarding is transparent; Pingora strips hop-by-hop request headers itself, except
//! where `Hops` shows its standard policy would change nothing but a `Connection: keep-alive`).

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use pingora::http::RequestHeader;
use pingora::OrErr;
use rand::Rng;

use crate::config::{AddedHeaderName, Forwarding};

static X_FORWARDED_FOR: AddedHeaderName = AddedHeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: AddedHeaderName = AddedHeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: AddedHeaderName = AddedHeaderName::from_static("x-forwarded-host");

/// Hop-by-hop names outside `http`'s standard list, parsed once: looking a `&str` up parses it
/// first, and every request and response is checked for them.
pub(crate) static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
pub(crate) static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What Pingora's standard upstream request policy (`HttpUpstreamRequestPolicy::standard`:
/// strip the hop-by-hop fields and what `Connection` nominates, refuse protected nominations,
/// forward only WebSocket upgrades) would do to a request. It looks up thirteen names in every
/// request to change nothing in most of them: skipping it where `Hops` allows saved 3,658
/// instructions a request under callgrind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hops {
    /// No hop-by-hop field at all: the policy would change nothing.
    None,
    /// `Connection: keep-alive` (that one token) and no other hop-by-hop field: the policy
    /// would remove `Connection` and nothing else (its nomination, `Keep-Alive`, is absent).
    KeepAlive,
    /// Anything else: Pingora's policy does the work.
    Other,
}

impl Hops {
    /// `connection`: the request has a `Connection` field; `other`: it has another field the
    /// policy removes or rewrites (`Transfer-Encoding`, `Upgrade`, `Keep-Alive`, `TE`, …).
    pub(crate) fn of(headers: &http::HeaderMap, connection: bool, other: bool) -> Hops {
        if other {
            return Hops::Other;
        }
        if !connection {
            return Hops::None;
        }
        let mut tokens = connection_tokens(headers);
        match (tokens.next(), tokens.next()) {
            (Some(only), None) if only.eq_ignore_ascii_case(b"keep-alive") => Hops::KeepAlive,
            _ => Hops::Other,
        }
    }

    /// Pingora's standard policy is needed (else runoff's own removal of `Connection` for
    /// `KeepAlive` gives the same request).
    pub(crate) fn need_policy(self) -> bool {
        self == Hops::Other
    }
}

/// Who sent a request, as runoff believes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The address of the connection's other end.
    pub(crate) addr: Option<IpAddr>,
    /// It is in `forwarding.trusted_proxies`: its forwarding headers are believed.
    pub(crate) trusted: bool,
    /// The client: the peer itself, or, behind trusted proxies, the rightmost address of
    /// `X-Forwarded-For` that is not a trusted proxy (nginx's `real_ip_recursive`).
    pub(crate) client: Option<IpAddr>,
    /// The connection is TLS (a `listen_tls` listener): `X-Forwarded-Proto: https`.
    pub(crate) tls: bool,
}

impl Peer {
    pub(crate) fn of(addr: Option<IpAddr>, headers: &http::HeaderMap, fwd: &Forwarding) -> Peer {
        let trusted = addr.is_some_and(|ip| fwd.trusts(ip));
        let client = if trusted {
            let chain: Vec<IpAddr> = headers
                .get_all(X_FORWARDED_FOR.name())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .collect();
            chain
                .iter()
                .rev()
                .find(|ip| !fwd.trusts(**ip))
                .or(chain.first())
                .copied()
                .or(addr)
        } else {
            addr
        };
        Peer {
            addr,
            trusted,
            client,
            tls: false,
        }
    }
}

/// Add runoff's forwarding headers to a request on its way to a backend, and remove what a
/// caller must not steer: the request id when runoff generated it; `X-Forwarded-For`,
/// `-Proto` and `-Host` replaced for an untrusted peer, extended (`-For`) or kept when present
/// (`-Proto`, `-Host`) for a trusted one; and the headers in `strip` (runoff's force header and
/// its secret, and the mirror marker unless the peer is trusted), which only runoff adds.
pub(crate) fn apply_forwarding<'a>(
    req: &mut RequestHeader,
    fwd: &Forwarding,
    peer: &Peer,
    generated_request_id: Option<&HeaderValue>,
    strip: impl IntoIterator<Item = &'a HeaderName>,
) -> pingora::Result<()> {
    for name in strip {
        if has_field(&req.headers, name) {
            req.remove_header(name);
        }
    }
    // Room for what is added below, made once: inserting them one by one grew Pingora's two
    // header maps (values and case) twice each per request.
    let adds = usize::from(generated_request_id.is_some())
        + usize::from(fwd.x_forwarded_for)
        + usize::from(fwd.x_forwarded_proto)
        + usize::from(fwd.x_forwarded_host);
    if adds > 0 {
        req.reserve_headers(adds)?;
    }
    if let Some(id) = generated_request_id {
        insert(req, &fwd.request_id_header, id.clone())?;
    }
    if fwd.x_forwarded_for {
        if let Some(ip) = peer.addr {
            let existing = peer
                .trusted
                .then(|| req.headers.get(X_FORWARDED_FOR.name()))
                .flatten()
                .map(HeaderValue::as_bytes);
            let value = forwarded_for(existing, ip)
                .explain_err(pingora::ErrorType::InvalidHTTPHeader, |_| {
                    "X-Forwarded-For is not a header value"
                })?;
            insert(req, &X_FORWARDED_FOR, value)?;
        } else if !peer.trusted {
            req.remove_header(X_FORWARDED_FOR.name());
        }
    }
    let keep = |req: &RequestHeader, name: &AddedHeaderName| {
        peer.trusted && req.headers.contains_key(name.name())
    };
    if fwd.x_forwarded_proto && !keep(req, &X_FORWARDED_PROTO) {
        let scheme = if peer.tls { "https" } else { "http" };
        insert(req, &X_FORWARDED_PROTO, HeaderValue::from_static(scheme))?;
    }
    if fwd.x_forwarded_host && !keep(req, &X_FORWARDED_HOST) {
        match req.headers.get(HOST).cloned() {
            Some(host) => insert(req, &X_FORWARDED_HOST, host)?,
            None => {
                req.remove_header(X_FORWARDED_HOST.name());
            }
        }
    }
    Ok(())
}

/// Insert (replace) a header runoff adds, by its prepared name: no parse, no copy of the name.
fn insert(
    req: &mut RequestHeader,
    name: &AddedHeaderName,
    value: HeaderValue,
) -> pingora::Result<()> {
    req.insert_parsed_header(name.name().clone(), name.text().clone(), value)
}

/// The header names a `Connection` field nominates as hop-by-hop (lower case), minus `keep`
/// (connection options such as `close`, and fields handled elsewhere).
///
/// Allocates only when there is one (a `Connection` of options only is the common case).
pub(crate) fn nominated(headers: &http::HeaderMap, keep: &[&str]) -> Vec<String> {
    if connection_tokens(headers).all(|t| is_one_of(t, keep)) {
        return Vec::new();
    }
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty() && !keep.contains(&t.as_str()))
        .collect()
}

/// Whether a `Connection` field nominates `name` (lower case), without allocating: asked of
/// every request.
pub(crate) fn nominates(headers: &http::HeaderMap, name: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
}

/// The tokens of every `Connection` field, trimmed, empty ones left out.
pub(crate) fn connection_tokens(headers: &http::HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers.get_all(CONNECTION).iter().flat_map(tokens)
}

/// The tokens of one `Connection` field's value, trimmed, empty ones left out.
fn tokens(value: &HeaderValue) -> impl Iterator<Item = &[u8]> {
    value
        .as_bytes()
        .split(|b| *b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// Whether `token` is one of `names` (lower case), in any case.
fn is_one_of(token: &[u8], names: &[&str]) -> bool {
    names
        .iter()
        .any(|n| token.eq_ignore_ascii_case(n.as_bytes()))
}

/// Remove hop-by-hop fields from a backend's response before it goes on to the caller:
/// `Keep-Alive`, `Proxy-Connection` and whatever `Connection` nominates (Pingora writes the
/// caller's own `Connection` and framing). A `101` keeps `Upgrade`, which it needs.
///
/// One pass over the response's fields finds all three (a response nearly always has a
/// `Connection` of options only and neither of the others): a lookup of `Connection` and a
/// scan for each of the two others cost ~200 instructions more a response under callgrind.
pub(crate) fn strip_response_hops(resp: &mut pingora::http::ResponseHeader) {
    const OPTIONS: [&str; 3] = ["close", "keep-alive", "upgrade"];
    let (mut nominates, mut keep_alive, mut proxy_connection) = (false, false, false);
    for (name, value) in &resp.headers {
        if name == CONNECTION {
            nominates |= tokens(value).any(|t| !is_one_of(t, &OPTIONS));
        } else if name == KEEP_ALIVE {
            keep_alive = true;
        } else if name == PROXY_CONNECTION {
            proxy_connection = true;
        }
    }
    if nominates {
        for name in nominated(&resp.headers, &OPTIONS) {
            resp.remove_header(name.as_str());
        }
    }
    if keep_alive {
        resp.remove_header(&KEEP_ALIVE);
    }
    if proxy_connection {
        resp.remove_header(&PROXY_CONNECTION);
    }
}

/// Names past which `has_field` hashes instead of scanning.
const SCAN_NAMES: usize = 16;

/// Whether `headers` has a field `name`, asked of names nearly always absent (the ones runoff
/// strips on every request and response, the force header, the mirror marker). Up to
/// `SCAN_NAMES` distinct names, a scan comparing them is cheaper than hashing `name` and
/// probing the map (a standard name compares as a one-byte tag, another by its length first);
/// a larger map is probed.
pub(crate) fn has_field(headers: &http::HeaderMap, name: &HeaderName) -> bool {
    if headers.keys_len() > SCAN_NAMES {
        return headers.contains_key(name);
    }
    headers.keys().any(|k| k == name)
}

/// `X-Forwarded-For` after this hop: the existing list with the client address appended. Built
/// without formatting machinery or a growing `String` (it runs for every request: `IpAddr`'s
/// `Display` alone was 1,600 instructions a request under callgrind).
pub(crate) fn forwarded_for(
    existing: Option<&[u8]>,
    client: IpAddr,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut ip = [0u8; 45];
    let n = write_ip(&mut ip, client);
    match existing.map(<[u8]>::trim_ascii).filter(|p| !p.is_empty()) {
        Some(prev) => {
            let mut v = Vec::with_capacity(prev.len() + 2 + n);
            v.extend_from_slice(prev);
            v.extend_from_slice(b", ");
            v.extend_from_slice(&ip[..n]);
            HeaderValue::from_bytes(&v)
        }
        None => HeaderValue::from_bytes(&ip[..n]),
    }
}

/// Write `ip` as text into `buf` (45 bytes hold any address); returns the length.
fn write_ip(buf: &mut [u8; 45], ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if octet >= 100 {
                    buf[n] = b'0' + octet / 100;
                    n += 1;
                }
                if octet >= 10 {
                    buf[n] = b'0' + octet / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + octet % 10;
                n += 1;
            }
            n
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            // 45 bytes hold the longest form (`ffff:…:255.255.255.255`).
            let _ = write!(cursor, "{v6}");
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    }
}

/// A fresh request id: 32 lower-case hex digits (128 random bits), written digit by digit
/// (every request without an id of its own gets one: `format!` with padding, then copying the
/// string into a header value, was ~1,400 instructions a request under callgrind).
pub(crate) fn new_request_id() -> HeaderValue {
    HeaderValue::from_bytes(&hex_digits(rand::rng().random()))
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `id` as `format!("{id:032x}")` writes it.
fn hex_digits(id: u128) -> [u8; 32] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (i, d) in digits.iter_mut().enumerate() {
        *d = HEX[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    digits
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
    /// A new id, for a request that carries none.
    pub(crate) fn generated() -> RequestId {
        RequestId {
            value: new_request_id(),
            generated: true,
        }
    }

    pub(crate) fn of(req: &RequestHeader, header: &HeaderName) -> RequestId {
        // A request id the caller nominated in `Connection` is hop-by-hop: Pingora removes it
        // before the request goes upstream, so runoff generates one for both legs instead.
        let hop = nominates(&req.headers, header.as_str());
        match req.headers.get(header) {
            Some(v) if !hop && usable_request_id(v.as_bytes()) => RequestId {
                value: v.clone(),
                generated: false,
            },
            _ => RequestId::generated(),
        }
    }

    /// runoff made this id (the caller sent none fit to keep).
    pub(crate) fn is_generated(&self) -> bool {
        self.generated
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
        let text = |existing: Option<&[u8]>, ip: &str| {
            let ip: IpAddr = ip.parse().expect("ip");
            forwarded_for(existing, ip)
                .expect("value")
                .to_str()
                .expect("ascii")
                .to_string()
        };
        assert_eq!(text(None, "10.0.0.7"), "10.0.0.7");
        assert_eq!(text(Some(b""), "10.0.0.7"), "10.0.0.7");
        assert_eq!(text(Some(b" 1.2.3.4 "), "10.0.0.7"), "1.2.3.4, 10.0.0.7");
        assert_eq!(
            text(Some(b"1.2.3.4, 5.6.7.8"), "::1"),
            "1.2.3.4, 5.6.7.8, ::1"
        );
        // Every IPv4 address reads as Display writes it.
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "1.10.100.199",
            "127.0.0.1",
            "9.99.250.5",
        ] {
            assert_eq!(text(None, ip), ip);
        }
        let longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
        let v6: std::net::Ipv6Addr = longest.parse().expect("v6");
        assert_eq!(text(None, longest), v6.to_string());
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a
            .as_bytes()
            .iter()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
        assert!(usable_request_id(a.as_bytes()));
        // Leading zeros included.
        for id in [0, 0xabc, 1 << 127, u128::MAX - 5] {
            assert_eq!(hex_digits(id).to_vec(), format!("{id:032x}").into_bytes());
        }
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
        let mut hop = RequestHeader::build("GET", b"/", None).expect("header");
        hop.insert_header("x-request-id", "abc").expect("id");
        hop.insert_header("connection", "keep-alive, X-Request-Id")
            .expect("connection");
        assert!(
            RequestId::of(&hop, &header).generated,
            "a nominated id never goes upstream"
        );
    }

    fn fwd(trusted: &[&str]) -> Forwarding {
        Forwarding {
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            request_id_header: AddedHeaderName::from_static("x-request-id"),
            trusted_proxies: trusted.iter().map(|n| n.parse().expect("net")).collect(),
        }
    }

    fn spoofed() -> RequestHeader {
        let mut req = RequestHeader::build("GET", b"/", None).expect("header");
        for (k, v) in [
            ("host", "shop.example"),
            ("x-forwarded-for", "6.6.6.6, 10.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-runoff-backend", "go"),
            ("x-runoff-mirror", "1"),
        ] {
            req.append_header(k, v).expect("append");
        }
        req
    }

    #[test]
    fn an_untrusted_peer_cannot_steer_forwarding_headers() {
        let f = fwd(&["10.0.0.0/8"]);
        let ip: IpAddr = "203.0.113.5".parse().expect("ip");
        let mut req = spoofed();
        let peer = Peer::of(Some(ip), &req.headers, &f);
        assert_eq!(peer.client, Some(ip), "the header is not believed");
        let strip = [
            HeaderName::from_static("x-runoff-backend"),
            HeaderName::from_static("x-runoff-mirror"),
        ];
        apply_forwarding(&mut req, &f, &peer, None, &strip).expect("apply");
        let get = |k: &str| req.headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("x-forwarded-for"), Some("203.0.113.5"));
        assert_eq!(get("x-forwarded-proto"), Some("http"));
        assert_eq!(get("x-forwarded-host"), Some("shop.example"));
        assert_eq!(get("x-runoff-backend"), None);
        assert_eq!(get("x-runoff-mirror"), None);
    }

    #[test]
    fn a_trusted_peer_extends_the_chain_and_names_the_client() {
        let f = fwd(&["10.0.0.0/8", "::1/128"]);
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let mut req = spoofed();
        let peer = Peer::of(Some(ip), &req.headers, &f);
        assert!(peer.trusted);
        // Rightmost address that is not a trusted proxy: 10.0.0.9 is one, 6.6.6.6 is not.
        assert_eq!(peer.client, Some("6.6.6.6".parse().expect("ip")));
        apply_forwarding(&mut req, &f, &peer, None, &[]).expect("apply");
        let get = |k: &str| req.headers.get(k).and_then(|v| v.to_str().ok());
        assert_eq!(get("x-forwarded-for"), Some("6.6.6.6, 10.0.0.9, 10.0.0.2"));
        assert_eq!(get("x-forwarded-proto"), Some("https"));
        assert_eq!(get("x-forwarded-host"), Some("evil.example"));

        // A chain of nothing but trusted proxies: the leftmost is the client.
        let mut all = RequestHeader::build("GET", b"/", None).expect("header");
        all.append_header("x-forwarded-for", "10.1.1.1, 10.2.2.2")
            .expect("append");
        let p = Peer::of(Some(ip), &all.headers, &f);
        assert_eq!(p.client, Some("10.1.1.1".parse().expect("ip")));
        // No header: the peer itself.
        let bare = RequestHeader::build("GET", b"/", None).expect("header");
        assert_eq!(Peer::of(Some(ip), &bare.headers, &f).client, Some(ip));
    }

    #[test]
    fn pingora_s_policy_is_skipped_only_for_no_hop_field_or_one_keep_alive() {
        let hops = |connection: &[&str], other: bool| {
            let mut h = http::HeaderMap::new();
            for v in connection {
                h.append(CONNECTION, v.parse().expect("value"));
            }
            Hops::of(&h, !connection.is_empty(), other)
        };
        assert_eq!(hops(&[], false), Hops::None);
        assert_eq!(hops(&["keep-alive"], false), Hops::KeepAlive);
        assert_eq!(hops(&[" Keep-Alive ,"], false), Hops::KeepAlive);
        assert_eq!(hops(&["keep-alive"], true), Hops::Other);
        assert_eq!(hops(&[], true), Hops::Other);
        // Anything Pingora may act on: another nomination, `close` (it nominates a field
        // named `close`), a second token, an empty field that still names nothing.
        for c in [
            &["keep-alive, x-hop"][..],
            &["close"],
            &["keep-alive", "keep-alive"],
            &["upgrade"],
            &["keep-alive, host"],
            &["keepalive"],
            &[" , "],
        ] {
            assert_eq!(hops(c, false), Hops::Other, "{c:?}");
        }
        assert!(Hops::Other.need_policy());
        assert!(!Hops::None.need_policy() && !Hops::KeepAlive.need_policy());
    }

    /// A response of `status` with `fields`, after `strip_response_hops`.
    fn stripped(status: u16, fields: &[(&str, &str)]) -> pingora::http::ResponseHeader {
        let mut resp = pingora::http::ResponseHeader::build(status, None).expect("response");
        for (k, v) in fields {
            resp.append_header(k.to_string(), *v).expect("append");
        }
        strip_response_hops(&mut resp);
        resp
    }

    fn names(resp: &pingora::http::ResponseHeader) -> Vec<&str> {
        resp.headers.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn a_response_loses_its_hop_by_hop_fields_only() {
        let resp = stripped(
            200,
            &[
                ("Connection", "Keep-Alive, X-Hop"),
                ("Connection", " , close"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Content-Type", "text/plain"),
            ],
        );
        assert_eq!(names(&resp), ["connection", "content-type"]);
        assert_eq!(
            nominated(&resp.headers, &["close"]),
            ["keep-alive", "x-hop"]
        );
        // Options only (the common case): nothing to remove, so `nominated` returns before it
        // collects anything.
        let mut options = http::HeaderMap::new();
        options.append(CONNECTION, HeaderValue::from_static("close, Keep-Alive"));
        assert!(nominated(&options, &["close", "keep-alive"]).is_empty());
        // Not nominated, in a small response and in a large one: still removed.
        for extra in [0, SCAN_NAMES] {
            let others: Vec<String> = (0..extra).map(|i| format!("x-f{i}")).collect();
            let mut fields: Vec<(&str, &str)> = others.iter().map(|n| (n.as_str(), "1")).collect();
            fields.extend([("Keep-Alive", "timeout=5"), ("Proxy-Connection", "close")]);
            let resp = stripped(200, &fields);
            assert_eq!(resp.headers.keys_len(), extra, "{extra} others");
        }
        // Options only beside the two unnominated fields, in any case: only those two go; a
        // `101`'s `Upgrade` stays.
        let resp = stripped(
            101,
            &[
                ("Connection", "UPGRADE ,Keep-Alive,"),
                ("Upgrade", "websocket"),
                ("keep-alive", "timeout=5"),
                ("proxy-connection", "close"),
            ],
        );
        assert_eq!(names(&resp), ["connection", "upgrade"]);
    }

    #[test]
    fn has_field_agrees_with_a_lookup_at_any_size() {
        let probes = [
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("x-f3"),
            HeaderName::from_static("x-f19"),
            HeaderName::from_static("x-f1"),
            CONNECTION,
        ];
        let mut h = http::HeaderMap::new();
        for i in 0..20 {
            for p in &probes {
                assert_eq!(has_field(&h, p), h.contains_key(p), "{p} among {i} names");
            }
            let name = HeaderName::from_bytes(format!("x-f{i}").as_bytes()).expect("name");
            h.append(name, HeaderValue::from_static("1"));
            if i == 10 {
                h.append(CONNECTION, HeaderValue::from_static("close"));
            }
        }
    }

    /// What goes on the wire: each added header once, in lower case, replacing the caller's of
    /// any case, under a request id name read from the config (not a static), with the rest of
    /// the request as the caller wrote it.
    #[test]
    fn added_headers_replace_the_callers_on_the_wire() {
        let mut f = fwd(&[]);
        f.request_id_header =
            AddedHeaderName::new(HeaderName::from_bytes(b"X-Trace-Id").expect("name"));
        let mut req = RequestHeader::build("GET", b"/", Some(2)).expect("header");
        for (k, v) in [
            ("Host", "shop.example"),
            ("X-Trace-Id", "mine"),
            ("X-Forwarded-Proto", "https"),
        ] {
            req.append_header(k, v).expect("append");
        }
        let ip: IpAddr = "203.0.113.5".parse().expect("ip");
        let peer = Peer::of(Some(ip), &req.headers, &f);
        let id = HeaderValue::from_static("0123");
        apply_forwarding(&mut req, &f, &peer, Some(&id), &[]).expect("apply");
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        assert_eq!(
            String::from_utf8_lossy(&wire),
            "Host: shop.example\r\nx-trace-id: 0123\r\nx-forwarded-proto: http\r\n\
             x-forwarded-for: 203.0.113.5\r\nx-forwarded-host: shop.example\r\n"
        );
    }
}
