//! The confidence sequences: exact cases, then simulations of the decisions verdicts take,
//! looked at every 100 samples up to 20,000 as people and the ramp do: the false-decision
//! rates stay within α (plus three binomial standard errors of the simulation), a
//! fixed-sample interval recomputed at every look does not (proving the harness can tell), and
//! real differences are found.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::*;

const ALPHA: f64 = 0.05;
const LOOK_EVERY: u64 = 100;
const MAX_N: u64 = 20_000;
const SIGMA: f64 = 0.5;

#[test]
fn bernoulli_intervals_hold_the_mean_and_narrow() {
    assert_eq!(bernoulli(0, 0, ALPHA), Interval { lo: 0.0, hi: 1.0 });
    let small = bernoulli(5, 10, ALPHA);
    let large = bernoulli(5_000, 10_000, ALPHA);
    assert!(small.lo < 0.5 && 0.5 < small.hi, "{small:?}");
    assert!(large.lo < 0.5 && 0.5 < large.hi, "{large:?}");
    assert!(large.hi - large.lo < small.hi - small.lo);
    assert!(large.hi - large.lo < 0.06, "{large:?}");
    // All or nothing: one end at the edge.
    assert_eq!(bernoulli(0, 100, ALPHA).lo, 0.0);
    assert_eq!(bernoulli(100, 100, ALPHA).hi, 1.0);
    // Variance-adaptive: 1% errors are bounded far tighter than 50%.
    let rare = bernoulli(100, 10_000, ALPHA);
    assert!(rare.hi - rare.lo < 0.01, "{rare:?}");
    assert_eq!(above(5_000, 10_000, 0.5, ALPHA), None);
    assert_eq!(above(6_000, 10_000, 0.5, ALPHA), Some(true));
    assert_eq!(above(4_000, 10_000, 0.5, ALPHA), Some(false));
    assert_eq!(above(0, 0, 0.5, ALPHA), None);
}

#[test]
fn quantile_intervals_bracket_the_quantile_and_say_when_they_cannot_bound_it() {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    for v in 1..=10_000u64 {
        h.record(v * 100).expect("record");
    }
    let p50 = quantile(&h, 0.5, ALPHA).expect("some data");
    assert!(p50.lo <= 500_000.0 && 500_000.0 <= p50.hi, "{p50:?}");
    assert!(p50.hi / p50.lo < 1.1, "{p50:?}");
    let p99 = quantile(&h, 0.99, ALPHA).expect("some data");
    assert!(p99.lo <= 990_000.0 && 990_000.0 <= p99.hi, "{p99:?}");
    // A hundred values cannot bound a p99 from above.
    let mut few = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    for v in 1..=100u64 {
        few.record(v).expect("record");
    }
    assert_eq!(
        quantile(&few, 0.99, ALPHA).map(|i| i.hi),
        Some(f64::INFINITY)
    );
    let empty = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("histogram");
    assert_eq!(quantile(&empty, 0.5, ALPHA), None);
}

#[test]
fn ratios_and_differences_combine_conservatively() {
    let r = ratio(Interval { lo: 2.0, hi: 4.0 }, Interval { lo: 1.0, hi: 2.0 });
    assert_eq!(r, Interval { lo: 1.0, hi: 4.0 });
    let open = ratio(
        Interval {
            lo: 2.0,
            hi: f64::INFINITY,
        },
        Interval {
            lo: 0.0,
            hi: f64::INFINITY,
        },
    );
    assert_eq!(
        open,
        Interval {
            lo: 0.0,
            hi: f64::INFINITY
        }
    );
    let d = difference(300, 10_000, 100, 10_000, ALPHA);
    assert!(d.lo > 0.005 && d.hi < 0.04, "{d:?}");
}

/// One simulated paired run: per request, baseline and candidate latencies are lognormal
/// (σ = 0.5), the candidate's median `effect` times the baseline's. The criterion is
/// `latency_p50: { max_ratio: margin }` on the median of per-request ratios: success =
/// ratio ≤ margin; pass when the success rate is confidently above ½, fail when below.
/// Returns the first decision taken at a look (every 100 pairs, up to 20,000), if any.
fn paired_run(seed: u64, effect: f64, margin: f64, decide: Decide) -> Option<bool> {
    let mut rng = StdRng::seed_from_u64(seed);
    let z = Normal::new(0.0, SIGMA).expect("normal");
    let mut below = 0u64;
    for n in 1..=MAX_N {
        let (base, cand) = (z.sample(&mut rng), z.sample(&mut rng) + effect.ln());
        if (cand - base) <= margin.ln() {
            below += 1;
        }
        if n % LOOK_EVERY == 0 {
            if let Some(d) = decide(below, n) {
                return Some(d);
            }
        }
    }
    None
}

