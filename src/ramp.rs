//! Progressive ramps: a split route's candidate weight raised step by step while every
//! criterion passes, held while any is inconclusive (up to `max_hold`), and rolled back (or
//! paused) on the first fail; the state kept in a small file so a restart after a rollback
//! does not bring the candidate back.
//!
//! Lives here: each route's ramp state, the decision a verdict leads to (a pure function), and
//! reading and writing the state file. Must not: change weights itself (`control` puts the
//! ramp's weights in force), or judge anything (`analysis::verdict` does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};

use crate::analysis::model::{RampStatus, Verdict};
use crate::config::{OnFail, Ramp};

/// Where a ramp stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Phase {
    /// Judging the current step; advances, holds or rolls back.
    Ramping,
    /// Stopped at its step: a manual weight change, or a fail with `on_fail: pause`. Resumed
    /// through `POST /api/routes/ROUTE/ramp/resume`.
    Paused,
    /// The candidate's weight is 0, for good (until resumed).
    RolledBack,
    /// The last step was reached.
    Done,
}

/// One route's ramp, as kept in the state file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RampState {
    /// Index of the current step.
    pub step: usize,
    pub phase: Phase,
    /// The last decision, in words.
    pub last_decision: String,
    /// When it was taken (Unix seconds).
    pub last_decision_at: f64,
    /// When the current step began (this process' clock; a restart begins the step again).
    #[serde(skip, default = "Instant::now")]
    pub step_started: Instant,
}

