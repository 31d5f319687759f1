//! Sticky-cohort hashing: a key becomes a point in [0, 1) and the split's weights become ranges.
//!
//! The contract (published in README with test vectors): the key is hashed with xxh3-64,
//! seed 0; `h / 2^64` is the point; backend *i* of the split (file order) owns
//! `[W(i-1), W(i)) / total`, W the running sum of weights. Integer arithmetic only, so every
//! replica agrees bit for bit. Must not: depend on anything but the key and the weights.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::config::SplitEntry;

/// Seed of the split hash. The mirror-sampling hash uses seed 1 so the two are independent.
pub const SPLIT_SEED: u64 = 0;

/// Seed of the mirror-sampling hash: independent of the split's, so a 50/50 split sampled at
/// 50% mirrors half of each side.
pub const SAMPLE_SEED: u64 = 1;

/// The key's sampling point for mirroring (xxh3-64, seed 1).
pub fn sample_point(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, SAMPLE_SEED)
}

/// Whether a sampling point falls within `percent` (0-100): `point / 2^64 < percent / 100`.
pub fn sampled(point: u64, percent: f64) -> bool {
    if percent >= 100.0 {
        return true;
    }
    if percent <= 0.0 {
        return false;
    }
    // percent / 100 * 2^64, exact enough: f64 carries 53 bits, far finer than any sane percent.
    let threshold = (percent / 100.0 * 18_446_744_073_709_551_616.0) as u128;
    u128::from(point) < threshold
}

/// The key's point, as the numerator of `h / 2^64`.
pub fn sticky_point(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, SPLIT_SEED)
}

/// The point as a fraction in [0, 1), for documentation and logs.
pub fn point_fraction(point: u64) -> f64 {
    point as f64 / 18_446_744_073_709_551_616.0
}

/// The split entry owning `point`: the first `i` with `point * total / 2^64 < W(i)`.
///
/// `floor(point * total / 2^64)` is exact in u128, and since W(i) is an integer,
/// `point / 2^64 < W(i) / total` holds exactly when that floor is below W(i).
/// Entries of weight 0 own an empty range. `None` only when all weights are 0.
pub fn index_for_point(split: &[SplitEntry], point: u64) -> Option<usize> {
    let total: u64 = split.iter().map(|e| u64::from(e.weight)).sum();
    if total == 0 {
        return None;
    }
    let scaled = ((u128::from(point) * u128::from(total)) >> 64) as u64;
    let mut running = 0u64;
    for (i, e) in split.iter().enumerate() {
        running += u64::from(e.weight);
        if scaled < running {
            return Some(i);
        }
    }
    // Unreachable: scaled < total == final running sum.
    Some(split.len() - 1)
}
