//! Structural JSON comparison: key order never matters, numbers compare as numbers within a
//! tolerance, arrays in order or as multisets, and paths can be removed first.
//!
//! Must not: report more than `MAX_BODY_DIFFS` differences for one pair.

use serde_json::{Map, Number, Value};

use super::{truncate, BodyDiff, MAX_BODY_DIFFS};
use crate::config::JsonRules;

/// Remove every node matching `path` (segments; `*` matches any key or index).
pub(super) fn remove(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    match v {
        Value::Object(map) => {
            if rest.is_empty() {
                if first == "*" {
                    map.clear();
                } else {
                    map.remove(first);
                }
            } else if first == "*" {
                for child in map.values_mut() {
                    remove(child, rest);
                }
            } else if let Some(child) = map.get_mut(first) {
                remove(child, rest);
            }
        }
        Value::Array(items) => {
            if first == "*" {
                if rest.is_empty() {
                    items.clear();
                } else {
                    for child in items.iter_mut() {
                        remove(child, rest);
                    }
                }
            } else if let Ok(i) = first.parse::<usize>() {
                if rest.is_empty() {
                    if i < items.len() {
                        items.remove(i);
                    }
                } else if let Some(child) = items.get_mut(i) {
                    remove(child, rest);
                }
            }
        }
        _ => {}
    }
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A value as it goes into a sample: small values whole, large ones as truncated text.
fn sample(v: Option<&Value>) -> Value {
    match v {
        None => Value::Null,
        Some(v @ (Value::Null | Value::Bool(_) | Value::Number(_))) => v.clone(),
        Some(Value::String(s)) => Value::String(truncate(s)),
        Some(other) => {
            let text = other.to_string();
            if text.chars().count() <= super::PREVIEW_CHARS {
                other.clone()
            } else {
                Value::String(truncate(&text))
            }
        }
    }
}

fn push(out: &mut Vec<BodyDiff>, path: &str, a: Option<&Value>, b: Option<&Value>) {
    if out.len() < MAX_BODY_DIFFS {
        out.push(BodyDiff {
            path: path.to_string(),
            primary: sample(a),
            shadow: sample(b),
        });
    }
}

/// Numbers are equal as numbers: integers exactly (however large), otherwise as floats within
/// `tolerance` (so `1` equals `1.0`).
fn numbers_equal(a: &Number, b: &Number, tolerance: f64) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y || (x as f64 - y as f64).abs() <= tolerance;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y || (x as f64 - y as f64).abs() <= tolerance;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= tolerance,
        _ => a == b,
    }
}

/// Whether two values are equal under the rules (no paths reported).
pub(super) fn equal(a: &Value, b: &Value, rules: &JsonRules) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => numbers_equal(x, y, rules.float_tolerance),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| equal(v, w, rules)))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return false;
            }
            if rules.array_order_ignore {
                multiset_equal(x, y, rules)
            } else {
                x.iter().zip(y).all(|(v, w)| equal(v, w, rules))
            }
        }
        _ => a == b,
    }
}

/// Elements left unpaired by their canonical form that are still paired one by one (each
/// against each); past this many the arrays count as different.
pub(super) const MAX_UNPAIRED: usize = 2_000;

/// Arrays as multisets: every element of `x` pairs with a distinct equal element of `y`.
///
/// O(n log n): elements pair by a canonical form (sorted), which equal values share except
/// numbers that are equal only within `float_tolerance` or across representations an exact
/// form cannot tell apart (an integer past 2^53 against a float). What is left pairs one by
/// one, exactly as `equal` says, when at most `MAX_UNPAIRED` elements are left on each side.
fn multiset_equal(x: &[Value], y: &[Value], rules: &JsonRules) -> bool {
    if x.len() != y.len() {
        return false;
    }
    let keyed = |v: &[Value]| {
        let mut k: Vec<(String, usize)> = v
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut s = String::new();
                canonical(e, rules, &mut s);
                (s, i)
            })
            .collect();
        k.sort_unstable();
        k
    };
    let (kx, ky) = (keyed(x), keyed(y));
    let (mut i, mut j) = (0, 0);
    let (mut left_x, mut left_y) = (Vec::new(), Vec::new());
    while i < kx.len() && j < ky.len() {
        match kx[i].0.cmp(&ky[j].0) {
            std::cmp::Ordering::Equal => {
                i += 1;
                j += 1;
            }
            std::cmp::Ordering::Less => {
                left_x.push(kx[i].1);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                left_y.push(ky[j].1);
                j += 1;
            }
        }
    }
    left_x.extend(kx[i..].iter().map(|k| k.1));
    left_y.extend(ky[j..].iter().map(|k| k.1));
    if left_x.is_empty() {
        return true;
    }
    if left_x.len() > MAX_UNPAIRED {
        return false;
    }
    let mut used = vec![false; left_y.len()];
    left_x.iter().all(|&a| {
        match (0..left_y.len()).find(|&b| !used[b] && equal(&x[a], &y[left_y[b]], rules)) {
            Some(b) => {
                used[b] = true;
                true
            }
            None => false,
        }
    })
}

