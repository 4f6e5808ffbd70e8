//! Accounts and keys over HTTP, for admins: `POST/GET /api/accounts`,
//! `DELETE /api/accounts/{name}`, `PUT /api/accounts/{name}/quotas`,
//! `POST/GET /api/accounts/{name}/keys`, `DELETE /api/keys/{key_id}`; and `GET /api/me` for any
//! caller. A change takes effect in this server at once (the service
//! applies it to the key ring before the answer), in others within a second.
use super::{
    extract::{AccountNamePath, KeyIdPath},
    openapi::CommonErrors,
};
use crate::{
    api::{
        AccountInfo, ErrorBody, ErrorCode, IssuedKey, KeyInfo, Me, NewAccount, NewKey,
        QuotaOverrides,
    },
    server::{
        accounts,
        auth::{Admin, Authenticated},
        error::ApiError,
        state::AppState,
    },
};
use axum::{
    body::Bytes,
    extract::{rejection::JsonRejection, State},
    http::{header, HeaderMap, StatusCode},
    Json,
};
use secrecy::ExposeSecret;

/// Who the caller is: account, role, the key the request (or its session) came with, what
/// the account uses (counted from its jobs) and the quotas in force for it.
#[utoipa::path(
    get,
    path = "/api/me",
    tag = "accounts",
    responses(
        (status = 200, description = "The caller", body = Me),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn me(State(state): State<AppState>, auth: Authenticated) -> Result<Json<Me>, ApiError> {
    let caller = auth.caller;
    let usage = state.jobs.usage(caller.account_id).await?;
    Ok(Json(Me {
        quotas: caller.quotas(&state.settings),
        account: caller.account,
        role: caller.role,
        key_id: caller.key_id,
        usage,
    }))
}

/// Set an account's own quotas (admins only): each `null` takes the server's default, 0 means
/// no limit. They apply from the account's next request on.
#[utoipa::path(
    put,
    path = "/api/accounts/{name}/quotas",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    request_body = QuotaOverrides,
    responses(
        (status = 200, description = "The account with its quotas", body = AccountInfo),
        (status = 400, description = "Malformed name or body", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The built-in admin's quotas are the server's defaults", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn set_quotas(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    AccountNamePath(name): AccountNamePath,
    body: Result<Json<QuotaOverrides>, JsonRejection>,
) -> Result<Json<AccountInfo>, ApiError> {
    let Json(quotas) = body.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidBody, rejection.body_text())
    })?;
    if quotas
        .max_requests_per_second
        .is_some_and(|rate| rate > MAX_REQUESTS_PER_SECOND)
    {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            format!("max_requests_per_second is at most {MAX_REQUESTS_PER_SECOND}"),
        ));
    }
    Ok(Json(state.accounts.set_quotas(&name, quotas).await?))
}

/// The highest rate quota an account can be given (the server's own limit is the same).
const MAX_REQUESTS_PER_SECOND: u64 = 1_000_000;

/// Create an account (admins only).
#[utoipa::path(
    post,
    path = "/api/accounts",
    tag = "accounts",
    request_body = NewAccount,
    responses(
        (status = 201, description = "Created", body = AccountInfo),
        (status = 400, description = "The body is not {\"name\", \"role\"?} with a valid name and role", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin (or a cookie request from another site)", body = ErrorBody),
        (status = 409, description = "The name is taken (or is the built-in admin's)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn create_account(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    body: Result<Json<NewAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<AccountInfo>), ApiError> {
    let Json(NewAccount { name, role }) = body.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidBody, rejection.body_text())
    })?;
    let account = state.accounts.add_account(name, role).await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// Every account (admins only). The built-in `admin` of `INGEST_TOKEN` is not listed.
#[utoipa::path(
    get,
    path = "/api/accounts",
    tag = "accounts",
    responses(
        (status = 200, description = "The accounts, by name", body = [AccountInfo]),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn list_accounts(
    State(state): State<AppState>,
    Admin(_caller): Admin,
) -> Result<Json<Vec<AccountInfo>>, ApiError> {
    let accounts = state.accounts.accounts().await?;
    Ok(Json(accounts))
}

/// Remove an account and revoke its keys (admins only); its jobs are kept, its webhook endpoints
/// removed.
#[utoipa::path(
    delete,
    path = "/api/accounts/{name}",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    responses(
        (status = 204, description = "Removed; its keys are revoked, its sessions and sockets end, its webhook endpoints are removed"),
        (status = 400, description = "Malformed name", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The built-in admin account cannot be removed", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn remove_account(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    AccountNamePath(name): AccountNamePath,
) -> Result<StatusCode, ApiError> {
    state.accounts.remove_account(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a key for an account (admins only). The answer is the only time the key is shown.
#[utoipa::path(
    post,
    path = "/api/accounts/{name}/keys",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    request_body(content = NewKey, description = "Optional: {\"expires_in_days\": N}"),
    responses(
        (status = 201, description = "Created", body = IssuedKey),
        (status = 400, description = "Malformed name or body, or an expiry outside 1–36500 days", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 415, description = "A body that is not application/json", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn create_key(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    AccountNamePath(name): AccountNamePath,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<IssuedKey>), ApiError> {
    // No body at all asks for a key that never expires; a body must be JSON, so an expiry
    // sent as something else is refused rather than ignored.
    let NewKey { expires_in_days } = if body.is_empty() {
        NewKey::default()
    } else {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<mime::Mime>().ok())
            .is_some_and(|mime| mime.essence_str() == mime::APPLICATION_JSON.essence_str());
        if !json {
            return Err(ApiError::UnsupportedMediaType(
                "the body, when there is one, is application/json".to_owned(),
            ));
        }
        serde_json::from_slice(&body).map_err(|error| {
            ApiError::bad_request(ErrorCode::InvalidBody, format!("the body: {error}"))
        })?
    };
    let expires_at = accounts::key_expiry(expires_in_days)?;
    let created = state.accounts.add_key(&name, expires_at).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedKey {
            key_id: created.key_id,
            key: created.key.expose_secret().to_owned(),
            expires_at: created.expires_at,
        }),
    ))
}

/// An account's keys, never the keys themselves (admins only).
#[utoipa::path(
    get,
    path = "/api/accounts/{name}/keys",
    tag = "accounts",
    params(("name" = String, Path, description = "The account's name")),
    responses(
        (status = 200, description = "The keys, oldest first", body = [KeyInfo]),
        (status = 400, description = "Malformed name", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn list_keys(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    AccountNamePath(name): AccountNamePath,
) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    let keys = state.accounts.keys(Some(&name)).await?;
    Ok(Json(keys))
}

/// Revoke a key (admins only): its next request is refused, its sessions end and its
/// WebSockets close.
#[utoipa::path(
    delete,
    path = "/api/keys/{key_id}",
    tag = "accounts",
    params(("key_id" = String, Path, description = "The key's id (12 hex digits)")),
    responses(
        (status = 204, description = "Revoked (also when it already was)"),
        (status = 400, description = "Malformed key id", body = ErrorBody),
        CommonErrors,
        (status = 403, description = "The caller is not an admin", body = ErrorBody),
        (status = 404, description = "No such key", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn revoke_key(
    State(state): State<AppState>,
    Admin(_caller): Admin,
    KeyIdPath(key_id): KeyIdPath,
) -> Result<StatusCode, ApiError> {
    state.accounts.revoke_key(&key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
