//! The recorders the request path is handed: exact latencies per (route, backend, role) and
//! per-request shadow/primary ratios, over a sliding window and since start.
//!
//! Lives here: HDR histograms (microsecond resolution, 3 significant digits) in 10-second
//! slots, and the [`Book`] that keeps every recorder across reloads. Only the slot being
//! filled is a histogram (32-bit counts, grown as far as its largest value: 8 KiB under 2 ms,
//! 32 KiB under 130 ms); a closed slot keeps just its recorded buckets, packed (a few KiB).
//! Laid out for an hour, each slot cost 188 KiB: ~80 MiB of RSS growth over bench/soak.sh's
//! first 10 minutes for one route. A recorder keeps one such set per core ([`Shards`]): a value
//! goes to the set of the core recording it, under that set's own lock; a reader adds the sets
//! up (a value lands in the same bucket whichever set holds it, so the sum is exact). Must not:
//! allocate per request (recorders are resolved when a config loads), hold a lock for longer
//! than one histogram update, take more than one set's lock to record, or know who records (the
//! proxy and the mirror are handed recorders; this module imports neither).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::model::{Quantiles, Stats};
use super::shards::Shards;
use super::tally::Tally;
use crate::metrics::{Direction, Role};

/// Length of one slot of the sliding window.
const SLOT: Duration = Duration::from_secs(10);
/// Slots kept: the longest window a summary can cover is `SLOTS × SLOT` (10 minutes).
const SLOTS: usize = 60;
/// Largest recordable value: an hour in microseconds (larger values are clamped).
const MAX_VALUE: u64 = 3_600_000_000;

fn histogram() -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_VALUE, 3).ok()
}

/// A slot's histogram: same precision, 32-bit counts (a slot holds 10 seconds), resized as
/// larger values arrive.
fn slot_histogram() -> Option<Histogram<u32>> {
    Histogram::new(3).ok()
}

struct Slot {
    index: u64,
    counts: Counts,
    errors: u64,
}

/// A slot's values.
enum Counts {
    /// The slot being filled.
    Open(Histogram<u32>),
    /// A closed slot: each recorded bucket as LEB128 varints (its value's increase over the
    /// previous bucket's, then its count), in increasing order.
    Packed(Vec<u8>),
}

impl Counts {
    fn close(&mut self) {
        if let Counts::Open(h) = self {
            let mut out = Vec::new();
            let mut last = 0;
            for v in h.iter_recorded() {
                let value = v.value_iterated_to();
                put_varint(&mut out, value - last);
                put_varint(&mut out, u64::from(v.count_at_value()));
                last = value;
            }
            out.shrink_to_fit();
            *self = Counts::Packed(out);
        }
    }

