//! Server functions the pages call. They run on the server, read its state from context, and
//! use the same job service, auth and error mapping as the REST routes.
use super::{CallError, JobPage, ServiceInfo};
use crate::domain::{AccountName, JobId, JobState, JobStatus};
use leptos::prelude::*;

/// Facts about this server the page may show: the version and the upload size limit.
#[server(prefix = "/rpc", endpoint = "service_info")]
pub async fn get_service_info() -> Result<ServiceInfo, CallError> {
    let state = support::state()?;
    Ok(ServiceInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        max_upload_bytes: state.settings.max_upload_bytes,
        max_metadata_bytes: state.settings.max_metadata_bytes,
    })
}

/// Trades the token for a session cookie (HttpOnly: the page never sees it).
#[server(prefix = "/rpc", endpoint = "sign_in")]
pub async fn sign_in(token: String) -> Result<(), CallError> {
    let state = support::state()?;
    let request = support::request()?;
    let cookie =
        crate::server::auth::sign_in(&state, &request.headers, &request.extensions, &token)
            .await
            .map_err(support::refuse)?;
    support::response()?.insert_header(axum::http::header::SET_COOKIE, cookie);
    Ok(())
}

/// Ends the session and clears its cookie.
#[server(prefix = "/rpc", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), CallError> {
    use crate::server::{auth, client, sessions};
    let state = support::state()?;
    let request = support::request()?;
    let (headers, extensions) = (&request.headers, &request.extensions);
    if let Some(cookie) = sessions::cookie_value(headers) {
        auth::check_origin(headers, extensions, &state).map_err(support::refuse)?;
        state
            .sessions
            .end(cookie)
            .await
            .map_err(|error| support::refuse(error.into()))?;
    }
    let secure = client::is_https(headers, extensions, &state.settings);
    support::response()?.insert_header(
        axum::http::header::SET_COOKIE,
        sessions::clear_cookie(secure),
    );
    Ok(())
}

/// Starts a metadata-only job (files go through the streaming upload route).
#[server(prefix = "/rpc", endpoint = "start_ingest")]
pub async fn start_ingest(metadata: String) -> Result<JobStatus, CallError> {
    let (state, caller) = support::caller().await?;
    let metadata = crate::domain::parse_metadata(&metadata, state.settings.max_metadata_bytes)
        .map_err(|error| support::refuse(error.into()))?;
    state
        .jobs
        .submit_metadata(&caller.owner(), metadata)
        .await
        .map_err(|error| support::refuse(error.into()))
}

#[server(prefix = "/rpc", endpoint = "job_status")]
pub async fn get_job_status(id: JobId) -> Result<JobStatus, CallError> {
    let (state, caller) = support::caller().await?;
    match state.jobs.status(id, caller.scope()).await {
        Ok(Some(job)) => Ok(job),
        // Another account's job answers as an unknown one.
        Ok(None) => Err(support::refuse(crate::server::error::ApiError::NotFound(
            "no such job".to_owned(),
        ))),
        Err(error) => Err(support::refuse(error.into())),
    }
}

#[server(prefix = "/rpc", endpoint = "list_jobs")]
pub async fn list_jobs(
    status: Option<JobState>,
    owner: Option<AccountName>,
    before: Option<JobId>,
    limit: Option<u32>,
    q: Option<String>,
) -> Result<JobPage, CallError> {
    let (state, caller) = support::caller().await?;
    let filter = crate::server::store::ListFilter {
        scope: caller.scope(),
        owner,
        state: status,
        // As long as the REST API allows; a longer text is cut rather than refused.
        text: q.map(|q| q.chars().take(200).collect()),
    };
    state
        .jobs
        .page(&filter, before, limit)
        .await
        .map_err(|error| support::refuse(error.into()))
}

#[server(prefix = "/rpc", endpoint = "cancel_job")]
pub async fn cancel_job(id: JobId) -> Result<JobStatus, CallError> {
    let (state, caller) = support::caller().await?;
    state
        .jobs
        .cancel(id, caller.scope())
        .await
        .map_err(|error| support::refuse(error.into()))
}

/// Server-side plumbing shared by the functions above.
#[cfg(feature = "ssr")]
pub(super) mod support {
    use crate::{
        api::CallError,
        server::{auth, error::ApiError, state::AppState},
    };
    use axum::http::request::Parts;
    use leptos::prelude::*;

    /// The server's state. Absent only when a call outlives the render that started it
    /// (Leptos may render a Suspense more than once on the server): that is answered as an
    /// internal error, never a panic that would leave the page's stream hanging.
    pub fn state() -> Result<AppState, CallError> {
        use_context::<AppState>().ok_or_else(outside_a_request)
    }

    /// Where the answer's status and headers go (see `state` for when it is absent).
    pub fn response() -> Result<leptos_axum::ResponseOptions, CallError> {
        use_context::<leptos_axum::ResponseOptions>().ok_or_else(outside_a_request)
    }

    fn outside_a_request() -> CallError {
        tracing::error!("a server function ran outside a request");
        CallError {
            status: 500,
            message: "internal error".to_owned(),
        }
    }

    /// The request's head: headers, and what the listener recorded about the connection.
    pub fn request() -> Result<Parts, CallError> {
        use_context::<Parts>().ok_or_else(|| {
            refuse(ApiError::Internal(anyhow::anyhow!(
                "a server function ran outside a request"
            )))
        })
    }

    /// The state and the caller, once it has shown a session cookie (or the token).
    pub async fn caller() -> Result<(AppState, auth::Caller), CallError> {
        let state = state()?;
        let request = request()?;
        let auth = auth::authenticate(&request.headers, &request.extensions, None, &state)
            .map_err(refuse)?;
        Ok((state, auth.caller))
    }

    /// Answers with the error's HTTP status and its message for people; a 500 says nothing
    /// internal (the cause is logged).
    pub fn refuse(error: ApiError) -> CallError {
        let status = error.status();
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(status);
        }
        if let ApiError::Internal(cause) = &error {
            tracing::error!(error = ?cause, "server function failed");
        }
        CallError {
            status: status.as_u16(),
            message: error.to_string(),
        }
    }
}
