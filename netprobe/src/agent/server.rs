//! The agent's HTTP endpoints: `/metrics` for Prometheus, `/healthz`, and
//! `/report`, the JSON that `attach --json` writes.

use std::{
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;

use super::{exposition::Format, state::AgentState};

pub type Shared = Arc<Mutex<AgentState>>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/report", get(report))
        .with_state(state)
}

/// The state, even if a handler panicked while holding it: every handler
/// leaves it whole between its calls.
pub fn lock(state: &Shared) -> MutexGuard<'_, AgentState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn failure(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok());
    let format = Format::negotiate(accept);
    let exposition = lock(&state).exposition();
    match exposition
        .map_err(anyhow::Error::from)
        .and_then(|exposition| exposition.encode(format))
    {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(error) => failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}

async fn healthz(State(state): State<Shared>) -> Response {
    match lock(&state).health() {
        Ok(()) => "ok\n".into_response(),
        Err(reason) => failure(StatusCode::SERVICE_UNAVAILABLE, reason.to_owned()),
    }
}

#[derive(Deserialize)]
struct ReportQuery {
    /// A duration: `30s`, `5m`.
    since: Option<String>,
}

async fn report(State(state): State<Shared>, Query(query): Query<ReportQuery>) -> Response {
    let since: Option<Duration> = match query.since.as_deref().map(humantime::parse_duration) {
        None => None,
        Some(Ok(since)) => Some(since),
        Some(Err(error)) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("since: {error} (a duration such as 30s or 5m)"),
            );
        }
    };
    match lock(&state).report(since) {
        Ok(report) => Json(report).into_response(),
        Err(error) => failure(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
    }
}
