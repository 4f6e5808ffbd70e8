//! Uploads in the tus 1.0 shape (core + creation): `POST /api/uploads` declares a file and
//! creates its job, `PATCH /api/uploads/{job_id}` sends the bytes, `HEAD` reports the durable
//! offset, `OPTIONS` says what the server speaks. The job id is known before the first byte, so
//! a browser can follow and cancel an upload while it runs.
//!
//! For now an upload's bytes arrive in one PATCH from offset 0: bytes are durable (and HEAD
//! reports them) once the whole file is stored, and a PATCH cut short fails the job.
use super::{
    file_body::{fail_quietly, receive_file, too_large, upload_slot},
    ingest::{accepted_body, finish_failed},
    jobs::{no_such_job, parse_job_id},
    openapi::CommonErrors,
};
use crate::{
    api::{ErrorBody, IngestAccepted},
    domain::{empty_metadata, parse_metadata, JobState, JobStatus, UploadName},
    server::{auth::Authenticated, error::ApiError, startup::AppState},
};
use axum::{
    body::Body,
    extract::{rejection::PathRejection, Path, State},
    http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine;

const TUS_VERSION: &str = "1.0.0";
const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// What the server speaks: the tus version, extensions and the largest upload it takes.
#[utoipa::path(
    options,
    path = "/api/uploads",
    tag = "uploads",
    responses((status = 204, description = "Tus-Version, Tus-Extension and Tus-Max-Size headers")),
)]
pub async fn capabilities(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static("creation"));
    headers.insert(
        "tus-max-size",
        HeaderValue::from(state.settings.max_upload_bytes),
    );
    with_tus(response)
}

