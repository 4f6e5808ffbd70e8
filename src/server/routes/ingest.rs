//! `POST /api/ingest`: the seed's three body shapes (JSON, urlencoded form, multipart with an
//! optional file) turned into a durable job. Files stream through `receive` into storage.
mod framing;

use super::{
    extract::{self, accepted_body},
    openapi::{CommonErrors, IngestForm, IngestJson, IngestUrlEncoded},
};
use crate::{
    api::{ErrorBody, ErrorCode, IngestAccepted},
    domain::{
        check_metadata, empty_metadata, parse_metadata, JobStatus, MetadataError, UploadName,
    },
    server::{auth::Authenticated, error::ApiError, state::AppState, uploads::WholeFile},
};
use axum::{
    body::Body,
    extract::{FromRequest, Multipart, Request, State},
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use framing::{FramingBudget, MAX_FRAMING_BYTES};
use futures::StreamExt;
use serde_json::Value;
use std::time::Duration;

/// Multipart framing (boundaries, part headers) allowed on top of the file and metadata.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Start an ingest job, with or without a file.
#[utoipa::path(
    post,
    path = "/api/ingest",
    tag = "jobs",
    request_body(
        description = "Metadata as JSON, a urlencoded form, or a multipart form with an optional file. No body at all means a job with empty metadata.",
        content(
            (IngestJson = "application/json"),
            (IngestForm = "multipart/form-data"),
            (IngestUrlEncoded = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 202, description = "The job (and its file) is on disk", body = IngestAccepted,
            headers(("Location" = String, description = "The job's status URL"))),
        (status = 400, description = "Malformed body, metadata or multipart; or the upload was cut", body = ErrorBody),
        (status = 413, description = "Upload or metadata over the limit, or the account's `stored_bytes` quota (`quota_exceeded`)", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        CommonErrors,
        (status = 503, description = "Too many uploads at once; see Retry-After", body = ErrorBody),
        (status = 507, description = "A file, with free disk space below the server's floor or the disk full (the job fails)", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn ingest(
    State(state): State<AppState>,
    auth: Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let (head, body) = request.into_parts();
    let headers = head.headers.clone();
    let request = Request::from_parts(head.clone(), body);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|text| text.parse::<mime::Mime>().ok())
                .ok_or_else(|| unsupported("the Content-Type header is not a valid media type"))
        })
        .transpose()?;
    let limit = state.settings.max_metadata_bytes;
    let idle = state.settings.upload_idle_timeout;
    let job = match content_type {
        None => {
            // `curl -X POST` with no body: a job with no metadata, as in the demo.
            let body = read_capped(request.into_body(), limit, idle).await?;
            if !body.is_empty() {
                return Err(unsupported(
                    "a request body needs a Content-Type: application/json, \
                     application/x-www-form-urlencoded or multipart/form-data",
                ));
            }
            submit_admitted(&state, &auth, empty_metadata()).await?
        }
        Some(mime) if mime.essence_str() == "application/json" => {
            // JSON escapes can double the size of a metadata string.
            let body = read_capped(request.into_body(), limit * 2 + 1024, idle).await?;
            let metadata = metadata_from_json_body(&body, limit)?;
            submit_admitted(&state, &auth, metadata).await?
        }
        Some(mime) if mime.essence_str() == "application/x-www-form-urlencoded" => {
            let body = read_capped(request.into_body(), limit * 3 + 1024, idle).await?;
            let metadata = metadata_from_form(&body, limit)?;
            submit_admitted(&state, &auth, metadata).await?
        }
        Some(mime) if mime.essence_str() == "multipart/form-data" => {
            ingest_multipart(&state, &auth, &headers, request).await?
        }
        Some(mime) => {
            return Err(unsupported(&format!(
                "Content-Type {} is not supported; use application/json, \
                 application/x-www-form-urlencoded or multipart/form-data",
                mime.essence_str()
            )))
        }
    };
    tracing::info!(job_id = %job.job_id, has_file = job.sha256.is_some(), "job accepted");
    Ok(accepted(&state, &head, &job))
}

/// A metadata-only job, once the admission hook (if any) lets it in.
async fn submit_admitted(
    state: &AppState,
    auth: &Authenticated,
    metadata: Value,
) -> Result<JobStatus, ApiError> {
    let metadata = extract::admission(state, auth, None, None, None, &metadata)
        .await?
        .unwrap_or(metadata);
    Ok(state
        .jobs
        .submit_metadata(&auth.caller.owner(), metadata)
        .await?)
}

/// Streams the parts in order: `metadata` is read (capped), `file` goes to storage as it
/// arrives, anything else is refused. Once the file part has started the job exists, so any
/// later failure marks it failed (and its temp file is gone) before answering.
async fn ingest_multipart(
    state: &AppState,
    auth: &Authenticated,
    headers: &HeaderMap,
    request: Request,
) -> Result<JobStatus, ApiError> {
    let settings = &state.settings;
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    let ceiling =
        settings.max_upload_bytes + settings.max_metadata_bytes as u64 + MULTIPART_OVERHEAD;
    if content_length.is_some_and(|length| length > ceiling) {
        return Err(ApiError::PayloadTooLarge(format!(
            "the upload exceeds the limit of {} bytes",
            settings.max_upload_bytes
        )));
    }
    let slot = state.uploads.slot()?;
    let uploader = extract::uploader(auth, settings);
    let idle = settings.upload_idle_timeout;
    // The preamble and each part's headers are read under a budget (see `framing`).
    let budget = FramingBudget::default();
    let (head, body) = request.into_parts();
    let body = Body::from_stream(budget.watch(body.into_data_stream()));
    let mut multipart = Multipart::from_request(Request::from_parts(head, body), state)
        .await
        .map_err(|rejection| {
            ApiError::bad_request(ErrorCode::InvalidMultipart, rejection.body_text())
        })?;

    let mut metadata: Option<Value> = None;
    let mut upload: Option<WholeFile> = None;
    // Set once the admission hook has judged the file with the metadata sent before it.
    let mut admitted = false;
    loop {
        budget.arm();
        let next = tokio::time::timeout(idle, multipart.next_field()).await;
        budget.disarm();
        let Ok(next) = next else {
            return Err(abandon(upload, idle_timeout(idle)).await);
        };
        let field = match next {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(_) if budget.exceeded() => {
                let problem = ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!(
                        "the multipart preamble or a part's boundary and headers exceed \
                         {MAX_FRAMING_BYTES} bytes"
                    ),
                );
                return Err(abandon(upload, problem).await);
            }
            Err(error) => {
                let problem = ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!(
                        "the multipart body is malformed or incomplete: {}",
                        error.body_text()
                    ),
                );
                return Err(abandon(upload, problem).await);
            }
        };
        match field.name() {
            Some("metadata") => {
                let text = read_field_capped(field, settings.max_metadata_bytes, idle).await;
                let parsed = text.and_then(|text| {
                    if metadata.is_some() {
                        return Err(ApiError::bad_request(
                            ErrorCode::InvalidMultipart,
                            "the metadata part appears more than once",
                        ));
                    }
                    if admitted {
                        return Err(ApiError::bad_request(
                            ErrorCode::InvalidMultipart,
                            "this server checks uploads before accepting them: the metadata \
                             part must come before the file part",
                        ));
                    }
                    Ok(parse_metadata(&text, settings.max_metadata_bytes)?)
                });
                match parsed {
                    Ok(value) => metadata = Some(value),
                    Err(problem) => return Err(abandon(upload, problem).await),
                }
            }
            Some("file") => {
                if upload.is_some() {
                    let problem = ApiError::bad_request(
                        ErrorCode::InvalidMultipart,
                        "only one file part is accepted per ingest",
                    );
                    return Err(abandon(upload, problem).await);
                }
                let filename = field
                    .file_name()
                    .and_then(UploadName::sanitize)
                    .map(UploadName::into_string);
                let sent = metadata.clone().unwrap_or_else(empty_metadata);
                let content_type = field.content_type().map(str::to_owned);
                if let Some(admitted_metadata) = extract::admission(
                    state,
                    auth,
                    filename.as_deref(),
                    None,
                    content_type.as_deref(),
                    &sent,
                )
                .await?
                {
                    metadata = Some(admitted_metadata);
                    admitted = true;
                }
                let whole = state
                    .uploads
                    .receive_whole(
                        &slot,
                        &uploader,
                        filename,
                        content_length,
                        metadata.clone().unwrap_or_else(empty_metadata),
                        Box::pin(field),
                    )
                    .await?;
                upload = Some(whole);
            }
            other => {
                let problem = ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!(
                        "unexpected form field {:?}: only `file` and `metadata` are accepted",
                        other.unwrap_or("")
                    ),
                );
                return Err(abandon(upload, problem).await);
            }
        }
    }

    let metadata = metadata.unwrap_or_else(empty_metadata);
    match upload {
        Some(whole) => Ok(whole.finish(metadata).await?),
        None => submit_admitted(state, auth, metadata).await,
    }
}

