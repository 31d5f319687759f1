//! The WebSocket metric families and their pre-resolved handles, one set per
//! (route, backend, role).
//!
//! Must not: be resolved per connection or per message (handles are built with a config), or
//! count anything but what the relay saw.

use prometheus::{
    exponential_buckets, Histogram, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::handles::PerLabel;
use super::labels::{Direction, FrameKind, Role, UpgradeFailure, WsEnd};
use super::{counter, histogram, latency_buckets, named, Metrics};
use prometheus::{HistogramVec, IntCounterVec};

/// Connection duration buckets: ×2 from 10 ms to about 3 hours.
fn duration_buckets() -> Vec<f64> {
    exponential_buckets(0.01, 2.0, 21).unwrap_or_else(|_| vec![0.1, 1.0, 10.0, 100.0, 1000.0])
}

pub(crate) struct WebSocketFamilies {
    open: IntGaugeVec,
    ended: IntCounterVec,
    messages: IntCounterVec,
    payload: IntCounterVec,
    frames: IntCounterVec,
    duration: HistogramVec,
    latency: HistogramVec,
    upgrade_failures: IntCounterVec,
    unparsed: IntCounterVec,
}

const RBR: &[&str] = &["route", "backend", "role"];

impl WebSocketFamilies {
    pub(super) fn new() -> Result<WebSocketFamilies, prometheus::Error> {
        let with = |extra: &'static str| -> Vec<&'static str> {
            let mut l = RBR.to_vec();
            l.push(extra);
            l
        };
        Ok(WebSocketFamilies {
            open: IntGaugeVec::new(
                Opts::new(
                    "runoff_websocket_connections",
                    "Upgraded WebSocket connections open now.",
                ),
                RBR,
            )?,
            ended: counter(
                "runoff_websocket_connections_ended_total",
                "Upgraded WebSocket connections that ended, and how.",
                &with("cause"),
            )?,
            messages: counter(
                "runoff_websocket_messages_total",
                "WebSocket data messages (a fragmented message once).",
                &with("direction"),
            )?,
            payload: counter(
                "runoff_websocket_payload_bytes_total",
                "Payload bytes of WebSocket data frames.",
                &with("direction"),
            )?,
            frames: counter(
                "runoff_websocket_frames_total",
                "WebSocket frames, data or control.",
                &["route", "backend", "role", "direction", "kind"],
            )?,
            duration: histogram(
                "runoff_websocket_connection_duration_seconds",
                "Upgrade (101 sent) to the end of the connection.",
                duration_buckets(),
                RBR,
            )?,
            latency: histogram(
                "runoff_websocket_message_latency_seconds",
                "A client data message relayed to the backend to the backend's next data message (request/reply protocols only).",
                latency_buckets(),
                RBR,
            )?,
            upgrade_failures: counter(
                "runoff_websocket_upgrade_failures_total",
                "WebSocket upgrades the backend refused (another status than 101) or failed.",
                &with("reason"),
            )?,
            unparsed: counter(
                "runoff_websocket_unparsed_total",
                "Upgraded connections whose frames runoff stopped parsing (still relayed).",
                RBR,
            )?,
        })
    }

    pub(super) fn register(&self, r: &Registry) -> Result<(), prometheus::Error> {
        r.register(Box::new(self.open.clone()))?;
        r.register(Box::new(self.ended.clone()))?;
        r.register(Box::new(self.messages.clone()))?;
        r.register(Box::new(self.payload.clone()))?;
        r.register(Box::new(self.frames.clone()))?;
        r.register(Box::new(self.duration.clone()))?;
        r.register(Box::new(self.latency.clone()))?;
        r.register(Box::new(self.upgrade_failures.clone()))?;
        r.register(Box::new(self.unparsed.clone()))
    }
}

/// One direction's series.
#[derive(Clone)]
pub(crate) struct DirectionHandles {
    pub(crate) messages: IntCounter,
    pub(crate) payload: IntCounter,
    pub(crate) frames: PerLabel<FrameKind>,
}

/// Pre-resolved WebSocket series of one (route, backend, role).
#[derive(Clone)]
pub(crate) struct WebSocketHandles {
    pub(crate) open: IntGauge,
    pub(crate) ended: PerLabel<WsEnd>,
    pub(crate) to_backend: DirectionHandles,
    pub(crate) to_client: DirectionHandles,
    pub(crate) duration: Histogram,
    pub(crate) latency: Histogram,
    pub(crate) upgrade_failures: PerLabel<UpgradeFailure>,
    pub(crate) unparsed: IntCounter,
}

impl WebSocketHandles {
    pub(crate) fn direction(&self, d: Direction) -> &DirectionHandles {
        match d {
            Direction::ToBackend => &self.to_backend,
            Direction::ToClient => &self.to_client,
        }
    }
}

impl Metrics {
    /// WebSocket handles for one (route, backend, role); every label value's series exists
    /// from now, at 0.
    pub(crate) fn websocket_handles(
        &self,
        route: &str,
        backend: &str,
        role: Role,
    ) -> WebSocketHandles {
        let f = &self.websocket;
        let role = role.as_str();
        let rbr = named(&[("route", route), ("backend", backend), ("role", role)]);
        let one = |vec: &IntCounterVec, name: &'static str, value: &'static str| {
            vec.with(&named(&[
                ("route", route),
                ("backend", backend),
                ("role", role),
                (name, value),
            ]))
        };
        let direction = |d: Direction| DirectionHandles {
            messages: one(&f.messages, "direction", d.as_str()),
            payload: one(&f.payload, "direction", d.as_str()),
            frames: PerLabel::new(|k: FrameKind| {
                f.frames.with(&named(&[
                    ("route", route),
                    ("backend", backend),
                    ("role", role),
                    ("direction", d.as_str()),
                    ("kind", k.as_str()),
                ]))
            }),
        };
        WebSocketHandles {
            open: f.open.with(&rbr),
            ended: PerLabel::new(|e: WsEnd| one(&f.ended, "cause", e.as_str())),
            to_backend: direction(Direction::ToBackend),
            to_client: direction(Direction::ToClient),
            duration: f.duration.with(&rbr),
            latency: f.latency.with(&rbr),
            upgrade_failures: PerLabel::new(|r: UpgradeFailure| {
                one(&f.upgrade_failures, "reason", r.as_str())
            }),
            unparsed: f.unparsed.with(&rbr),
        }
    }
}
