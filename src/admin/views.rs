//! The admin API's JSON answers, as `Serialize` structs built from the running config, the
//! overrides and the comparison store: names instead of indices, durations as people write
//! them, secrets never.
//!
//! Must not: compute figures (summaries are `analysis`'s) or change anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Serialize;

use crate::analysis::model::RouteAnalysis;
use crate::compare::store::Sample;
use crate::config::{humane, Config, Live, Mirror, ServerSettings, StickyKey};
use crate::control::{MirrorOverride, RouteOverride};
use crate::state::Snapshot;

/// `{"error": "..."}`.
#[derive(Debug, Serialize)]
pub(super) struct ErrorView<'a> {
    pub error: &'a str,
}

/// `GET /api/config`: the effective config (the token itself is never shown), overrides marked.
#[derive(Debug, Serialize)]
pub(super) struct ConfigView<'a> {
    listen: &'a [SocketAddr],
    server: &'a ServerSettings,
    admin: AdminView<'a>,
    forwarding: ForwardingView<'a>,
    access_log: String,
    backends: IndexMap<&'a str, BackendView<'a>>,
    routes: Vec<RouteConfigView<'a>>,
    overrides: &'a BTreeMap<String, RouteOverride>,
}

#[derive(Debug, Serialize)]
struct AdminView<'a> {
    listen: SocketAddr,
    token_env: Option<&'a str>,
    /// `<redacted>` when a token is configured: its presence, never its value.
    token: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct ForwardingView<'a> {
    x_forwarded_for: bool,
    x_forwarded_proto: bool,
    x_forwarded_host: bool,
    request_id_header: &'a str,
}

#[derive(Debug, Serialize)]
struct BackendView<'a> {
    /// The entries as written, joined (`addresses` lists them).
    address: String,
    addresses: &'a [String],
    /// What they resolved to when the config loaded (`GET /api/backends` has them now).
    resolved: Vec<SocketAddr>,
    balance: &'static str,
    retries: u32,
    protocol: &'static str,
    max_streams: usize,
    tls: Option<BackendTlsView<'a>>,
    #[serde(serialize_with = "humane")]
    resolve_every: Duration,
    health: Option<HealthView<'a>>,
    outlier: OutlierView,
    #[serde(serialize_with = "humane")]
    connect_timeout: Duration,
    #[serde(serialize_with = "humane")]
    read_timeout: Duration,
    #[serde(serialize_with = "humane")]
    write_timeout: Duration,
    max_in_flight: Option<usize>,
}

#[derive(Debug, Serialize)]
struct BackendTlsView<'a> {
    sni: &'a str,
    verify: bool,
    /// CA certificates from `ca_file` (else the system's).
    ca_certificates: Option<usize>,
}

#[derive(Debug, Serialize)]
struct HealthView<'a> {
    path: &'a str,
    host: Option<&'a str>,
    #[serde(serialize_with = "humane")]
    interval: Duration,
    #[serde(serialize_with = "humane")]
    timeout: Duration,
    healthy_after: u32,
    unhealthy_after: u32,
    expect_status: Vec<String>,
}

#[derive(Debug, Serialize)]
struct OutlierView {
    consecutive_errors: u32,
    consecutive_5xx: u32,
    #[serde(serialize_with = "humane")]
    base_ejection: Duration,
    #[serde(serialize_with = "humane")]
    max_ejection: Duration,
    max_ejected_percent: u32,
}

#[derive(Debug, Serialize)]
struct RouteConfigView<'a> {
    name: &'a str,
    #[serde(rename = "match")]
    matcher: MatchView<'a>,
    split: IndexMap<&'a str, u32>,
    sticky: Option<StickyView<'a>>,
    force: Option<ForceView<'a>>,
    mirror: Option<MirrorConfigView<'a>>,
    overridden: bool,
}

/// A route's force header: who may use it (the secret itself never shown).
#[derive(Debug, Serialize)]
struct ForceView<'a> {
    header: &'a str,
    /// Networks allowed to force (`None`: any caller).
    from: Option<Vec<String>>,
    secret_env: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct MatchView<'a> {
    path_prefix: &'a str,
    host: Option<&'a str>,
    methods: Option<Vec<&'a str>>,
}

#[derive(Debug, Serialize)]
struct MirrorConfigView<'a> {
    to: &'a str,
    percent: f64,
    methods: Vec<&'a str>,
    max_body_bytes: u64,
    max_in_flight: usize,
    #[serde(serialize_with = "humane")]
    timeout: Duration,
    marker_header: &'a str,
    strip_headers: Vec<&'a str>,
}

/// `{"header": NAME}`, `{"cookie": NAME}` or `{"client_ip": true}`.
#[derive(Debug, Serialize)]
struct StickyView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    header: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookie: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ip: Option<bool>,
}

