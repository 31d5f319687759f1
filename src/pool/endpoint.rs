//! One address of a backend and what runoff knows of it: requests under way, its active health
//! check streaks, and its passive outlier state (failures in a row, ejected until when, how
//! many times). Pure state and rules on atomics, with time passed in, so they test without
//! a clock or a network.
//!
//! Must not: do I/O, take a lock, or decide which address a request goes to (`Pool::pick`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use pingora::upstreams::peer::HttpPeer;

use crate::config::{HealthCheck, Outlier};

/// Milliseconds on a process-wide clock (never 0: 0 means "not ejected").
pub(crate) fn clock_ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| Instant::now() - Duration::from_millis(1));
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Where an address stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Healthy,
    /// Out of rotation for a backoff (passive outlier ejection).
    Ejected,
    /// Failing its active health checks.
    Unhealthy,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Ejected => "ejected",
            State::Unhealthy => "unhealthy",
        }
    }
}

/// What one attempt on an address came to, for outlier ejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// No answer: refused, timed out, reset, closed before a response.
    Failed,
    /// An answer with this status.
    Answered(u16),
}

/// What runoff knows of an address; kept across reloads and re-resolutions while the address
/// stays in the backend.
#[derive(Debug)]
pub(crate) struct Health {
    /// Active checks: passing (an address starts so; with no checks it stays so).
    up: AtomicBool,
    passes: AtomicU32,
    fails: AtomicU32,
    /// A check of this address is under way (checks never overlap).
    pub(super) checking: AtomicBool,
    errors_in_row: AtomicU32,
    fives_in_row: AtomicU32,
    /// `clock_ms` until which the address is ejected; 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections since it last answered well after returning (the backoff's exponent).
    ejections: AtomicU32,
    /// Requests sent to it, and the ones that failed (for `GET /api/backends`).
    pub(super) attempts: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) in_flight: AtomicUsize,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            up: AtomicBool::new(true),
            passes: AtomicU32::new(0),
            fails: AtomicU32::new(0),
            checking: AtomicBool::new(false),
            errors_in_row: AtomicU32::new(0),
            fives_in_row: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }
}

impl Health {
    pub(crate) fn state(&self, now: Instant) -> State {
        if !self.up.load(Ordering::Acquire) {
            State::Unhealthy
        } else if self.ejected_at(now) {
            State::Ejected
        } else {
            State::Healthy
        }
    }

    /// In rotation: passing its checks and not ejected.
    pub(crate) fn available(&self, now: impl FnOnce() -> Instant) -> bool {
        if !self.up.load(Ordering::Acquire) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Acquire);
        until == 0 || until <= clock_ms(now())
    }

    fn ejected_at(&self, now: Instant) -> bool {
        let until = self.ejected_until.load(Ordering::Acquire);
        until != 0 && until > clock_ms(now)
    }

    /// Ejected until when (`None`: not ejected now).
    pub(crate) fn ejected_for(&self, now: Instant) -> Option<Duration> {
        let until = self.ejected_until.load(Ordering::Acquire);
        let now = clock_ms(now);
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Record an attempt's outcome. `now` is asked only when the outcome needs the time (an
    /// ordinary answer does not); `may_eject`: whether the backend's cap allows one more
    /// ejection now. Returns the backoff when this attempt ejected the address.
    pub(crate) fn report(
        &self,
        attempt: Attempt,
        rules: &Outlier,
        now: impl Fn() -> Instant,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Duration> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let tripped = match attempt {
            Attempt::Failed => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let n = self.errors_in_row.fetch_add(1, Ordering::AcqRel) + 1;
                rules.consecutive_errors > 0 && n >= rules.consecutive_errors
            }
            Attempt::Answered(status) => {
                self.errors_in_row.store(0, Ordering::Release);
                if status >= 500 {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    let n = self.fives_in_row.fetch_add(1, Ordering::AcqRel) + 1;
                    rules.consecutive_5xx > 0 && n >= rules.consecutive_5xx
                } else {
                    self.fives_in_row.store(0, Ordering::Release);
                    // Answered well after returning: the next ejection starts from the base.
                    if self.ejections.load(Ordering::Acquire) != 0 && !self.ejected_at(now()) {
                        self.ejections.store(0, Ordering::Release);
                    }
                    false
                }
            }
        };
        if !tripped {
            return None;
        }
        let now = now();
        if self.ejected_at(now) || !may_eject() {
            return None;
        }
        let n = self.ejections.fetch_add(1, Ordering::AcqRel).min(16);
        let backoff = rules
            .base_ejection
            .saturating_mul(1u32 << n)
            .min(rules.max_ejection);
        let until = clock_ms(now + backoff);
        // Only one of several failing attempts racing here ejects the address.
        let swapped = self
            .ejected_until
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                (cur == 0 || cur <= clock_ms(now)).then_some(until)
            })
            .is_ok();
        if !swapped {
            return None;
        }
        self.errors_in_row.store(0, Ordering::Release);
        self.fives_in_row.store(0, Ordering::Release);
        Some(backoff)
    }

    /// Record an active check's result; returns the new state of `up` when it changed. A pass
    /// also ends a passive ejection (Envoy's `successful_active_health_check_uneject_host`).
    pub(crate) fn checked(&self, pass: bool, check: &HealthCheck) -> Option<bool> {
        if pass {
            self.fails.store(0, Ordering::Release);
            self.ejected_until.store(0, Ordering::Release);
            let n = self.passes.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= check.healthy_after && !self.up.swap(true, Ordering::AcqRel) {
                return Some(true);
            }
        } else {
            self.passes.store(0, Ordering::Release);
            let n = self.fails.fetch_add(1, Ordering::AcqRel) + 1;
            if n >= check.unhealthy_after && self.up.swap(false, Ordering::AcqRel) {
                return Some(false);
            }
        }
        None
    }

    /// Active checks were turned off: the address is judged by passive ejection alone.
    pub(crate) fn checks_off(&self) {
        self.up.store(true, Ordering::Release);
        self.passes.store(0, Ordering::Release);
        self.fails.store(0, Ordering::Release);
    }
}