    /// Add these values into `into` (the same precision: each lands in its own bucket).
    fn add_to(&self, into: &mut Histogram<u64>) {
        match self {
            Counts::Open(h) => {
                for v in h.iter_recorded() {
                    let _ = into.record_n(v.value_iterated_to(), u64::from(v.count_at_value()));
                }
            }
            Counts::Packed(bytes) => {
                let mut rest = bytes.as_slice();
                let mut value = 0u64;
                while let (Some(step), Some(n)) = (take_varint(&mut rest), take_varint(&mut rest)) {
                    value += step;
                    let _ = into.record_n(value, n);
                }
            }
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One core's share of a recorder.
struct Inner {
    /// Since start: grown as far as the largest value (an hour's worth of buckets only once
    /// an hour-long value came).
    total: Histogram<u64>,
    total_errors: u64,
    slots: VecDeque<Slot>,
}

/// Values (durations in µs, or scaled ratios) and error counts, windowed.
pub struct Recorder {
    started: Instant,
    shards: Shards<Option<Inner>>,
}

impl Recorder {
    pub fn new(started: Instant) -> Recorder {
        let inner = || {
            Histogram::new(3).ok().map(|total| Inner {
                total,
                total_errors: 0,
                slots: VecDeque::with_capacity(SLOTS),
            })
        };
        Recorder {
            started,
            shards: Shards::new(inner),
        }
    }

    fn slot_index(&self, now: Instant) -> u64 {
        now.duration_since(self.started).as_secs() / SLOT.as_secs()
    }

    /// Record one value (clamped to 1 ..= an hour's worth of µs).
    pub fn record(&self, value: u64, error: bool) {
        self.add(value, 1, error);
    }

    /// Count `n` events (messages) that have no value of their own: only their number and
    /// rate are read back, through [`Recorder::counts`].
    pub fn record_count(&self, n: u64) {
        self.add(1, n, false);
    }

    fn add(&self, value: u64, n: u64, error: bool) {
        let index = self.slot_index(Instant::now());
        self.shards.with(|inner| {
            if let Some(inner) = inner.as_mut() {
                inner.add(index, value, n, error);
            }
        });
    }

    /// Record one shadow ÷ primary ratio (kept × [`RATIO_SCALE`]).
    pub fn record_ratio(&self, ratio: f64) {
        self.record((ratio * RATIO_SCALE) as u64, false);
    }

    pub fn record_duration(&self, d: Duration, error: bool) {
        self.record(d.as_micros().min(u128::from(MAX_VALUE)) as u64, error);
    }

    /// The histogram and error count of the last `window` (whole slots), and since start,
    /// every core's share added up.
    fn collect(&self, window: Duration) -> Option<(Histogram<u64>, u64, Histogram<u64>, u64)> {
        let now = self.slot_index(Instant::now());
        let slots = window.as_secs().div_ceil(SLOT.as_secs()).max(1);
        let mut hist = histogram()?;
        let mut total = histogram()?;
        let (mut errors, mut total_errors) = (0, 0);
        self.shards.each(|inner| {
            let Some(inner) = inner else { return };
            for s in inner.slots.iter().filter(|s| s.index + slots > now) {
                s.counts.add_to(&mut hist);
                errors += s.errors;
            }
            let _ = total.add(&inner.total);
            total_errors += inner.total_errors;
        });
        Some((hist, errors, total, total_errors))
    }

    /// Each slot of the last `window` that holds values, oldest first: its start (seconds
    /// before now), how many values and errors, and its median and p99 divided by `scale`
    /// (1000 for µs in ms, [`RATIO_SCALE`] for ratios).
    pub fn history(&self, window: Duration, scale: f64) -> Vec<SlotFigures> {
        let now = Instant::now();
        let current = self.slot_index(now);
        let slots = window.as_secs().div_ceil(SLOT.as_secs()).max(1);
        let since = now.duration_since(self.started).as_secs();
        let Ok(empty) = Histogram::<u64>::new(3) else {
            return Vec::new();
        };
        // Each slot's values and errors over every core's share, by slot.
        let mut by_slot: BTreeMap<u64, (Histogram<u64>, u64)> = BTreeMap::new();
        self.shards.each(|inner| {
            let Some(inner) = inner else { return };
            for s in inner.slots.iter().filter(|s| s.index + slots > current) {
                let (h, errors) = by_slot.entry(s.index).or_insert_with(|| (empty.clone(), 0));
                s.counts.add_to(h);
                *errors += s.errors;
            }
        });
        by_slot
            .into_iter()
            .map(|(index, (h, errors))| {
                let q = |p: f64| (!h.is_empty()).then(|| h.value_at_quantile(p) as f64 / scale);
                SlotFigures {
                    ago_secs: since.saturating_sub(index * SLOT.as_secs()),
                    values: h.len(),
                    errors,
                    p50: q(0.5),
                    p99: q(0.99),
                }
            })
            .collect()
    }

    /// How many ratios of the last `window` fall at or under each of `edges` (and above the
    /// previous one); the last count is those above the last edge.
    pub fn ratio_bins(&self, window: Duration, edges: &[f64]) -> Vec<u64> {
        let Some((h, _, _, _)) = self.collect(window) else {
            return vec![0; edges.len() + 1];
        };
        let mut counts = Vec::with_capacity(edges.len() + 1);
        let mut below = 0;
        for edge in edges {
            let upto = (edge * RATIO_SCALE) as u64;
            let n = h.count_between(0, upto);
            counts.push(n.saturating_sub(below));
            below = n;
        }
        counts.push(h.len().saturating_sub(below));
        counts
    }

    /// Latency stats (values in µs) for the window and since start.
    pub fn stats(&self, window: Duration, window_secs: f64, uptime_secs: f64) -> (Stats, Stats) {
        let Some((w, we, t, te)) = self.collect(window) else {
            return (Stats::default(), Stats::default());
        };
        (stats(&w, we, window_secs), stats(&t, te, uptime_secs))
    }

    /// How many values, and how many of them errors, in the window and since start.
    pub fn counts(&self, window: Duration) -> ((u64, u64), (u64, u64)) {
        match self.collect(window) {
            Some((w, we, t, te)) => ((w.len(), we), (t.len(), te)),
            None => ((0, 0), (0, 0)),
        }
    }

    /// Quantiles of a ratio recorder (values are ratio × 1000), window and since start.
    pub fn ratio_quantiles(&self, window: Duration) -> (RatioQuantiles, RatioQuantiles) {
        let Some((w, _, t, _)) = self.collect(window) else {
            return ((0, None, None), (0, None, None));
        };
        let q = |h: &Histogram<u64>| {
            if h.is_empty() {
                (0, None, None)
            } else {
                (
                    h.len(),
                    Some(h.value_at_quantile(0.5) as f64 / RATIO_SCALE),
                    Some(h.value_at_quantile(0.9) as f64 / RATIO_SCALE),
                )
            }
        };
        (q(&w), q(&t))
    }
}

impl Inner {
    fn add(&mut self, index: u64, value: u64, n: u64, error: bool) {
        let v = value.clamp(1, MAX_VALUE);
        let _ = self.total.record_n(v, n);
        self.total_errors += u64::from(error);
        if self.slots.back().map(|s| s.index) != Some(index) {
            let Some(hist) = slot_histogram() else { return };
            if let Some(last) = self.slots.back_mut() {
                last.counts.close();
            }
            if self.slots.len() >= SLOTS {
                self.slots.pop_front();
            }
            self.slots.push_back(Slot {
                index,
                counts: Counts::Open(hist),
                errors: 0,
            });
        }
        if let Some(Slot {
            counts: Counts::Open(hist),
            errors,
            ..
        }) = self.slots.back_mut()
        {
            let _ = hist.record_n(v, u32::try_from(n).unwrap_or(u32::MAX));
            *errors += u64::from(error);
        }
    }
}

/// One slot of a recorder's history (see [`Recorder::history`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SlotFigures {
    /// The slot's start, in seconds before now.
    pub ago_secs: u64,
    pub values: u64,
    pub errors: u64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

/// Pairs counted, median and p90 of a ratio recorder over a period.
pub type RatioQuantiles = (u64, Option<f64>, Option<f64>);

/// Ratios are recorded × 1000 (0.001 resolution at 3 significant digits).
pub const RATIO_SCALE: f64 = 1000.0;

fn stats(h: &Histogram<u64>, errors: u64, secs: f64) -> Stats {
    let ms = |v: u64| v as f64 / 1000.0;
    Stats {
        requests: h.len(),
        errors,
        rps: if secs > 0.0 {
            h.len() as f64 / secs
        } else {
            0.0
        },
        latency_ms: (!h.is_empty()).then(|| Quantiles {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }),
        caller_latency_ms: None,
    }
}

/// What a recorder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Series {
    /// A leg's upstream-side latency: its own request starts going upstream (connect included)
    /// to the last response byte received. What the legs are compared on.
    Upstream(Role),
    /// The primary's caller-side latency (runoff saw the request start to the last byte sent
    /// to the caller), and the count and errors of every request the caller got an answer to.
    Caller,
    /// Shadow ÷ primary upstream latency of the same request (kept × [`RATIO_SCALE`]).
    Ratio,
    /// Copies sent to the shadow: the value is the shadow's copies under way once this one
    /// is, and an error marks a copy sent while the shadow ran far ahead of the primary.
    Copies,
    /// WebSocket message latency (µs): a client message relayed to the backend's next one.
    WsLatency(Role),
    /// WebSocket data messages one way (counts only).
    WsMessages(Role, Direction),
}

/// The key of a recorder: what it holds, the route, and the backend (empty for a route's own).
type Key = (Series, String, String);

/// Every recorder, by key, so they survive reloads; handed out when a snapshot is built.
pub struct Book {
    pub started: Instant,
    recorders: Mutex<HashMap<Key, Arc<Recorder>>>,
    /// Each route's verdict tally, by route name.
    tallies: Mutex<HashMap<String, Arc<Tally>>>,
    /// Open connections (WebSockets) per (route, backend, role), kept across reloads.
    connections: Mutex<HashMap<ConnectionKey, Arc<Connections>>>,
}

/// (route, backend, role) of a connection count.
pub type ConnectionKey = (String, String, Role);

/// Connections open now and at most, of one (route, backend, role).
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicI64,
    peak: AtomicI64,
    opened: AtomicU64,
}

impl Connections {
    /// One more is open.
    pub fn open(&self) {
        let now = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        self.opened.fetch_add(1, Ordering::AcqRel);
    }

