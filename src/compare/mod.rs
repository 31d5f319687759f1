//! Response comparison: a primary answer and its shadow's, judged as `match`, `mismatch` (with
//! the parts and JSON paths that differ) or `skipped`.
//!
//! Lives here: pure comparison (status, headers, bodies: JSON structurally, anything else byte
//! for byte after undoing the same content-encoding), the in-memory mismatch samples and
//! per-path counts (`store`), and a route's judge that records each verdict in both (`judge`).
//! Must not: do I/O, run on the primary's path, or keep more than the configured bytes of any
//! body.

mod json;
mod judge;
pub(crate) mod store;

pub(crate) use judge::{Judge, PairMeta};

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, CONTENT_ENCODING};
use serde::Serialize;
use serde_json::Value;

use crate::config::{Compare, HeaderRule};
use crate::metrics::{CompareResult, Part, SkipReason};

/// Memory a capture's body is charged against (the mirror's memory budget), given back when
/// the capture is dropped.
pub(crate) trait Charge: Send + Sync {
    /// Take `bytes`, or `false` when that would go over the budget.
    fn take(&self, bytes: u64) -> bool;
    fn give(&self, bytes: u64);
}

/// A response as captured for comparison: status, headers, and the body up to a limit.
pub(crate) struct Captured {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<Bytes>,
    pub body_len: usize,
    /// More body arrived than the limit: the pair will be skipped.
    pub truncated: bool,
    /// The memory budget was full: the pair will be skipped.
    pub over_budget: bool,
    limit: usize,
    /// What the kept body is charged against, and how much it holds.
    charge: Option<Arc<dyn Charge>>,
}

impl Captured {
    pub(crate) fn new(status: u16, headers: HeaderMap, limit: usize) -> Captured {
        Captured {
            status,
            headers,
            body: Vec::new(),
            body_len: 0,
            truncated: false,
            over_budget: false,
            limit,
            charge: None,
        }
    }

    /// Charge the kept body against `budget` while the capture lives.
    pub(crate) fn charged(mut self, budget: Arc<dyn Charge>) -> Captured {
        self.charge = Some(budget);
        self
    }

    /// Keep a piece of body (a cheap reference-counted clone) while under the limit and the
    /// budget.
    pub(crate) fn push(&mut self, chunk: &Bytes) {
        if self.truncated {
            return;
        }
        let len = chunk.len();
        let refused = self.body_len + len > self.limit;
        let over = !refused && self.charge.as_ref().is_some_and(|c| !c.take(len as u64));
        if refused || over {
            self.truncated = true;
            self.over_budget = over;
            self.release();
            return;
        }
        self.body_len += len;
        self.body.push(chunk.clone());
    }

    /// Drop the kept body and give its memory back.
    fn release(&mut self) {
        if let Some(c) = &self.charge {
            c.give(self.body_len as u64);
        }
        self.body.clear();
        self.body_len = 0;
    }

    fn joined(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.body_len);
        for b in &self.body {
            v.extend_from_slice(b);
        }
        v
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        self.release();
    }
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Captured")
            .field("status", &self.status)
            .field("body_len", &self.body_len)
            .field("truncated", &self.truncated)
            .field("over_budget", &self.over_budget)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HeaderDiff {
    pub name: String,
    pub primary: Option<String>,
    pub shadow: Option<String>,
}

/// One difference in the body: a JSON Pointer (`""` for a whole non-JSON body) and both
/// values (JSON values; absent on one side is `null` with `missing` set).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct BodyDiff {
    pub path: String,
    pub primary: Value,
    pub shadow: Value,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub(crate) struct Diff {
    pub status: Option<(u16, u16)>,
    pub headers: Vec<HeaderDiff>,
    pub body: Vec<BodyDiff>,
}

impl Diff {
    pub(crate) fn parts(&self) -> Vec<Part> {
        let mut parts = Vec::new();
        if self.status.is_some() {
            parts.push(Part::Status);
        }
        if !self.headers.is_empty() {
            parts.push(Part::Headers);
        }
        if !self.body.is_empty() {
            parts.push(Part::Body);
        }
        parts
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Match,
    Mismatch(Diff),
    Skipped(SkipReason),
}

impl Verdict {
    /// The `result` it is counted under.
    pub(crate) fn result(&self) -> CompareResult {
        match self {
            Verdict::Match => CompareResult::Match,
            Verdict::Mismatch(_) => CompareResult::Mismatch,
            Verdict::Skipped(_) => CompareResult::Skipped,
        }
    }

    /// The parts that differed (none unless a mismatch).
    pub(crate) fn parts(&self) -> Vec<Part> {
        match self {
            Verdict::Mismatch(d) => d.parts(),
            _ => Vec::new(),
        }
    }
}

/// Most body differences reported for one pair.
pub(crate) const MAX_BODY_DIFFS: usize = 50;

/// Headers that describe the transport, not the answer: never compared.
const FRAMING: [&str; 5] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "date",
];

