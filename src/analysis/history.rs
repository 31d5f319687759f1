//! The history the live page draws (`GET /api/history`): per route, each backend's latency
//! (median, p99) and error count per 10-second slot, and on mirrored routes the distribution of
//! paired shadow ÷ primary ratios over the window. Computed here from the recorders, so the
//! page draws figures and computes none.
//!
//! Must not: record anything, or know who serves it (the admin API hands it the routes).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::recorder::{Book, Series, SlotFigures};
use super::summary::RouteInput;

/// Ratio bin edges: each bin holds the ratios above the previous edge and at or under its own;
/// one more bin holds those above the last.
pub const RATIO_EDGES: [f64; 9] = [0.5, 0.67, 0.8, 0.9, 1.0, 1.11, 1.25, 1.5, 2.0];

/// `GET /api/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct History {
    pub slot_secs: u64,
    pub window_secs: u64,
    pub routes: Vec<RouteHistory>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouteHistory {
    pub name: String,
    /// Upstream-side latency in ms, per backend and role (primary, then shadow).
    pub series: Vec<SeriesHistory>,
    pub ratio: Option<RatioDistribution>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesHistory {
    pub backend: String,
    pub role: String,
    pub slots: Vec<SlotFigures>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RatioDistribution {
    /// Shadow ÷ primary of the same request, over the window.
    pub pairs: u64,
    pub edges: Vec<f64>,
    /// `edges.len() + 1` counts.
    pub counts: Vec<u64>,
}

/// The history of `routes` over the last `window`.
pub fn history(book: &Book, routes: &[RouteInput], window: Duration) -> History {
    let routes = routes
        .iter()
        .map(|r| {
            // Reading never creates a recorder: one that does not exist yet has no slots.
            let series = r
                .legs()
                .map(|(backend, role)| SeriesHistory {
                    backend: backend.to_string(),
                    role: role.as_str().to_string(),
                    slots: book
                        .existing(Series::Upstream(role), &r.name, backend)
                        .map(|rec| rec.history(window, 1000.0))
                        .unwrap_or_default(),
                })
                .collect();
            let ratio = r.mirror.as_ref().map(|_| {
                let counts = book.existing(Series::Ratio, &r.name, "").map_or_else(
                    || vec![0; RATIO_EDGES.len() + 1],
                    |rec| rec.ratio_bins(window, &RATIO_EDGES),
                );
                RatioDistribution {
                    pairs: counts.iter().sum(),
                    edges: RATIO_EDGES.to_vec(),
                    counts,
                }
            });
            RouteHistory {
                name: r.name.clone(),
                series,
                ratio,
            }
        })
        .collect();
    History {
        slot_secs: 10,
        window_secs: window.as_secs(),
        routes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::MirrorInput;
    use crate::metrics::Role;

    #[test]
    fn each_leg_has_its_slots_and_a_mirror_its_ratio_bins() {
        let book = Book::default();
        let route = RouteInput {
            name: "orders".into(),
            baseline: "node".into(),
            candidate: Some("go".into()),
            split: vec!["node".into()],
            mirror: Some(MirrorInput {
                to: "go".into(),
                percent: 100.0,
                copies: 0,
                completed: 0,
                dropped: 0,
            }),
            compare: None,
            analysis: None,
            protocols: Vec::new(),
        };
        book.recorder(Series::Upstream(Role::Primary), "orders", "node")
            .record(2_000, false);
        book.recorder(Series::Ratio, "orders", "")
            .record_ratio(1.05);
        let h = history(
            &book,
            std::slice::from_ref(&route),
            Duration::from_secs(600),
        );
        let r = &h.routes[0];
        let legs: Vec<(&str, &str, usize)> = r
            .series
            .iter()
            .map(|s| (s.backend.as_str(), s.role.as_str(), s.slots.len()))
            .collect();
        assert_eq!(legs, vec![("node", "primary", 1), ("go", "shadow", 0)]);
        let ratio = r.ratio.as_ref().expect("mirrored");
        assert_eq!((ratio.pairs, ratio.counts[5]), (1, 1));
        // Reading created no recorder for the shadow.
        assert!(book
            .existing(Series::Upstream(Role::Shadow), "orders", "go")
            .is_none());
    }
}