/// A request that fails after its file arrived: the job is marked failed with the reason and
/// the received bytes are removed, then the error goes back to the client.
async fn abandon(upload: Option<WholeFile<'_>>, problem: ApiError) -> ApiError {
    if let Some(whole) = upload {
        whole.abandon(problem.to_string()).await;
    }
    problem
}

fn accepted(state: &AppState, request: &Parts, job: &JobStatus) -> Response {
    let body = accepted_body(state, request, job);
    let location = body.status_url.clone();
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response()
}

/// `{"metadata": "<JSON text>"}` or `{"metadata": {...}}`; no metadata means `{}`.
fn metadata_from_json_body(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    let Value::Object(mut fields) = value else {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidBody,
            "the JSON body must be an object such as {\"metadata\": \"{}\"}",
        ));
    };
    match fields.remove("metadata") {
        None | Some(Value::Null) => Ok(empty_metadata()),
        Some(Value::String(text)) => Ok(parse_metadata(&text, limit)?),
        Some(object @ Value::Object(_)) => Ok(check_metadata(object, limit)?),
        Some(_) => Err(ApiError::bad_request(
            ErrorCode::InvalidMetadata,
            "metadata must be a JSON object, or a string holding one",
        )),
    }
}

/// `metadata=<JSON text>`, as PowerShell's `-Body @{ metadata = "{}" }` sends it.
fn metadata_from_form(body: &[u8], limit: usize) -> Result<Value, ApiError> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body).map_err(|error| {
        ApiError::bad_request(
            ErrorCode::InvalidForm,
            format!("the form body is malformed: {error}"),
        )
    })?;
    let mut metadata = None;
    for (name, value) in fields {
        match name.as_str() {
            "metadata" if metadata.is_none() => metadata = Some(value),
            "metadata" => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidForm,
                    "the metadata field appears more than once",
                ))
            }
            other => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidForm,
                    format!("unexpected form field {other:?}: only `metadata` is accepted"),
                ))
            }
        }
    }
    metadata.map_or_else(
        || Ok(empty_metadata()),
        |text| Ok(parse_metadata(&text, limit)?),
    )
}

