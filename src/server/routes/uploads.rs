//! Resumable uploads, tus 1.0 (headers are parsed in `tus_headers`): `POST /api/uploads`
//! declares a file and creates its job, `PATCH /api/uploads/{job_id}` sends bytes, `HEAD`
//! reports the durable offset, `DELETE` terminates, `OPTIONS` says what the server speaks. The
//! job id is known before the first byte, so a browser can follow and cancel an upload.
//!
//! An upload's bytes may come in any number of PATCHes. Each PATCH's bytes are fsync'd and its
//! end offset recorded before it is answered, and a PATCH cut short (or stopped by a full disk)
//! keeps what arrived: HEAD reports exactly what is durable, and the upload continues from
//! there, across restarts. Between requests an upload lives only in the store, and each
//! credential may leave at most `max_pending_uploads` of them unfinished.
use super::{
    extract::{self, accepted_body, JobIdPath, TusHeaders},
    openapi::{CommonErrors, TusResumable},
    tus_headers::{
        with_tus, PATCH_CONTENT_TYPE, TUS_EXTENSIONS, TUS_VERSION, UPLOAD_LENGTH, UPLOAD_OFFSET,
    },
};
use crate::{
    api::{ErrorBody, ErrorCode, IngestAccepted},
    domain::JobStatus,
    server::{
        auth::Authenticated,
        error::ApiError,
        state::AppState,
        uploads::{Declared, UploadError, Uploads},
    },
};
use axum::{
    body::Body,
    extract::State,
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

/// What the server speaks: the tus version, extensions and the largest upload it takes.
#[utoipa::path(
    options,
    path = "/api/uploads",
    tag = "uploads",
    responses(
        (status = 204, description = "Tus-Version, Tus-Extension and Tus-Max-Size headers"),
        (status = 429, description = "Rate limit reached; see Retry-After", body = ErrorBody),
    ),
)]
pub async fn capabilities(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    headers.insert("tus-extension", HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        "tus-checksum-algorithm",
        HeaderValue::from_static("sha1,sha256"),
    );
    headers.insert(
        "tus-max-size",
        HeaderValue::from(state.settings.max_upload_bytes),
    );
    with_tus(response)
}