/// What a verdict leads to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Hold,
    Advance,
    RollBack(String),
    Pause(String),
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl RampState {
    /// A ramp starting at its first step now.
    pub(crate) fn start() -> RampState {
        RampState {
            step: 0,
            phase: Phase::Ramping,
            last_decision: "started at the first step".to_string(),
            last_decision_at: unix_now(),
            step_started: Instant::now(),
        }
    }

    /// The candidate's weight (percent of traffic) this state puts in force.
    pub(crate) fn weight(&self, cfg: &Ramp) -> u32 {
        match self.phase {
            Phase::RolledBack => 0,
            _ => cfg
                .steps
                .get(self.step.min(cfg.steps.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0),
        }
    }

    fn decided(&mut self, what: String) {
        log::info!("ramp: {what}");
        self.last_decision = what;
        self.last_decision_at = unix_now();
    }

    /// Act on a decision; `true` when the weights change.
    pub(crate) fn apply(&mut self, cfg: &Ramp, decision: Decision, route: &str) -> bool {
        match decision {
            Decision::Hold => false,
            Decision::Advance => {
                self.step += 1;
                self.step_started = Instant::now();
                let weight = self.weight(cfg);
                if self.step + 1 >= cfg.steps.len() {
                    self.phase = Phase::Done;
                    self.decided(format!(
                        "route {route}: every criterion passed; advanced to the last step ({weight}%): done"
                    ));
                } else {
                    self.decided(format!(
                        "route {route}: every criterion passed; advanced to {weight}%"
                    ));
                }
                true
            }
            Decision::RollBack(why) => {
                self.phase = Phase::RolledBack;
                self.decided(format!("route {route}: rolled back to 0%: {why}"));
                true
            }
            Decision::Pause(why) => {
                self.phase = Phase::Paused;
                self.decided(format!(
                    "route {route}: paused at {}%: {why}",
                    self.weight(cfg)
                ));
                false
            }
        }
    }

    /// A manual weight change through the API: the ramp stops until resumed.
    pub(crate) fn pause_for_manual_change(&mut self, cfg: &Ramp, route: &str) {
        if matches!(self.phase, Phase::Ramping) {
            self.apply(
                cfg,
                Decision::Pause("the weights were changed through the API".to_string()),
                route,
            );
        }
    }

    /// `POST /api/routes/ROUTE/ramp/resume`: judge the current step again, from now.
    pub(crate) fn resume(&mut self, route: &str) {
        self.phase = Phase::Ramping;
        self.step_started = Instant::now();
        self.decided(format!("route {route}: resumed"));
    }

    pub(crate) fn status(&self, cfg: &Ramp) -> RampStatus {
        RampStatus {
            state: match self.phase {
                Phase::Ramping => "ramping",
                Phase::Paused => "paused",
                Phase::RolledBack => "rolled_back",
                Phase::Done => "done",
            }
            .to_string(),
            weight: self.weight(cfg),
            step: self.step,
            steps: cfg.steps.clone(),
            last_decision: self.last_decision.clone(),
            last_decision_at: humantime::format_rfc3339_millis(
                SystemTime::UNIX_EPOCH + Duration::from_secs_f64(self.last_decision_at.max(0.0)),
            )
            .to_string(),
        }
    }
}

/// What the route's verdict says the ramp should do after `at_step` at its current step.
pub(crate) fn decide(
    cfg: &Ramp,
    state: &RampState,
    verdict: Verdict,
    why: &str,
    at_step: Duration,
) -> Decision {
    if state.phase != Phase::Ramping {
        return Decision::Hold;
    }
    match verdict {
        Verdict::Fail => match cfg.on_fail {
            OnFail::Rollback => Decision::RollBack(why.to_string()),
            OnFail::Pause => Decision::Pause(why.to_string()),
        },
        Verdict::Pass if at_step >= cfg.min_interval => Decision::Advance,
        Verdict::Inconclusive if at_step >= cfg.max_hold => Decision::RollBack(format!(
            "still inconclusive after max_hold ({}): {why}",
            humantime::format_duration(cfg.max_hold)
        )),
        _ => Decision::Hold,
    }
}

/// Every route's ramp state, by route name, and where it is kept.
#[derive(Debug, Default)]
pub(crate) struct Ramps {
    pub states: BTreeMap<String, RampState>,
    file: Option<PathBuf>,
}

impl Ramps {
    /// The ramps kept in `file` (none when there is no file, or it cannot be read: said in the
    /// log, and every ramp starts at its first step).
    pub(crate) fn load(file: Option<PathBuf>) -> Ramps {
        let states = file
            .as_deref()
            .and_then(|path| match std::fs::read_to_string(path) {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(states) => Some(states),
                    Err(e) => {
                        log::error!(
                            "ramp state {}: {e}; starting every ramp over",
                            path.display()
                        );
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    log::error!(
                        "ramp state {}: {e}; starting every ramp over",
                        path.display()
                    );
                    None
                }
            })
            .unwrap_or_default();
        Ramps { states, file }
    }

    /// Write the state file (to a temporary file renamed over it, so a crash never leaves half
    /// a file); a failure is logged, the ramps go on.
    pub(crate) fn save(&self) {
        let Some(path) = &self.file else { return };
        if let Err(e) = write_atomically(path, &self.states) {
            log::error!("ramp state {}: cannot write: {e}", path.display());
        }
    }
}

fn write_atomically(path: &Path, states: &BTreeMap<String, RampState>) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(states).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Ramp {
        Ramp {
            steps: vec![1, 5, 50, 100],
            min_interval: Duration::from_secs(60),
            max_hold: Duration::from_secs(600),
            on_fail: OnFail::Rollback,
        }
    }

    #[test]
    fn decisions_follow_the_verdict_and_the_clocks() {
        let (c, s) = (cfg(), RampState::start());
        let at = Duration::from_secs;
        assert_eq!(decide(&c, &s, Verdict::Pass, "", at(59)), Decision::Hold);
        assert_eq!(decide(&c, &s, Verdict::Pass, "", at(60)), Decision::Advance);
        assert_eq!(
            decide(&c, &s, Verdict::Inconclusive, "", at(599)),
            Decision::Hold
        );
        assert!(matches!(
            decide(&c, &s, Verdict::Inconclusive, "open", at(600)),
            Decision::RollBack(why) if why.contains("max_hold (10m)") && why.ends_with("open")
        ));
        assert_eq!(
            decide(&c, &s, Verdict::Fail, "p99", at(1)),
            Decision::RollBack("p99".into())
        );
        let pausing = Ramp {
            on_fail: OnFail::Pause,
            ..cfg()
        };
        assert_eq!(
            decide(&pausing, &s, Verdict::Fail, "p99", at(1)),
            Decision::Pause("p99".into())
        );
    }

    #[test]
    fn a_ramp_climbs_its_steps_and_stays_where_it_is_put() {
        let c = cfg();
        let mut s = RampState::start();
        assert_eq!(s.weight(&c), 1);
        assert!(s.apply(&c, Decision::Advance, "api"));
        assert_eq!((s.weight(&c), s.phase), (5, Phase::Ramping));
        s.pause_for_manual_change(&c, "api");
        assert_eq!(s.phase, Phase::Paused);
        assert_eq!(
            decide(&c, &s, Verdict::Pass, "", Duration::from_secs(999)),
            Decision::Hold
        );
        s.resume("api");
        assert!(s.apply(&c, Decision::Advance, "api"));
        assert!(s.apply(&c, Decision::Advance, "api"));
        assert_eq!((s.weight(&c), s.phase), (100, Phase::Done));
        let mut back = RampState::start();
        back.apply(&c, Decision::RollBack("error_rate".into()), "api");
        assert_eq!((back.weight(&c), back.phase), (0, Phase::RolledBack));
        assert!(back
            .last_decision
            .ends_with("rolled back to 0%: error_rate"));
    }

    #[test]
    fn the_state_file_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ramp.json");
        let mut ramps = Ramps::load(Some(path.clone()));
        assert!(ramps.states.is_empty());
        let mut s = RampState::start();
        s.apply(&cfg(), Decision::RollBack("p99".into()), "api");
        ramps.states.insert("api".into(), s);
        ramps.save();
        let again = Ramps::load(Some(path.clone()));
        let s = &again.states["api"];
        assert_eq!((s.phase, s.weight(&cfg())), (Phase::RolledBack, 0));
        std::fs::write(&path, "not json").expect("write");
        assert!(Ramps::load(Some(path)).states.is_empty());
    }
}
