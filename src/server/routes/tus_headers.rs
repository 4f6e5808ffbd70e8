//! The tus 1.0 protocol's headers: the version check, numbers, `Upload-Metadata` and
//! `Upload-Checksum`, parsed into types before a handler uses them.
use crate::{
    api::ErrorCode,
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
    let invalid = |message: &str| ApiError::bad_request(ErrorCode::InvalidUploadChecksum, message);
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
                        ErrorCode::InvalidHeader,
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
    /// The whole file's expected SHA-256 (64 hex digits, either case).
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
        let invalid =
            |message: String| ApiError::bad_request(ErrorCode::InvalidUploadMetadata, message);
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
                    declared.sha256 = Some(
                        Sha256Digest::parse(&value)
                            .map_err(|_| invalid("sha256 must be 64 hex digits".to_owned()))?,
                    )
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
        assert_eq!(bad.code(), ErrorCode::InvalidUploadMetadata);
        // metadata "nope"
        let not_json =
            UploadMetadata::parse(&with_metadata("metadata bm9wZQ=="), 1024).unwrap_err();
        assert_eq!(not_json.code(), ErrorCode::InvalidMetadata);
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

    mod fuzz {
        use super::super::*;
        use crate::domain::fuzzing::fuzz_config;
        use proptest::prelude::*;

        /// Bytes a header value can hold: tab, visible ASCII, space and obs-text.
        fn header_value() -> impl Strategy<Value = HeaderValue> {
            let byte = prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff];
            prop::collection::vec(byte, 0..120)
                .prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("a valid header value"))
        }

        fn headers_with(name: HeaderName, value: HeaderValue) -> HeaderMap {
            let mut headers = HeaderMap::new();
            headers.insert(name, value);
            headers
        }

        fn base64(bytes: &[u8]) -> String {
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }

        /// `Upload-Metadata` as clients send it, with some pairs garbled.
        fn upload_metadata() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("filename".to_owned()),
                Just("metadata".to_owned()),
                Just("sha256".to_owned()),
                "[a-zA-Z0-9_-]{1,10}",
            ];
            let value = prop_oneof![
                any::<String>().prop_map(|text| base64(text.as_bytes())),
                prop::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| base64(&bytes)),
                Just(base64(b"{\"k\":[1,2]}")),
                Just(base64("ab".repeat(32).as_bytes())),
                "[ -~]{0,20}",
            ];
            let pair = (key, prop::option::of(value)).prop_map(|(key, value)| match value {
                Some(value) => format!("{key} {value}"),
                None => key,
            });
            (prop::collection::vec(pair, 0..6), "[ ,]{1,3}")
                .prop_map(|(pairs, separator)| pairs.join(&separator))
        }

        fn documented_4xx(error: &ApiError) -> bool {
            matches!(
                (error.status().as_u16(), error.code()),
                (
                    400,
                    ErrorCode::InvalidUploadMetadata | ErrorCode::InvalidMetadata
                ) | (413, ErrorCode::PayloadTooLarge)
            )
        }

        proptest! {
            #![proptest_config(fuzz_config(256))]

            #[test]
            fn fuzz_upload_metadata_is_read_or_refused_with_a_400(
                header in prop_oneof![
                    upload_metadata().prop_map(|text| HeaderValue::from_str(&text).unwrap()),
                    header_value(),
                ],
                limit in 0usize..64,
            ) {
                let headers = headers_with(UPLOAD_METADATA, header);
                match UploadMetadata::parse(&headers, limit) {
                    Ok(declared) => {
                        prop_assert!(declared.metadata.is_object());
                        if let Some(name) = declared.filename {
                            prop_assert_eq!(UploadName::sanitize(&name).map(UploadName::into_string), Some(name));
                        }
                    }
                    Err(error) => prop_assert!(documented_4xx(&error), "{}: {}", error.code(), error),
                }
            }

            /// What a client declares comes back: the name (as sanitized), the metadata and
            /// the digest, whatever the order, spacing and unknown keys around them.
            #[test]
            fn fuzz_upload_metadata_round_trips(
                name in any::<String>(),
                metadata in prop::collection::btree_map("[a-z]{0,5}", any::<i64>(), 0..4),
                digest in prop::option::of(any::<[u8; 32]>()),
                extra in prop::collection::vec(("[a-z]{1,6}", any::<String>()), 0..3),
                order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
                space in "[ ]{0,2}",
                upper_hex in any::<bool>(),
            ) {
                let metadata = serde_json::to_value(&metadata).unwrap();
                let mut pairs = vec![
                    format!("filename {}", base64(name.as_bytes())),
                    format!("metadata {}", base64(metadata.to_string().as_bytes())),
                ];
                if let Some(digest) = digest {
                    let hex = if upper_hex { hex::encode_upper(digest) } else { hex::encode(digest) };
                    pairs.push(format!("sha256 {}", base64(hex.as_bytes())));
                }
                for (key, value) in extra
                    .iter()
                    .filter(|(key, _)| !["filename", "metadata", "sha256"].contains(&key.as_str()))
                {
                    pairs.push(format!("{key} {}", base64(value.as_bytes())));
                }
                let turn = (order % pairs.len() as u64) as usize;
                pairs.rotate_left(turn);
                let header = pairs.join(&format!("{space},{space}"));
                let headers = headers_with(UPLOAD_METADATA, HeaderValue::from_str(&header).unwrap());
                let declared = UploadMetadata::parse(&headers, 1 << 16).unwrap();
                prop_assert_eq!(declared.filename, UploadName::sanitize(&name).map(UploadName::into_string));
                prop_assert_eq!(declared.metadata, metadata);
                prop_assert_eq!(declared.sha256, digest.map(Sha256Digest::from_bytes));
            }

            /// A number header is a plain decimal `u64` or a 400, never something in between.
            #[test]
            fn fuzz_number_headers_are_plain_decimals(
                value in prop_oneof![
                    any::<u64>().prop_map(|n| n.to_string()),
                    (0usize..3, any::<u64>()).prop_map(|(zeros, n)| format!("{}{n}", "0".repeat(zeros))),
                    "[0-9]{18,22}",
                    "[-+ 0-9a-fx.eE]{0,6}",
                ].prop_map(|text| HeaderValue::from_str(&text).unwrap()).boxed()
                .prop_union(header_value().boxed()),
            ) {
                let text = value.to_str().ok().map(str::to_owned);
                let headers = headers_with(UPLOAD_LENGTH, value);
                let expected = text
                    .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|text| text.parse::<u64>().ok());
                match number_header(&headers, &UPLOAD_LENGTH) {
                    Ok(number) => prop_assert_eq!(number, Some(expected.unwrap())),
                    Err(error) => {
                        prop_assert!(expected.is_none());
                        prop_assert_eq!((error.status().as_u16(), error.code()), (400, ErrorCode::InvalidHeader));
                    }
                }
            }

            #[test]
            fn fuzz_upload_checksums_round_trip_or_are_refused_with_a_400(
                algorithm in prop::sample::select(vec!["sha1", "sha256"]),
                digest in prop::collection::vec(any::<u8>(), 0..40),
                noise in header_value(),
            ) {
                let header = format!("{algorithm} {}", base64(&digest));
                let headers = headers_with(HeaderName::from_static("upload-checksum"), header.parse().unwrap());
                let parsed = chunk_checksum(&headers).unwrap().unwrap();
                prop_assert_eq!(Some(parsed.algorithm), ChecksumAlgorithm::parse(algorithm));
                prop_assert_eq!(parsed.expected, digest);

                let headers = headers_with(HeaderName::from_static("upload-checksum"), noise);
                if let Err(error) = chunk_checksum(&headers) {
                    prop_assert_eq!((error.status().as_u16(), error.code()), (400, ErrorCode::InvalidUploadChecksum));
                }
            }

            #[test]
            fn fuzz_only_tus_1_0_0_is_spoken(version in prop_oneof![
                Just(HeaderValue::from_static(TUS_VERSION)),
                "[0-9.]{0,7}".prop_map(|text| HeaderValue::from_str(&text).unwrap()),
                header_value(),
            ]) {
                let speaks = version.as_bytes() == TUS_VERSION.as_bytes();
                let headers = headers_with(TUS_RESUMABLE, version);
                match check_tus_version(&headers) {
                    Ok(()) => prop_assert!(speaks),
                    Err(error) => {
                        prop_assert!(!speaks);
                        prop_assert_eq!(error.status().as_u16(), 412);
                    }
                }
            }
        }
    }
}
