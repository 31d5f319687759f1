//! Prometheus text from `/metrics`, parsed for exact-count assertions.

use std::collections::HashMap;

/// Parsed Prometheus text: (name, labels, value) per sample.
pub struct Metrics {
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value: f64 = value.parse().unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n.to_string(), parse_labels(rest.trim_end_matches('}'))),
                None => (series.to_string(), HashMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// Sum of the samples of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|(n, _, _)| n == name)
    }

    pub fn dump(&self, prefix: &str) -> String {
        self.samples
            .iter()
            .filter(|(n, _, _)| n.starts_with(prefix))
            .map(|(n, l, v)| format!("{n}{l:?} {v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn parse_labels(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim_start_matches(',').trim().to_string();
        let after = &rest[eq + 2..]; // skip ="
        let end = after.find('"').unwrap();
        out.insert(key, after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}
