//! Redaction: what runoff keeps or shows (mismatch samples, the access log, its own log
//! lines) never carries a credential in the clear. Header values on the redact list (always
//! `authorization`, `proxy-authorization`, `cookie`, `set-cookie`, plus `redact.headers` and
//! the route's `strip_headers`), JSON values under a redacted key at any depth (the
//! `redact.json_keys`, and the redacted header names, since backends echo headers), and
//! query-parameter values (`redact.query_params`).
//!
//! Lives here: plain functions over strings and JSON values, unit-tested. Must not: touch what
//! is forwarded (redaction is for what runoff keeps, never for what backends receive), or
//! keep any part of a redacted value (not its length, not a prefix).

use std::borrow::Cow;

use http::header::HeaderName;
use serde_json::Value;

use crate::config::defaults::REDACT_HEADERS_ALWAYS;
use crate::config::Redact;

/// What stands in for a redacted value.
pub(crate) const REDACTED: &str = "<redacted>";

/// The redact lists of a route (or of runoff as a whole), lower case.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Redactor {
    headers: Vec<String>,
    json_keys: Vec<String>,
    query_params: Vec<String>,
}

impl Redactor {
    /// From the config's `redact:` and headers a route also treats as secret (its mirror's
    /// `strip_headers`).
    pub(crate) fn new(config: &Redact, extra_headers: &[HeaderName]) -> Redactor {
        let mut headers: Vec<String> = REDACT_HEADERS_ALWAYS
            .iter()
            .map(|h| h.to_string())
            .chain(config.headers.iter().map(|h| h.as_str().to_string()))
            .chain(extra_headers.iter().map(|h| h.as_str().to_string()))
            .collect();
        headers.sort();
        headers.dedup();
        let mut json_keys: Vec<String> = config
            .json_keys
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .chain(headers.iter().cloned())
            .collect();
        json_keys.sort();
        json_keys.dedup();
        Redactor {
            headers,
            json_keys,
            query_params: config
                .query_params
                .iter()
                .map(|q| q.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether a header's value is redacted.
    pub(crate) fn header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    fn json_key(&self, key: &str) -> bool {
        self.json_keys.iter().any(|k| k.eq_ignore_ascii_case(key))
    }

    /// A path with its query string: the values of redacted parameters replaced
    /// (`/cb?code=abc&state=1` → `/cb?code=<redacted>&state=1`). Parameter names are compared
    /// after percent-decoding, case-insensitively.
    pub(crate) fn path<'a>(&self, path_and_query: &'a str) -> Cow<'a, str> {
        let Some((path, query)) = path_and_query.split_once('?') else {
            return Cow::Borrowed(path_and_query);
        };
        let secret = |pair: &str| {
            pair.split_once('=').is_some_and(|(name, value)| {
                !value.is_empty() && {
                    let name = percent_decoded(name);
                    self.query_params
                        .iter()
                        .any(|q| q.eq_ignore_ascii_case(&name))
                }
            })
        };
        if !query.split('&').any(secret) {
            return Cow::Borrowed(path_and_query);
        }
        let query: Vec<Cow<'_, str>> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if secret(pair) => Cow::Owned(format!("{name}={REDACTED}")),
                _ => Cow::Borrowed(pair),
            })
            .collect();
        Cow::Owned(format!("{path}?{}", query.join("&")))
    }

    /// A JSON value with every value under a redacted key replaced, at any depth (`null`
    /// stays `null`: absence is not a secret).
    pub(crate) fn json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if self.json_key(k) {
                        if !v.is_null() {
                            *v = Value::String(REDACTED.into());
                        }
                    } else {
                        self.json(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }

    /// Whether a JSON Pointer passes through a redacted key (`/headers/authorization`).
    fn pointer(&self, pointer: &str) -> bool {
        pointer
            .split('/')
            .skip(1)
            .any(|seg| self.json_key(&seg.replace("~1", "/").replace("~0", "~")))
    }

    /// The value found at JSON Pointer `at` in a body, as it may be kept: wholly redacted under
    /// a redacted key, else with every redacted key inside it redacted (`null` stays `null`).
    pub(crate) fn value_at(&self, at: &str, value: &mut Value) {
        if self.pointer(at) {
            if !value.is_null() {
                *value = Value::String(REDACTED.into());
            }
        } else {
            self.json(value);
        }
    }

    /// A header value as it may be kept.
    pub(crate) fn header_value(&self, name: &str, value: &str) -> String {
        if self.header(name) {
            REDACTED.to_string()
        } else {
            value.to_string()
        }
    }
}