/// Declares an upload: its length (`Upload-Length`) and, in `Upload-Metadata`, base64 values
/// for `filename`, `filetype` and `metadata` (a JSON object). Creates the job in `receiving`.
#[utoipa::path(
    post,
    path = "/api/uploads",
    tag = "uploads",
    params(
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64value` pairs, comma-separated: filename, filetype, metadata"),
    ),
    responses(
        (status = 201, description = "The upload's job; send the bytes to Location", body = IngestAccepted,
            headers(("Location" = String, description = "The upload's URL"))),
        (status = 400, description = "Missing or malformed Upload-Length or Upload-Metadata", body = ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable", body = ErrorBody),
        (status = 413, description = "Upload-Length over the limit", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    _auth: Authenticated,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_tus_version(&headers)?;
    let length = number_header(&headers, &UPLOAD_LENGTH)?.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_upload_length",
            "Upload-Length is required (deferred lengths are not supported)",
        )
    })?;
    if length > state.settings.max_upload_bytes {
        return Err(too_large(state.settings.max_upload_bytes));
    }
    let declared = UploadMetadata::parse(&headers, state.settings.max_metadata_bytes)?;
    let job = state
        .jobs
        .begin_upload(declared.filename, Some(length), declared.metadata)
        .await?;
    tracing::info!(job_id = %job.job_id, length, "upload created");
    let location = upload_url(&job);
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(accepted_body(&headers, &job)),
    )
        .into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(0u64));
    Ok(with_tus(response))
}

/// How many bytes of the upload are durable on the server (`Upload-Offset`), and its length.
#[utoipa::path(
    head,
    path = "/api/uploads/{job_id}",
    tag = "uploads",
    params(("job_id" = String, Path, format = Uuid, description = "The upload's job id")),
    responses(
        (status = 200, description = "Upload-Offset and Upload-Length headers"),
        (status = 404, description = "No such upload"),
        (status = 410, description = "The upload failed, was cancelled or expired"),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn offset(
    State(state): State<AppState>,
    _auth: Authenticated,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let job = upload_job(&state, job_id).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(durable_offset(&job)));
    if let Some(length) = job.bytes_total {
        headers.insert(UPLOAD_LENGTH, HeaderValue::from(length));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(with_tus(response))
}

/// Sends the upload's bytes (`Content-Type: application/offset+octet-stream`) from
/// `Upload-Offset`, which must equal the server's offset. The file is stored and queued once
/// all `Upload-Length` bytes are in.
#[utoipa::path(
    patch,
    path = "/api/uploads/{job_id}",
    tag = "uploads",
    params(
        ("job_id" = String, Path, format = Uuid, description = "The upload's job id"),
        ("Tus-Resumable" = String, Header, description = "1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes start"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Stored; Upload-Offset is the new offset"),
        (status = 400, description = "Missing Upload-Offset, or the bytes stopped early", body = ErrorBody),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 409, description = "Upload-Offset is not the server's offset, another request is sending this upload, or it was cancelled", body = ErrorBody),
        (status = 410, description = "The upload failed, was cancelled or expired", body = ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable", body = ErrorBody),
        (status = 413, description = "More bytes than Upload-Length", body = ErrorBody),
        (status = 415, description = "Wrong Content-Type", body = ErrorBody),
        CommonErrors,
        (status = 503, description = "Too many uploads at once; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn append(
    State(state): State<AppState>,
    _auth: Authenticated,
    job_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_tus_version(&headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if content_type != Some(PATCH_CONTENT_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a PATCH carries Content-Type: {PATCH_CONTENT_TYPE}"
        )));
    }
    let offset = number_header(&headers, &UPLOAD_OFFSET)?.ok_or_else(|| {
        ApiError::bad_request("invalid_upload_offset", "Upload-Offset is required")
    })?;
    let job = upload_job(&state, job_id).await?;
    let id = job.job_id;
    let Some(_sending) = state.jobs.lock_sending(id) else {
        return Err(ApiError::Conflict(format!(
            "another request is sending upload {id}; retry once it has finished"
        )));
    };
    let durable = durable_offset(&job);
    if offset != durable || job.status != JobState::Receiving {
        return Err(ApiError::Conflict(format!(
            "Upload-Offset is {offset} but the server has {durable} bytes of upload {id}"
        )));
    }
    let length = job.bytes_total.unwrap_or(0);
    let _slot = upload_slot(&state)?;
    let received = receive_file(&state, &job, body.into_data_stream(), length).await?;
    if received.size != length {
        let reason = format!(
            "the upload stopped after {} of {length} bytes; send the whole file in one PATCH",
            received.size
        );
        if let Err(error) = state.jobs.blobs().discard_temp(&received.temp) {
            tracing::warn!(%error, "removing an incomplete upload failed");
        }
        fail_quietly(&state, job, reason.clone()).await;
        return Err(ApiError::bad_request("upload_incomplete", reason));
    }
    let job = state
        .jobs
        .finish_upload(job, received)
        .await
        .map_err(|error| finish_failed(error, id))?;
    tracing::info!(job_id = %id, "upload stored");
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(durable_offset(&job)));
    Ok(with_tus(response))
}

/// The job behind an upload URL: 404 if there is none (or it was never an upload), 410 once it
/// failed or was cancelled.
async fn upload_job(
    state: &AppState,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<JobStatus, ApiError> {
    let id = parse_job_id(job_id)?;
    let job = state
        .jobs
        .status(id)
        .await?
        .filter(|job| job.bytes_total.is_some() || job.sha256.is_some())
        .ok_or_else(|| no_such_job(id))?;
    match job.status {
        JobState::Failed | JobState::Cancelled => {
            let reason = job.error.as_deref().unwrap_or("cancelled");
            Err(ApiError::Gone(format!("upload {id} is over: {reason}")))
        }
        _ => Ok(job),
    }
}

/// Bytes on disk for good: none while receiving (they become durable when the file is
/// stored), all of them afterwards.
fn durable_offset(job: &JobStatus) -> u64 {
    match job.status {
        JobState::Receiving => 0,
        _ => job.size.or(job.bytes_total).unwrap_or(0),
    }
}

fn upload_url(job: &JobStatus) -> String {
    format!("/api/uploads/{}", job.job_id)
}

fn with_tus(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    response
}

fn check_tus_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE) {
        Some(version) if version == TUS_VERSION => Ok(()),
        _ => Err(ApiError::PreconditionFailed(format!(
            "send Tus-Resumable: {TUS_VERSION}, the tus version this server speaks"
        ))),
    }
}

fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
    headers
        .get(name)
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_header",
                        format!("{name} must be a non-negative whole number"),
                    )
                })
        })
        .transpose()
}

/// The parts of `Upload-Metadata` this server uses. Other keys are ignored, as tus allows.
#[derive(Debug)]
struct UploadMetadata {
    filename: Option<String>,
    metadata: serde_json::Value,
}

impl UploadMetadata {
    fn parse(headers: &HeaderMap, max_metadata_bytes: usize) -> Result<Self, ApiError> {
        let mut declared = UploadMetadata {
            filename: None,
            metadata: empty_metadata(),
        };
        let Some(header) = headers.get(UPLOAD_METADATA) else {
            return Ok(declared);
        };
        let invalid = |message: String| ApiError::bad_request("invalid_upload_metadata", message);
        let header = header
            .to_str()
            .map_err(|_| invalid("Upload-Metadata must be ASCII".to_owned()))?;
        for pair in header
            .split(',')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
        {
            let (key, encoded) = pair.split_once(' ').unwrap_or((pair, ""));
            let value = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| invalid(format!("the value of {key:?} is not base64 UTF-8 text")))?;
            match key {
                "filename" => {
                    declared.filename = UploadName::sanitize(&value).map(UploadName::into_string)
                }
                "metadata" => declared.metadata = parse_metadata(&value, max_metadata_bytes)?,
                _ => {}
            }
        }
        Ok(declared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_metadata(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(UPLOAD_METADATA, value.parse().unwrap());
        headers
    }

    #[test]
    fn upload_metadata_takes_filename_and_json_metadata() {
        // filename "a.txt", metadata {"k":1}, an ignored key without a value.
        let parsed = UploadMetadata::parse(
            &with_metadata("filename YS50eHQ=,metadata eyJrIjoxfQ==,flag"),
            1024,
        )
        .unwrap();
        assert_eq!(parsed.filename.as_deref(), Some("a.txt"));
        assert_eq!(parsed.metadata["k"], 1);
    }

    #[test]
    fn upload_metadata_refuses_bad_base64_and_non_json_metadata() {
        let bad = UploadMetadata::parse(&with_metadata("filename %%%"), 1024).unwrap_err();
        assert_eq!(bad.code(), "invalid_upload_metadata");
        // metadata "nope"
        let not_json =
            UploadMetadata::parse(&with_metadata("metadata bm9wZQ=="), 1024).unwrap_err();
        assert_eq!(not_json.code(), "invalid_metadata");
    }

    #[test]
    fn numbers_in_headers_are_plain_digits() {
        let mut headers = HeaderMap::new();
        headers.insert(UPLOAD_LENGTH, "+5".parse().unwrap());
        assert!(number_header(&headers, &UPLOAD_LENGTH).is_err());
        headers.insert(UPLOAD_LENGTH, "5".parse().unwrap());
        assert_eq!(number_header(&headers, &UPLOAD_LENGTH).unwrap(), Some(5));
        assert_eq!(number_header(&headers, &UPLOAD_OFFSET).unwrap(), None);
    }
}
