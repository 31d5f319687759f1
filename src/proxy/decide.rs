//! The decisions taken once per request, in `request_filter`: which route and backend serve it
//! (through `routing`), with the sticky key computed once, and whether a copy goes to the
//! route's shadow.
//!
//! Must not: hold routing rules of its own (they are `routing`'s, pure and table-tested), or
//! await anything.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderName, HeaderValue, HOST};
use pingora::http::RequestHeader;
use rand::Rng;

use crate::analysis::tally::{Side, Tally};
use crate::analysis::Recorder;
use crate::config::{defaults, Route};
use crate::forwarding::has_field;
use crate::metrics::ForceRefusal;
use crate::metrics::RequestHandles;
use crate::mirror::{self, CopyHandle, MirrorRuntime};
use crate::routing::{self, ChoiceReason, MirrorFacts, RequestFacts, StickyBytes};
use crate::state::{RouteState, Snapshot};
use subtle::ConstantTimeEq;

/// Where a request goes, decided once in `request_filter`.
pub(super) struct Target {
    pub route: usize,
    pub backend: usize,
    /// Its entry in the route's split.
    pub split: usize,
    pub reason: ChoiceReason,
    pub handles: Arc<RequestHandles>,
    /// The recorders analysis handed this (route, backend, primary): upstream-side latency,
    /// and caller-side latency with every answered request's count.
    pub latency: Arc<Recorder>,
    pub caller: Arc<Recorder>,
    /// The route's verdict tally and the side this request counts for, if any.
    pub tally: Option<(Arc<Tally>, Side)>,
    /// The backend has no healthy address and no fallback takes the request: answered 503.
    pub unhealthy: bool,
}

/// Decide the route and backend for a request, and return the route's sticky key in it (the
/// key chose the backend and also samples the mirror). `None`: no route matches.
pub(super) fn decide<'r>(
    snapshot: &Snapshot,
    req: &'r RequestHeader,
    client_ip: Option<IpAddr>,
) -> Option<(Target, Option<StickyBytes<'r>>)> {
    let live = &snapshot.live;
    let host = req
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri.host())
        .map(routing::host_without_port);
    let facts = RequestFacts {
        method: &req.method,
        host,
        path: req.uri.path(),
    };
    let route_index = routing::find_route(&live.routes, &facts)?;
    let route = &live.routes[route_index];
    let forced = forced(route, &snapshot.routes[route_index], req, client_ip);
    let sticky_key = route
        .sticky
        .as_ref()
        .and_then(|s| routing::sticky_key(s, &req.headers, client_ip));
    let choice = routing::choose_backend(
        &route.split,
        |b| live.backends[b].name.as_str(),
        forced.map(HeaderValue::as_bytes),
        sticky_key.as_ref().map(|k| k.as_bytes()),
        || rand::rng().random(),
    )?;
    let chosen = route.split[choice.split_index].backend;
    if !snapshot.backends[chosen].pool.available() {
        return Some((failover(snapshot, route_index, choice), sticky_key));
    }
    let target = entry_target(snapshot, route_index, choice.split_index, choice.reason);
    Some((target, sticky_key))
}

/// The target of a route's split entry, with its handles, recorders and tally side.
fn entry_target(
    snapshot: &Snapshot,
    route_index: usize,
    split: usize,
    reason: ChoiceReason,
) -> Target {
    let state = &snapshot.routes[route_index];
    Target {
        route: route_index,
        backend: snapshot.live.routes[route_index].split[split].backend,
        split,
        reason,
        handles: Arc::clone(&state.primary[split]),
        latency: Arc::clone(&state.primary_latency[split]),
        caller: Arc::clone(&state.primary_caller[split]),
        tally: state
            .tally
            .clone()
            .zip(state.sides.get(split).copied().flatten()),
        unhealthy: false,
    }
}

