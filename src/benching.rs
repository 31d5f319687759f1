//! Entry points for the criterion benches in `benches/hot.rs` (`cargo bench`): what the proxy
//! does once per request that is not I/O, reachable from outside the crate so a regression
//! shows without a load test. Routing and the recorders are public already; this adds the
//! metric series the proxy updates per request.
//!
//! Must not: be used by runoff itself, or do any I/O.

use std::time::Duration;

use crate::metrics::{Answered, Metrics, RequestHandles, Role, StatusClass};

/// One (route, backend, primary) set of metric series, in a registry of its own.
pub struct RequestSeries {
    handles: RequestHandles,
}

impl RequestSeries {
    pub fn new() -> Option<RequestSeries> {
        let metrics = Metrics::new(prometheus::Registry::new()).ok()?;
        Some(RequestSeries {
            handles: metrics.request_handles("api", "node", Role::Primary),
        })
    }

    /// What a finished 2xx request adds to its series (the proxy's own calls).
    pub fn answered(&self, elapsed: Duration, upstream: Duration) {
        self.handles.answered(&Answered {
            elapsed,
            upstream: Some(upstream),
            ttfb: Some(upstream),
            request_bytes: 0,
            response_bytes: 512,
        });
        self.handles.finished(StatusClass::Success);
    }
}
