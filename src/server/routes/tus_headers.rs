//! The tus 1.0 protocol's headers: the version check, numbers, `Upload-Metadata` and
//! `Upload-Checksum`, parsed into types before a handler uses them.
use crate::{
    domain::{empty_metadata, parse_metadata, Sha256Digest, UploadName},
    server::{
        error::ApiError,
        receive::{ChecksumAlgorithm, ChunkChecksum},
    },
};
use axum::{
    http::{HeaderMap, HeaderName, HeaderValue},
    response::Response,
};
use base64::Engine;

pub const TUS_VERSION: &str = "1.0.0";
pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";
pub const TUS_EXTENSIONS: &str =
    "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";

pub fn with_tus(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    response
}

pub fn check_tus_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(TUS_RESUMABLE) {
        Some(version) if version == TUS_VERSION => Ok(()),
        _ => Err(ApiError::PreconditionFailed(format!(
            "send Tus-Resumable: {TUS_VERSION}, the tus version this server speaks"
        ))),
    }
}

/// `Upload-Checksum: <algorithm> <base64 digest>` for this PATCH's bytes, if given.
pub fn chunk_checksum(headers: &HeaderMap) -> Result<Option<ChunkChecksum>, ApiError> {
    let Some(value) = headers.get("upload-checksum") else {
        return Ok(None);
    };
    let invalid = |message: &str| ApiError::bad_request("invalid_upload_checksum", message);
    let (name, encoded) = value
        .to_str()
        .ok()
        .and_then(|text| text.split_once(' '))
        .ok_or_else(|| invalid("Upload-Checksum is `<algorithm> <base64 digest>`"))?;
    let algorithm = ChecksumAlgorithm::parse(name)
        .ok_or_else(|| invalid("Upload-Checksum algorithms are sha1 and sha256"))?;
    let expected = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("the Upload-Checksum digest is not base64"))?;
    Ok(Some(ChunkChecksum {
        algorithm,
        expected,
    }))
}

pub fn number_header(headers: &HeaderMap, name: &HeaderName) -> Result<Option<u64>, ApiError> {
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
pub struct UploadMetadata {
    pub filename: Option<String>,
    pub metadata: serde_json::Value,
    /// The whole file's expected SHA-256 (lower-case hex).
    pub sha256: Option<Sha256Digest>,
}

impl UploadMetadata {
    pub fn parse(headers: &HeaderMap, max_metadata_bytes: usize) -> Result<Self, ApiError> {
        let mut declared = UploadMetadata {
            filename: None,
            metadata: empty_metadata(),
            sha256: None,
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
                "sha256" => {
                    declared.sha256 = Some(Sha256Digest::parse(&value).map_err(|_| {
                        invalid("sha256 must be 64 lower-case hex digits".to_owned())
                    })?)
                }
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