/// The chosen backend has no healthy address: the route's fallback serves the request when it
/// has one in rotation (counted; measured on the fallback but kept out of its summary and the
/// verdict, since this traffic is not its share), else the request is refused with 503. A
/// forced request is never moved: the caller asked for that backend.
fn failover(snapshot: &Snapshot, route_index: usize, choice: routing::Choice) -> Target {
    let route = &snapshot.live.routes[route_index];
    let state = &snapshot.routes[route_index];
    let chosen = route.split[choice.split_index].backend;
    let to = route
        .fallback
        .filter(|f| *f != chosen && choice.reason != ChoiceReason::Forced)
        .filter(|f| snapshot.backends[*f].pool.available())
        .and_then(|f| route.split.iter().position(|e| e.backend == f))
        .zip(state.failover_recorders.as_ref());
    match to {
        Some((split, (latency, caller))) => {
            if let Some(c) = &state.failover[choice.split_index] {
                c.inc();
            }
            Target {
                latency: Arc::clone(latency),
                caller: Arc::clone(caller),
                tally: None,
                ..entry_target(snapshot, route_index, split, ChoiceReason::Failover)
            }
        }
        None => Target {
            tally: None,
            unhealthy: true,
            ..entry_target(snapshot, route_index, choice.split_index, choice.reason)
        },
    }
}

/// A request as the copy decision sees it.
pub(super) struct CopyRequest<'a> {
    pub header: &'a RequestHeader,
    pub is_upgrade: bool,
    /// A body follows the header.
    pub has_body: bool,
    /// The route's sticky key in the request, as `decide` found it.
    pub sticky_key: Option<&'a [u8]>,
    /// When runoff saw the request start.
    pub start: Instant,
}

/// The backend a request's force header names, when the route allows it for this caller;
/// a force header that is not honoured is counted and ignored (the request is routed by
/// weight).
fn forced<'r>(
    route: &Route,
    state: &RouteState,
    req: &'r RequestHeader,
    client_ip: Option<IpAddr>,
) -> Option<&'r HeaderValue> {
    let Some(force) = &route.force else {
        // A static name: a `&str` lookup parses the name first, on every request.
        static FORCE: HeaderName = HeaderName::from_static(defaults::FORCE_HEADER);
        if has_field(&req.headers, &FORCE) {
            state.force_refused.inc(ForceRefusal::Disabled);
        }
        return None;
    };
    if !has_field(&req.headers, &force.header) {
        return None;
    }
    let wanted = req.headers.get(&force.header)?;
    let allowed = force
        .from
        .as_ref()
        .is_none_or(|nets| client_ip.is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))));
    if !allowed {
        state.force_refused.inc(ForceRefusal::Source);
        return None;
    }
    if let Some(secret) = &state.force_secret {
        let sent = req
            .headers
            .get(force.secret_header())
            .map(HeaderValue::as_bytes);
        let ok = !secret.is_empty() && sent.is_some_and(|s| bool::from(s.ct_eq(secret.as_slice())));
        if !ok {
            state.force_refused.inc(ForceRefusal::Secret);
            return None;
        }
    }
    Some(wanted)
}

/// Admit a shadow copy of the request when its route mirrors and the request qualifies; it is
/// sent from `upstream_request_filter`, once the primary's request is final.
pub(super) fn start_copy(
    mirrors: &Arc<MirrorRuntime>,
    snapshot: &Snapshot,
    target: &Target,
    copy: CopyRequest<'_>,
) -> Option<CopyHandle> {
    let req = copy.header;
    let rm = snapshot.routes[target.route].mirror.as_ref()?;
    let config = rm.config();
    let facts = MirrorFacts {
        serving_backend: target.backend,
        method: &req.method,
        has_marker: has_field(&req.headers, &config.marker_header),
        is_upgrade: copy.is_upgrade,
    };
    let sampled = routing::should_mirror(config, &facts, copy.sticky_key, || rand::rng().random());
    if !sampled {
        return None;
    }
    let declared = match mirror::body_plan(req) {
        mirror::BodyPlan::Length(n) => Some(n),
        _ => None,
    };
    mirror::admit(mirrors, rm, declared, copy.has_body, copy.start)
}
