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
    extract::{no_such_job, parse_job_id},
    file_body::{
        abandon_upload, cancelled_meanwhile, check_free_disk, discard_quietly, disk_full,
        fail_quietly, finish_failed, progress_reporter, too_large, upload_slot,
    },
    ingest::accepted_body,
    openapi::{CommonErrors, TusResumable},
    tus_headers::{
        check_tus_version, chunk_checksum, number_header, with_tus, UploadMetadata,
        PATCH_CONTENT_TYPE, TUS_EXTENSIONS, TUS_VERSION, UPLOAD_LENGTH, UPLOAD_OFFSET,
    },
};
use crate::{
    api::{ErrorBody, ErrorCode, IngestAccepted},
    domain::{JobId, JobState, JobStatus},
    server::{
        auth::Authenticated,
        error::ApiError,
        jobs::{AlreadyFinished, Declaration, Sending},
        receive::{self, Bounds, ChunkChecksum, Partial, ReceiveError, Received, Stopped},
        retention,
        state::AppState,
        store::UploadRecord,
    },
};
use axum::{
    body::Body,
    extract::{rejection::PathRejection, Path, State},
    http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use std::time::SystemTime;

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
        (status = 413, description = "Upload-Length over the limit", body = ErrorBody),
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
    request: Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let headers = &request.headers;
    check_tus_version(headers)?;
    // creation-with-upload: the first bytes may come with the declaration.
    let first_bytes = match headers.get(header::CONTENT_TYPE) {
        None => None,
        Some(value) if value == PATCH_CONTENT_TYPE => Some(chunk_checksum(headers)?),
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
    let length = match (number_header(headers, &UPLOAD_LENGTH)?, deferred) {
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
    if length.is_some_and(|length| length > state.settings.max_upload_bytes) {
        return Err(too_large(state.settings.max_upload_bytes));
    }
    let declared = UploadMetadata::parse(headers, state.settings.max_metadata_bytes)?;
    // Refused before the job exists when the server takes no more uploads right now.
    check_free_disk(&state)?;
    drop(upload_slot(&state)?);
    let limit = state.settings.max_pending_uploads;
    let declaration = state
        .jobs
        .declare_upload(
            declared.filename,
            length,
            declared.metadata,
            declared.sha256,
            &auth.credential.label(),
            limit,
        )
        .await;
    let job = match declaration {
        Ok(job) => job,
        Err(Declaration::TooManyPending { limit }) => {
            return Err(ApiError::TooManyPendingUploads {
                message: format!(
                    "this credential has {limit} unfinished uploads, as many as it may have; \
                     finish one or end it (DELETE its upload URL) first"
                ),
                retry_after: PENDING_RETRY_AFTER_SECS,
            })
        }
        Err(Declaration::Failed(error)) => return Err(error.into()),
    };
    tracing::info!(job_id = %job.job_id, ?length, "upload created");
    let id = job.job_id;
    let location = upload_url(&job);
    let accepted = accepted_body(&state, &request, &job);
    // Bytes sent along, or an empty file (no PATCH will ever come for it): in at once.
    let offset = match (first_bytes, length) {
        (None, Some(length)) if length > 0 => 0,
        (None, _) if length.is_none() => 0,
        (first_bytes, _) => {
            let checksum = first_bytes.flatten();
            let sent = match hold_upload(&state, id).await {
                Ok((sending, job, upload)) if durable_offset(&job, upload.offset) == 0 => {
                    send_bytes(&state, &sending, job, upload, 0, body, checksum).await
                }
                // Someone who guessed the new id got there first.
                Ok(_) => Err(ApiError::Conflict(format!(
                    "upload {id} has changed since its creation"
                ))),
                Err(error) => Err(error),
            };
            match sent {
                Ok(offset) => offset,
                // The upload exists and can go on: say where it is, as tus asks.
                Err(error) if still_receiving(&state, id).await => {
                    tracing::info!(job_id = %id, %error, "bytes sent with the creation were not all kept");
                    state
                        .jobs
                        .upload(id)
                        .await?
                        .map_or(0, |upload| upload.offset)
                }
                Err(error) => return Err(error),
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
    if let Some(live) = state.jobs.status(id).await? {
        with_expiry(&state, &live, &mut response);
    }
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
    let (job, upload) = upload_job(&state, parse_job_id(job_id)?).await?;
    let stored = upload.offset;
    let mut response = StatusCode::OK.into_response();
    let headers = response.headers_mut();
    headers.insert(
        UPLOAD_OFFSET,
        HeaderValue::from(durable_offset(&job, stored)),
    );
    match job.bytes_total {
        Some(length) => headers.insert(UPLOAD_LENGTH, HeaderValue::from(length)),
        None => headers.insert("upload-defer-length", HeaderValue::from_static("1")),
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_expiry(&state, &job, &mut response);
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
        (status = 413, description = "More bytes than Upload-Length", body = ErrorBody),
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
        ApiError::bad_request(ErrorCode::InvalidUploadOffset, "Upload-Offset is required")
    })?;
    let checksum = chunk_checksum(&headers)?;
    let id = parse_job_id(job_id)?;
    upload_job(&state, id).await?;
    check_free_disk(&state)?;
    let (sending, job, upload) = hold_upload(&state, id).await?;
    let stored = upload.offset;
    let durable = durable_offset(&job, stored);
    if offset != durable || job.status != JobState::Receiving {
        return Err(ApiError::Conflict(format!(
            "Upload-Offset is {offset} but the server has {durable} bytes of upload {id}"
        )));
    }
    let job = match (job.bytes_total, number_header(&headers, &UPLOAD_LENGTH)?) {
        (None, Some(length)) => set_length(&state, job, durable, length).await?,
        (Some(known), Some(length)) if known != length => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidUploadLength,
                format!("the upload's length is already {known}"),
            ))
        }
        _ => job,
    };
    let new_offset = send_bytes(&state, &sending, job, upload, durable, body, checksum).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(UPLOAD_OFFSET, HeaderValue::from(new_offset));
    if let Some(live) = state.jobs.status(id).await? {
        with_expiry(&state, &live, &mut response);
    }
    Ok(with_tus(response))
}

/// How long a client refused for having too many unfinished uploads is asked to wait: they go
/// only when it finishes or ends one (or one expires), so retrying at once is pointless.
const PENDING_RETRY_AFTER_SECS: u64 = 60;

/// Takes the right to send upload `id`'s bytes (409 while another request has it), then reads
/// the upload: after registering for its cancellation, so a cancel from before shows in this
/// read and one from after stops the request.
async fn hold_upload(
    state: &AppState,
    id: JobId,
) -> Result<(Sending<'_>, JobStatus, UploadRecord), ApiError> {
    let Some(sending) = state.jobs.start_sending(id) else {
        return Err(ApiError::Conflict(format!(
            "another request is sending upload {id}; retry once it has finished"
        )));
    };
    let (job, upload) = upload_job(state, id).await?;
    Ok((sending, job, upload))
}

/// Appends one request's bytes to a receiving upload whose durable offset is `durable` (the
/// caller holds it: `sending`) and returns the new durable offset. Once all bytes are in, the
/// file is checked against a declared digest, stored and queued.
async fn send_bytes(
    state: &AppState,
    sending: &Sending<'_>,
    job: JobStatus,
    upload: UploadRecord,
    durable: u64,
    body: Body,
    checksum: Option<ChunkChecksum>,
) -> Result<u64, ApiError> {
    let id = job.job_id;
    // A deferred length allows up to the server's limit until the client states it.
    let length = job.bytes_total;
    let ceiling = length.unwrap_or(state.settings.max_upload_bytes);
    let _slot = upload_slot(state)?;
    // Its progress is carried live while the bytes arrive, and only then.
    let _live = state.jobs.watch_live(job.clone()).await?;
    let from = match state.jobs.partial(id, durable).await {
        Ok(from) => from,
        Err(error) => {
            // The stored part cannot be read back (lost or short): it cannot be continued.
            tracing::error!(error = ?error, job_id = %id, "an upload's stored bytes are unreadable");
            fail_quietly(
                state,
                job,
                "the stored part of the upload was lost".to_owned(),
            )
            .await;
            return Err(ApiError::Gone(format!(
                "upload {id} cannot be continued: its stored part was lost"
            )));
        }
    };
    let temp = state.jobs.blobs().temp_path(id);
    let cancelled = sending.cancelled();
    let bounds = Bounds {
        limit: ceiling.saturating_sub(durable),
        idle: state.settings.upload_idle_timeout,
        cancelled,
        checksum,
    };
    let appended = receive::append(
        body.into_data_stream(),
        &temp,
        from,
        bounds,
        progress_reporter(state, &job, durable),
    )
    .await;
    let partial = match appended {
        Ok(partial) => partial,
        Err(Stopped { error, partial }) => {
            return Err(stopped(state, job, &temp, error, partial, durable).await);
        }
    };
    if cancelled.is_cancelled() {
        // Cancelled just as the bytes finished arriving: they do not count.
        return Err(stopped(state, job, &temp, ReceiveError::Cancelled, partial, durable).await);
    }
    let new_offset = partial.offset;
    if length != Some(new_offset) {
        return match state.jobs.record_partial(&job, partial).await {
            Ok(()) => Ok(new_offset),
            Err(error) => Err(not_recorded(state, &job, &temp, error, durable)),
        };
    }
    let digest = partial.digest();
    if let Some(expected) = upload
        .expected_sha256
        .filter(|expected| *expected != digest)
    {
        let reason = format!(
            "the file's SHA-256 is {} but the upload declared {}",
            digest.to_hex(),
            expected.to_hex()
        );
        abandon_upload(state, job, &temp, reason.clone()).await;
        return Err(ApiError::ChecksumMismatch(reason));
    }
    let received = Received {
        digest,
        size: new_offset,
        temp,
    };
    state
        .jobs
        .finish_upload(job, received)
        .await
        .map_err(|error| finish_failed(error, id))?;
    tracing::info!(job_id = %id, "upload stored");
    Ok(new_offset)
}

async fn still_receiving(state: &AppState, id: JobId) -> bool {
    matches!(
        state.jobs.status(id).await,
        Ok(Some(job)) if job.status == JobState::Receiving
    )
}

/// Fixes a deferred length (it must cover what is already stored and fit the server's limit).
async fn set_length(
    state: &AppState,
    mut job: JobStatus,
    durable: u64,
    length: u64,
) -> Result<JobStatus, ApiError> {
    if length > state.settings.max_upload_bytes {
        return Err(too_large(state.settings.max_upload_bytes));
    }
    if length < durable {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidUploadLength,
            format!("Upload-Length {length} is less than the {durable} bytes already stored"),
        ));
    }
    job.bytes_total = Some(length);
    state.jobs.update(&mut job).await?;
    Ok(job)
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
    _auth: Authenticated,
    job_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_tus_version(&headers)?;
    let (job, _) = upload_job(&state, parse_job_id(job_id)?).await?;
    if job.status != JobState::Receiving {
        return Err(ApiError::Conflict(format!(
            "upload {} is complete; DELETE /api/jobs/{} removes its job",
            job.job_id, job.job_id
        )));
    }
    state.jobs.cancel(job.job_id).await?;
    Ok(with_tus(StatusCode::NO_CONTENT.into_response()))
}

