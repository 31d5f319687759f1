//! Pure routing decisions: which route a request matches, which backend of the route's split
//! serves it, and the sticky-cohort hashing behind that choice.
//!
//! Lives here: route matching, split selection (forced, sticky, random), sticky key extraction.
//! Must not: do I/O, touch Pingora types, or record metrics. Everything here is table-tested.

pub mod hash;

use std::net::IpAddr;

use http::header::{HeaderMap, COOKIE};
use http::Method;

use crate::config::{Mirror, Route, RouteMatch, SplitEntry, StickyKey};

/// What routing needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    pub method: &'a Method,
    /// Host without port, any case.
    pub host: Option<&'a str>,
    pub path: &'a str,
}

/// The index of the first route whose match accepts the request.
pub fn find_route(routes: &[Route], req: &RequestFacts<'_>) -> Option<usize> {
    routes.iter().position(|r| matches(&r.matcher, req))
}

fn matches(m: &RouteMatch, req: &RequestFacts<'_>) -> bool {
    if !req.path.starts_with(m.path_prefix.as_str()) {
        return false;
    }
    if let Some(methods) = &m.methods {
        if !methods.contains(req.method) {
            return false;
        }
    }
    if let Some(want) = &m.host {
        let Some(host) = req.host else { return false };
        if !host_matches(want, host) {
            return false;
        }
    }
    true
}

/// `want` is lower case; `*.example.com` matches `a.example.com` but not `example.com`.
fn host_matches(want: &str, host: &str) -> bool {
    if let Some(suffix) = want.strip_prefix("*.") {
        host.len() > suffix.len() + 1
            && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
    } else {
        host.eq_ignore_ascii_case(want)
    }
}

/// Strip the port (and IPv6 brackets' port) from a Host header value.
pub fn host_without_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:8080 -> [::1]
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Why a backend was chosen (for the access log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceReason {
    Forced,
    Sticky,
    Random,
    /// The chosen backend had no healthy address: the route's fallback took the request.
    Failover,
}

impl ChoiceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ChoiceReason::Forced => "forced",
            ChoiceReason::Sticky => "sticky",
            ChoiceReason::Random => "random",
            ChoiceReason::Failover => "failover",
        }
    }
}

/// The position within the route's split of the chosen backend, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub split_index: usize,
    pub reason: ChoiceReason,
}

/// Choose a backend of the split.
///
/// * `forced`: the backend named by the force header, if any; honoured only when it names a
///   backend of this split (`backend_name` maps a split entry to its name).
/// * `key`: the sticky key, if the route is sticky and the request carries one.
/// * `random`: a uniformly random u64, used when there is no key.
pub fn choose_backend<'n>(
    split: &[SplitEntry],
    backend_name: impl Fn(usize) -> &'n str,
    forced: Option<&[u8]>,
    key: Option<&[u8]>,
    random: impl FnOnce() -> u64,
) -> Option<Choice> {
    if let Some(want) = forced {
        if let Some(i) = split
            .iter()
            .position(|e| backend_name(e.backend).as_bytes() == want)
        {
            return Some(Choice {
                split_index: i,
                reason: ChoiceReason::Forced,
            });
        }
    }
    let (point, reason) = match key {
        Some(k) => (hash::sticky_point(k), ChoiceReason::Sticky),
        None => (random(), ChoiceReason::Random),
    };
    hash::index_for_point(split, point).map(|split_index| Choice {
        split_index,
        reason,
    })
}

/// What a mirroring decision needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct MirrorFacts<'a> {
    /// Index into `Config::backends` of the backend serving the caller.
    pub serving_backend: usize,
    pub method: &'a Method,
    /// The request already carries the mirror's marker header (it is itself a copy).
    pub has_marker: bool,
    /// A protocol upgrade (WebSocket): never copied.
    pub is_upgrade: bool,
}

/// Whether to send a copy of this request to the mirror's target.
///
/// Never when the target itself serves the request, for a method outside the allowlist, for a
/// request that is already a copy (loop guard) or an upgrade. Otherwise sampled at `percent`:
/// by the sticky key's seed-1 hash when there is a key (the same user is always in or out),
/// else at random.
pub fn should_mirror(
    mirror: &Mirror,
    req: &MirrorFacts<'_>,
    key: Option<&[u8]>,
    random: impl FnOnce() -> u64,
) -> bool {
    if req.serving_backend == mirror.to
        || req.has_marker
        || req.is_upgrade
        || !mirror.methods.contains(req.method)
    {
        return false;
    }
    let point = match key {
        Some(k) => hash::sample_point(k),
        None => random(),
    };
    hash::sampled(point, mirror.percent)
}

/// Whether to open a shadow WebSocket for an upgraded connection: only when the mirror says
/// `websocket: true` (messages may have side effects), never to the backend that serves it
/// or for a connection that is itself a copy, sampled at `percent` like requests are.
pub fn should_mirror_websocket(
    mirror: &Mirror,
    serving_backend: usize,
    has_marker: bool,
    key: Option<&[u8]>,
    random: impl FnOnce() -> u64,
) -> bool {
    if !mirror.websocket || serving_backend == mirror.to || has_marker {
        return false;
    }
    let point = match key {
        Some(k) => hash::sample_point(k),
        None => random(),
    };
    hash::sampled(point, mirror.percent)
}

/// The sticky key bytes carried by a request, if any.
///
/// Header: the raw value of the first such header. Cookie: the value of the first cookie of
/// that name across `Cookie` headers. Client IP: its 16-byte IPv6-mapped form.
pub fn sticky_key<'h>(
    sticky: &StickyKey,
    headers: &'h HeaderMap,
    client_ip: Option<IpAddr>,
) -> Option<StickyBytes<'h>> {
    match sticky {
        StickyKey::Header(name) => headers
            .get(name)
            .map(|v| StickyBytes::Borrowed(v.as_bytes())),
        StickyKey::Cookie(name) => headers
            .get_all(COOKIE)
            .iter()
            .find_map(|v| cookie_value(v.as_bytes(), name.as_bytes()))
            .map(StickyBytes::Borrowed),
        StickyKey::ClientIp => client_ip.map(|ip| StickyBytes::Ip(ip_key(ip))),
    }
}

/// A sticky key: borrowed from the request, or an address's 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StickyBytes<'h> {
    Borrowed(&'h [u8]),
    Ip([u8; 16]),
}

impl StickyBytes<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            StickyBytes::Borrowed(b) => b,
            StickyBytes::Ip(b) => b,
        }
    }
}

/// An address as 16 bytes: IPv6 as is, IPv4 as `::ffff:a.b.c.d`.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// The value of cookie `name` in one `Cookie` header value (`a=1; b=2`).
fn cookie_value<'v>(header: &'v [u8], name: &[u8]) -> Option<&'v [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = trim_ascii(pair);
        let eq = pair.iter().position(|&b| b == b'=')?;
        let (k, v) = (trim_ascii(&pair[..eq]), trim_ascii(&pair[eq + 1..]));
        (k == name).then_some(v)
    })
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests;
