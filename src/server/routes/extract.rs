//! What route handlers share: the extractors (a job id from the path, and the tus request
//! headers: version check first, then each header parsed into its type; every rejection is the
//! JSON 4xx an `ApiError` gives, so a handler never sees an unparsed string), the caller as the
//! uploads service sees it, and the links to follow a new job.
use super::tus_headers::{
    check_tus_version, chunk_checksum, number_header, UploadMetadata, UPLOAD_LENGTH, UPLOAD_OFFSET,
};
use crate::{
    api::{ErrorCode, IngestAccepted},
    domain::{AccountName, JobId, JobStatus, KeyId},
    server::{
        auth::Authenticated, client, config::Settings, error::ApiError, receive::ChunkChecksum,
        state::AppState, uploads::Uploader,
    },
};
use axum::{
    extract::{rejection::PathRejection, FromRef, FromRequestParts, Path},
    http::{request::Parts, HeaderMap},
};
use std::sync::Arc;

/// The caller as the uploads service sees it: whose its uploads are, what it sees, under which
/// quotas, and the credential that answers for its unfinished uploads.
pub fn uploader(auth: &Authenticated, settings: &Settings) -> Uploader {
    Uploader {
        owner: auth.caller.owner(),
        scope: auth.caller.scope(),
        quotas: auth.caller.quotas(settings),
        credential: auth.credential.label(),
    }
}

/// The `{job_id}` of the route's path, parsed. A missing or malformed id is a 400
/// `invalid_job_id`.
pub struct JobIdPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = Path::<String>::from_request_parts(parts, state).await;
        parse_job_id(raw).map(JobIdPath)
    }
}

/// The job id of a path already extracted as text; `JobIdPath` is the same as an extractor.
pub fn parse_job_id(raw: Result<Path<String>, PathRejection>) -> Result<JobId, ApiError> {
    let Path(raw) = raw.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::InvalidJobId, rejection.body_text())
    })?;
    JobId::parse(&raw)
        .map_err(|error| ApiError::bad_request(ErrorCode::InvalidJobId, error.to_string()))
}

/// The `{name}` of the route's path, an account name. A malformed one is a 400
/// `invalid_account_name`.
pub struct AccountNamePath(pub AccountName);

impl<S: Send + Sync> FromRequestParts<S> for AccountNamePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid =
            |message: String| ApiError::bad_request(ErrorCode::InvalidAccountName, message);
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| invalid(rejection.body_text()))?;
        AccountName::parse(&raw)
            .map(AccountNamePath)
            .map_err(|error| invalid(error.to_string()))
    }
}

/// The `{key_id}` of the route's path. A malformed one is a 400 `invalid_key_id`.
pub struct KeyIdPath(pub KeyId);

impl<S: Send + Sync> FromRequestParts<S> for KeyIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let invalid = |message: String| ApiError::bad_request(ErrorCode::InvalidKeyId, message);
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| invalid(rejection.body_text()))?;
        KeyId::parse(&raw)
            .map(KeyIdPath)
            .map_err(|error| invalid(error.to_string()))
    }
}

/// The answer for a job id that names no job.
pub fn no_such_job(id: JobId) -> ApiError {
    ApiError::NotFound(format!("no job with id {id}"))
}

/// The tus 1.0 headers of a request. Extracting it checks `Tus-Resumable: 1.0.0` (412, before
/// any other header is looked at); each header is then parsed into its type when the handler
/// asks for it, so a handler keeps the order in which the protocol refuses things (415 for the
/// body's type before a malformed offset, a length only once the offset is right, nothing but
/// the version on a termination).
pub struct TusHeaders {
    headers: HeaderMap,
    max_metadata_bytes: usize,
}

impl TusHeaders {
    /// `Upload-Length`, when given.
    pub fn length(&self) -> Result<Option<u64>, ApiError> {
        number_header(&self.headers, &UPLOAD_LENGTH)
    }

    /// `Upload-Offset`, when given.
    pub fn offset(&self) -> Result<Option<u64>, ApiError> {
        number_header(&self.headers, &UPLOAD_OFFSET)
    }

    /// `Upload-Checksum` of this request's bytes, when given.
    pub fn checksum(&self) -> Result<Option<ChunkChecksum>, ApiError> {
        chunk_checksum(&self.headers)
    }

    /// `Upload-Metadata`, checked against the metadata size limit.
    pub fn metadata(&self) -> Result<UploadMetadata, ApiError> {
        UploadMetadata::parse(&self.headers, self.max_metadata_bytes)
    }
}

impl<S> FromRequestParts<S> for TusHeaders
where
    S: Send + Sync,
    Arc<Settings>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        check_tus_version(&parts.headers)?;
        Ok(Self {
            headers: parts.headers.clone(),
            max_metadata_bytes: Arc::<Settings>::from_ref(state).max_metadata_bytes,
        })
    }
}