/// A decision at a look: `Some(true)` pass, `Some(false)` fail.
type Decide = fn(u64, u64) -> Option<bool>;

/// The verdicts' decision: the confidence sequence for P(ratio ≤ margin) against ½.
fn anytime(below: u64, n: u64) -> Option<bool> {
    above(below, n, 0.5, ALPHA)
}

/// A fixed-sample 95% interval (normal approximation), recomputed at every look: what a
/// naive dashboard does, and what anytime validity protects against.
fn fixed_sample(below: u64, n: u64) -> Option<bool> {
    let p = below as f64 / n as f64;
    let half = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
    if p - half > 0.5 {
        Some(true)
    } else if p + half < 0.5 {
        Some(false)
    } else {
        None
    }
}

/// α plus three binomial standard errors of a simulation of `runs` runs.
fn allowed(runs: u64) -> f64 {
    ALPHA + 3.0 * (ALPHA * (1.0 - ALPHA) / runs as f64).sqrt()
}

fn share(runs: u64, mut hit: impl FnMut(u64) -> bool) -> f64 {
    (0..runs).filter(|seed| hit(*seed)).count() as f64 / runs as f64
}

#[test]
fn at_the_margin_a_candidate_is_almost_never_passed_while_watched() {
    let runs = 1_000;
    let passed = share(runs, |seed| {
        paired_run(seed, 1.05, 1.05, anytime) == Some(true)
    });
    eprintln!(
        "at the margin: P(ever pass) = {passed} (allowed {})",
        allowed(runs)
    );
    assert!(passed <= allowed(runs), "P(ever pass) = {passed}");
}

#[test]
fn an_a_a_test_with_zero_margin_is_almost_never_failed_while_watched() {
    let runs = 1_000;
    let failed = share(runs, |seed| {
        paired_run(10_000 + seed, 1.0, 1.0, anytime) == Some(false)
    });
    eprintln!("A/A: P(ever fail) = {failed} (allowed {})", allowed(runs));
    assert!(failed <= allowed(runs), "P(ever fail) = {failed}");
}

#[test]
fn a_fixed_sample_interval_recomputed_at_every_look_is_not_valid() {
    // The negative control: the same harness, a naive interval; it passes a candidate that
    // sits exactly at the margin far more often than α.
    let runs = 1_000;
    let passed = share(runs, |seed| {
        paired_run(seed, 1.05, 1.05, fixed_sample) == Some(true)
    });
    eprintln!("fixed-sample at the margin: P(ever pass) = {passed}");
    assert!(passed > allowed(runs), "P(ever pass) = {passed} only");
}

#[test]
fn real_differences_are_found_within_20000_pairs() {
    let seeds = 200;
    let slower_fails = share(seeds, |seed| {
        paired_run(20_000 + seed, 1.2, 1.05, anytime) == Some(false)
    });
    eprintln!("20% slower: failed in {slower_fails}");
    assert!(slower_fails >= 0.9, "20% slower failed in {slower_fails}");
    let faster_passes = share(seeds, |seed| {
        paired_run(30_000 + seed, 0.8, 1.05, anytime) == Some(true)
    });
    eprintln!("20% faster: passed in {faster_passes}");
    assert!(faster_passes >= 0.9, "20% faster passed in {faster_passes}");
}

#[test]
fn a_tripled_error_rate_fails_a_half_point_margin_within_20000_pairs() {
    // Paired errors (mirrored): baseline 1%, candidate 3%, independent; the criterion fails
    // when the lower bound of (candidate − baseline) is above 0.5 percentage points.
    let seeds = 200;
    let failed = share(seeds, |seed| {
        let mut rng = StdRng::seed_from_u64(40_000 + seed);
        let (mut up, mut down) = (0u64, 0u64);
        for n in 1..=MAX_N {
            let base = rng.random::<f64>() < 0.01;
            let cand = rng.random::<f64>() < 0.03;
            up += u64::from(cand && !base);
            down += u64::from(base && !cand);
            if n % LOOK_EVERY == 0 && difference(up, n, down, n, ALPHA).lo > 0.005 {
                return true;
            }
        }
        false
    });
    eprintln!("errors 1% vs 3%: failed in {failed}");
    assert!(failed >= 0.9, "failed in {failed}");
}
