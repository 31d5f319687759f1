//! Reading the Grafana dashboard JSON: panels, their queries, template variables, and the
//! metric names a PromQL expression uses.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

/// Every panel, rows' nested panels included.
pub fn all_panels(dash: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dash["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

pub fn is_layout(panel: &Value) -> bool {
    matches!(panel["type"].as_str(), Some("row" | "text"))
}

/// A query the dashboard runs: where it is, and its PromQL.
pub struct Query {
    /// Panel title or annotation name: what `ALLOWLIST` holds.
    pub owner: String,
    /// For messages: `panel 12 "title" target B`.
    pub place: String,
    pub expr: String,
}

pub fn queries(dash: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    for p in all_panels(dash).into_iter().filter(|p| !is_layout(p)) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(Query {
                owner: title.clone(),
                place: format!(
                    "panel {} {title:?} target {}",
                    p["id"],
                    t["refId"].as_str().unwrap_or("?")
                ),
                expr: t["expr"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = a["expr"].as_str() {
            let name = a["name"].as_str().unwrap_or_default().to_string();
            out.push(Query {
                place: format!("annotation {name:?}"),
                owner: name,
                expr: expr.to_string(),
            });
        }
    }
    out
}

pub fn variables(dash: &Value) -> Vec<&Value> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .collect()
}

pub fn variable_query(v: &Value) -> String {
    match &v["query"] {
        Value::String(s) => s.clone(),
        q => q["query"].as_str().unwrap_or_default().to_string(),
    }
}

/// The variables `text` references: `$name` or `${name}` (or `${name:format}`).
pub fn referenced_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').unwrap_or(braced.len());
            let name = braced[..end].split(':').next().unwrap_or_default();
            (name.to_string(), &braced[end..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        out.push(name);
        rest = after;
    }
    out
}

/// `text` with every variable replaced by its value in `values`.
pub fn substitute(text: &str, values: &HashMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').ok_or("unclosed ${")?;
            (
                braced[..end].split(':').next().unwrap_or_default(),
                &braced[end + 1..],
            )
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        out.push_str(
            values
                .get(name)
                .ok_or(format!("unknown variable ${name}"))?,
        );
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

/// Metric names (`runoff_…`) in a PromQL expression.
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("runoff_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// A histogram's series name without its `_bucket`/`_sum`/`_count` suffix.
pub fn family(name: &str) -> &str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base;
        }
    }
    name
}
