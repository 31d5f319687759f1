//! Entry points for the fuzz targets in `fuzz/` (`cargo +nightly fuzz`, run by
//! `scripts/fuzz.sh`): each takes arbitrary bytes to one of runoff's parsers or judges of
//! untrusted input and must return without panicking, whatever the bytes. `benches/hot.rs`
//! times `json_compare` too (the judge's work on one pair).
//!
//! Must not: be used by runoff itself, or do any I/O.

use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use pingora::http::RequestHeader;

use crate::config::{Compare, Config, Mirror};

/// A config file: loaded and validated. Whether it was accepted.
pub fn config(text: &[u8]) -> bool {
    std::str::from_utf8(text).is_ok_and(|t| Config::from_yaml(t).is_ok())
}

/// Two JSON answers, split at the first byte's position: compared with ignored paths, as
/// multisets and with a tolerance (the most work the judge does). The two results
/// (`match`, `mismatch` or `skipped`), ordered arrays first.
pub fn json_compare(data: &[u8]) -> Option<[&'static str; 2]> {
    static RULES: OnceLock<Option<(Compare, Compare)>> = OnceLock::new();
    let (ordered, multiset) = RULES.get_or_init(compare_rules).as_ref()?;
    let (first, rest) = data.split_first()?;
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
    let judge = |rules| crate::compare::compare(&a, &b, rules).result().as_str();
    Some([judge(ordered), judge(multiset)])
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
/// `None` when it does not parse; else whether runoff accepts it.
pub fn request_head(data: &[u8]) -> Option<bool> {
    let _ = crate::caller_io::classify(data, data.len());
    let mut fields = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(_)) = parsed.parse(data) else {
        return None;
    };
    let (method, path) = (parsed.method?, parsed.path?);
    let mut req = RequestHeader::build(method, path.as_bytes(), None).ok()?;
    for h in parsed.headers.iter() {
        let _ = req.append_header(h.name.to_string(), h.value);
    }
    let id = http::header::HeaderName::from_static("x-request-id");
    // What the proxy skips by `Present` never changes a decision: a disagreement panics.
    let present = crate::present::Present::of(&req.headers, &id);
    let checked = crate::strict::check(&req, Some(data), present);
    assert_eq!(
        checked,
        crate::strict::check(&req, Some(data), crate::present::Present::ALL)
    );
    assert_eq!(
        crate::caller_io::wire_size(data.len(), &req.headers, present),
        crate::caller_io::wire_size(data.len(), &req.headers, crate::present::Present::ALL)
    );
    if checked.is_err() {
        return Some(false);
    }
    // Where the proxy skips Pingora's standard request policy, that policy had nothing to do
    // but drop a lone `Connection: keep-alive` (which runoff drops): checked by lookups.
    let hops = crate::forwarding::Hops::of(
        &req.headers,
        present.connection,
        present.hop_fields_besides_connection(),
    );
    if !hops.need_policy() {
        for name in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "http2-settings",
        ] {
            assert!(!req.headers.contains_key(name), "{name}");
        }
        let tokens: Vec<&[u8]> = crate::forwarding::connection_tokens(&req.headers).collect();
        match hops {
            crate::forwarding::Hops::KeepAlive => {
                assert!(tokens.len() == 1 && tokens[0].eq_ignore_ascii_case(b"keep-alive"));
            }
            _ => assert!(!req.headers.contains_key(http::header::CONNECTION)),
        }
    }
    let underscores = crate::strict::underscore_names(&req);
    assert!(present.underscore || underscores.is_empty());
    let _ = crate::forwarding::nominated(&req.headers, &[]);
    let kept = !crate::forwarding::RequestId::of(&req, &id).is_generated();
    assert!(present.request_id || !kept);
    let mirror = Mirror::with_defaults(0, 100.0);
    if let Ok(copy) = crate::mirror::shadow_request(&req, &mirror, true) {
        let _ = crate::mirror::body_plan(&copy);
    }
    Some(true)
}

/// One direction of a WebSocket stream, fed in pieces whose size the first byte sets. The
/// frames whose header was read, or `None` once the stream could not be parsed.
pub fn websocket_frames(data: &[u8]) -> Option<u64> {
    let (first, rest) = data.split_first()?;
    let step = usize::from(*first).max(1);
    let mut parser = crate::websocket::frames::FrameParser::default();
    let mut frames = 0;
    for piece in rest.chunks(step) {
        let seen = parser.feed(piece);
        frames += seen.data_frames + seen.control_frames;
        let _ = parser.at_boundary();
    }
    (!parser.unparsed()).then_some(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the fuzz targets found or that sit on an edge, kept as ordinary tests.
    #[test]
    fn kept_inputs_run_clean() {
        assert!(!config(b"listen: ["));
        assert!(!config(b"routes: [{ split: { a: 1e400 } }]"));
        assert_eq!(
            json_compare(b"\x02[][1,2,3]"),
            Some(["mismatch", "mismatch"])
        );
        // 1 and 1.0005 are equal within the 0.001 tolerance.
        assert_eq!(
            json_compare(b"\x07{\"a\":1}{\"a\":1.0005}"),
            Some(["match", "match"])
        );
        assert_eq!(json_compare(b"\x00"), Some(["match", "match"]));
        assert_eq!(
            request_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\n\r\n"),
            Some(true)
        );
        assert_eq!(
            request_head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n"),
            Some(false)
        );
        assert_eq!(
            request_head(b"GET http://a:1/x HTTP/1.1\r\nHost: b\r\n\r\n"),
            Some(true)
        );
        // Every name `Present` looks for, in a refused request and in an accepted one.
        assert_eq!(
            request_head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\nX_Y: 1\r\nX-Request-Id: q\r\nUpgrade: h2c\r\n\r\n"),
            Some(false)
        );
        assert_eq!(
            request_head(b"GET / HTTP/1.1\r\nHost: a\r\nX_Y: 1\r\nX-Request-Id: q\r\nContent-Length: 0\r\nConnection: x-y\r\n\r\n"),
            Some(true)
        );
        // Pingora's request policy skipped (none, or a lone keep-alive) and not (every other
        // hop-by-hop field).
        for head in [
            "Connection: Keep-Alive\r\n",
            "",
            "Connection: keep-alive\r\nKeep-Alive: 5\r\n",
            "TE: trailers\r\n",
            "Proxy-Connection: keep-alive\r\n",
            "HTTP2-Settings: AA\r\n",
        ] {
            let data = format!("GET / HTTP/1.1\r\nHost: a\r\n{head}\r\n");
            assert_eq!(request_head(data.as_bytes()), Some(true), "{head}");
        }
        // A 64-bit payload length with its top bit set (RFC 6455 §5.2 forbids it), fed a byte
        // at a time: the stream stops being parsed (and is still relayed).
        assert_eq!(
            websocket_frames(b"\x01\x81\x7f\xff\xff\xff\xff\xff\xff\xff\xff"),
            None
        );
        // Two whole frames (masked text "hi", then a close), in 3-byte pieces.
        assert_eq!(
            websocket_frames(b"\x03\x81\x82\x00\x00\x00\x00hi\x88\x80\x00\x00\x00\x00"),
            Some(2)
        );
    }
}
