//! The JSON API under `/api/`: each call parsed, handed to `control`, the comparison store or
//! `analysis`, and answered with a typed view.
//!
//! Must not: check who is asking (the dispatcher in `mod.rs` did), or block the admin runtime
//! (reloads and changes run on the blocking pool; reads take the control lock only to copy).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Response, StatusCode};
use pingora::protocols::http::ServerSession;
use serde_json::Value;

use super::views::{
    AnalysisView, ConfigView, OverrideView, ReloadView, ResetView, RouteAnalysisView, RoutesView,
    SamplesView,
};
use super::{api_error, json_reply, Admin};
use crate::control::{Control, ControlError};

/// Largest request body the admin API reads.
const MAX_BODY: usize = 64 * 1024;

/// Every call, for the 404's hint.
const CALLS: &str = "try GET /api/summary?window=60s, GET /api/history?window=10m, GET /api/analysis, GET /api/config, GET /api/routes, GET /api/backends, GET /api/mismatches?route=NAME&limit=N, GET /api/mismatches/paths?route=NAME, PUT /api/routes/NAME/weights, PUT /api/routes/NAME/mirror, POST /api/routes/NAME/ramp/resume, POST /api/analysis/NAME/reset, POST /api/reload";

pub(super) async fn dispatch(admin: &Admin, session: &mut ServerSession) -> Response<Vec<u8>> {
    let method = session.req_header().method.clone();
    let path = session.req_header().uri.path().to_string();
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    match (&method, parts.as_slice()) {
        (&Method::GET, ["config"]) => {
            let config = admin.control.effective();
            let overrides = admin.control.overrides();
            json_reply(StatusCode::OK, &ConfigView::new(&config, &overrides))
        }
        (&Method::GET, ["routes"]) => {
            let overrides = admin.control.overrides();
            let snapshot = admin.shared.snapshot.load_full();
            json_reply(StatusCode::OK, &RoutesView::new(&snapshot, &overrides))
        }
        (&Method::GET, ["summary"]) => summary(admin, &query(session)),
        (&Method::GET, ["backends"]) => {
            let backends: indexmap::IndexMap<String, crate::pool::PoolView> = admin
                .shared
                .pools
                .all()
                .into_iter()
                .map(|p| (p.name.clone(), p.describe()))
                .collect();
            json_reply(StatusCode::OK, &serde_json::json!({ "backends": backends }))
        }
        (&Method::GET, ["history"]) => history(admin, &query(session)),
        (&Method::GET, ["analysis"]) => {
            let snapshot = admin.shared.snapshot.load_full();
            let routes = snapshot
                .verdicts()
                .into_iter()
                .map(|(route, mut analysis)| {
                    analysis.ramp = admin.control.ramp_status(&route);
                    RouteAnalysisView { route, analysis }
                })
                .collect();
            json_reply(StatusCode::OK, &AnalysisView { routes })
        }
        (&Method::POST, ["analysis", route, "reset"]) => {
            let snapshot = admin.shared.snapshot.load_full();
            match snapshot.live.route_index(route) {
                Some(i) => match &snapshot.routes[i].tally {
                    Some(tally) => {
                        tally.restart("reset through the admin API");
                        log::info!("route {route}: analysis restarted through the admin API");
                        json_reply(StatusCode::OK, &ResetView { route, reset: true })
                    }
                    None => api_error(
                        StatusCode::BAD_REQUEST,
                        &format!("route `{route}` has no analysis"),
                    ),
                },
                None => control_error(ControlError::NoRoute(route.to_string())),
            }
        }
        (&Method::POST, ["routes", route, "ramp", "resume"]) => {
            let route = route.to_string();
            match off_thread(admin, move |c| c.resume_ramp(&route)).await {
                Ok(status) => json_reply(StatusCode::OK, &status),
                Err(e) => control_error(e),
            }
        }
        (&Method::GET, ["mismatches"]) => mismatches(admin, &query(session)),
        (&Method::GET, ["mismatches", "paths"]) => {
            let q = query(session);
            let Some(route) = q.get("route") else {
                return api_error(StatusCode::BAD_REQUEST, "give ?route=NAME");
            };
            match known_route(admin, route) {
                Ok(()) => json_reply(StatusCode::OK, &admin.shared.compare_store.paths(route)),
                Err(e) => control_error(e),
            }
        }
        (&Method::POST, ["reload"]) => reload(admin).await,
        (&Method::PUT, ["routes", route, what @ ("weights" | "mirror")]) => {
            let route = route.to_string();
            let body = match read_json(session).await {
                Ok(body) => body,
                Err(resp) => return resp,
            };
            let changed = if *what == "weights" {
                let r = route.clone();
                off_thread(admin, move |c| c.set_weights(&r, &body))
                    .await
                    .map(|w| OverrideView::weights(&route, w))
            } else {
                let r = route.clone();
                off_thread(admin, move |c| c.set_mirror(&r, &body))
                    .await
                    .map(|m| OverrideView::mirror(&route, m))
            };
            match changed {
                Ok(view) => json_reply(StatusCode::OK, &view),
                Err(e) => control_error(e),
            }
        }
        (
            _,
            ["config"]
            | ["routes"]
            | ["reload"]
            | ["mismatches"]
            | ["mismatches", "paths"]
            | ["summary"]
            | ["history"]
            | ["analysis"]
            | ["analysis", _, "reset"]
            | ["routes", _, "ramp", "resume"]
            | ["routes", _, "weights" | "mirror"],
        ) => api_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not allowed here"),
        ),
        _ => api_error(StatusCode::NOT_FOUND, CALLS),
    }
}

