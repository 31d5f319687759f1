//! gRPC status codes: the closed label set (the 17 codes of the gRPC spec and `absent`),
//! reading one from a `grpc-status` field, and `runoff_grpc_requests_total`, whose series for
//! a (route, backend, role) are made when its first gRPC answer is seen, so routes that never
//! carry gRPC export none.
//!
//! Must not: count a response that is not gRPC (its `content-type` is not `application/grpc…`).

use std::sync::{Arc, OnceLock};

use prometheus::IntCounterVec;

use super::handles::PerLabel;
use super::labels::{GrpcCode, Role};
use super::named;

impl GrpcCode {
    /// The code a `grpc-status` value names; a value that is not one of the 17 numbers is
    /// `UNKNOWN`, as the spec says a client must take it.
    pub(crate) fn from_value(value: &[u8]) -> GrpcCode {
        let n = std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        match n {
            Some(n) if n <= 16 => <GrpcCode as super::labels::Label>::ALL[n],
            _ => GrpcCode::Unknown,
        }
    }

    /// Whether `errors` (the config's `grpc.error_codes`, by number) names this code; a
    /// response with no status is always an error (it broke the protocol).
    pub(crate) fn is_error(self, errors: &[u8]) -> bool {
        match self {
            GrpcCode::Absent => true,
            code => errors
                .iter()
                .any(|e| usize::from(*e) == super::labels::Label::index(code)),
        }
    }
}

/// Whether a response's `content-type` says gRPC: `application/grpc`, alone or with a
/// `+codec` or parameters (not gRPC-Web, `application/grpc-web…`, which carries its status in
/// the body).
pub(crate) fn is_grpc(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|v| {
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';' | b' '))
    })
}

/// `runoff_grpc_requests_total` for one (route, backend, role), made on first use.
#[derive(Clone)]
pub(crate) struct LazyGrpc {
    family: IntCounterVec,
    labels: Arc<(String, String, Role)>,
    series: Arc<OnceLock<PerLabel<GrpcCode>>>,
}

impl LazyGrpc {
    pub(super) fn new(family: IntCounterVec, route: &str, backend: &str, role: Role) -> LazyGrpc {
        LazyGrpc {
            family,
            labels: Arc::new((route.to_string(), backend.to_string(), role)),
            series: Arc::default(),
        }
    }

    pub(crate) fn inc(&self, code: GrpcCode) {
        self.series
            .get_or_init(|| {
                let (route, backend, role) = &*self.labels;
                PerLabel::new(|c: GrpcCode| {
                    self.family.with(&named(&[
                        ("route", route),
                        ("backend", backend),
                        ("role", role.as_str()),
                        ("code", c.as_str()),
                    ]))
                })
            })
            .inc(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_the_spec_says() {
        assert_eq!(GrpcCode::from_value(b"0"), GrpcCode::Ok);
        assert_eq!(GrpcCode::from_value(b"5"), GrpcCode::NotFound);
        assert_eq!(GrpcCode::from_value(b"16"), GrpcCode::Unauthenticated);
        assert_eq!(GrpcCode::from_value(b"17"), GrpcCode::Unknown);
        assert_eq!(GrpcCode::from_value(b"x"), GrpcCode::Unknown);
        assert!(GrpcCode::Unavailable.is_error(&[14]));
        assert!(!GrpcCode::NotFound.is_error(&[14]));
        assert!(GrpcCode::Absent.is_error(&[]));
        assert!(is_grpc(Some(b"application/grpc+proto")));
        assert!(is_grpc(Some(b"application/grpc")));
        assert!(!is_grpc(Some(b"application/json")));
        assert!(is_grpc(Some(b"application/grpc; charset=utf-8")));
        assert!(!is_grpc(Some(b"application/grpc-web+proto")));
        assert!(!is_grpc(None));
    }
}
