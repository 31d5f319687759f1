//! Verdicts from hand-made tallies: decided, undecided, blocked, and worded.

use std::time::Duration;

use super::*;
use crate::analysis::tally::{Side, Tally};
use crate::config::Criterion;

fn cfg(criteria: Vec<Criterion>) -> Analysis {
    Analysis {
        confidence: 0.95,
        min_samples: 200,
        criteria,
    }
}

fn all() -> Vec<Criterion> {
    vec![
        Criterion::LatencyP50 { max_ratio: 1.05 },
        Criterion::LatencyP99 { max_ratio: 1.10 },
        Criterion::ErrorRate {
            max_increase_pp: 0.5,
        },
        Criterion::MatchRate { min: 0.995 },
    ]
}

/// `n` mirrored requests: the baseline takes 10-20 ms, the candidate `speed` times that;
/// every `base_err`-th and `cand_err`-th answer is an error (0: none); all compared pairs
/// match.
fn mirrored(n: u64, speed: f64, base_err: u64, cand_err: u64) -> Tally {
    let t = Tally::new("test");
    for i in 1..=n {
        let base = Duration::from_micros(10_000 + (i * 7919) % 10_000);
        let cand = base.mul_f64(speed);
        let (be, ce) = (
            base_err > 0 && i % base_err == 0,
            cand_err > 0 && i % cand_err == 0,
        );
        t.request(Side::Baseline, Some(base), be);
        t.request(Side::Candidate, Some(cand), ce);
        t.pair(be, ce, Some(speed));
        t.compared(true);
    }
    t
}

fn verdict_of<'a>(a: &'a RouteAnalysis, name: &str) -> &'a CriterionResult {
    a.criteria
        .iter()
        .find(|c| c.criterion == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn too_few_samples_is_inconclusive_whatever_the_data() {
    let t = mirrored(150, 0.5, 0, 0).snapshot().expect("tally");
    let a = evaluate(&cfg(all()), true, &t);
    assert_eq!(a.overall, Verdict::Inconclusive);
    for c in &a.criteria {
        assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.explanation);
        assert!(
            c.explanation.contains("fewer than 200 samples"),
            "{}",
            c.explanation
        );
    }
    let empty = Tally::new("test").snapshot().expect("tally");
    let a = evaluate(&cfg(all()), true, &empty);
    assert_eq!(a.overall, Verdict::Inconclusive);
    assert!(verdict_of(&a, "latency_p50")
        .explanation
        .contains("no traffic since the start point"));
}

#[test]
fn a_clearly_faster_candidate_that_errs_no_more_passes_everything() {
    let t = mirrored(5_000, 0.6, 0, 0).snapshot().expect("tally");
    let a = evaluate(&cfg(all()), true, &t);
    for c in &a.criteria {
        assert_eq!(c.verdict, Verdict::Pass, "{}", c.explanation);
    }
    assert_eq!(a.overall, Verdict::Pass);
    assert_eq!(a.explanation, "pass: every criterion passes");
    let p50 = verdict_of(&a, "latency_p50");
    assert!(
        (p50.estimate.expect("estimate") - 0.6).abs() < 0.01,
        "{p50:?}"
    );
    assert!(
        p50.explanation.starts_with(
            "latency_p50: median of per-request candidate/baseline latency 0.60, 95% bound ["
        ),
        "{}",
        p50.explanation
    );
    assert!(
        p50.explanation
            .ends_with("margin 1.05 → pass (n = 5,000 / 5,000)"),
        "{}",
        p50.explanation
    );
}

#[test]
fn a_slower_candidate_fails_and_says_why() {
    let t = mirrored(5_000, 1.3, 0, 0).snapshot().expect("tally");
    let a = evaluate(&cfg(all()), true, &t);
    assert_eq!(verdict_of(&a, "latency_p50").verdict, Verdict::Fail);
    assert_eq!(verdict_of(&a, "latency_p99").verdict, Verdict::Fail);
    assert_eq!(verdict_of(&a, "error_rate").verdict, Verdict::Pass);
    assert_eq!(a.overall, Verdict::Fail);
    assert_eq!(
        a.explanation,
        "fail: latency_p50, latency_p99 failed (Bonferroni over 4 criteria)"
    );
}

#[test]
fn a_candidate_that_only_errs_never_passes() {
    let t = mirrored(2_000, 0.5, 0, 1).snapshot().expect("tally");
    let a = evaluate(&cfg(all()), true, &t);
    let errors = verdict_of(&a, "error_rate");
    assert_eq!(errors.verdict, Verdict::Fail, "{}", errors.explanation);
    assert!((errors.estimate.expect("estimate") - 100.0).abs() < 1e-9);
    for name in ["latency_p50", "latency_p99"] {
        let c = verdict_of(&a, name);
        assert_eq!(c.verdict, Verdict::Inconclusive, "{}", c.explanation);
        assert!(c
            .explanation
            .contains("the candidate has no successful answer"));
    }
    assert_eq!(a.overall, Verdict::Fail);
}

#[test]
fn split_routes_compare_the_two_sides_errors_and_medians() {
    let t = Tally::new("test");
    for i in 1..=4_000u64 {
        let d = Duration::from_micros(5_000 + (i * 7919) % 5_000);
        t.request(Side::Baseline, Some(d), i % 100 == 0);
        t.request(Side::Candidate, Some(d.mul_f64(0.8)), i % 25 == 0);
    }
    let a = evaluate(
        &cfg(vec![
            Criterion::LatencyP50 { max_ratio: 1.05 },
            Criterion::ErrorRate {
                max_increase_pp: 0.5,
            },
        ]),
        false,
        &t.snapshot().expect("tally"),
    );
    let p50 = verdict_of(&a, "latency_p50");
    assert_eq!(p50.measures, "candidate/baseline median latency");
    assert_eq!(p50.verdict, Verdict::Pass, "{}", p50.explanation);
    let errors = verdict_of(&a, "error_rate");
    assert!(
        (errors.estimate.expect("estimate") - 3.0).abs() < 1e-9,
        "{errors:?}"
    );
    assert_eq!(errors.verdict, Verdict::Fail, "{}", errors.explanation);
    assert!(
        errors.explanation.contains("+3.00 pp"),
        "{}",
        errors.explanation
    );
    assert_eq!(a.overall, Verdict::Fail);
}

#[test]
fn the_match_rate_holds_its_minimum() {
    let t = Tally::new("test");
    for i in 0..10_000u64 {
        t.compared(i % 50 != 0);
    }
    let a = evaluate(
        &cfg(vec![Criterion::MatchRate { min: 0.995 }]),
        true,
        &t.snapshot().expect("tally"),
    );
    let m = verdict_of(&a, "match_rate");
    assert_eq!(m.verdict, Verdict::Fail, "{}", m.explanation);
    assert!(m
        .explanation
        .contains("share of compared pairs that match 98.00%"));
}