/// Compare a primary answer with its shadow's.
pub(crate) fn compare(p: &Captured, s: &Captured, cfg: &Compare) -> Verdict {
    if p.over_budget || s.over_budget {
        return Verdict::Skipped(SkipReason::Overloaded);
    }
    if p.truncated || s.truncated {
        return Verdict::Skipped(SkipReason::TooLarge);
    }
    let (Some(pb), Some(sb)) = (decode(p, cfg.body_max_bytes), decode(s, cfg.body_max_bytes))
    else {
        return Verdict::Skipped(SkipReason::Undecodable);
    };
    let mut diff = Diff::default();
    if cfg.status && p.status != s.status {
        diff.status = Some((p.status, s.status));
    }
    diff.headers = header_diffs(&p.headers, &s.headers, &cfg.headers);
    // Two gRPC answers: their `grpc-status` (from the trailers, or the headers of a
    // Trailers-Only answer) is their status; their messages are compared only when asked.
    let grpc = is_grpc(&p.headers) && is_grpc(&s.headers);
    if grpc && cfg.status {
        let (a, b) = (
            header_value(&p.headers, &GRPC_STATUS),
            header_value(&s.headers, &GRPC_STATUS),
        );
        if a != b && !diff.headers.iter().any(|d| d.name == GRPC_STATUS.as_str()) {
            diff.headers.push(HeaderDiff {
                name: GRPC_STATUS.as_str().to_string(),
                primary: a,
                shadow: b,
            });
        }
    }
    if !grpc || cfg.grpc_body {
        diff.body = body_diffs(&pb, &sb, cfg);
    }
    if diff.parts().is_empty() {
        Verdict::Match
    } else {
        Verdict::Mismatch(diff)
    }
}

static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

fn is_grpc(h: &HeaderMap) -> bool {
    crate::metrics::grpc::is_grpc(h.get(http::header::CONTENT_TYPE).map(|v| v.as_bytes()))
}

/// The body with its content-encoding undone; `None` if it cannot be (or grows past `limit`).
fn decode(c: &Captured, limit: usize) -> Option<Vec<u8>> {
    let raw = c.joined();
    let encoding = c
        .headers
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "" | "identity" => return Some(raw),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(raw.as_slice())
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(raw.as_slice())
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        _ => return None,
    };
    match read {
        Ok(n) if n <= limit => Some(out),
        _ => None,
    }
}

fn header_value(h: &HeaderMap, name: &HeaderName) -> Option<String> {
    let values: Vec<String> = h
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn header_diffs(p: &HeaderMap, s: &HeaderMap, rule: &HeaderRule) -> Vec<HeaderDiff> {
    let names: Vec<HeaderName> = match rule {
        HeaderRule::Compare(list) => list.clone(),
        HeaderRule::Ignore(ignored) => {
            let mut all: Vec<HeaderName> = p.keys().chain(s.keys()).cloned().collect();
            all.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            all.dedup();
            all.retain(|n| !ignored.contains(n) && !FRAMING.contains(&n.as_str()));
            all
        }
    };
    // Encoding differences are undone before bodies are compared; the header itself is
    // compared only when asked for by name.
    names
        .iter()
        .filter_map(|name| {
            let (a, b) = (header_value(p, name), header_value(s, name));
            (a != b).then(|| HeaderDiff {
                name: name.as_str().to_string(),
                primary: a,
                shadow: b,
            })
        })
        .collect()
}

fn body_diffs(p: &[u8], s: &[u8], cfg: &Compare) -> Vec<BodyDiff> {
    match (
        serde_json::from_slice::<Value>(p),
        serde_json::from_slice::<Value>(s),
    ) {
        (Ok(mut a), Ok(mut b)) => {
            for path in &cfg.json.ignore_paths {
                json::remove(&mut a, path);
                json::remove(&mut b, path);
            }
            let mut out = Vec::new();
            json::diff(&a, &b, &mut String::new(), &cfg.json, &mut out);
            out
        }
        _ if p == s => Vec::new(),
        _ => vec![BodyDiff {
            path: String::new(),
            primary: Value::String(preview(p)),
            shadow: Value::String(preview(s)),
        }],
    }
}

/// At most this many characters of a value go into a sample.
pub(crate) const PREVIEW_CHARS: usize = 256;

fn preview(bytes: &[u8]) -> String {
    truncate(&String::from_utf8_lossy(bytes))
}

pub(crate) fn truncate(s: &str) -> String {
    if s.chars().count() <= PREVIEW_CHARS {
        return s.to_string();
    }
    let mut t: String = s.chars().take(PREVIEW_CHARS).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests;
