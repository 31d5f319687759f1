//! Thousands separators for counts people read (4210 → "4,210"), shared by analysis's verdict
//! explanations and the report's tables.
//!
//! Must not: round, scale or choose units (the report's `numbers` does).

/// Thousands separators: 480000 → "480,000".
pub(crate) fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
