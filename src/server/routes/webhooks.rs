//! Webhook endpoints over HTTP: `POST/GET /api/webhooks`, `GET/PATCH/DELETE
//! /api/webhooks/{id}`, the delivery log `GET /api/webhooks/{id}/deliveries`, replay
//! `POST /api/webhooks/{id}/deliveries/{delivery_id}/retry` and `POST /api/webhooks/{id}/ping`.
//! Every caller sees only its own account's endpoints; another account's answer 404.
use super::openapi::CommonErrors;
use crate::{
    api::{Delivery, ErrorBody, ErrorCode, Webhook},
    server::{
        auth::Authenticated,
        error::ApiError,
        state::AppState,
        webhooks::{
            endpoint_view, EndpointChange, EndpointError, NewEndpoint, Requester,
            MAX_DELIVERIES_PAGE,
        },
    },
};
use axum::{
    extract::{
        rejection::{JsonRejection, PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::StatusCode,
    Json,
};
use serde::{Deserialize, Serialize};

use utoipa::ToSchema;

/// A registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: `http(s)://…`, at most 2048 bytes; hosts that resolve to
    /// loopback, private or link-local addresses are refused unless the server allows them.
    #[schema(max_length = 2048, example = "https://example.com/ingest-hook")]
    pub url: String,
    /// `job.created`, `job.completed`, `job.failed`, `job.cancelled`, or `*` for every one.
    #[schema(min_items = 1, max_items = 8, example = json!(["job.completed", "job.failed"]))]
    pub events: Vec<String>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    /// Receive every account's jobs' events (admins only); otherwise only the caller's.
    #[serde(default)]
    pub all_accounts: bool,
}

/// Changes to an endpoint; fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookChange {
    #[schema(max_length = 2048)]
    pub url: Option<String>,
    #[schema(min_items = 1, max_items = 8)]
    pub events: Option<Vec<String>>,
    #[schema(max_length = 500)]
    pub description: Option<String>,
    pub all_accounts: Option<bool>,
    /// `true` re-enables an endpoint (also one the server disabled after failures); `false`
    /// pauses it.
    pub enabled: Option<bool>,
    /// Make a new secret (shown in this answer only); the old one keeps signing beside it for
    /// 24 hours.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// A queued ping.
#[derive(Debug, Serialize, ToSchema)]
pub struct PingQueued {
    /// The ping's delivery (see the delivery log).
    pub delivery_id: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// Deliveries to show, newest first, 1–200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    limit: Option<u32>,
}

/// Register an endpoint for the caller's account. The answer holds the signing secret, which
/// is never shown again.
#[utoipa::path(
    post,
    path = "/api/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    responses(
        (status = 201, description = "Registered; `secret` is shown only now", body = Webhook),
        (status = 400, description = "Malformed body, URL, event list or description, or a refused destination", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "`all_accounts` asked for by a non-admin", body = ErrorBody),
        (status = 409, description = "The account already has the most endpoints allowed (20)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    body: Result<Json<NewWebhook>, JsonRejection>,
) -> Result<(StatusCode, Json<Webhook>), ApiError> {
    let Json(new) = body.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidBody, rejection.body_text())
    })?;
    let endpoint = state
        .webhooks
        .create(
            requester(&auth),
            NewEndpoint {
                url: new.url,
                events: new.events,
                description: new.description,
                all_accounts: new.all_accounts,
            },
        )
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::CREATED, Json(endpoint_view(endpoint, true))))
}

/// The caller's endpoints, oldest first (without secrets).
#[utoipa::path(
    get,
    path = "/api/webhooks",
    tag = "webhooks",
    responses(
        (status = 200, description = "The endpoints", body = [Webhook]),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<Webhook>>, ApiError> {
    let endpoints = state
        .webhooks
        .list(requester(&auth))
        .await
        .map_err(ApiError::from)?;
    Ok(Json(
        endpoints
            .into_iter()
            .map(|endpoint| endpoint_view(endpoint, false))
            .collect(),
    ))
}

/// One of the caller's endpoints.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = Webhook),
        (status = 400, description = "Malformed id", body = ErrorBody),
        CommonErrors,
        (status = 404, description = "No such endpoint of the caller's account", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn get(
    State(state): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Webhook>, ApiError> {
    let id = endpoint_id(id)?;
    let endpoint = state
        .webhooks
        .get(requester(&auth), id)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(endpoint_view(endpoint, false)))
}

/// Change an endpoint: its URL, events, description, whether it is enabled, or its secret.
#[utoipa::path(
    patch,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "The endpoint's id")),
    request_body = WebhookChange,
    responses(
        (status = 200, description = "The endpoint as changed; with `secret` if it was rotated", body = Webhook),
        (status = 400, description = "Malformed id or body, or a refused destination", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "`all_accounts` asked for by a non-admin", body = ErrorBody),
        (status = 404, description = "No such endpoint of the caller's account", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn update(
    State(state): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
    body: Result<Json<WebhookChange>, JsonRejection>,
) -> Result<Json<Webhook>, ApiError> {
    let id = endpoint_id(id)?;
    let Json(change) = body.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidBody, rejection.body_text())
    })?;
    let rotated = change.rotate_secret;
    let endpoint = state
        .webhooks
        .update(
            requester(&auth),
            id,
            EndpointChange {
                url: change.url,
                events: change.events,
                description: change.description,
                all_accounts: change.all_accounts,
                enabled: change.enabled,
                rotate_secret: change.rotate_secret,
            },
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Json(endpoint_view(endpoint, rotated)))
}

