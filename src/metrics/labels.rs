//! The closed label sets of runoff's metrics, as types: roles, status classes, error kinds,
//! mirror drop reasons, comparison results and parts. `docs/METRICS.md` lists the same values.
//!
//! Lives here: each label's vocabulary and its text. Must not: know about Pingora, requests or
//! registries; a value is added here and in `docs/METRICS.md` together, never renamed.

/// One closed label set: every value, and each value's text on the wire.
pub(crate) trait Label: Copy + 'static {
    /// Every value, in a fixed order (series are created in this order, at 0).
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    /// Position in `ALL`: handles keep one series per value, in that order.
    fn index(self) -> usize;
}

/// Declares a closed label set: the enum, its `ALL` and its text.
macro_rules! label {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(unreachable_pub)] // Role is public through `analysis`; the others are not.
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl Label for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
            fn index(self) -> usize {
                self as usize
            }
        }

        impl $name {
            /// The label value.
            #[allow(unreachable_pub)]
            pub fn as_str(self) -> &'static str {
                <Self as Label>::as_str(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

label! {
    /// Whose answer a request's metrics describe (`role`).
    Role {
        /// Its answer went to the caller (in a split: the chosen backend).
        Primary => "primary",
        /// A mirror copy.
        Shadow => "shadow",
    }
}

label! {
    /// The `status_class` label: the backend's status class, or `error` when it gave no
    /// complete response.
    StatusClass {
        Informational => "1xx",
        Success => "2xx",
        Redirect => "3xx",
        ClientError => "4xx",
        ServerError => "5xx",
        Error => "error",
    }
}

impl StatusClass {
    pub fn from_status(status: u16) -> StatusClass {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Error,
        }
    }

    /// A 5xx or no complete response: what the summaries count as an error.
    pub fn is_error(self) -> bool {
        matches!(self, StatusClass::ServerError | StatusClass::Error)
    }
}

label! {
    /// A gRPC status (`code`): the spec's canonical names, or `absent` when a gRPC response
    /// carries none.
    GrpcCode {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
        Absent => "absent",
    }
}

label! {
    /// The `kind` label of `runoff_upstream_errors_total`.
    ErrorKind {
        ConnectRefused => "connect_refused",
        ConnectTimeout => "connect_timeout",
        ReadTimeout => "read_timeout",
        WriteTimeout => "write_timeout",
        Reset => "reset",
        Tls => "tls",
        Protocol => "protocol",
        Other => "other",
    }
}

impl ErrorKind {
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            ErrorKind::ConnectTimeout | ErrorKind::ReadTimeout | ErrorKind::WriteTimeout
        )
    }
}

label! {
    /// Why a shadow copy did not complete (the `reason` label).
    DropReason {
        /// In-flight limit or memory budget full.
        Overloaded => "overloaded",
        BodyTooLarge => "body_too_large",
        Timeout => "timeout",
        UpstreamError => "upstream_error",
        ClientAborted => "client_aborted",
        /// The primary's request never went upstream (its backend could not be reached, or
        /// Pingora refused the request), so its copy was not sent either.
        PrimaryFailed => "primary_failed",
        /// `pacing: matched`: the copy would have outnumbered the primary's requests under way.
        Paced => "paced",
        /// A WebSocket shadow did not accept the upgrade as the primary did (another status,
        /// subprotocol or extensions): its frames would be garbage to it.
        HandshakeMismatch => "handshake_mismatch",
        /// A WebSocket shadow closed before the primary did.
        ClosedEarly => "closed_early",
        /// The shadow backend had no healthy address: the copy was not attempted.
        Unhealthy => "unhealthy",
    }
}

label! {
    /// Which way WebSocket bytes went (the `direction` label).
    Direction {
        ToBackend => "to_backend",
        ToClient => "to_client",
    }
}

label! {
    /// WebSocket frames by kind (the `kind` label of `runoff_websocket_frames_total`).
    FrameKind {
        /// Text, binary and continuation frames.
        Data => "data",
        /// Close, ping and pong frames.
        Control => "control",
    }
}

label! {
    /// How an upgraded WebSocket connection ended (the `cause` label).
    WsEnd {
        /// The client sent the first close frame, or closed first.
        ClientClosed => "client_closed",
        /// The backend sent the first close frame, or closed first.
        BackendClosed => "backend_closed",
        /// Nothing crossed it for `websocket.idle_timeout`.
        IdleTimeout => "idle_timeout",
        /// runoff was stopping (SIGTERM, or a `--upgrade` handoff).
        Drain => "drain",
        /// A side failed (reset, write error).
        Error => "error",
    }
}

label! {
    /// Why a WebSocket upgrade did not happen (the `reason` label).
    UpgradeFailure {
        /// The backend answered something other than 101.
        Rejected => "rejected",
        /// The backend could not be reached, or failed during the handshake.
        Failed => "failed",
    }
}

