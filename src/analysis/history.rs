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
use crate::metrics::Role;

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
            let mut series: Vec<SeriesHistory> = r
                .split
                .iter()
                .map(|b| (b.as_str(), Role::Primary))
                .chain(r.mirror.as_ref().map(|m| (m.to.as_str(), Role::Shadow)))
                .map(|(backend, role)| SeriesHistory {
                    backend: backend.to_string(),
                    role: role.as_str().to_string(),
                    slots: book
                        .recorder(Series::Upstream(role), &r.name, backend)
                        .history(window, 1000.0),
                })
                .collect();
            series.dedup_by(|a, b| a.backend == b.backend && a.role == b.role);
            let ratio = r.mirror.as_ref().map(|_| {
                let counts = book
                    .recorder(Series::Ratio, &r.name, "")
                    .ratio_bins(window, &RATIO_EDGES);
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
