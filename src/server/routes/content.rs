//! `GET /api/jobs/{id}/content` streams a job's stored file back (Range requests, `ETag` = the
//! SHA-256, the detected type, a safe `Content-Disposition`); `DELETE /api/jobs/{id}` removes a
//! finished job and, when nothing else references it, its blob.
use super::jobs::{no_such_job, parse_job_id};
use super::openapi::CommonErrors;
use crate::{
    api::ErrorBody,
    domain::{JobState, Sha256Digest},
    server::{auth::Authenticated, error::ApiError, jobs::Deletion, startup::AppState},
};
use axum::{
    extract::{rejection::PathRejection, Path, Request, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use tower::ServiceExt;
use tower_http::services::ServeFile;

/// Download a completed job's file (supports `Range` and `If-None-Match`).
#[utoipa::path(
    get,
    path = "/api/jobs/{job_id}/content",
    tag = "jobs",
    params(
        ("job_id" = String, Path, format = Uuid, description = "The job's id"),
        ("Range" = Option<String>, Header, description = "e.g. bytes=0-1023"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag from an earlier download"),
    ),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream",
            headers(("ETag" = String, description = "The quoted SHA-256"), ("Content-Disposition" = String))),
        (status = 206, description = "The requested range", content_type = "application/octet-stream"),
        (status = 304, description = "Unchanged since the given ETag"),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job, or it has no file", body = ErrorBody),
        (status = 409, description = "The job has not completed", body = ErrorBody),
        (status = 416, description = "Range outside the file"),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn download(
    State(state): State<AppState>,
    _auth: Authenticated,
    job_id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_job_id(job_id)?;
    let job = state
        .jobs
        .status(id)
        .await?
        .ok_or_else(|| no_such_job(id))?;
    let digest = match (job.status, job.sha256) {
        (JobState::Completed, Some(digest)) => digest,
        (status, _) if status.is_terminal() => {
            return Err(ApiError::NotFound(format!("job {id} has no stored file")))
        }
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is {status}; its file can be downloaded once it is completed"
            )))
        }
    };
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).map_err(anyhow::Error::from)?;
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }

    let path = state.jobs.blobs().blob_path(&digest);
    let Ok(mut response) = ServeFile::new(path).oneshot(request).await;
    if response.status() == StatusCode::NOT_FOUND {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "the blob of job {id} ({digest}) is missing"
        )));
    }
    let content_type = job
        .content_type
        .as_deref()
        .and_then(|mime| HeaderValue::from_str(mime).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = content_disposition(job.filename.as_deref(), &digest);
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response.into_response())
}

/// Delete a finished job; its blob goes when no other job references it.
#[utoipa::path(
    delete,
    path = "/api/jobs/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, format = Uuid, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has not finished", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    _auth: Authenticated,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = parse_job_id(job_id)?;
    match state.jobs.delete(id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(no_such_job(id)),
        Err(Deletion::Running(_)) => Err(ApiError::Conflict(format!(
            "job {id} has not finished; only finished jobs can be deleted"
        ))),
        Err(Deletion::Failed(error)) => Err(ApiError::Internal(error)),
    }
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form, so no
/// client's name can break out of the header or name a path.
fn content_disposition(filename: Option<&str>, digest: &Sha256Digest) -> HeaderValue {
    let name = filename.map_or_else(|| digest.to_hex(), str::to_owned);
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' | '%' | ';' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_quoted_safely_and_keep_the_exact_name() {
        let digest = Sha256Digest::from_bytes([0xab; 32]);
        let header = content_disposition(Some("naïve \"q\";.txt"), &digest);
        assert_eq!(
            header.to_str().unwrap(),
            "attachment; filename=\"na_ve _q__.txt\"; filename*=UTF-8''na%C3%AFve%20%22q%22%3B.txt"
        );
        let unnamed = content_disposition(None, &digest);
        assert!(unnamed.to_str().unwrap().contains(&digest.to_hex()));
    }
}