/// Remove an endpoint and its delivery log; nothing more is sent to it.
#[utoipa::path(
    delete,
    path = "/api/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        CommonErrors,
        (status = 404, description = "No such endpoint of the caller's account", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = endpoint_id(id)?;
    state
        .webhooks
        .delete(requester(&auth), id)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The endpoint's deliveries, newest first: status, attempts, last response code, next attempt.
#[utoipa::path(
    get,
    path = "/api/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, format = Uuid, description = "The endpoint's id"),
        DeliveriesParams,
    ),
    responses(
        (status = 200, description = "The deliveries", body = [Delivery]),
        (status = 400, description = "Malformed id or query", body = ErrorBody),
        CommonErrors,
        (status = 404, description = "No such endpoint of the caller's account", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn deliveries(
    State(state): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
    params: Result<Query<DeliveriesParams>, QueryRejection>,
) -> Result<Json<Vec<Delivery>>, ApiError> {
    let id = endpoint_id(id)?;
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidQuery, rejection.body_text())
    })?;
    let limit = params.limit.unwrap_or(50);
    if !(1..=MAX_DELIVERIES_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit must be between 1 and {MAX_DELIVERIES_PAGE}"),
        ));
    }
    let deliveries = state
        .webhooks
        .deliveries(requester(&auth), id, limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(deliveries.into_iter().map(Delivery::from).collect()))
}

/// Send a delivery again now, with its original `webhook-id` (also one that failed for good).
#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/deliveries/{delivery_id}/retry",
    tag = "webhooks",
    params(
        ("id" = String, Path, format = Uuid, description = "The endpoint's id"),
        ("delivery_id" = String, Path, description = "The delivery's id (its `webhook-id`)"),
    ),
    responses(
        (status = 202, description = "Queued; it goes out within a moment"),
        (status = 400, description = "Malformed id", body = ErrorBody),
        CommonErrors,
        (status = 404, description = "No such endpoint of the caller's account, or no such delivery of it", body = ErrorBody),
        (status = 409, description = "A sender is sending the delivery right now", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn retry(
    State(state): State<AppState>,
    auth: Authenticated,
    ids: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Path((id, delivery)) = ids
        .map_err(|rejection| ApiError::bad_request(ErrorCode::BadRequest, rejection.body_text()))?;
    let id = parse_endpoint_id(&id)?;
    if delivery.len() > 64 {
        return Err(ApiError::from(EndpointError::NoSuchDelivery));
    }
    state
        .webhooks
        .retry(requester(&auth), id, &delivery)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::ACCEPTED)
}

/// Queue a `webhook.ping` message to the endpoint, to check that it receives and verifies.
#[utoipa::path(
    post,
    path = "/api/webhooks/{id}/ping",
    tag = "webhooks",
    params(("id" = String, Path, format = Uuid, description = "The endpoint's id")),
    responses(
        (status = 202, description = "Queued; its delivery shows in the log", body = PingQueued),
        (status = 400, description = "Malformed id", body = ErrorBody),
        CommonErrors,
        (status = 404, description = "No such endpoint of the caller's account", body = ErrorBody),
        (status = 409, description = "The endpoint is disabled, or already has pings waiting", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn ping(
    State(state): State<AppState>,
    auth: Authenticated,
    id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<PingQueued>), ApiError> {
    let id = endpoint_id(id)?;
    let delivery_id = state
        .webhooks
        .ping(requester(&auth), id)
        .await
        .map_err(ApiError::from)?;
    Ok((StatusCode::ACCEPTED, Json(PingQueued { delivery_id })))
}

fn requester(auth: &Authenticated) -> Requester {
    Requester::from(&auth.caller)
}

fn endpoint_id(raw: Result<Path<String>, PathRejection>) -> Result<uuid::Uuid, ApiError> {
    let Path(raw) = raw
        .map_err(|rejection| ApiError::bad_request(ErrorCode::BadRequest, rejection.body_text()))?;
    parse_endpoint_id(&raw)
}

fn parse_endpoint_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::BadRequest,
            "the endpoint id must be a UUID such as 0190b1a2-7c4d-7e8f-9a0b-1c2d3e4f5a6b",
        )
    })
}