/// Where to follow a new job, by HTTP and by WebSocket: absolute URLs from the public URL (or
/// the request's Host and scheme).
pub fn accepted_body(state: &AppState, request: &Parts, job: &JobStatus) -> IngestAccepted {
    let (http, ws) = client::base_urls(request, &state.settings);
    IngestAccepted {
        job_id: job.job_id,
        status: job.status,
        ws_url: format!("{ws}/ws/status/{}", job.job_id),
        status_url: format!("{http}/api/status/{}", job.job_id),
    }
}

/// Asks the operator's admission hook, when there is one, about a job about to be accepted
/// (before anything of it is stored): `Some` metadata to record instead of what was sent (the
/// hook's replacement, or the same), `None` when no hook is configured; a refusal is the 403
/// that carries the hook's message, a hook that did not answer (and `admission_on_error =
/// reject`) a 503.
pub async fn admission(
    state: &AppState,
    auth: &Authenticated,
    filename: Option<&str>,
    size: Option<u64>,
    content_type: Option<&str>,
    metadata: &serde_json::Value,
) -> Result<Option<serde_json::Value>, ApiError> {
    use crate::server::webhooks::admission::{Candidate, Decision};
    let Some(hook) = &state.admission else {
        return Ok(None);
    };
    let candidate = Candidate {
        account: auth.caller.account.as_str(),
        filename,
        size,
        content_type,
        metadata,
    };
    match hook.decide(&candidate).await {
        Decision::Admit(replacement) => Ok(Some(replacement.unwrap_or_else(|| metadata.clone()))),
        Decision::Refuse(message) => {
            tracing::info!("the admission hook refused a job");
            Err(ApiError::AdmissionRefused(message))
        }
        Decision::Unavailable => Err(ApiError::Busy {
            message: "the admission check did not answer; try again later".to_owned(),
            retry_after: 5,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::token::ApiToken;
    use axum::{
        body::Body,
        http::Request,
        response::IntoResponse,
        routing::{get, post},
        Router,
    };
    use tower::ServiceExt;

    fn settings() -> Arc<Settings> {
        Arc::new(Settings::with_defaults(
            "data".into(),
            ApiToken::parse("a-perfectly-fine-token").unwrap(),
        ))
    }

    /// Status and `{"error": {"code", "message"}}` of a GET to `uri` through `app`.
    async fn answer(app: Router, request: Request<Body>) -> (u16, serde_json::Value) {
        let response = app.oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    fn job_app() -> Router {
        Router::new().route(
            "/jobs/{job_id}",
            get(|JobIdPath(id): JobIdPath| async move { id.to_string() }),
        )
    }

    #[tokio::test]
    async fn a_job_id_in_the_path_is_parsed_and_a_malformed_one_is_a_json_400() {
        let id = JobId::new();
        let ok = Request::get(format!("/jobs/{id}"))
            .body(Body::empty())
            .unwrap();
        let response = job_app().oneshot(ok).await.unwrap();
        assert_eq!(response.status(), 200);
        let bad = Request::get("/jobs/not-an-id").body(Body::empty()).unwrap();
        let (status, body) = answer(job_app(), bad).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "invalid_job_id");
    }

    fn tus_app() -> Router {
        Router::new()
            .route(
                "/uploads",
                post(|tus: TusHeaders| async move {
                    let _ = tus.offset()?;
                    let filename = tus.metadata()?.filename;
                    Ok::<_, ApiError>(format!("{:?} {:?}", tus.length()?, filename).into_response())
                }),
            )
            .with_state(settings())
    }

    #[tokio::test]
    async fn tus_headers_need_the_protocol_version_before_anything_else() {
        let request = Request::post("/uploads")
            .header("upload-length", "not a number")
            .body(Body::empty())
            .unwrap();
        let (status, body) = answer(tus_app(), request).await;
        assert_eq!(status, 412);
        assert_eq!(body["error"]["code"], "precondition_failed");
    }

    #[tokio::test]
    async fn tus_headers_are_parsed_into_types_and_bad_ones_refused() {
        let good = Request::post("/uploads")
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "12")
            .header("upload-metadata", "filename YS50eHQ=")
            .body(Body::empty())
            .unwrap();
        let response = tus_app().oneshot(good).await.unwrap();
        let text = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        assert_eq!(&text[..], b"Some(12) Some(\"a.txt\")");
        let bad = Request::post("/uploads")
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "-1")
            .body(Body::empty())
            .unwrap();
        let (status, body) = answer(tus_app(), bad).await;
        assert_eq!(status, 400);
        assert_eq!(body["error"]["code"], "invalid_header");
    }
}
