//! Analysis: what the proxy and the mirror measured, turned into figures people compare.
//!
//! Lives here: the recorders the request path is handed (`recorder`), the summary model
//! (`model`) and how it is built (`summary`) and derived (`figures`), and the sampling of
//! same-host backend processes (`process`, `resources`). Must not: import `proxy`, `mirror`,
//! `server` or `state` (they feed analysis through the recorders they are handed, and callers
//! describe routes as plain [`summary::RouteInput`]s), or sit on the request path beyond one
//! recorder update.

pub mod figures;
pub mod history;
pub mod model;
pub mod process;
pub mod recorder;
pub mod resources;
mod shards;
pub mod stats;
pub mod summary;
pub mod tally;
pub mod verdict;

pub use recorder::{Book, Recorder, Series};
pub use resources::Resources;
pub use summary::{summarize, MirrorInput, RouteInput};