/// Declares an upload: its length (`Upload-Length`) and, in `Upload-Metadata`, base64 values
/// for `filename`, `filetype`, `metadata` (a JSON object) and `sha256` (the whole file's
/// expected digest). Creates the job in `receiving`. The first bytes may come along
/// (`Content-Type: application/offset+octet-stream`). Each credential may have
/// `max_pending_uploads` unfinished uploads; beyond that, 429 `too_many_pending_uploads`.
#[utoipa::path(
    post,
    path = "/api/uploads",
    tag = "uploads",
    params(
        ("Tus-Resumable" = TusResumable, Header, description = "The tus version this server speaks"),
        ("Upload-Length" = Option<u64>, Header, description = "The file's size in bytes"),
        ("Upload-Defer-Length" = Option<u8>, Header, description = "1 when the size is not known yet; a later PATCH sends Upload-Length"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64value` pairs, comma-separated: filename, filetype, metadata"),
    ),
    responses(
        (status = 201, description = "The upload's job; send the bytes to Location", body = IngestAccepted,
            headers(("Location" = String, description = "The upload's URL"))),
        (status = 400, description = "Missing or malformed Upload-Length or Upload-Metadata", body = ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable", body = ErrorBody),
        (status = 413, description = "Upload-Length over the limit, or the account's `stored_bytes` quota (`quota_exceeded`)", body = ErrorBody),
        CommonErrors,
        (status = 503, description = "Too many uploads at once (when the first bytes come along); see Retry-After", body = ErrorBody),
        (status = 507, description = "Free disk space is below the server's floor, or the disk is full", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    tus: TusHeaders,
    request: Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let headers = &request.headers;
    // creation-with-upload: the first bytes may come with the declaration.
    let first_bytes = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(value) if value == PATCH_CONTENT_TYPE => Some(tus.checksum()?),
        Some(_) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "bytes sent with the creation carry Content-Type: {PATCH_CONTENT_TYPE}"
            )))
        }
    };
    let deferred = headers
        .get("upload-defer-length")
        .map(|value| {
            if value == "1" {
                Ok(())
            } else {
                Err(ApiError::bad_request(
                    ErrorCode::InvalidUploadLength,
                    "Upload-Defer-Length can only be 1",
                ))
            }
        })
        .transpose()?
        .is_some();
    let length = match (tus.length()?, deferred) {
        (Some(length), false) => Some(length),
        (None, true) => None,
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidUploadLength,
                "send Upload-Length or Upload-Defer-Length: 1, not both",
            ))
        }
        (None, false) => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidUploadLength,
                "Upload-Length (or Upload-Defer-Length: 1) is required",
            ))
        }
    };
    let metadata = tus.metadata()?;
    let uploads = &state.uploads;
    // Asked before anything is recorded, so a refused upload leaves nothing behind.
    let admitted = extract::admission(
        &state,
        &auth,
        metadata.filename.as_deref(),
        length,
        None,
        &metadata.metadata,
    )
    .await?;
    let declared = Declared {
        filename: metadata.filename,
        length,
        metadata: admitted.unwrap_or(metadata.metadata),
        sha256: metadata.sha256,
    };
    let uploader = extract::uploader(&auth, &state.settings);
    let job = uploads.declare(declared, &uploader).await?;
    let id = job.job_id;
    let location = upload_url(&job);
    let accepted = accepted_body(&state, &request, &job);
    // Bytes sent along, or an empty file (no PATCH will ever come for it): in at once.
    let offset = match (first_bytes, length) {
        (None, Some(length)) if length > 0 => 0,
        (None, None) => 0,
        (first_bytes, _) => {
            let checksum = first_bytes.flatten();
            let sent = async {
                let mut session = uploads.open(id, &uploader).await?;
                if session.offset() != 0 {
                    // Someone who guessed the new id got there first.
                    return Err(UploadError::Changed(id));
                }
                session.append(body.into_data_stream(), checksum).await
            };
            match sent.await {
                Ok(offset) => offset,
                // The upload exists and can go on: say where it is, as tus asks.
                Err(error) if uploads.still_receiving(id).await => {
                    tracing::info!(job_id = %id, %error, "bytes sent with the creation were not all kept");
                    uploads.recorded_offset(id).await?
                }
                Err(error) => return Err(error.into()),
            }
        }
    };
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(offset));
    with_expiry(uploads, uploads.status(id).await?, &mut response);
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
    auth: Authenticated,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    let (job, durable) = state.uploads.describe(id, auth.caller.scope()).await?;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(UPLOAD_OFFSET, HeaderValue::from(durable));
    match job.bytes_total {
        Some(length) => headers.insert(UPLOAD_LENGTH, HeaderValue::from(length)),
        None => headers.insert("upload-defer-length", HeaderValue::from_static("1")),
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_expiry(&state.uploads, Some(job), &mut response);
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
        ("Tus-Resumable" = TusResumable, Header, description = "The tus version this server speaks"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes start"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this request's bytes"),
    ),
    request_body(content_type = "application/offset+octet-stream", description = "The bytes from Upload-Offset on (none is fine)"),
    responses(
        (status = 204, description = "Stored; Upload-Offset is the new offset"),
        (status = 400, description = "Missing Upload-Offset, or the bytes stopped early", body = ErrorBody),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 409, description = "Upload-Offset is not the server's offset, another request is sending this upload, or it was cancelled", body = ErrorBody),
        (status = 410, description = "The upload failed, was cancelled or expired", body = ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable", body = ErrorBody),
        (status = 413, description = "More bytes than Upload-Length, or the finished file passes the account's `stored_bytes` quota (`quota_exceeded`; the upload fails and its bytes go)", body = ErrorBody),
        (status = 415, description = "Wrong Content-Type", body = ErrorBody),
        (status = 460, description = "The bytes do not match Upload-Checksum (they were discarded), or the whole file does not match its declared sha256 (the job fails)", body = ErrorBody),
        CommonErrors,
        (status = 503, description = "Too many uploads at once; see Retry-After", body = ErrorBody),
        (status = 507, description = "Free disk space is below the server's floor, or the disk filled up: what was stored is kept (see Upload-Offset via HEAD), continue later", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn append(
    State(state): State<AppState>,
    auth: Authenticated,
    tus: TusHeaders,
    id: Result<JobIdPath, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    if content_type != Some(PATCH_CONTENT_TYPE) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "a PATCH carries Content-Type: {PATCH_CONTENT_TYPE}"
        )));
    }
    let offset = tus.offset()?.ok_or_else(|| {
        ApiError::bad_request(ErrorCode::InvalidUploadOffset, "Upload-Offset is required")
    })?;
    let checksum = tus.checksum()?;
    let JobIdPath(id) = id?;
    let uploads = &state.uploads;
    let uploader = extract::uploader(&auth, &state.settings);
    uploads.describe(id, uploader.scope).await?;
    uploads.check_free_disk()?;
    let mut session = uploads.open(id, &uploader).await?;
    session.expect_offset(offset)?;
    if let Some(length) = tus.length()? {
        session.state_length(length).await?;
    }
    let new_offset = session.append(body.into_data_stream(), checksum).await?;
    drop(session);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(new_offset));
    with_expiry(uploads, uploads.status(id).await?, &mut response);
    Ok(with_tus(response))
}

/// Ends an unfinished upload (tus termination): its job is cancelled and its bytes removed.
#[utoipa::path(
    delete,
    path = "/api/uploads/{job_id}",
    tag = "uploads",
    params(
        ("job_id" = String, Path, format = Uuid, description = "The upload's job id"),
        ("Tus-Resumable" = TusResumable, Header, description = "The tus version this server speaks"),
    ),
    responses(
        (status = 204, description = "Terminated: the job is cancelled, its bytes are gone"),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 409, description = "The upload is complete; delete its job instead", body = ErrorBody),
        (status = 410, description = "Already failed, cancelled or expired", body = ErrorBody),
        (status = 412, description = "Missing or unsupported Tus-Resumable", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn terminate(
    State(state): State<AppState>,
    auth: Authenticated,
    _tus: TusHeaders,
    JobIdPath(id): JobIdPath,
) -> Result<Response, ApiError> {
    state.uploads.terminate(id, auth.caller.scope()).await?;
    Ok(with_tus(StatusCode::NO_CONTENT.into_response()))
}

/// Every answer on the upload routes says which tus version the server speaks; a 412 (wrong or
/// missing `Tus-Resumable`) also lists the versions it supports, as tus requires.
pub async fn tus_headers_on_every_answer(mut response: Response) -> Response {
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response
            .headers_mut()
            .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    }
    with_tus(response)
}

/// `Upload-Expires` (an HTTP date) on an upload still receiving.
fn with_expiry(uploads: &Uploads, job: Option<JobStatus>, response: &mut Response) {
    let Some(expiry) = job.as_ref().and_then(|job| uploads.expires_at(job)) else {
        return;
    };
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(expiry)) {
        response.headers_mut().insert("upload-expires", value);
    }
}

fn upload_url(job: &JobStatus) -> String {
    format!("/api/uploads/{}", job.job_id)
}