/// Reads a small body whole, refusing it with 413 as soon as it passes `limit`.
async fn read_capped(body: Body, limit: usize, idle: Duration) -> Result<Vec<u8>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = tokio::time::timeout(idle, stream.next())
        .await
        .map_err(|_| idle_timeout(idle))?
    {
        let chunk = chunk.map_err(|error| {
            ApiError::bad_request(
                ErrorCode::UploadInterrupted,
                format!("reading the body failed: {error}"),
            )
        })?;
        if bytes.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the request body exceeds {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

async fn read_field_capped(
    mut field: axum::extract::multipart::Field<'_>,
    limit: usize,
    idle: Duration,
) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    loop {
        let chunk = tokio::time::timeout(idle, field.chunk())
            .await
            .map_err(|_| idle_timeout(idle))?;
        match chunk {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(MetadataError::TooLarge { limit }.into());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(error) => {
                return Err(ApiError::bad_request(
                    ErrorCode::InvalidMultipart,
                    format!("reading the metadata part failed: {}", error.body_text()),
                ))
            }
        }
    }
    String::from_utf8(bytes).map_err(|_| {
        ApiError::bad_request(ErrorCode::InvalidMetadata, "metadata is not UTF-8 text")
    })
}

fn idle_timeout(idle: Duration) -> ApiError {
    ApiError::bad_request(
        ErrorCode::UploadInterrupted,
        format!("the request sent no data for {} s", idle.as_secs()),
    )
}

fn unsupported(message: &str) -> ApiError {
    ApiError::UnsupportedMediaType(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_take_metadata_as_text_or_object() {
        let from = |body: &str| metadata_from_json_body(body.as_bytes(), 1024);
        assert_eq!(from(r#"{"metadata": "{\"a\":1}"}"#).unwrap()["a"], 1);
        assert_eq!(from(r#"{"metadata": {"a": 2}}"#).unwrap()["a"], 2);
        assert_eq!(from("{}").unwrap(), empty_metadata());
        assert_eq!(from("[]").unwrap_err().code(), ErrorCode::InvalidBody);
        assert_eq!(from("null").unwrap_err().code(), ErrorCode::InvalidBody);
        assert_eq!(from("{").unwrap_err().code(), ErrorCode::InvalidJson);
        assert_eq!(
            from(r#"{"metadata": "nope"}"#).unwrap_err().code(),
            ErrorCode::InvalidMetadata
        );
        assert_eq!(
            from(r#"{"metadata": 3}"#).unwrap_err().code(),
            ErrorCode::InvalidMetadata
        );
    }
}
