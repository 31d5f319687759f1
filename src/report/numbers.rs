//! Number formatting for the report: milliseconds, rates, percentages, megabytes, ratios with
//! "×", thousands separators. A value that is not finite is "—".
//!
//! Must not: compute figures or choose words (`wording`).

use super::NONE;

/// Milliseconds: < 10 → 2 decimals, < 100 → 1, else none (with thousands separators).
pub(super) fn fmt_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        NONE.to_string()
    } else if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", group_f64(ms))
    }
}

/// CPU milliseconds per request: 2 decimals, 3 below 0.1 ms (so it does not read "0.00").
pub(super) fn fmt_cpu_ms(ms: f64) -> String {
    if ms < 0.1 {
        format!("{ms:.3} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// Requests per second: ≥ 100 → whole with thousands separators, ≥ 10 → 1 decimal, else 2.
pub(super) fn fmt_rps(rps: f64) -> String {
    if !rps.is_finite() || rps < 0.0 {
        NONE.to_string()
    } else if rps >= 100.0 {
        group_f64(rps)
    } else if rps >= 10.0 {
        format!("{rps:.1}")
    } else {
        format!("{rps:.2}")
    }
}

/// An error rate in percent, 1 decimal ("0.4%"); "<0.1%" rather than "0.0%" when some failed.
pub(super) fn fmt_error_percent(percent: f64) -> String {
    if !percent.is_finite() {
        NONE.to_string()
    } else if percent > 0.0 && percent < 0.05 {
        "<0.1%".to_string()
    } else {
        format!("{percent:.1}%")
    }
}

/// Decimal megabytes, whole ("450 MB").
pub(super) fn fmt_mb(bytes: u64) -> String {
    let mb = bytes as f64 / 1_000_000.0;
    if mb < 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{} MB", group_f64(mb))
    }
}

/// A ratio with 1 decimal and "×" ("3.0×"); 2 decimals when 1 would read "1.0×".
pub(super) fn fmt_ratio(ratio: f64) -> String {
    if !ratio.is_finite() {
        return NONE.to_string();
    }
    let one = format!("{ratio:.1}");
    if one == "1.0" {
        format!("{ratio:.2}×")
    } else if ratio >= 100.0 {
        format!("{}×", group_f64(ratio))
    } else {
        format!("{one}×")
    }
}

/// A share of traffic in percent: whole, "<1%" / ">99%" near the ends.
pub(super) fn fmt_share(percent: f64) -> String {
    if !percent.is_finite() {
        NONE.to_string()
    } else if percent > 0.0 && percent < 0.5 {
        "<1%".to_string()
    } else if percent > 99.5 && percent < 100.0 {
        ">99%".to_string()
    } else {
        format!("{percent:.0}%")
    }
}

/// A number without trailing ".0" when it is whole ("60", "12.5").
pub(super) fn fmt_trim(value: f64) -> String {
    if !value.is_finite() {
        NONE.to_string()
    } else if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// A non-negative float rounded to a whole number, with thousands separators.
pub(super) fn group_f64(value: f64) -> String {
    group(value.round().max(0.0) as u64)
}

pub(super) use crate::thousands::group;
