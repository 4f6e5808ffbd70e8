//! `ApiError`: every way a request can fail, mapped to an HTTP status and the JSON error body
//! in this one place. A 500 tells the client nothing internal; its cause chain goes to the log.
use super::{
    accounts::AccountError,
    jobs::{Cancellation, Paging},
    quotas::{QuotaExceeded, UPLOADS_RETRY_AFTER_SECS},
    receive::caused_by_full_disk,
    uploads::{UploadError, DISK_FULL},
    webhooks::EndpointError,
};
use crate::{
    api::{ErrorBody, ErrorCode, ErrorDetail},
    domain::MetadataError,
};
use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated by a cookie from a page that is not ours (a cross-site request).
    #[error("{0}")]
    Forbidden(String),
    /// The admission hook refused the job: 403, with a code of its own so a client can tell
    /// a refused job from refused rights.
    #[error("{0}")]
    AdmissionRefused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { code: ErrorCode, message: String },
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Timeout(String),
    /// The resource existed but is over for good (a failed, cancelled or expired upload).
    #[error("{0}")]
    Gone(String),
    /// The bytes do not match the checksum the client gave (tus answers 460).
    #[error("{0}")]
    ChecksumMismatch(String),
    /// A tus request without the protocol version this server speaks.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    /// The disk is (nearly) full: free space is below the floor, or a write ran out of room.
    #[error("{0}")]
    InsufficientStorage(String),
    #[error("too many requests; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// The credential has as many unfinished resumable uploads as it may have.
    #[error("{message}")]
    TooManyPendingUploads { message: String, retry_after: u64 },
    /// The server is at capacity for this kind of request; the client should retry.
    #[error("{message}")]
    Busy { message: String, retry_after: u64 },
    /// An account quota refused the request (413 for storage, 429 otherwise).
    #[error(transparent)]
    Quota(QuotaExceeded),
    #[error("internal error")]
    Internal(anyhow::Error),
}

/// A failure the handler did not foresee is a 500, unless the disk is full: that is 507, and
/// the client may retry once space is freed.
impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        if caused_by_full_disk(&error) {
            tracing::warn!(error = ?error, "the disk is full");
            return ApiError::InsufficientStorage(DISK_FULL.to_owned());
        }
        ApiError::Internal(error)
    }
}

/// Refused changes to accounts and keys: a taken or reserved name is a conflict, an unknown
/// account or key is not found.
impl From<AccountError> for ApiError {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::Duplicate(_)
            | AccountError::Reserved(_)
            | AccountError::BuiltInQuotas => ApiError::Conflict(error.to_string()),
            AccountError::UnknownAccount(_) | AccountError::UnknownKey(_) => {
                ApiError::NotFound(error.to_string())
            }
            AccountError::InvalidExpiry => {
                ApiError::bad_request(ErrorCode::InvalidBody, error.to_string())
            }
            AccountError::Store(cause) => cause.into(),
        }
    }
}

