//! Typed errors shared across runoff's modules (thiserror leaves).
//!
//! Lives here: configuration errors (every problem with the path of the field it concerns).
//! Must not: hold anyhow (that is only for `main.rs`) or carry request data.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration, named by the path of the field it concerns,
/// e.g. `routes[0].split.rust: no such backend`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The YAML does not fit the schema (syntax, unknown key, wrong type). serde stops at the
    /// first such error, so this holds exactly one.
    #[error("{0}")]
    Syntax(String),
    /// The YAML fits the schema but its values do not make sense; every problem found.
    #[error("{}", render_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// Every problem as its own line, for `check` and for logs.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(problems) => problems.iter().map(ToString::to_string).collect(),
            other => vec![other.to_string()],
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    lines.join("\n")
}
