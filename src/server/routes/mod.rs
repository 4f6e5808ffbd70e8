//! The REST and WebSocket routes of the seed's API, health checks, and JSON answers for unknown
//! API paths.
mod content;
mod health;
mod ingest;
mod jobs;
mod ws;

use super::{error::ApiError, startup::AppState};
use axum::{
    extract::DefaultBodyLimit,
    http::{Method, Uri},
    routing::{any, delete, get, post, MethodRouter},
    Router,
};

/// Every API route. Uploads manage their own size limit, so the default body cap is lifted
/// only on the ingest route.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/ingest",
            with_json_405(post(ingest::ingest).layer(DefaultBodyLimit::disable())),
        )
        .route("/api/status/{job_id}", with_json_405(get(jobs::status)))
        .route("/api/jobs", with_json_405(get(jobs::list)))
        .route("/api/jobs/{job_id}", with_json_405(delete(content::delete)))
        .route(
            "/api/jobs/{job_id}/content",
            with_json_405(get(content::download)),
        )
        .route("/ws/status/{job_id}", with_json_405(get(ws::status_socket)))
        .route("/healthz", with_json_405(get(health::healthz)))
        .route("/readyz", with_json_405(get(health::readyz)))
        .route("/api/{*rest}", any(unknown_api_path))
        .route("/api", any(unknown_api_path))
}

fn with_json_405(route: MethodRouter<AppState>) -> MethodRouter<AppState> {
    route.fallback(method_not_allowed)
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

async fn unknown_api_path(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no API route at {}", uri.path()))
}