label! {
    /// How a compared pair ended (the `result` label of `runoff_compare_total`).
    CompareResult {
        Match => "match",
        Mismatch => "mismatch",
        Skipped => "skipped",
    }
}

label! {
    /// Why a pair was not compared (`runoff_compare_skipped_total`).
    SkipReason {
        /// `MAX_COMPARE_JOBS` comparisons were running already.
        Busy => "busy",
        /// A body over `compare.body.max_bytes` (captured or decoded).
        TooLarge => "too_large",
        /// The mirror's memory budget (`server.mirror_memory_bytes`, shared with copies'
        /// request bodies) could not hold a captured answer.
        Overloaded => "overloaded",
        /// A body that cannot be decoded within `compare.body.max_bytes` (a content-encoding
        /// runoff cannot undo, or too large once decoded).
        Undecodable => "undecodable",
    }
}

label! {
    /// Which part of a response differed (the `part` label).
    Part {
        Status => "status",
        Headers => "headers",
        Body => "body",
    }
}

impl serde::Serialize for Part {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

label! {
    /// Why a request's force header was not honoured (`runoff_force_refused_total`).
    ForceRefusal {
        /// The route does not allow forcing.
        Disabled => "disabled",
        /// The caller is not in the route's `force.from`.
        Source => "source",
        /// The secret was missing or wrong.
        Secret => "secret",
    }
}

label! {
    /// Why the admin listener refused a request (`runoff_admin_refused_total`).
    AdminRefusal {
        /// `/api/*` without the token.
        TokenMissing => "token_missing",
        TokenWrong => "token_wrong",
        /// No token configured on a listener other hosts can reach.
        NotLoopback => "not_loopback",
        /// An `Origin` that is not the admin listener's own (a cross-site request).
        Origin => "origin",
        /// A `Host` that does not name the admin listener (DNS rebinding).
        Host => "host",
        /// A write without `Content-Type: application/json`.
        ContentType => "content_type",
    }
}

label! {
    /// Why a request was refused before routing (`runoff_rejected_requests_total`).
    Rejection {
        /// HTTP/1.1 without exactly one Host, or a Host that is not `host[:port]` (400).
        BadHost => "bad_host",
        /// Content-Length not one plain number, both Content-Length and Transfer-Encoding, or
        /// `chunked` more than once (400).
        BadFraming => "bad_framing",
        /// A transfer coding other than `chunked` (501).
        UnsupportedCoding => "unsupported_coding",
        /// Pingora's parser could not read the request line (method, target, version): 400.
        BadRequestLine => "bad_request_line",
        /// A header line Pingora's parser could not read, a header block with a line ended by
        /// a bare LF, or a `Connection` field nominating a protected field (Host,
        /// `X-Forwarded-*`) or a malformed name: 400.
        BadHeader => "bad_header",
        /// A header block over Pingora's bounds (1 MiB, 256 fields): 400.
        TooLarge => "too_large",
        /// The header block was not complete within `server.client_header_timeout`: the
        /// connection is closed without an answer.
        Timeout => "timeout",
    }
}

label! {
    /// Why runoff closed a caller's HTTP/2 connection with an error (`runoff_http2_goaways_total`).
    H2Goaway {
        /// Too many streams reset before they were accepted (rapid reset, CVE-2023-44487) or
        /// another flood: `ENHANCE_YOUR_CALM`.
        EnhanceYourCalm => "enhance_your_calm",
        /// Frames that break the protocol: `PROTOCOL_ERROR`.
        ProtocolError => "protocol_error",
        /// Any other error code.
        Other => "other",
    }
}

impl H2Goaway {
    /// The reason a GOAWAY's error code gives; `None` for `NO_ERROR` (a graceful close).
    pub(crate) fn from_code(code: u32) -> Option<H2Goaway> {
        match code {
            0 => None,
            1 => Some(H2Goaway::ProtocolError),
            0xb => Some(H2Goaway::EnhanceYourCalm),
            _ => Some(H2Goaway::Other),
        }
    }
}

label! {
    /// Why a caller's connection was closed as soon as it was accepted
    /// (`runoff_connections_refused_total`).
    ConnectionRefusal {
        /// `server.max_connections` callers' connections were open already.
        TooManyConnections => "too_many_connections",
    }
}

label! {
    /// The `result` label of `runoff_config_reloads_total`.
    ReloadResult {
        Success => "success",
        Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(StatusClass::from_status(101).as_str(), "1xx");
        assert_eq!(StatusClass::from_status(204).as_str(), "2xx");
        assert_eq!(StatusClass::from_status(304).as_str(), "3xx");
        assert_eq!(StatusClass::from_status(404).as_str(), "4xx");
        assert_eq!(StatusClass::from_status(503).as_str(), "5xx");
        assert_eq!(StatusClass::from_status(600).as_str(), "error");
    }

    #[test]
    fn every_value_has_its_own_index() {
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Part::Body.to_string(), "body");
    }
}