impl ApiError {
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::AdmissionRefused(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::ChecksumMismatch(_) => {
                StatusCode::from_u16(460).expect("460 is a valid status code")
            }
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::TooManyRequests { .. } | ApiError::TooManyPendingUploads { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Quota(QuotaExceeded::StoredBytes { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Quota(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized(_) => ErrorCode::Unauthorized,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::AdmissionRefused(_) => ErrorCode::AdmissionRefused,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadRequest { code, .. } => *code,
            ApiError::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            ApiError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Timeout(_) => ErrorCode::RequestTimeout,
            ApiError::Gone(_) => ErrorCode::Gone,
            ApiError::ChecksumMismatch(_) => ErrorCode::ChecksumMismatch,
            ApiError::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            ApiError::UriTooLong(_) => ErrorCode::UriTooLong,
            ApiError::HeadersTooLarge(_) => ErrorCode::HeadersTooLarge,
            ApiError::InsufficientStorage(_) => ErrorCode::InsufficientStorage,
            ApiError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            ApiError::TooManyPendingUploads { .. } => ErrorCode::TooManyPendingUploads,
            ApiError::Busy { .. } => ErrorCode::Busy,
            // A rate refusal keeps the code every rate limit answers with.
            ApiError::Quota(QuotaExceeded::Rate { .. }) => ErrorCode::TooManyRequests,
            ApiError::Quota(_) => ErrorCode::QuotaExceeded,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(error: EndpointError) -> Self {
        match error {
            EndpointError::NotFound | EndpointError::NoSuchDelivery => {
                ApiError::NotFound(error.to_string())
            }
            EndpointError::Invalid(message) => {
                ApiError::bad_request(ErrorCode::InvalidBody, message)
            }
            EndpointError::AdminOnly => ApiError::Forbidden(error.to_string()),
            EndpointError::TooMany
            | EndpointError::Disabled
            | EndpointError::InFlight
            | EndpointError::TooManyPings
            | EndpointError::Contended => ApiError::Conflict(error.to_string()),
            EndpointError::Store(error) => ApiError::from(error),
        }
    }
}

impl From<MetadataError> for ApiError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::TooLarge { .. } => ApiError::PayloadTooLarge(error.to_string()),
            _ => ApiError::bad_request(ErrorCode::InvalidMetadata, error.to_string()),
        }
    }
}

/// What a refused cancel answers.
impl From<Cancellation> for ApiError {
    fn from(error: Cancellation) -> Self {
        match error {
            Cancellation::NotFound => ApiError::NotFound("no such job".to_owned()),
            Cancellation::Finished(state) => ApiError::Conflict(format!(
                "the job has already {state}; only unfinished jobs can be cancelled"
            )),
            Cancellation::Failed(error) => ApiError::from(error),
        }
    }
}

impl From<Paging> for ApiError {
    fn from(error: Paging) -> Self {
        match error {
            Paging::LimitOutOfRange { .. } => {
                ApiError::bad_request(ErrorCode::InvalidQuery, error.to_string())
            }
            Paging::Failed(error) => ApiError::from(error),
        }
    }
}

/// How long a client refused for having too many unfinished uploads is asked to wait: they go
/// only when it finishes or ends one (or one expires), so retrying at once is pointless.
const PENDING_RETRY_AFTER_SECS: u64 = 60;

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        let message = error.to_string();
        match error {
            UploadError::Busy => ApiError::Busy {
                message,
                retry_after: 1,
            },
            UploadError::BelowDiskFloor | UploadError::DiskFull(_) => {
                ApiError::InsufficientStorage(message)
            }
            UploadError::TooLarge(_) => ApiError::PayloadTooLarge(message),
            UploadError::Interrupted(_) => {
                ApiError::bad_request(ErrorCode::UploadInterrupted, message)
            }
            UploadError::Cancelled(_)
            | UploadError::AnotherSender(_)
            | UploadError::WrongOffset { .. }
            | UploadError::Changed(_)
            | UploadError::Complete(_) => ApiError::Conflict(message),
            UploadError::NotFound(_) => ApiError::NotFound(message),
            UploadError::Over { .. } | UploadError::Lost(_) => ApiError::Gone(message),
            UploadError::ChunkChecksum(_) | UploadError::FileChecksum(_) => {
                ApiError::ChecksumMismatch(message)
            }
            UploadError::InvalidLength(_) => {
                ApiError::bad_request(ErrorCode::InvalidUploadLength, message)
            }
            UploadError::TooManyPending { .. } => ApiError::TooManyPendingUploads {
                message,
                retry_after: PENDING_RETRY_AFTER_SECS,
            },
            UploadError::NotCancelled(refused) => ApiError::from(refused),
            UploadError::Quota(exceeded) => ApiError::Quota(exceeded),
            UploadError::NotOwner(_) => ApiError::Forbidden(message),
            UploadError::Failed(error) => ApiError::Internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let quota = match &self {
            ApiError::Quota(exceeded) => {
                // The request's span carries its key id.
                tracing::warn!(
                    target: "audit",
                    account = %exceeded.account(),
                    quota = exceeded.quota().as_str(),
                    "refused by a quota"
                );
                Some(exceeded.quota())
            }
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                quota,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        match self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"ingest\""),
                );
            }
            ApiError::TooManyRequests { retry_after }
            | ApiError::TooManyPendingUploads { retry_after, .. }
            | ApiError::Busy { retry_after, .. }
            | ApiError::Quota(QuotaExceeded::Rate { retry_after, .. }) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::Quota(QuotaExceeded::Uploads { .. }) => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UPLOADS_RETRY_AFTER_SECS),
                );
            }
            _ => {}
        }
        response
    }
}

/// The most of a non-JSON error body that is carried over into the JSON message.
const MAX_CARRIED_MESSAGE: usize = 512;

/// Every error answer is JSON, including those made by layers and extractors that answer in
/// plain text or with no body (path rejections, range errors, method and size refusals). HTML
/// answers (the page's 404) stay HTML; headers such as `Content-Range` and `Retry-After` stay.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let kind = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map_or(&b""[..], |value| value.as_bytes());
    if kind.starts_with(b"application/json")
        || kind.starts_with(b"application/problem+json")
        || kind.starts_with(b"text/html")
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_CARRIED_MESSAGE * 4)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| {
            text.chars()
                .filter(|c| !c.is_control())
                .take(MAX_CARRIED_MESSAGE)
                .collect::<String>()
        })
        .filter(|text| !text.trim().is_empty());
    let message = text.unwrap_or_else(|| {
        status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned()
    });
    let body = ErrorBody {
        error: ErrorDetail {
            code: status_code_name(status),
            message,
            quota: None,
        },
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

/// The error code for a status that no `ApiError` chose.
fn status_code_name(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::RequestTimeout,
        411 => ErrorCode::LengthRequired,
        413 => ErrorCode::PayloadTooLarge,
        414 => ErrorCode::UriTooLong,
        415 => ErrorCode::UnsupportedMediaType,
        416 => ErrorCode::RangeNotSatisfiable,
        422 => ErrorCode::Unprocessable,
        429 => ErrorCode::TooManyRequests,
        431 => ErrorCode::HeadersTooLarge,
        500..=599 => ErrorCode::Internal,
        _ => ErrorCode::RequestRefused,
    }
}
