//! Health for load balancers and orchestrators: `/healthz` (the process answers) and `/readyz`
//! (see `readiness`). Neither needs the token, and neither reveals more than pass or fail.
use crate::{
    api::Readiness,
    server::{readiness::is_ready, startup::AppState},
};
use axum::{extract::State, http::StatusCode, Json};
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
