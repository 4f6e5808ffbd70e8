//! `ErrorCode`: the machine-readable `code` of every error answer, one enum for the server that
//! sends it and the browser that reacts to it, so neither side spells a code by hand.
use serde::{Deserialize, Serialize};
use std::fmt;

/// Stable error codes, serialized in snake_case (`upload_interrupted`). Clients match on them;
/// a rename is a breaking change of the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Refusals of the request as a whole.
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    Conflict,
    Gone,
    LengthRequired,
    PreconditionFailed,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    RangeNotSatisfiable,
    Unprocessable,
    TooManyRequests,
    HeadersTooLarge,
    /// The bytes do not match the checksum the client gave (tus answers 460).
    ChecksumMismatch,
    /// The credential has as many unfinished resumable uploads as it may have.
    TooManyPendingUploads,
    /// An account quota refused the request; the error's `quota` says which.
    QuotaExceeded,
    Internal,
    /// The server is at capacity for this kind of request; retry.
    Busy,
    InsufficientStorage,
    /// A status no other code describes.
    RequestRefused,
    /// The operator's admission hook refused the job (403); the message is the hook's.
    AdmissionRefused,
    // A part of the request that could not be read (400).
    InvalidAccountName,
    InvalidBody,
    InvalidForm,
    InvalidHeader,
    InvalidJobId,
    InvalidJson,
    InvalidKeyId,
    InvalidMetadata,
    InvalidMultipart,
    InvalidQuery,
    InvalidUploadChecksum,
    InvalidUploadLength,
    InvalidUploadMetadata,
    InvalidUploadOffset,
    /// The body was cut off or went silent; the bytes that arrived are kept, so a resumable
    /// upload carries on from the offset the server has.
    UploadInterrupted,
    WebsocketRequired,
    /// A code this build does not know (a newer server, or a proxy's answer). Never sent.
    #[serde(other)]
    Unrecognized,
}

impl ErrorCode {
    /// The wire spelling, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::AdmissionRefused => "admission_refused",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Gone => "gone",
            ErrorCode::LengthRequired => "length_required",
            ErrorCode::PreconditionFailed => "precondition_failed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RangeNotSatisfiable => "range_not_satisfiable",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::ChecksumMismatch => "checksum_mismatch",
            ErrorCode::TooManyPendingUploads => "too_many_pending_uploads",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Internal => "internal",
            ErrorCode::Busy => "busy",
            ErrorCode::InsufficientStorage => "insufficient_storage",
            ErrorCode::RequestRefused => "request_refused",
            ErrorCode::InvalidAccountName => "invalid_account_name",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidForm => "invalid_form",
            ErrorCode::InvalidHeader => "invalid_header",
            ErrorCode::InvalidJobId => "invalid_job_id",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidKeyId => "invalid_key_id",
            ErrorCode::InvalidMetadata => "invalid_metadata",
            ErrorCode::InvalidMultipart => "invalid_multipart",
            ErrorCode::InvalidQuery => "invalid_query",
            ErrorCode::InvalidUploadChecksum => "invalid_upload_checksum",
            ErrorCode::InvalidUploadLength => "invalid_upload_length",
            ErrorCode::InvalidUploadMetadata => "invalid_upload_metadata",
            ErrorCode::InvalidUploadOffset => "invalid_upload_offset",
            ErrorCode::UploadInterrupted => "upload_interrupted",
            ErrorCode::WebsocketRequired => "websocket_required",
            ErrorCode::Unrecognized => "unrecognized",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code but the catch-all, so the test below sees a variant added without a spelling.
    const ALL: [ErrorCode; 41] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::Gone,
        ErrorCode::LengthRequired,
        ErrorCode::PreconditionFailed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RangeNotSatisfiable,
        ErrorCode::Unprocessable,
        ErrorCode::TooManyRequests,
        ErrorCode::HeadersTooLarge,
        ErrorCode::ChecksumMismatch,
        ErrorCode::TooManyPendingUploads,
        ErrorCode::QuotaExceeded,
        ErrorCode::Internal,
        ErrorCode::Busy,
        ErrorCode::InsufficientStorage,
        ErrorCode::RequestRefused,
        ErrorCode::AdmissionRefused,
        ErrorCode::InvalidAccountName,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidForm,
        ErrorCode::InvalidHeader,
        ErrorCode::InvalidJobId,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidKeyId,
        ErrorCode::InvalidMetadata,
        ErrorCode::InvalidMultipart,
        ErrorCode::InvalidQuery,
        ErrorCode::InvalidUploadChecksum,
        ErrorCode::InvalidUploadLength,
        ErrorCode::InvalidUploadMetadata,
        ErrorCode::InvalidUploadOffset,
        ErrorCode::UploadInterrupted,
        ErrorCode::WebsocketRequired,
    ];

    #[test]
    fn each_code_is_spelled_on_the_wire_as_serde_writes_it_and_reads_back() {
        for code in ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn a_code_this_build_does_not_know_reads_as_unrecognized() {
        let code: ErrorCode = serde_json::from_str("\"teapot\"").unwrap();
        assert_eq!(code, ErrorCode::Unrecognized);
    }
}
