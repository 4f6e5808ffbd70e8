//! Browser sign-in and sign-out: `POST /api/session` trades the token for a session cookie
//! (HttpOnly, SameSite=Strict, expiring, Secure over https); `DELETE /api/session` ends it.
use super::openapi::CommonErrors;
use crate::{
    api::{ErrorBody, ErrorCode},
    server::{auth, client, error::ApiError, sessions, state::AppState},
};
use axum::{
    extract::{rejection::JsonRejection, State},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Deserialize;

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SignIn {
    /// The API token.
    token: String,
}

/// Sign in: the token in the body, a session cookie in the answer.
#[utoipa::path(
    post,
    path = "/api/session",
    tag = "session",
    request_body = SignIn,
    // The common answers first: the entries after them, more precise here, take their place.
    responses(
        CommonErrors,
        (status = 204, description = "Signed in", headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, description = "The body is not {\"token\": \"...\"}", body = ErrorBody),
        (status = 401, description = "Wrong token", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address, or the rate limit; see Retry-After", body = ErrorBody),
    ),
)]
pub async fn sign_in(
    State(state): State<AppState>,
    request: Parts,
    body: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(SignIn { token }) = body.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidBody, rejection.body_text())
    })?;
    let cookie = auth::sign_in(&state, &request.headers, &request.extensions, &token).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

/// Sign out: the session ends and the cookie is cleared.
#[utoipa::path(
    delete,
    path = "/api/session",
    tag = "session",
    responses(
        (status = 204, description = "Signed out (also when there was no session)"),
        CommonErrors,
    ),
)]
pub async fn sign_out(State(state): State<AppState>, request: Parts) -> Result<Response, ApiError> {
    let (headers, extensions) = (&request.headers, &request.extensions);
    if let Some(cookie) = sessions::cookie_value(headers) {
        // Another site must not be able to sign people out either.
        auth::check_origin(headers, extensions, &state)?;
        state.sessions.end(cookie).await?;
    }
    let cleared = sessions::clear_cookie(client::is_https(headers, extensions, &state.settings));
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cleared)]).into_response())
}