/// `%XX` escapes decoded (for comparing names only; invalid escapes stay as written).
fn percent_decoded(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::defaults::{REDACT_JSON_KEYS, REDACT_QUERY_PARAMS};
    use serde_json::json;

    fn defaults() -> Redactor {
        Redactor::new(
            &Redact {
                headers: vec![HeaderName::from_static("x-api-key")],
                json_keys: REDACT_JSON_KEYS.iter().map(|k| k.to_string()).collect(),
                query_params: REDACT_QUERY_PARAMS.iter().map(|k| k.to_string()).collect(),
            },
            &[HeaderName::from_static("x-session")],
        )
    }

    #[test]
    fn query_values_on_the_list_are_replaced() {
        let r = defaults();
        assert_eq!(r.path("/a/b"), "/a/b");
        assert_eq!(r.path("/a?x=1&y=2"), "/a?x=1&y=2");
        assert!(matches!(r.path("/a?x=1"), Cow::Borrowed(_)));
        assert_eq!(
            r.path("/cb?code=abc123&state=1&TOKEN=t&api%5Fkey=k&flag&sig="),
            "/cb?code=<redacted>&state=1&TOKEN=<redacted>&api%5Fkey=<redacted>&flag&sig="
        );
    }

    #[test]
    fn json_values_under_secret_keys_are_replaced_at_any_depth() {
        let r = defaults();
        let mut v = json!({
            "user": {"name": "ann", "Password": "hunter2"},
            "headers": {"authorization": "Bearer abc", "cookie": "sid=1", "x-session": "s",
                        "x-api-key": "k", "accept": "*/*"},
            "list": [{"token": "t1"}, {"token": null}],
            "secret": {"nested": "whole object goes"}
        });
        r.json(&mut v);
        assert_eq!(
            v,
            json!({
                "user": {"name": "ann", "Password": "<redacted>"},
                "headers": {"authorization": "<redacted>", "cookie": "<redacted>",
                            "x-session": "<redacted>", "x-api-key": "<redacted>", "accept": "*/*"},
                "list": [{"token": "<redacted>"}, {"token": null}],
                "secret": "<redacted>"
            })
        );
    }

    #[test]
    fn values_at_pointers_and_header_values() {
        let r = defaults();
        let mut v = json!("Bearer a");
        r.value_at("/headers/authorization", &mut v);
        assert_eq!(v, json!(REDACTED));
        let mut missing = Value::Null;
        r.value_at("/headers/authorization", &mut missing);
        assert_eq!(missing, Value::Null, "absence is not a secret");
        let mut escaped = json!(2);
        r.value_at("/a~1b/api_key", &mut escaped);
        assert_eq!(escaped, json!(REDACTED));
        let mut whole = json!({"cookie": "sid=1", "accept": "x"});
        r.value_at("/headers", &mut whole);
        assert_eq!(whole, json!({"cookie": REDACTED, "accept": "x"}));
        let mut plain = json!("v");
        r.value_at("/name", &mut plain);
        assert_eq!(plain, json!("v"));
        assert_eq!(r.header_value("Set-Cookie", "a=1"), REDACTED);
        assert_eq!(r.header_value("x-session", "s"), REDACTED);
        assert_eq!(r.header_value("etag", "1"), "1");
    }
}