/// The `window` query parameter (`default` when absent); `None` when it is not a duration.
fn window(q: &HashMap<String, String>, default: Duration) -> Option<Duration> {
    match q.get("window").map(|w| humantime::parse_duration(w)) {
        None => Some(default),
        Some(Ok(w)) if !w.is_zero() => Some(w),
        Some(_) => None,
    }
}

fn bad_window() -> Response<Vec<u8>> {
    api_error(
        StatusCode::BAD_REQUEST,
        "window must be a duration like 60s or 5m",
    )
}

/// `GET /api/history?window=10m`: per-slot figures for the live page (at most 10 minutes).
fn history(admin: &Admin, q: &HashMap<String, String>) -> Response<Vec<u8>> {
    let Some(window) = window(q, Duration::from_secs(600)) else {
        return bad_window();
    };
    let window = window.min(Duration::from_secs(600));
    let snapshot = admin.shared.snapshot.load_full();
    let history =
        crate::analysis::history::history(&admin.shared.book, &snapshot.route_inputs(), window);
    json_reply(StatusCode::OK, &history)
}

/// `GET /api/summary?window=60s`.
fn summary(admin: &Admin, q: &HashMap<String, String>) -> Response<Vec<u8>> {
    let Some(window) = window(q, Duration::from_secs(60)) else {
        return bad_window();
    };
    let snapshot = admin.shared.snapshot.load_full();
    let mut summary = crate::analysis::summarize(
        &admin.shared.book,
        &admin.shared.resources,
        &snapshot.route_inputs(),
        window,
    );
    for r in &mut summary.routes {
        if let Some(a) = r.analysis.as_mut() {
            a.ramp = admin.control.ramp_status(&r.name);
        }
    }
    json_reply(StatusCode::OK, &summary)
}

/// `GET /api/mismatches?route=NAME&limit=N`: of one route, or all.
fn mismatches(admin: &Admin, q: &HashMap<String, String>) -> Response<Vec<u8>> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .min(1000);
    let route = q.get("route").map(String::as_str);
    if let Some(r) = route {
        if let Err(e) = known_route(admin, r) {
            return control_error(e);
        }
    }
    let samples = admin.shared.compare_store.samples(route, limit);
    json_reply(StatusCode::OK, &SamplesView { samples })
}

/// `POST /api/reload`: on the blocking pool (file read, DNS).
async fn reload(admin: &Admin) -> Response<Vec<u8>> {
    let control = Arc::clone(&admin.control);
    match tokio::task::spawn_blocking(move || control.reload()).await {
        Ok(Ok(report)) => json_reply(
            StatusCode::OK,
            &ReloadView {
                result: "success",
                error: None,
                problems: None,
                ignored_until_restart: Some(&report.ignored_until_restart),
            },
        ),
        Ok(Err(ControlError::Invalid(problems))) => json_reply(
            StatusCode::BAD_REQUEST,
            &ReloadView {
                result: "error",
                error: Some("invalid config: the running config stays in force"),
                problems: Some(&problems),
                ignored_until_restart: None,
            },
        ),
        Ok(Err(e)) => control_error(e),
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("reload failed: {e}"),
        ),
    }
}

/// Run a control change on the blocking pool: it may save the ramps' state file, and the
/// admin listener has one thread that `/metrics` and the probes also need.
async fn off_thread<T: Send + 'static>(
    admin: &Admin,
    change: impl FnOnce(&Control) -> Result<T, ControlError> + Send + 'static,
) -> Result<T, ControlError> {
    let control = Arc::clone(&admin.control);
    tokio::task::spawn_blocking(move || change(&control))
        .await
        .unwrap_or_else(|e| Err(ControlError::Internal(format!("the change failed: {e}"))))
}

fn known_route(admin: &Admin, route: &str) -> Result<(), ControlError> {
    match admin.shared.snapshot.load().live.route_index(route) {
        Some(_) => Ok(()),
        None => Err(ControlError::NoRoute(route.to_string())),
    }
}

/// The query string as key/value pairs (route names need no percent-decoding).
fn query(session: &ServerSession) -> std::collections::HashMap<String, String> {
    session
        .req_header()
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn read_json(session: &mut ServerSession) -> Result<Value, Response<Vec<u8>>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(api_error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"));
                }
            }
            Ok(None) => break,
            Err(e) => {
                return Err(api_error(
                    StatusCode::BAD_REQUEST,
                    &format!("cannot read the body: {e}"),
                ))
            }
        }
    }
    serde_json::from_slice(&body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            &format!("the body is not JSON: {e}"),
        )
    })
}

fn control_error(e: ControlError) -> Response<Vec<u8>> {
    let status = match e {
        ControlError::NoRoute(_) => StatusCode::NOT_FOUND,
        ControlError::NoFile => StatusCode::CONFLICT,
        ControlError::Invalid(_) | ControlError::BadRequest(_) => StatusCode::BAD_REQUEST,
        ControlError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    api_error(status, &e.to_string())
}