impl<'a> StickyView<'a> {
    fn of(s: &'a StickyKey) -> StickyView<'a> {
        let mut v = StickyView {
            header: None,
            cookie: None,
            client_ip: None,
        };
        match s {
            StickyKey::Header(h) => v.header = Some(h.as_str()),
            StickyKey::Cookie(c) => v.cookie = Some(c),
            StickyKey::ClientIp => v.client_ip = Some(true),
        }
        v
    }
}

fn methods(list: &[http::Method]) -> Vec<&str> {
    list.iter().map(http::Method::as_str).collect()
}

fn mirror_config<'a>(live: &'a Live, m: &'a Mirror) -> MirrorConfigView<'a> {
    MirrorConfigView {
        to: &live.backends[m.to].name,
        percent: m.percent,
        methods: methods(&m.methods),
        max_body_bytes: m.max_body_bytes,
        max_in_flight: m.max_in_flight,
        timeout: m.timeout,
        marker_header: m.marker_header.as_str(),
        strip_headers: m.strip_headers.iter().map(|h| h.as_str()).collect(),
    }
}

impl<'a> ConfigView<'a> {
    pub(super) fn new(
        c: &'a Config,
        overrides: &'a BTreeMap<String, RouteOverride>,
    ) -> ConfigView<'a> {
        let (startup, live) = (&c.startup, &c.live);
        ConfigView {
            listen: &startup.listen,
            server: &startup.server,
            admin: AdminView {
                listen: startup.admin.listen,
                token_env: startup.admin.token_env.as_deref(),
                token: startup.admin.token_env.as_ref().map(|_| "<redacted>"),
            },
            forwarding: ForwardingView {
                x_forwarded_for: live.forwarding.x_forwarded_for,
                x_forwarded_proto: live.forwarding.x_forwarded_proto,
                x_forwarded_host: live.forwarding.x_forwarded_host,
                request_id_header: live.forwarding.request_id_header.name().as_str(),
            },
            access_log: startup.access_log.describe(),
            backends: live
                .backends
                .iter()
                .map(|b| {
                    (
                        b.name.as_str(),
                        BackendView {
                            address: b.address(),
                            addresses: &b.entries,
                            resolved: b.addrs(),
                            balance: b.pool.balance.as_str(),
                            retries: b.pool.retries,
                            protocol: b.protocol.as_str(),
                            max_streams: b.max_streams,
                            tls: b.tls.as_ref().map(|t| BackendTlsView {
                                sni: &t.sni,
                                verify: t.verify,
                                ca_certificates: t.ca.as_ref().map(Vec::len),
                            }),
                            resolve_every: b.pool.resolve_every,
                            health: b.pool.health.as_ref().map(|h| HealthView {
                                path: &h.path,
                                host: h.host.as_deref(),
                                interval: h.interval,
                                timeout: h.timeout,
                                healthy_after: h.healthy_after,
                                unhealthy_after: h.unhealthy_after,
                                expect_status: h
                                    .expect_status
                                    .iter()
                                    .map(|(lo, hi)| {
                                        if lo == hi {
                                            lo.to_string()
                                        } else {
                                            format!("{lo}-{hi}")
                                        }
                                    })
                                    .collect(),
                            }),
                            outlier: OutlierView {
                                consecutive_errors: b.pool.outlier.consecutive_errors,
                                consecutive_5xx: b.pool.outlier.consecutive_5xx,
                                base_ejection: b.pool.outlier.base_ejection,
                                max_ejection: b.pool.outlier.max_ejection,
                                max_ejected_percent: b.pool.outlier.max_ejected_percent,
                            },
                            connect_timeout: b.connect_timeout,
                            read_timeout: b.read_timeout,
                            write_timeout: b.write_timeout,
                            max_in_flight: b.max_in_flight,
                        },
                    )
                })
                .collect(),
            routes: live
                .routes
                .iter()
                .map(|r| RouteConfigView {
                    name: &r.name,
                    matcher: MatchView {
                        path_prefix: &r.matcher.path_prefix,
                        host: r.matcher.host.as_deref(),
                        methods: r.matcher.methods.as_deref().map(methods),
                    },
                    split: r
                        .split
                        .iter()
                        .map(|e| (live.backends[e.backend].name.as_str(), e.weight))
                        .collect(),
                    sticky: r.sticky.as_ref().map(StickyView::of),
                    force: r.force.as_ref().map(|f| ForceView {
                        header: f.header.as_str(),
                        from: f
                            .from
                            .as_ref()
                            .map(|nets| nets.iter().map(ToString::to_string).collect()),
                        secret_env: f.secret_env.as_deref(),
                    }),
                    mirror: r.mirror.as_ref().map(|m| mirror_config(live, m)),
                    overridden: overrides.contains_key(&r.name),
                })
                .collect(),
            overrides,
        }
    }
}

/// `GET /api/routes`: routes as in force now, overrides marked.
#[derive(Debug, Serialize)]
pub(super) struct RoutesView<'a> {
    routes: Vec<RouteView<'a>>,
}

