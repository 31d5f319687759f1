//! How a request ended, in runoff's vocabulary: Pingora errors mapped to error kinds, the
//! status runoff answers with when a backend fails, and the status class a request is
//! counted under.
//!
//! Lives here: plain functions over Pingora's error type, unit-tested. Must not: write
//! responses or touch metrics.

use std::io;

use pingora::{Error, ErrorSource, ErrorType};

use crate::metrics::{ErrorKind, StatusClass};

/// The `kind` label for a failure talking to a backend.
pub(crate) fn error_kind(e: &Error) -> ErrorKind {
    match e.etype() {
        ErrorType::ConnectRefused => ErrorKind::ConnectRefused,
        ErrorType::ConnectTimedout => ErrorKind::ConnectTimeout,
        ErrorType::ReadTimedout => ErrorKind::ReadTimeout,
        ErrorType::WriteTimedout => ErrorKind::WriteTimeout,
        // A reset (RST) is `reset`; a clean close (FIN) before the answer was whole — no
        // response, a body short of its Content-Length or final chunk — breaks HTTP: `protocol`.
        ErrorType::ConnectionClosed if is_reset(e) => ErrorKind::Reset,
        ErrorType::ConnectionClosed => ErrorKind::Protocol,
        ErrorType::Custom(name) if *name == "PrematureBodyEnd" => ErrorKind::Protocol,
        ErrorType::TLSWantX509Lookup
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert => ErrorKind::Tls,
        ErrorType::InvalidHTTPHeader
        | ErrorType::H1Error
        | ErrorType::H2Error
        | ErrorType::InvalidH2
        | ErrorType::H2Downgrade => ErrorKind::Protocol,
        ErrorType::ReadError | ErrorType::WriteError | ErrorType::ConnectError => {
            if is_reset(e) {
                ErrorKind::Reset
            } else {
                ErrorKind::Other
            }
        }
        _ => ErrorKind::Other,
    }
}

/// Whether the I/O error at the bottom of the chain is a reset (Pingora may wrap it, e.g. in
/// its connect-error details, so follow `source()` from the root cause down).
fn is_reset(e: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.root_cause());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            );
        }
        cause = c.source();
    }
    false
}

/// Whether an error is a failure of the backend (as opposed to the caller or runoff itself).
pub(crate) fn is_upstream(e: &Error) -> bool {
    *e.esource() == ErrorSource::Upstream
}

/// Whether an error only means the caller's connection went away (closed, reset, a failed
/// read or write on it, or a caller that stopped reading past `server.send_timeout`).
pub(crate) fn caller_went_away(e: &Error) -> bool {
    *e.esource() == ErrorSource::Downstream
        && matches!(
            e.etype(),
            ErrorType::ConnectionClosed
                | ErrorType::ReadError
                | ErrorType::WriteError
                | ErrorType::WriteTimedout
        )
}

/// The status runoff answers the caller with for a request that failed before a response
/// reached it: 504 for backend timeouts, 502 for other backend failures (nginx and Envoy do
/// the same), the error's own status for HTTP-status errors, 400 for a malformed request, and
/// 0 when the caller's connection is already gone.
pub(crate) fn status_for_failure(e: &Error) -> u16 {
    if let ErrorType::HTTPStatus(code) = e.etype() {
        return *code;
    }
    match e.esource() {
        ErrorSource::Upstream => {
            if error_kind(e).is_timeout() {
                504
            } else {
                502
            }
        }
        ErrorSource::Downstream => match e.etype() {
            ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
            // A slow or silent client: Pingora's downstream read timeout.
            ErrorType::ReadTimedout | ErrorType::WriteTimedout => 0,
            _ => 400,
        },
        ErrorSource::Internal | ErrorSource::Unset => 500,
    }
}

