//! Anytime-valid confidence sequences: intervals that hold simultaneously at every sample size,
//! so a verdict read continuously (by people, by the ramp) keeps its error rate.
//!
//! The one construction used throughout is Robbins' beta-binomial mixture for a Bernoulli mean
//! (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric,
//! nonasymptotic confidence sequences", section 3): for each candidate mean μ the mixture of
//! likelihood ratios M_n(μ) = B(a + S, b + n − S) / B(a, b) / (μ^S (1 − μ)^(n − S)) is a
//! nonnegative martingale under μ, so by Ville's inequality {μ : M_n(μ) < 1/α} covers the true
//! mean at every n with probability at least 1 − α. It adapts to the variance (tight near 0
//! and 1, where error rates and the tails of latency live) and each update is a count.
//! Quantiles follow Howard & Ramdas (2022, "Sequential estimation of quantiles with
//! applications to A/B-testing and best-arm identification"): the q-quantile x* makes
//! 1[X ≤ x*] a Bernoulli(q) sequence, so the x whose empirical count passes the same test form
//! a confidence sequence for it.
//!
//! Lives here: pure functions of counts and histograms. Must not: do I/O, read clocks, or
//! know about routes.

use hdrhistogram::Histogram;
use statrs::function::beta::ln_beta;

/// The mixture's Beta(a, b) prior (Jeffreys').
const PRIOR: (f64, f64) = (0.5, 0.5);

/// Bisection steps: the interval ends are found to about 1e-12 of [0, 1] (2^-40).
const STEPS: usize = 40;

/// A closed interval; `hi` may be `f64::INFINITY` (unbounded above).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

/// ln M_n(μ) after `s` successes in `n` trials.
fn log_mixture(s: u64, n: u64, mu: f64) -> f64 {
    let (a, b) = PRIOR;
    let (s, f) = (s as f64, (n - s.min(n)) as f64);
    let lr = |k: f64, p: f64| if k == 0.0 { 0.0 } else { k * p.ln() };
    ln_beta(a + s, b + f) - ln_beta(a, b) - lr(s, mu) - lr(f, 1.0 - mu)
}

/// Whether μ stays in the confidence sequence after `s` successes in `n` trials at level α.
fn plausible(s: u64, n: u64, mu: f64, alpha: f64) -> bool {
    log_mixture(s, n, mu) < (1.0 / alpha).ln()
}

/// The confidence sequence for a Bernoulli mean after `s` successes in `n` trials, at level
/// α (the true mean lies in it at every n, simultaneously, with probability ≥ 1 − α).
pub fn bernoulli(s: u64, n: u64, alpha: f64) -> Interval {
    if n == 0 {
        return Interval { lo: 0.0, hi: 1.0 };
    }
    let s = s.min(n);
    let center = s as f64 / n as f64;
    // ln M is convex in μ with its minimum (≤ 0) at the empirical mean: each end is where it
    // crosses ln(1/α).
    let edge = |mut inside: f64, mut outside: f64| {
        if plausible(s, n, outside, alpha) {
            return outside;
        }
        for _ in 0..STEPS {
            let mid = (inside + outside) / 2.0;
            if plausible(s, n, mid, alpha) {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        inside
    };
    Interval {
        lo: edge(center, 0.0),
        hi: edge(center, 1.0),
    }
}

/// Where a Bernoulli mean stands against `threshold` after `s` successes in `n` trials, at
/// level α: `Some(true)` when the whole confidence sequence is above it, `Some(false)` when
/// below, `None` while the threshold is still plausible. (One evaluation: the sequence is an
/// interval around the empirical mean, so the threshold is outside it exactly when it is not
/// plausible.)
pub fn above(s: u64, n: u64, threshold: f64, alpha: f64) -> Option<bool> {
    if n == 0 || plausible(s.min(n), n, threshold, alpha) {
        return None;
    }
    Some(s.min(n) as f64 / n as f64 > threshold)
}

/// The range of counts `S` (of observations at or below a value) for which that value is
/// still a plausible q-quantile after `n` observations: `[s_lo, s_hi]`.
fn plausible_counts(q: f64, n: u64, alpha: f64) -> (u64, u64) {
    // ln M as a function of S (q fixed) is convex with its minimum near q·n.
    let center = ((q * n as f64).round() as u64).min(n);
    let edge = |mut inside: u64, mut outside: u64| {
        if plausible(outside, n, q, alpha) {
            return outside;
        }
        while inside.abs_diff(outside) > 1 {
            let mid = (inside + outside) / 2;
            if plausible(mid, n, q, alpha) {
                inside = mid;
            } else {
                outside = mid;
            }
        }
        inside
    };
    (edge(center, 0), edge(center, n))
}

/// The value of the `rank`-th smallest observation (1-based), as the lowest and highest value
/// its histogram bucket stands for.
fn at_rank(h: &Histogram<u64>, rank: u64) -> Option<(u64, u64)> {
    let mut seen = 0;
    for v in h.iter_recorded() {
        seen += v.count_at_value();
        if seen >= rank {
            let value = v.value_iterated_to();
            return Some((h.lowest_equivalent(value), h.highest_equivalent(value)));
        }
    }
    None
}

/// The confidence sequence for the q-quantile of the values recorded in `h`, at level α. The
/// histogram's precision is accounted for: each end is widened to its bucket's edge. `hi` is
/// infinite while the data cannot yet bound the quantile from above (a p99 from a few hundred
/// values); `None` when nothing was recorded.
pub fn quantile(h: &Histogram<u64>, q: f64, alpha: f64) -> Option<Interval> {
    let n = h.len();
    if n == 0 {
        return None;
    }
    let (s_lo, s_hi) = plausible_counts(q, n, alpha);
    // x is plausible when #{X ≤ x} is in [s_lo, s_hi]: from the s_lo-th smallest value to
    // just below the (s_hi + 1)-th.
    let lo = if s_lo == 0 {
        0.0
    } else {
        at_rank(h, s_lo).map_or(0.0, |(low, _)| low as f64)
    };
    let hi = if s_hi >= n {
        f64::INFINITY
    } else {
        at_rank(h, s_hi + 1).map_or(f64::INFINITY, |(_, high)| high as f64)
    };
    Some(Interval { lo, hi })
}

/// A difference of two Bernoulli means, `p1 − p2`, from the confidence sequences of each at
/// α/2 (conservative: both hold at once with probability ≥ 1 − α).
pub fn difference(s1: u64, n1: u64, s2: u64, n2: u64, alpha: f64) -> Interval {
    let a = bernoulli(s1, n1, alpha / 2.0);
    let b = bernoulli(s2, n2, alpha / 2.0);
    Interval {
        lo: a.lo - b.hi,
        hi: a.hi - b.lo,
    }
}

/// A ratio `x ÷ y` of two positive quantities from an interval for each (conservative: the
/// caller gives each at α/2).
pub fn ratio(x: Interval, y: Interval) -> Interval {
    let div = |a: f64, b: f64| {
        if b > 0.0 {
            a / b
        } else if a > 0.0 {
            f64::INFINITY
        } else {
            0.0
        }
    };
    Interval {
        lo: if y.hi.is_finite() {
            div(x.lo, y.hi)
        } else {
            0.0
        },
        hi: div(x.hi, y.lo),
    }
}

#[cfg(test)]
mod tests;