/// Durable bytes that could not be recorded: a cancel came first (they are removed; the cancel
/// removes them too, once this request lets go), or the store failed (they stay unrecorded, and
/// the next request trims them). The live progress goes back to what is recorded.
fn not_recorded(
    state: &AppState,
    job: &JobStatus,
    temp: &std::path::Path,
    error: anyhow::Error,
    durable: u64,
) -> ApiError {
    if error.is::<AlreadyFinished>() {
        discard_quietly(state, temp);
        return cancelled_meanwhile(job);
    }
    state.jobs.report_received(job, durable);
    ApiError::from(error)
}

/// A PATCH that ended early. Bytes that arrived before a cut or a full disk are kept (and
/// recorded); bytes beyond `Upload-Length` or failing their checksum are discarded (and the
/// live progress goes back to the durable offset); a cancelled upload's bytes are removed;
/// another storage failure fails the job.
async fn stopped(
    state: &AppState,
    job: JobStatus,
    temp: &std::path::Path,
    error: ReceiveError,
    partial: Partial,
    durable: u64,
) -> ApiError {
    match error {
        ReceiveError::Interrupted { .. } => {
            let kept = partial.offset;
            if let Err(error) = state.jobs.record_partial(&job, partial).await {
                return not_recorded(state, &job, temp, error, durable);
            }
            ApiError::bad_request(
                ErrorCode::UploadInterrupted,
                format!("{error}; {kept} bytes are stored, continue from there"),
            )
        }
        ReceiveError::DiskFull(_) => {
            let kept = partial.offset;
            if kept > durable {
                if let Err(error) = state.jobs.record_partial(&job, partial).await {
                    return match not_recorded(state, &job, temp, error, durable) {
                        conflict @ ApiError::Conflict(_) => conflict,
                        _ => disk_full(),
                    };
                }
            } else {
                state.jobs.report_received(&job, durable);
            }
            ApiError::InsufficientStorage(format!(
                "the server's disk is full; {kept} bytes of upload {} are stored, continue \
                 from there once space is freed",
                job.job_id
            ))
        }
        ReceiveError::ChecksumMismatch => {
            state.jobs.report_received(&job, durable);
            ApiError::ChecksumMismatch(format!(
                "the PATCH's bytes do not match its Upload-Checksum; they were discarded, \
                 send them again from offset {durable}"
            ))
        }
        ReceiveError::TooLarge { .. } => {
            state.jobs.report_received(&job, durable);
            ApiError::PayloadTooLarge(format!(
                "the PATCH goes beyond Upload-Length ({} bytes); its bytes were discarded",
                job.bytes_total.unwrap_or(0)
            ))
        }
        ReceiveError::Cancelled => {
            discard_quietly(state, temp);
            cancelled_meanwhile(&job)
        }
        ReceiveError::Io(cause) => {
            let id = job.job_id;
            abandon_upload(state, job, temp, "storing the upload failed".to_owned()).await;
            ApiError::Internal(anyhow::anyhow!("receiving upload {id}: {cause}"))
        }
    }
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

/// The job behind an upload URL and its recorded durable offset: 404 if there is none (or it is
/// not a resumable upload), 410 once it failed, was cancelled or expired.
async fn upload_job(state: &AppState, id: JobId) -> Result<(JobStatus, UploadRecord), ApiError> {
    let (Some(job), Some(upload)) = (state.jobs.status(id).await?, state.jobs.upload(id).await?)
    else {
        return Err(no_such_job(id));
    };
    let gone = |reason: &str| ApiError::Gone(format!("upload {id} is over: {reason}"));
    match job.status {
        JobState::Failed | JobState::Cancelled => {
            Err(gone(job.error.as_deref().unwrap_or("cancelled")))
        }
        JobState::Receiving if SystemTime::now() > expires_at(state, &job) => {
            // Past its expiry: expired now rather than at the next sweep.
            if retention::expire_upload(&state.jobs, job.clone()).await? {
                return Err(gone(retention::EXPIRED));
            }
            Ok((job, upload))
        }
        _ => Ok((job, upload)),
    }
}

/// When an upload that sends nothing more expires: its last change plus `upload_expiry`.
fn expires_at(state: &AppState, job: &JobStatus) -> SystemTime {
    SystemTime::from(job.updated_at) + state.settings.upload_expiry
}

/// `Upload-Expires` (an HTTP date) on an upload still receiving.
fn with_expiry(state: &AppState, job: &JobStatus, response: &mut Response) {
    if job.status == JobState::Receiving {
        let date = httpdate::fmt_http_date(expires_at(state, job));
        if let Ok(value) = HeaderValue::from_str(&date) {
            response.headers_mut().insert("upload-expires", value);
        }
    }
}

/// Bytes on disk for good: the recorded offset while receiving, all of them afterwards.
fn durable_offset(job: &JobStatus, stored: u64) -> u64 {
    match job.status {
        JobState::Receiving => stored,
        _ => job.size.or(job.bytes_total).unwrap_or(stored),
    }
}

fn upload_url(job: &JobStatus) -> String {
    format!("/api/uploads/{}", job.job_id)
}
