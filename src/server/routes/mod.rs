//! The REST and WebSocket routes of the seed's API, health checks, and JSON answers for unknown
//! API paths.
mod content;
mod health;
mod ingest;
mod jobs;
pub mod openapi;
mod session;
mod tus_headers;
mod uploads;
mod ws;

use super::{error::ApiError, limits, metrics, startup::AppState};
use axum::{
    extract::DefaultBodyLimit,
    http::{Method, Uri},
    middleware,
    routing::{any, delete, get, head, post, MethodRouter},
    Router,
};

/// Every API route. Uploads manage their own size limit, so the default body cap is lifted
/// only on the ingest route; uploads and WebSockets have idle timeouts instead of a deadline.
/// Health checks sit outside the rate limits so load balancers are never refused.
pub fn api_router(state: &AppState) -> Router<AppState> {
    let ordinary = Router::new()
        .route("/api/status/{job_id}", with_json_405(get(jobs::status)))
        .route("/api/jobs", with_json_405(get(jobs::list)))
        .route("/api/jobs/{job_id}", with_json_405(delete(content::delete)))
        .route(
            "/api/jobs/{job_id}/cancel",
            with_json_405(post(jobs::cancel)),
        )
        .route(
            "/api/jobs/{job_id}/content",
            with_json_405(get(content::download)),
        )
        .route("/metrics", with_json_405(get(metrics::scrape)))
        .route(
            "/api/session",
            with_json_405(post(session::sign_in).delete(session::sign_out)),
        )
        .route("/api/{*rest}", any(unknown_api_path))
        .route("/api", any(unknown_api_path))
        .route_layer(middleware::from_fn({
            let limit = state.settings.request_timeout;
            move |request, next| limits::deadline(limit, request, next)
        }));
    // tus answers carry Tus-Resumable, errors included.
    let resumable = Router::new()
        .route(
            "/api/uploads",
            with_json_405(
                post(uploads::create)
                    .options(uploads::capabilities)
                    .layer(DefaultBodyLimit::disable()),
            ),
        )
        .route(
            "/api/uploads/{job_id}",
            with_json_405(
                head(uploads::offset)
                    .patch(uploads::append)
                    .delete(uploads::terminate)
                    .layer(DefaultBodyLimit::disable()),
            ),
        )
        .route_layer(middleware::map_response(
            uploads::tus_headers_on_every_answer,
        ));
    let streaming = Router::new()
        .route(
            "/api/ingest",
            with_json_405(post(ingest::ingest).layer(DefaultBodyLimit::disable())),
        )
        .route("/ws/status/{job_id}", with_json_405(get(ws::status_socket)))
        .merge(resumable);
    let health = Router::new()
        .route("/healthz", with_json_405(get(health::healthz)))
        .route("/readyz", with_json_405(get(health::readyz)));
    limits::rate_limited(ordinary.merge(streaming), state)
        .merge(health)
        .merge(openapi::docs_router())
        .route_layer(middleware::from_fn(metrics::track_http))
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
