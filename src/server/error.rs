//! `ApiError`: every way a request can fail, mapped to an HTTP status and the JSON error body
//! in this one place. A 500 tells the client nothing internal; its cause chain goes to the log.
use super::jobs::Cancellation;
use crate::{
    api::{ErrorBody, ErrorDetail},
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
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
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
    #[error("too many requests; retry after {retry_after} s")]
    TooManyRequests { retry_after: u64 },
    /// The server is at capacity for this kind of request; the client should retry.
    #[error("{message}")]
    Busy { message: String, retry_after: u64 },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
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
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadRequest { code, .. } => code,
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Timeout(_) => "request_timeout",
            ApiError::Gone(_) => "gone",
            ApiError::ChecksumMismatch(_) => "checksum_mismatch",
            ApiError::PreconditionFailed(_) => "precondition_failed",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Busy { .. } => "busy",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<MetadataError> for ApiError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::TooLarge { .. } => ApiError::PayloadTooLarge(error.to_string()),
            _ => ApiError::bad_request("invalid_metadata", error.to_string()),
        }
    }
}

impl From<Cancellation> for ApiError {
    fn from(error: Cancellation) -> Self {
        match error {
            Cancellation::NotFound => ApiError::NotFound("no such job".to_owned()),
            Cancellation::Finished(state) => ApiError::Conflict(format!(
                "the job has already {state}; only unfinished jobs can be cancelled"
            )),
            Cancellation::Failed(error) => ApiError::Internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = ?cause, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
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
            ApiError::TooManyRequests { retry_after } | ApiError::Busy { retry_after, .. } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            _ => {}
        }
        response
    }
}