/// The `status_class` a finished request is counted under: the backend's status when it gave a
/// complete response, else `error` (no response, or a backend failure after the header). A
/// caller that went away does not make the backend's answer an error.
pub(crate) fn status_class(upstream_status: Option<u16>, error: Option<&Error>) -> StatusClass {
    match (upstream_status, error) {
        (None, _) => StatusClass::Error,
        (Some(_), Some(e)) if is_upstream(e) => StatusClass::Error,
        (Some(status), _) => StatusClass::from_status(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(t: ErrorType) -> Box<Error> {
        Error::new_up(t)
    }

    #[test]
    fn kinds() {
        let cases = [
            (ErrorType::ConnectRefused, ErrorKind::ConnectRefused),
            (ErrorType::ConnectTimedout, ErrorKind::ConnectTimeout),
            (ErrorType::ReadTimedout, ErrorKind::ReadTimeout),
            (ErrorType::WriteTimedout, ErrorKind::WriteTimeout),
            // A clean close (no reset underneath) before the answer was whole.
            (ErrorType::ConnectionClosed, ErrorKind::Protocol),
            (ErrorType::new("PrematureBodyEnd"), ErrorKind::Protocol),
            (ErrorType::TLSHandshakeFailure, ErrorKind::Tls),
            (ErrorType::InvalidHTTPHeader, ErrorKind::Protocol),
            (ErrorType::H1Error, ErrorKind::Protocol),
            (ErrorType::ReadError, ErrorKind::Other),
            (ErrorType::InternalError, ErrorKind::Other),
        ];
        for (t, want) in cases {
            assert_eq!(error_kind(&up(t.clone())), want, "{t:?}");
        }
    }

    #[test]
    fn a_close_caused_by_a_reset_is_a_reset() {
        let cause = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::because(ErrorType::ConnectionClosed, "reading response", cause);
        assert_eq!(error_kind(&e), ErrorKind::Reset);
    }

    #[test]
    fn a_read_error_caused_by_a_reset_is_a_reset() {
        let cause = io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer");
        let e = Error::because(ErrorType::ReadError, "reading response", cause);
        assert_eq!(error_kind(&e), ErrorKind::Reset);
    }

    #[test]
    fn a_reset_wrapped_in_connect_details_is_a_reset() {
        #[derive(Debug)]
        struct Details(io::Error);
        impl std::fmt::Display for Details {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "details")
            }
        }
        impl std::error::Error for Details {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let cause = Details(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by peer",
        ));
        let e = Error::because(ErrorType::ConnectError, "connecting", cause);
        assert_eq!(error_kind(&e), ErrorKind::Reset);
        let refused = Details(io::Error::other("other"));
        let e = Error::because(ErrorType::ConnectError, "connecting", refused);
        assert_eq!(error_kind(&e), ErrorKind::Other);
    }

    #[test]
    fn failure_statuses() {
        assert_eq!(status_for_failure(&up(ErrorType::ConnectRefused)), 502);
        assert_eq!(status_for_failure(&up(ErrorType::ConnectTimedout)), 504);
        assert_eq!(status_for_failure(&up(ErrorType::ReadTimedout)), 504);
        assert_eq!(status_for_failure(&up(ErrorType::WriteTimedout)), 504);
        assert_eq!(status_for_failure(&up(ErrorType::ConnectionClosed)), 502);
        assert_eq!(status_for_failure(&up(ErrorType::HTTPStatus(429))), 429);
        assert_eq!(
            status_for_failure(&Error::new_down(ErrorType::InvalidHTTPHeader)),
            400
        );
        assert_eq!(
            status_for_failure(&Error::new_down(ErrorType::ConnectionClosed)),
            0
        );
        assert_eq!(
            status_for_failure(&Error::new_in(ErrorType::InternalError)),
            500
        );
    }

    #[test]
    fn a_caller_hanging_up_is_told_apart() {
        assert!(caller_went_away(&Error::new_down(
            ErrorType::ConnectionClosed
        )));
        assert!(caller_went_away(&Error::new_down(ErrorType::WriteError)));
        assert!(!caller_went_away(&Error::new_down(
            ErrorType::InvalidHTTPHeader
        )));
        assert!(!caller_went_away(&up(ErrorType::ConnectionClosed)));
    }

    #[test]
    fn classes() {
        let upstream = up(ErrorType::ReadError);
        let downstream = Error::new_down(ErrorType::WriteError);
        assert_eq!(status_class(Some(200), None), StatusClass::Success);
        assert_eq!(status_class(Some(503), None), StatusClass::ServerError);
        assert_eq!(status_class(None, Some(&upstream)), StatusClass::Error);
        // Backend reset mid-body: no complete response.
        assert_eq!(status_class(Some(200), Some(&upstream)), StatusClass::Error);
        // Caller hung up mid-body: the backend's answer still counts as what it was.
        assert_eq!(
            status_class(Some(200), Some(&downstream)),
            StatusClass::Success
        );
    }
}