/// A text that exactly-equal values share (objects by sorted key; arrays in order, or sorted
/// when they compare as multisets; numbers by their `f64` value when it is exact).
fn canonical(v: &Value, rules: &JsonRules, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Null => out.push('n'),
        Value::Bool(b) => out.push(if *b { 't' } else { 'f' }),
        Value::String(s) => {
            out.push('s');
            out.push_str(&Value::String(s.clone()).to_string());
        }
        Value::Number(n) => {
            const EXACT: u64 = 1 << 53;
            let _ = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) if i.unsigned_abs() <= EXACT => write!(out, "d{:?}", i as f64),
                (Some(i), _, _) => write!(out, "i{i}"),
                (_, Some(u), _) if u <= EXACT => write!(out, "d{:?}", u as f64),
                (_, Some(u), _) => write!(out, "i{u}"),
                (_, _, Some(f)) => write!(out, "d{f:?}"),
                _ => write!(out, "x{n}"),
            };
        }
        Value::Array(items) => {
            out.push('[');
            if rules.array_order_ignore {
                let mut keys: Vec<String> = items
                    .iter()
                    .map(|e| {
                        let mut s = String::new();
                        canonical(e, rules, &mut s);
                        s
                    })
                    .collect();
                keys.sort_unstable();
                out.push_str(&keys.join(","));
            } else {
                for (i, e) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(e, rules, out);
                }
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(e) = map.get(k) {
                    canonical(e, rules, out);
                }
            }
            out.push('}');
        }
    }
}

/// Record every path where `a` and `b` differ.
pub(super) fn diff(
    a: &Value,
    b: &Value,
    path: &mut String,
    rules: &JsonRules,
    out: &mut Vec<BodyDiff>,
) {
    if out.len() >= MAX_BODY_DIFFS {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => diff_objects(x, y, path, rules, out),
        (Value::Array(x), Value::Array(y)) => {
            if rules.array_order_ignore {
                if !(x.len() == y.len() && multiset_equal(x, y, rules)) {
                    push(out, path, Some(a), Some(b));
                }
                return;
            }
            for i in 0..x.len().max(y.len()) {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                match (x.get(i), y.get(i)) {
                    (Some(v), Some(w)) => diff(v, w, path, rules, out),
                    (v, w) => push(out, path, v, w),
                }
                path.truncate(len);
            }
        }
        _ => {
            if !equal(a, b, rules) {
                push(out, path, Some(a), Some(b));
            }
        }
    }
}

fn diff_objects(
    x: &Map<String, Value>,
    y: &Map<String, Value>,
    path: &mut String,
    rules: &JsonRules,
    out: &mut Vec<BodyDiff>,
) {
    let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let len = path.len();
        path.push('/');
        path.push_str(&escape(k));
        match (x.get(k), y.get(k)) {
            (Some(v), Some(w)) => diff(v, w, path, rules, out),
            (v, w) => push(out, path, v, w),
        }
        path.truncate(len);
    }
}

/// A path with array indices replaced by `*`: how per-path counts group differences, and
/// the form `ignore_paths` takes.
pub(super) fn generalize(path: &str) -> String {
    if path.is_empty() {
        return String::new();
    }
    path.split('/')
        .skip(1)
        .map(|seg| {
            if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
                "*"
            } else {
                seg
            }
        })
        .fold(String::new(), |mut acc, seg| {
            acc.push('/');
            acc.push_str(seg);
            acc
        })
}