    /// One fewer is open.
    pub fn close(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }

    /// Open now, the most ever open at once, and how many were ever opened.
    pub fn counts(&self) -> (i64, i64, u64) {
        (
            self.open.load(Ordering::Acquire).max(0),
            self.peak.load(Ordering::Acquire),
            self.opened.load(Ordering::Acquire),
        )
    }
}

impl Default for Book {
    fn default() -> Self {
        Book {
            started: Instant::now(),
            recorders: Mutex::new(HashMap::new()),
            tallies: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
        }
    }
}

impl Book {
    /// The recorder of `series` for (route, backend); `backend` is empty for a route's own
    /// series (`Ratio`, `Copies`).
    pub fn recorder(&self, series: Series, route: &str, backend: &str) -> Arc<Recorder> {
        let mut map = self.recorders.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((series, route.to_string(), backend.to_string()))
                .or_insert_with(|| Arc::new(Recorder::new(self.started))),
        )
    }

    /// The verdict tally of a route (counting from process start when new).
    pub fn tally(&self, route: &str) -> Arc<Tally> {
        let mut map = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry(route.to_string())
                .or_insert_with(|| Arc::new(Tally::new("process start"))),
        )
    }

    /// The open-connection counts of (route, backend, role).
    pub fn connections(&self, route: &str, backend: &str, role: Role) -> Arc<Connections> {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(
            map.entry((route.to_string(), backend.to_string(), role))
                .or_default(),
        )
    }

    /// Every (route, backend, role) that ever had a connection, with its counts.
    pub fn all_connections(&self) -> Vec<(ConnectionKey, (i64, i64, u64))> {
        let map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = map.iter().map(|(k, c)| (k.clone(), c.counts())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Connections open now to `backend`, over every route and role.
    pub fn open_to(&self, backend: &str) -> i64 {
        let map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .filter(|((_, b, _), _)| b == backend)
            .map(|(_, c)| c.counts().0)
            .sum()
    }

    /// The recorder if anything was ever recorded there.
    pub fn existing(&self, series: Series, route: &str, backend: &str) -> Option<Arc<Recorder>> {
        let map = self.recorders.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&(series, route.to_string(), backend.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_to_three_digits() {
        let r = Recorder::new(Instant::now());
        for ms in 1..=1000u64 {
            r.record(ms * 1000, ms % 100 == 0);
        }
        let (w, t) = r.stats(Duration::from_secs(60), 60.0, 100.0);
        assert_eq!(w.requests, 1000);
        assert_eq!(w.errors, 10);
        assert_eq!(t.requests, 1000);
        let q = w.latency_ms.expect("latency");
        assert!((q.p50 - 500.0).abs() <= 0.5, "{q:?}");
        assert!((q.p99 - 990.0).abs() <= 1.0, "{q:?}");
        assert!((q.max - 1000.0).abs() <= 1.0, "{q:?}");
        assert!((q.mean - 500.5).abs() <= 0.5, "{q:?}");
        assert!((w.rps - 1000.0 / 60.0).abs() < 1e-9);
        assert!((t.rps - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_reads_as_precisely_as_the_since_start_histogram() {
        let r = Recorder::new(Instant::now());
        let mut v = 1u64;
        while v < MAX_VALUE * 2 {
            r.record(v, false);
            r.record(v + 7, v.is_multiple_of(3));
            v = v * 3 / 2 + 1;
        }
        let (w, t) = r.stats(Duration::from_secs(60), 60.0, 60.0);
        assert_eq!((w.requests, w.errors), (t.requests, t.errors));
        assert_eq!(w.latency_ms, t.latency_ms);
        // A slot sized to small values is far smaller than one laid out for an hour.
        let small = slot_histogram().map(|mut h| {
            let _ = h.record(1_500);
            h.distinct_values()
        });
        let full = histogram().map(|h| h.distinct_values());
        assert!(
            small.zip(full).is_some_and(|(s, f)| s * 10 < f),
            "{small:?} {full:?}"
        );
    }

    #[test]
    fn a_closed_slot_packs_its_buckets_and_reads_back_the_same() {
        let mut open = slot_histogram().expect("histogram");
        for v in [1u64, 2, 2, 999, 1_000, 1_001, 65_432, 3_600_000_000] {
            let _ = open.record(v);
        }
        let _ = open.record_n(70_000, 5_000_000);
        let mut counts = Counts::Open(open.clone());
        let mut direct = histogram().expect("histogram");
        counts.add_to(&mut direct);
        counts.close();
        let Counts::Packed(bytes) = &counts else {
            panic!("not packed")
        };
        assert!(bytes.len() < 64, "{} bytes", bytes.len());
        let mut unpacked = histogram().expect("histogram");
        counts.add_to(&mut unpacked);
        assert_eq!(unpacked, direct);
        assert_eq!(unpacked.len(), open.len());
    }

    #[test]
    fn values_recorded_from_many_threads_read_back_as_from_one() {
        let started = Instant::now();
        let shared = Arc::new(Recorder::new(started));
        let alone = Recorder::new(started);
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let r = Arc::clone(&shared);
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        r.record(100 + t * 1000 + i, i % 50 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        for t in 0..4u64 {
            for i in 0..1000u64 {
                alone.record(100 + t * 1000 + i, i % 50 == 0);
            }
        }
        let window = Duration::from_secs(60);
        let (w, total) = shared.stats(window, 60.0, 60.0);
        assert_eq!((w.requests, w.errors), (4000, 80));
        assert_eq!((total.requests, total.errors), (4000, 80));
        assert_eq!((w, total), alone.stats(window, 60.0, 60.0));
        let sum = |h: Vec<SlotFigures>| {
            h.iter()
                .map(|s| (s.values, s.errors))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
        };
        assert_eq!(sum(shared.history(window, 1000.0)), (4000, 80));
    }

    #[test]
    fn history_has_one_entry_per_slot_and_ratio_bins_add_up() {
        let r = Recorder::new(Instant::now());
        for v in [500u64, 1_000, 2_000, 4_000] {
            r.record(v, v == 4_000);
        }
        let h = r.history(Duration::from_secs(600), 1000.0);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].values, h[0].errors), (4, 1));
        assert!(h[0].p50.is_some_and(|p| (p - 1.0).abs() < 0.01), "{h:?}");
        let ratios = Recorder::new(Instant::now());
        for v in [0.5, 0.9, 1.0, 1.1, 3.0] {
            ratios.record_ratio(v);
        }
        let bins = ratios.ratio_bins(Duration::from_secs(60), &[0.8, 1.0, 1.25]);
        assert_eq!(bins, vec![1, 2, 1, 1]);
    }

    #[test]
    fn an_empty_recorder_has_no_latency() {
        let r = Recorder::new(Instant::now());
        let (w, t) = r.stats(Duration::from_secs(60), 60.0, 1.0);
        assert_eq!(w.requests, 0);
        assert!(w.latency_ms.is_none() && t.latency_ms.is_none());
        assert_eq!(
            r.ratio_quantiles(Duration::from_secs(60)).0,
            (0, None, None)
        );
    }

    #[test]
    fn ratios_keep_three_digits() {
        let r = Recorder::new(Instant::now());
        for v in [0.25, 0.5, 0.5, 2.0] {
            r.record((v * RATIO_SCALE) as u64, false);
        }
        let ((n, p50, _), _) = r.ratio_quantiles(Duration::from_secs(60));
        assert_eq!(n, 4);
        assert_eq!(p50, Some(0.5));
    }
}
