//! The problem collector of validation: typed readers for durations, counts, addresses, methods
//! and header names that record what is wrong with the path of the field, and the rule for
//! names.
//!
//! Must not: stop at a problem (it records and returns a default so validation goes on).

use std::net::SocketAddr;
use std::time::Duration;

use http::header::HeaderName;
use http::Method;

use crate::error::Problem;

/// Names become Prometheus label values and URL path segments: keep them plain.
pub(super) fn check_name(c: &mut Checker, path: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-' || ch == '.');
    if !ok {
        c.report(
            path,
            format!("name `{name}` must be 1-64 characters of letters, digits, `_`, `-` or `.`"),
        );
    }
}

/// Collects problems while building the typed config.
#[derive(Default)]
pub(super) struct Checker {
    pub(super) problems: Vec<Problem>,
}

impl Checker {
    pub(super) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(path, message));
    }

    pub(super) fn duration(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: Duration,
    ) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.report(path, format!("must be greater than 0, got `{text}`"));
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.report(
                    path,
                    format!("`{text}` is not a duration like 250ms or 5s ({e})"),
                );
                default
            }
        }
    }

    pub(super) fn positive(&mut self, path: &str, value: Option<i64>, default: usize) -> usize {
        match value {
            None => default,
            Some(v) if v > 0 => usize::try_from(v).unwrap_or(default),
            Some(v) => {
                self.report(path, format!("must be greater than 0, got {v}"));
                default
            }
        }
    }

    /// A whole number of at least `min` (a count, a threshold).
    pub(super) fn count(&mut self, path: &str, value: Option<i64>, default: u32, min: u32) -> u32 {
        match value {
            None => default,
            Some(v) => match u32::try_from(v) {
                Ok(n) if n >= min => n,
                _ => {
                    self.report(
                        path,
                        format!("must be a whole number of at least {min}, got {v}"),
                    );
                    default
                }
            },
        }
    }

    pub(super) fn listen_addr(&mut self, path: &str, text: &str) -> Option<SocketAddr> {
        match text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.report(
                    path,
                    format!(
                        "`{text}` is not an IP address and port like 127.0.0.1:8080 or [::1]:8080"
                    ),
                );
                None
            }
        }
    }

    /// A list of HTTP methods (any case); each bad one is reported as `path[j]`.
    pub(super) fn methods(&mut self, path: &str, names: &[String]) -> Vec<Method> {
        names
            .iter()
            .enumerate()
            .filter_map(|(j, name)| {
                match Method::from_bytes(name.to_ascii_uppercase().as_bytes()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        self.report(
                            format!("{path}[{j}]"),
                            format!("`{name}` is not an HTTP method"),
                        );
                        None
                    }
                }
            })
            .collect()
    }

    pub(super) fn header_name(&mut self, path: &str, text: &str) -> Option<HeaderName> {
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                self.report(path, format!("`{text}` is not a valid header name"));
                None
            }
        }
    }

    /// An environment variable's name (letters, digits, `_`).
    pub(super) fn env_name(&mut self, path: &str, name: &str) {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_');
        if !ok {
            self.report(
                path,
                format!("`{name}` is not an environment variable name"),
            );
        }
    }

    /// A list of networks (`10.0.0.0/8`, `::1/128`, or a single address); each bad one is
    /// reported as `path[j]`.
    pub(super) fn networks(&mut self, path: &str, list: &[String]) -> Vec<ipnet::IpNet> {
        list.iter()
            .enumerate()
            .filter_map(|(j, text)| {
                let t = text.trim();
                let parsed = t
                    .parse::<ipnet::IpNet>()
                    .ok()
                    .or_else(|| t.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from));
                if parsed.is_none() {
                    self.report(
                        format!("{path}[{j}]"),
                        format!("`{text}` is not a network like 10.0.0.0/8 or an address"),
                    );
                }
                parsed
            })
            .collect()
    }
}
