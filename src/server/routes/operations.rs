//! Operations: `/healthz` (the process answers) and `/readyz` (see `readiness`) for load
//! balancers and orchestrators, neither needing the token nor revealing more than pass or
//! fail; and `/metrics`, the Prometheus scrape, for admins (its counts span every account).
use super::openapi::CommonErrors;
use crate::{
    api::Readiness,
    domain::JobState,
    server::{auth::Admin, error::ApiError, metrics, readiness::is_ready, state::AppState},
};
use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Object, example = json!({"status": "ok"}))))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The database takes writes, the data dir takes files and free disk is above the floor
/// (checked at most once a second).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; the failing checks say why", body = Readiness),
    ))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let readiness = state.readiness.check().await;
    let status = if is_ready(&readiness) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

/// Prometheus text format, for admins: the counts span every account, so a member would see
/// other accounts' activity. Gauges that describe the present (jobs by state, queue depth,
/// open sockets) are read at scrape time.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = crate::api::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn scrape(
    State(state): State<AppState>,
    Admin(_caller): Admin,
) -> Result<Response, ApiError> {
    for job_state in JobState::ALL {
        let count = state.jobs.count_in_state(job_state).await?;
        metrics::jobs_in_state(job_state, count);
    }
    metrics::open_websockets(
        state.settings.max_websockets - state.socket_slots.available_permits(),
    );
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::render(),
    )
        .into_response())
}
