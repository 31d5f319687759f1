//! Request headers runoff adds on the way to a backend: `X-Forwarded-*` and the request id.
//!
//! Lives here: plain functions computing header values. Must not: remove or rewrite anything
//! else (forwarding is transparent; Pingora strips hop-by-hop headers itself).

use std::net::IpAddr;

use rand::Rng;

/// `X-Forwarded-For` after this hop: the existing list with the client address appended.
pub fn forwarded_for(existing: Option<&[u8]>, client: IpAddr) -> String {
    match existing.map(|v| String::from_utf8_lossy(v).trim().to_string()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    }
}

/// A fresh request id: 32 lower-case hex digits (128 random bits).
pub fn new_request_id() -> String {
    let id: u128 = rand::rng().random();
    format!("{id:032x}")
}

/// Whether a request id a caller sent is fit to keep (printable, bounded).
pub fn usable_request_id(value: &[u8]) -> bool {
    !value.is_empty() && value.len() <= 200 && value.iter().all(|b| (0x21..0x7f).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_appends() {
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(forwarded_for(None, ip), "10.0.0.7");
        assert_eq!(forwarded_for(Some(b""), ip), "10.0.0.7");
        assert_eq!(forwarded_for(Some(b"1.2.3.4"), ip), "1.2.3.4, 10.0.0.7");
        let v6: IpAddr = "::1".parse().expect("ip");
        assert_eq!(
            forwarded_for(Some(b"1.2.3.4, 5.6.7.8"), v6),
            "1.2.3.4, 5.6.7.8, ::1"
        );
    }

    #[test]
    fn request_ids_are_unique_hex() {
        let a = new_request_id();
        let b = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert!(usable_request_id(a.as_bytes()));
        assert!(!usable_request_id(b""));
        assert!(!usable_request_id(b"has space"));
    }
}
