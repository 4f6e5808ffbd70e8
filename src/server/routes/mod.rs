//! The API's routes, listed once: the list builds both the axum router and the OpenAPI
//! document's paths (utoipa-axum's `routes!` reads each handler's annotation), so a route
//! cannot be served without being documented. Also the JSON answers for unknown API paths and
//! methods. Route modules import shared pieces (`extract`, `openapi`), never each other.
mod accounts;
mod content;
pub mod extract;
mod ingest;
mod jobs;
pub mod openapi;
mod operations;
mod session;
mod tus_headers;
mod uploads;
pub mod webhooks;
mod ws;

use super::{error::ApiError, limits, metrics, state::AppState};
use axum::{
    extract::DefaultBodyLimit,
    http::{Method, Uri},
    middleware,
    routing::{any, MethodRouter},
    Router,
};
use utoipa::OpenApi;
use utoipa_axum::{
    router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt},
    routes,
};

/// Every API route, and the document that describes them at `/api/openapi.json`. Uploads
/// manage their own size limit, so the default body cap is lifted only on the upload routes;
/// uploads and WebSockets have idle timeouts instead of a deadline. Health checks sit outside
/// the rate limits so load balancers are never refused.
pub fn api_router(state: &AppState) -> Router<AppState> {
    let (router, document) = documented_routes(state).split_for_parts();
    router
        .merge(openapi::docs_router(openapi::complete(document)))
        .route_layer(middleware::from_fn(metrics::track_http))
}

/// The route list itself, each route with its layers, and the document its annotations make.
fn documented_routes(state: &AppState) -> OpenApiRouter<AppState> {
    let ordinary = OpenApiRouter::default()
        .routes(routes!(jobs::status).map(with_json_405))
        .routes(routes!(jobs::list).map(with_json_405))
        .routes(routes!(content::delete).map(with_json_405))
        .routes(routes!(jobs::cancel).map(with_json_405))
        .routes(routes!(content::download).map(with_json_405))
        .routes(routes!(operations::scrape).map(with_json_405))
        .routes(routes!(session::sign_in, session::sign_out).map(with_json_405))
        .routes(routes!(accounts::me).map(with_json_405))
        .routes(routes!(accounts::create_account, accounts::list_accounts).map(with_json_405))
        .routes(routes!(accounts::remove_account).map(with_json_405))
        .routes(routes!(accounts::set_quotas).map(with_json_405))
        .routes(routes!(accounts::create_key, accounts::list_keys).map(with_json_405))
        .routes(routes!(accounts::revoke_key).map(with_json_405))
        .routes(routes!(webhooks::create, webhooks::list).map(with_json_405))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete).map(with_json_405))
        .routes(routes!(webhooks::deliveries).map(with_json_405))
        .routes(routes!(webhooks::retry).map(with_json_405))
        .routes(routes!(webhooks::ping).map(with_json_405))
        .route("/api/{*rest}", any(unknown_api_path))
        .route("/api", any(unknown_api_path))
        .route_layer(middleware::from_fn({
            let limit = state.settings.request_timeout;
            move |request, next| limits::deadline(limit, request, next)
        }));
    // tus answers carry Tus-Resumable, errors included.
    let resumable = OpenApiRouter::default()
        .routes(unlimited_body(routes!(
            uploads::create,
            uploads::capabilities
        )))
        .routes(unlimited_body(routes!(
            uploads::offset,
            uploads::append,
            uploads::terminate
        )))
        .route_layer(middleware::map_response(
            uploads::tus_headers_on_every_answer,
        ));
    let streaming = OpenApiRouter::default()
        .routes(unlimited_body(routes!(ingest::ingest)))
        .routes(routes!(ws::status_socket).map(with_json_405))
        .merge(resumable);
    let health = OpenApiRouter::default()
        .routes(routes!(operations::healthz).map(with_json_405))
        .routes(routes!(operations::readyz).map(with_json_405));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(limits::rate_limited(ordinary.merge(streaming), state))
        .merge(health)
}

/// A route whose handlers read bodies of any size themselves (uploads stream to disk).
fn unlimited_body(route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    route.map(|methods| with_json_405(methods.layer(DefaultBodyLimit::disable())))
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