/// One address of a backend, with the Pingora peer that reaches it.
pub(crate) struct Endpoint {
    pub addr: SocketAddr,
    pub peer: HttpPeer,
    /// The entry it came from, as written (its Host for health checks).
    pub entry: String,
    pub health: Arc<Health>,
}

/// One address chosen for one attempt; counts as under way on it until dropped.
pub(crate) struct Picked(pub(crate) Arc<Endpoint>);

impl Picked {
    pub(crate) fn new(e: &Arc<Endpoint>) -> Picked {
        e.health.in_flight.fetch_add(1, Ordering::AcqRel);
        Picked(Arc::clone(e))
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.0.addr
    }
}

impl Drop for Picked {
    fn drop(&mut self) {
        self.0.health.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(errors: u32, fives: u32) -> Outlier {
        Outlier {
            consecutive_errors: errors,
            consecutive_5xx: fives,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(35),
            max_ejected_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_with_a_growing_capped_backoff() {
        let h = Health::default();
        let r = rules(3, 0);
        let t0 = Instant::now();
        assert_eq!(h.report(Attempt::Failed, &r, || t0, || true), None);
        assert_eq!(h.report(Attempt::Failed, &r, || t0, || true), None);
        assert_eq!(
            h.report(Attempt::Failed, &r, || t0, || true),
            Some(Duration::from_secs(10))
        );
        assert_eq!(h.state(t0), State::Ejected);
        assert!(!h.available(|| t0));
        // Back after the backoff; failing again at once doubles it, then the cap holds.
        let t1 = t0 + Duration::from_secs(11);
        assert!(h.available(|| t1));
        for _ in 0..2 {
            assert_eq!(h.report(Attempt::Failed, &r, || t1, || true), None);
        }
        assert_eq!(
            h.report(Attempt::Failed, &r, || t1, || true),
            Some(Duration::from_secs(20))
        );
        let t2 = t1 + Duration::from_secs(21);
        for _ in 0..2 {
            h.report(Attempt::Failed, &r, || t2, || true);
        }
        assert_eq!(
            h.report(Attempt::Failed, &r, || t2, || true),
            Some(Duration::from_secs(35))
        );
        // Answering well after returning resets the exponent.
        let t3 = t2 + Duration::from_secs(36);
        h.report(Attempt::Answered(200), &r, || t3, || true);
        for _ in 0..2 {
            h.report(Attempt::Failed, &r, || t3, || true);
        }
        assert_eq!(
            h.report(Attempt::Failed, &r, || t3, || true),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn a_success_breaks_the_run_and_5xx_count_only_when_asked() {
        let h = Health::default();
        let t = Instant::now();
        let r = rules(2, 0);
        h.report(Attempt::Failed, &r, || t, || true);
        h.report(Attempt::Answered(204), &r, || t, || true);
        assert_eq!(h.report(Attempt::Failed, &r, || t, || true), None);
        for _ in 0..10 {
            assert_eq!(h.report(Attempt::Answered(500), &r, || t, || true), None);
        }
        let h = Health::default();
        let r = rules(0, 2);
        assert_eq!(h.report(Attempt::Answered(503), &r, || t, || true), None);
        assert!(h
            .report(Attempt::Answered(503), &r, || t, || true)
            .is_some());
    }

    #[test]
    fn the_cap_can_refuse_an_ejection() {
        let h = Health::default();
        let t = Instant::now();
        let r = rules(1, 0);
        assert_eq!(h.report(Attempt::Failed, &r, || t, || false), None);
        assert_eq!(h.state(t), State::Healthy);
    }

    #[test]
    fn checks_need_their_streaks_and_a_pass_ends_an_ejection() {
        let check = HealthCheck {
            path: "/".into(),
            host: None,
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_after: 2,
            unhealthy_after: 3,
            expect_status: vec![(200, 399)],
        };
        let h = Health::default();
        let t = Instant::now();
        assert_eq!(h.checked(false, &check), None);
        assert_eq!(h.checked(false, &check), None);
        assert_eq!(h.checked(false, &check), Some(false));
        assert_eq!(h.state(t), State::Unhealthy);
        assert_eq!(h.checked(true, &check), None);
        assert_eq!(h.checked(false, &check), None);
        assert_eq!(h.checked(true, &check), None);
        assert_eq!(h.checked(true, &check), Some(true));
        assert_eq!(h.state(t), State::Healthy);
        h.report(Attempt::Failed, &rules(1, 0), || t, || true);
        assert_eq!(h.state(t), State::Ejected);
        h.checked(true, &check);
        assert_eq!(h.state(t), State::Healthy);
    }
}
