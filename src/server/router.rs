//! The whole application's router, wired in this one place: the API (see `routes`), the
//! page's server functions, the pages themselves (from the page table in `ui::page`), static
//! files (the hashing worker's wasm among them), and the layers every answer passes through.
use super::{
    auth, error, hash_worker, limits, routes::api_router, security_headers, state::AppState,
    telemetry, telemetry::request_span,
};
use crate::{app::shell, ui::PAGES};
use axum::{
    extract::{DefaultBodyLimit, Request, State},
    middleware,
    response::{IntoResponse, Response},
    routing::{get, post},
    Router,
};
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::SsrMode;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

/// Every route the server answers, under the layers every answer passes through.
pub fn app(state: AppState) -> Router {
    let rpc_paths: Vec<String> = server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.to_owned())
        .collect();
    // Leptos would mount each server function itself, outside our limits; listings marked as
    // excluded stop that, and `rpc_router` mounts them instead.
    let excluded = leptos_axum::generate_route_list_with_exclusions(|| (), Some(rpc_paths.clone()))
        .into_iter()
        .filter(|listing| rpc_paths.iter().any(|path| path == listing.path()));
    // Each page is rendered on the server, then hydrated.
    let routes = PAGES
        .into_iter()
        .map(|(path, _)| {
            AxumRouteListing::new(
                path.to_owned(),
                SsrMode::default(),
                [leptos_router::Method::Get],
                vec![],
            )
        })
        .chain(excluded)
        .collect();
    Router::new()
        .merge(api_router(&state))
        .merge(rpc_router(&state))
        .route(hash_worker::PATH, get(hash_worker::serve))
        .leptos_routes_with_context(&state, routes, || {}, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::read_shared_session,
        ))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(limits::head_size))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers::add,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(telemetry::drop_unsafe_request_id))
        .with_state(state)
}

/// The page's server functions, under the same rate limits and deadline as the REST routes,
/// with a body cap sized for the largest argument (metadata, form-encoded).
fn rpc_router(state: &AppState) -> Router<AppState> {
    let body_cap = state.settings.max_metadata_bytes * 3 + 4096;
    let deadline = state.settings.request_timeout;
    let calls = Router::new()
        .route("/rpc/{*function}", post(call_server_function))
        .layer(DefaultBodyLimit::max(body_cap))
        .route_layer(middleware::from_fn(move |request, next| {
            limits::deadline(deadline, request, next)
        }));
    limits::rate_limited(calls, state)
}

async fn call_server_function(State(state): State<AppState>, request: Request) -> Response {
    leptos_axum::handle_server_fns_with_context(
        move || leptos::prelude::provide_context(state.clone()),
        request,
    )
    .await
    .into_response()
}
