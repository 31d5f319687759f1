//! The metric contract, docs/METRICS.md, as the dashboard tests read it.

use std::collections::BTreeSet;

use super::grafana::family;
use super::read;

/// The metric contract, docs/METRICS.md: the names runoff serves, and the names it reserves
/// for features not built yet.
pub struct Contract {
    exported: BTreeSet<String>,
    reserved: BTreeSet<String>,
}

pub const CONTRACT: &str = "docs/METRICS.md";

impl Contract {
    /// Every markdown table row whose first cell holds backticked `runoff_…` names; a row whose
    /// meaning says `*not yet exported*` reserves its names.
    pub fn read() -> Contract {
        let text = read(CONTRACT);
        let (mut exported, mut reserved) = (BTreeSet::new(), BTreeSet::new());
        for line in text.lines() {
            let Some(first) = line.strip_prefix('|').and_then(|l| l.split('|').next()) else {
                continue;
            };
            let names = first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| n.starts_with("runoff_"));
            let into = if line.contains("*not yet exported*") {
                &mut reserved
            } else {
                &mut exported
            };
            into.extend(names.map(str::to_string));
        }
        assert!(
            exported.contains("runoff_requests_total"),
            "{CONTRACT}: no metric table found"
        );
        Contract { exported, reserved }
    }

    /// Whether the contract names `series` (a histogram's series by its family).
    pub fn names(&self, series: &str) -> bool {
        let name = family(series);
        self.exported.contains(name) || self.reserved.contains(name)
    }

    pub fn is_reserved(&self, series: &str) -> bool {
        self.reserved.contains(family(series))
    }
}
