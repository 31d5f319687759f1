//! The verdict loop: once a second, every route's verdicts into the metrics, and every ramp's
//! look at its route's verdict.
//!
//! Must not: run on the proxy's threads, or stop runoff when a look fails (the next one comes
//! a second later).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::control::Control;
use crate::state::Shared;

/// How often verdicts are taken.
const EVERY: Duration = Duration::from_secs(1);

/// Start the loop on its own thread (it lives as long as the process).
pub(super) fn start(shared: Arc<Shared>, control: Arc<Control>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("runoff-verdicts".into())
        .spawn(move || loop {
            look(&shared, &control);
            thread::sleep(EVERY);
        })
        .map(|_| ())
}

fn look(shared: &Shared, control: &Control) {
    let verdicts = shared.snapshot.load().verdicts();
    let m = &shared.metrics.analysis;
    for (route, a) in &verdicts {
        m.verdict(route, "overall", a.overall.score());
        for c in &a.criteria {
            m.verdict(route, &c.criterion, c.verdict.score());
            m.bounds(route, &c.criterion, [c.estimate, c.lower, c.upper]);
        }
    }
    for (route, status, decided_at) in control.ramp_tick(&verdicts) {
        m.ramp(&route, status.weight, decided_at);
    }
}
