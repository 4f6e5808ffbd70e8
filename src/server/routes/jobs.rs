//! Jobs by id and in pages: `GET /api/status/{job_id}`, the paginated `GET /api/jobs`, and
//! `POST /api/jobs/{job_id}/cancel`. A member reaches only its account's jobs; another
//! account's job answers exactly as an unknown id.
use super::{
    extract::{no_such_job, JobIdPath},
    openapi::CommonErrors,
};
use crate::{
    api::{ErrorBody, ErrorCode, JobPage},
    domain::{AccountName, JobId, JobState, JobStatus},
    server::{auth::Authenticated, error::ApiError, state::AppState, store::ListFilter},
};
use axum::{
    extract::{rejection::QueryRejection, Query, State},
    Json,
};
use serde::Deserialize;

/// A job's current status.
#[utoipa::path(
    get,
    path = "/api/status/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, format = Uuid, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = JobStatus),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn status(
    State(state): State<AppState>,
    auth: Authenticated,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobStatus>, ApiError> {
    state
        .jobs
        .status(id, auth.caller.scope())
        .await?
        .map(Json)
        .ok_or_else(|| no_such_job(id))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs in this state: queued, receiving, processing, completed, failed, cancelled.
    #[param(value_type = Option<JobState>)]
    status: Option<String>,
    /// Continue after this job (the previous page's `next_before`).
    #[param(format = Uuid)]
    before: Option<String>,
    /// Jobs per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    /// Only the jobs of this account (a member sees only its own jobs anyway).
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    owner: Option<String>,
    /// Only jobs whose file name or metadata contains this text (ASCII letters in any case).
    #[param(max_length = 200)]
    q: Option<String>,
}

/// Jobs, newest first, a page at a time: every job for an admin (each with its owner), the
/// account's own for a member.
#[utoipa::path(
    get,
    path = "/api/jobs",
    tag = "jobs",
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = JobPage),
        (status = 400, description = "Bad query parameters", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<JobPage>, ApiError> {
    let Query(params) = params.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidQuery, rejection.body_text())
    })?;
    let invalid = |error: String| ApiError::bad_request(ErrorCode::InvalidQuery, error);
    let state_filter = params
        .status
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(|error| invalid(error.to_string()))?;
    let owner = params
        .owner
        .as_deref()
        .map(AccountName::parse)
        .transpose()
        .map_err(|error| invalid(format!("owner: {error}")))?;
    let before = params
        .before
        .as_deref()
        .map(JobId::parse)
        .transpose()
        .map_err(|error| {
            ApiError::bad_request(ErrorCode::InvalidQuery, format!("before: {error}"))
        })?;
    if params.q.as_ref().is_some_and(|q| q.chars().count() > 200) {
        return Err(invalid("q: at most 200 characters".to_owned()));
    }
    let filter = ListFilter {
        scope: auth.caller.scope(),
        owner,
        state: state_filter,
        text: params.q,
    };
    Ok(Json(state.jobs.page(&filter, before, params.limit).await?))
}

/// Cancel a job that has not finished: a queued job never runs, an upload stops and its bytes
/// are removed, processing stops after the current step.
#[utoipa::path(
    post,
    path = "/api/jobs/{job_id}/cancel",
    tag = "jobs",
    params(("job_id" = String, Path, format = Uuid, description = "The job's id")),
    responses(
        (status = 200, description = "The cancelled job", body = JobStatus),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has already finished", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn cancel(
    State(state): State<AppState>,
    auth: Authenticated,
    JobIdPath(id): JobIdPath,
) -> Result<Json<JobStatus>, ApiError> {
    Ok(Json(state.jobs.cancel(id, auth.caller.scope()).await?))
}