#[derive(Debug, Serialize)]
struct RouteView<'a> {
    name: &'a str,
    split: Vec<SplitView<'a>>,
    sticky: Option<StickyView<'a>>,
    mirror: Option<MirrorStateView<'a>>,
    #[serde(rename = "override")]
    overridden: Option<&'a RouteOverride>,
}

#[derive(Debug, Serialize)]
struct SplitView<'a> {
    backend: &'a str,
    weight: u32,
}

#[derive(Debug, Serialize)]
struct MirrorStateView<'a> {
    to: &'a str,
    percent: f64,
    methods: Vec<&'a str>,
    /// Copies under way now.
    in_flight: usize,
}

impl<'a> RoutesView<'a> {
    pub(super) fn new(
        snapshot: &'a Snapshot,
        overrides: &'a BTreeMap<String, RouteOverride>,
    ) -> RoutesView<'a> {
        let live = &snapshot.live;
        RoutesView {
            routes: live
                .routes
                .iter()
                .zip(&snapshot.routes)
                .map(|(r, rs)| RouteView {
                    name: &r.name,
                    split: r
                        .split
                        .iter()
                        .map(|e| SplitView {
                            backend: &live.backends[e.backend].name,
                            weight: e.weight,
                        })
                        .collect(),
                    sticky: r.sticky.as_ref().map(StickyView::of),
                    mirror: r.mirror.as_ref().map(|m| MirrorStateView {
                        to: &live.backends[m.to].name,
                        percent: m.percent,
                        methods: methods(&m.methods),
                        in_flight: rs.mirror.as_ref().map_or(0, |x| x.in_flight()),
                    }),
                    overridden: overrides.get(&r.name),
                })
                .collect(),
        }
    }
}

/// `GET /api/mismatches`: recent mismatch samples, newest first.
#[derive(Debug, Serialize)]
pub(super) struct SamplesView {
    pub samples: Vec<Sample>,
}

/// `GET /api/analysis`: every route with an `analysis`, its verdicts and ramp.
#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct AnalysisView {
    pub(crate) routes: Vec<RouteAnalysisView>,
}

#[derive(Debug, Serialize, serde::Deserialize)]
pub(crate) struct RouteAnalysisView {
    pub(crate) route: String,
    #[serde(flatten)]
    pub(crate) analysis: RouteAnalysis,
}

/// `POST /api/analysis/NAME/reset`.
#[derive(Debug, Serialize)]
pub(crate) struct ResetView<'a> {
    pub(crate) route: &'a str,
    pub(crate) reset: bool,
}

/// `POST /api/reload`.
#[derive(Debug, Serialize)]
pub(super) struct ReloadView<'a> {
    /// `success` or `error`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_until_restart: Option<&'a [String]>,
}

/// `PUT /api/routes/NAME/weights` and `PUT /api/routes/NAME/mirror`: what is in force now.
#[derive(Debug, Serialize)]
pub(crate) struct OverrideView<'a> {
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    weights: Option<IndexMap<String, u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mirror: Option<MirrorOverride>,
    /// Always true: API changes are runtime overrides, gone at the next file reload.
    #[serde(rename = "override")]
    overridden: bool,
}

impl<'a> OverrideView<'a> {
    pub(crate) fn weights(route: &'a str, weights: IndexMap<String, u32>) -> OverrideView<'a> {
        OverrideView {
            route,
            weights: Some(weights),
            mirror: None,
            overridden: true,
        }
    }

    pub(crate) fn mirror(route: &'a str, mirror: MirrorOverride) -> OverrideView<'a> {
        OverrideView {
            route,
            weights: None,
            mirror: Some(mirror),
            overridden: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "listen: 127.0.0.1:8080\nbackends:\n  node: { address: 127.0.0.1:3000 }\n  go: { address: 127.0.0.1:3001 }\nroutes:\n  - name: api\n    split: { node: 90, go: 10 }\n    sticky: { header: x-user-id }\n";

    #[test]
    fn the_config_view_names_the_token_variable_but_never_a_token() {
        let c = Config::from_yaml(&format!(
            "{BASE}admin: {{ listen: 0.0.0.0:9100, token_env: RUNOFF_TOKEN }}\n"
        ))
        .expect("valid");
        let overrides = BTreeMap::new();
        let v = serde_json::to_value(ConfigView::new(&c, &overrides)).expect("serializes");
        assert_eq!(v["admin"]["token_env"], "RUNOFF_TOKEN");
        assert_eq!(v["admin"]["token"], "<redacted>");
        assert_eq!(v["routes"][0]["split"]["go"], 10);
        assert_eq!(v["routes"][0]["sticky"]["header"], "x-user-id");
        assert_eq!(v["server"]["drain_timeout"], "10s");
        assert_eq!(v["listen"][0], "127.0.0.1:8080");
        assert_eq!(v["access_log"], "off");
        assert_eq!(v["backends"]["node"]["read_timeout"], "30s");
    }
}
