//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz`, run by
//! `scripts/fuzz.sh`): each takes arbitrary bytes to one of runoff's parsers or judges of
//! untrusted input and must return without panicking, whatever the bytes.
//!
//! Must not: be used by runoff itself, or do any I/O.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use pingora::http::RequestHeader;

use crate::config::{Compare, Config, Mirror};

/// A config file: loaded and validated.
pub fn config(text: &[u8]) {
    if let Ok(text) = std::str::from_utf8(text) {
        let _ = Config::from_yaml(text);
    }
}

/// Two JSON answers, split at the first byte's position: compared with ignored paths, as
/// multisets and with a tolerance (the most work the judge does).
pub fn json_compare(data: &[u8]) {
    static RULES: OnceLock<Option<(Compare, Compare)>> = OnceLock::new();
    let Some((ordered, multiset)) = RULES.get_or_init(compare_rules) else {
        return;
    };
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(*first).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let answer = |body: &[u8]| {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let mut c = crate::compare::Captured::new(200, headers, 1 << 20);
        c.push(&Bytes::copy_from_slice(body));
        c
    };
    let (a, b) = (answer(a), answer(b));
    for rules in [ordered, multiset] {
        let _ = crate::compare::compare(&a, &b, rules);
    }
}

fn compare_rules() -> Option<(Compare, Compare)> {
    let yaml = |order: &str| {
        format!(
            "listen: 127.0.0.1:1\nbackends:\n  a: {{ address: \"127.0.0.1:2\" }}\n  b: {{ address: \"127.0.0.1:3\" }}\nroutes:\n  - name: r\n    split: {{ a: 1 }}\n    mirror: {{ to: b }}\n    compare:\n      body:\n        json: {{ ignore_paths: [/id, /items/*/at], array_order: {order}, float_tolerance: 0.001 }}\n"
        )
    };
    let rules = |order: &str| {
        Config::from_yaml(&yaml(order))
            .ok()
            .and_then(|c| c.live.routes.first().and_then(|r| r.compare.clone()))
    };
    Some((rules("strict")?, rules("ignore")?))
}

/// A request header block as a caller sends it: parsed as Pingora's parser does (httparse),
/// judged by runoff's RFC 9112 checks, and, when accepted, turned into a shadow copy.
pub fn request_head(data: &[u8]) {
    let _ = crate::caller_io::classify(data, data.len());
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return;
    };
    let (Some(method), Some(path)) = (parsed.method, parsed.path) else {
        return;
    };
    let Ok(mut req) = RequestHeader::build(method, path.as_bytes(), None) else {
        return;
    };
    for h in parsed.headers.iter() {
        let _ = req.append_header(h.name.to_string(), h.value);
    }
    if crate::strict::check(&req, Some(data)).is_err() {
        return;
    }
    let _ = crate::strict::underscore_names(&req);
    let _ = crate::forwarding::nominated(&req.headers, &[]);
    let id = http::header::HeaderName::from_static("x-request-id");
    let _ = crate::forwarding::RequestId::of(&req, &id);
    let mirror = Mirror::with_defaults(0, 100.0);
    if let Ok(copy) = crate::mirror::shadow_request(&req, &mirror, true) {
        let _ = crate::mirror::body_plan(&copy);
    }
}

/// One direction of a WebSocket stream, fed in pieces whose size the first byte sets.
pub fn websocket_frames(data: &[u8]) {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(*first).max(1);
    let mut parser = crate::websocket::frames::FrameParser::default();
    for piece in rest.chunks(step) {
        let _ = parser.feed(piece);
        let _ = parser.at_boundary();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the fuzz targets found or that sit on an edge, kept as ordinary tests.
    #[test]
    fn kept_inputs_run_clean() {
        config(b"listen: [");
        config(b"routes: [{ split: { a: 1e400 } }]");
        json_compare(b"\x02[][1,2,3]");
        json_compare(b"\x05{\"a\":1}{\"a\":1.0005}");
        json_compare(b"\x00");
        request_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\n\r\n");
        request_head(b"GET http://a:1/x HTTP/1.1\r\nHost: b\r\n\r\n");
        websocket_frames(b"\x01\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff");
    }
}
