//! Configuration: the user's YAML (`schema`) validated (`validate`, `validate_routes`) into the
//! typed [`Config`] (`model`) the rest of runoff reads, with every default in one place
//! (`defaults`) and backend names resolved (`resolve`).
//!
//! Lives here: parsing from `&str` or a file. Must not: touch the network beyond resolving
//! backend names (at load and reload only), read environment variables, or know about Pingora.

mod checker;
pub mod defaults;
mod model;
mod resolve;
pub mod schema;
mod tls;
mod validate;
mod validate_routes;

use std::path::Path;

use crate::error::ConfigError;
use schema::RawConfig;

pub use model::{
    humane, AccessLog, AddedHeaderName, AdminSettings, Analysis, Backend, BackendTls, Balance,
    CertFiles, Compare, Config, Criterion, Force, Forwarding, HeaderRule, HealthCheck, JsonRules,
    Live, Mirror, OnFail, Outlier, Pacing, PoolSpec, ProcessSpec, Protocol, Ramp, Redact, Route,
    RouteMatch, ServerSettings, SplitEntry, Startup, StickyKey, TlsListener,
};
pub use resolve::{dns_client, parse_entry, Entry};
pub use tls::load_certified_key;
pub use validate_routes::{json_pointer, split_weight, weight_error, weights_total};

impl Config {
    /// Parse and validate YAML text. Resolves backend host names.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        // A key given twice in one mapping is an error naming its path (deserialising into
        // the schema would silently keep the last one).
        serde_yaml::from_str::<serde_yaml::Value>(text)
            .map_err(|e| ConfigError::Syntax(e.to_string()))?;
        let raw: RawConfig =
            serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        Config::try_from(raw)
    }

    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_yaml(&text)
    }
}

#[cfg(test)]
mod tests;
