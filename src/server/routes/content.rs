//! `GET /api/jobs/{id}/content` streams a job's stored file back (Range requests, `ETag` = the
//! SHA-256, the detected type, a safe `Content-Disposition`); `DELETE /api/jobs/{id}` removes a
//! finished job and, when nothing else references it, its blob.
//!
//! `Last-Modified` is the job's creation time (a job's file never changes), with
//! `If-Modified-Since` (without an ETag to compare) and `If-Unmodified-Since` honoured. It is
//! not the blob's time: identical content is stored once for every account, and when another
//! account stored it first must not show. `Range` (RFC 9110 §14) is read here and the
//! bytes come from the blob store: one satisfiable
//! byte range gets 206; a header this server does not act on gets the whole file with 200, as
//! the RFC allows (another unit, invalid syntax, an `If-Range` for another version, several
//! ranges, which would need a `multipart/byteranges` answer); a byte range set that misses the
//! file entirely gets a JSON 416 with `Content-Range: bytes */<length>`.
use super::{
    extract::{no_such_job, JobIdPath},
    openapi::CommonErrors,
};
use crate::{
    api::{ErrorBody, ErrorCode, ErrorDetail},
    domain::{JobState, Sha256Digest},
    server::{auth::Authenticated, error::ApiError, jobs::Deletion, state::AppState},
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use std::time::SystemTime;

/// Download a completed job's file (supports `Range` and `If-None-Match`).
#[utoipa::path(
    get,
    path = "/api/jobs/{job_id}/content",
    tag = "jobs",
    params(
        ("job_id" = String, Path, format = Uuid, description = "The job's id"),
        ("Range" = Option<String>, Header, description = "One byte range, e.g. bytes=0-1023 or bytes=-500; several ranges, another unit or invalid syntax get the whole file"),
        ("If-Range" = Option<String>, Header, description = "The ETag the client has part of; another one gets the whole file"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag from an earlier download"),
        ("If-Modified-Since" = Option<String>, Header, description = "An HTTP date; used only without If-None-Match"),
        ("If-Unmodified-Since" = Option<String>, Header, description = "An HTTP date; 412 if the job was created after it"),
    ),
    responses(
        (status = 200, description = "The whole file, with the type detected from its bytes", content_type = "*/*",
            headers(("ETag" = String, description = "The quoted SHA-256"), ("Content-Disposition" = String))),
        (status = 206, description = "The requested range", content_type = "*/*"),
        (status = 304, description = "Unchanged since the given ETag (or, without one, the If-Modified-Since date)"),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job, or it has no file", body = ErrorBody),
        (status = 409, description = "The job has not completed", body = ErrorBody),
        (status = 412, description = "The job was created after the If-Unmodified-Since date", body = ErrorBody),
        (status = 416, description = "No requested range overlaps the file; Content-Range gives its length", body = ErrorBody,
            headers(("Content-Range" = String, description = "bytes */<length>"))),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn download(
    State(state): State<AppState>,
    auth: Authenticated,
    JobIdPath(id): JobIdPath,
    request: Request,
) -> Result<Response, ApiError> {
    let job = state
        .jobs
        .status(id, auth.caller.scope())
        .await?
        .ok_or_else(|| no_such_job(id))?;
    let digest = match (job.status, job.sha256) {
        (JobState::Completed, Some(digest)) => digest,
        (status, _) if status.is_terminal() => {
            return Err(ApiError::NotFound(format!("job {id} has no stored file")))
        }
        (status, _) => {
            return Err(ApiError::Conflict(format!(
                "job {id} is {status}; its file can be downloaded once it is completed"
            )))
        }
    };
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).map_err(anyhow::Error::from)?;
    let unchanged = request
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }

    let missing = || {
        ApiError::Internal(anyhow::anyhow!(
            "the blob of job {id} ({digest}) is missing"
        ))
    };
    let stored = state
        .jobs
        .content_info(&digest)
        .await?
        .ok_or_else(missing)?;
    let length = stored.size;
    let modified = whole_seconds(std::time::SystemTime::from(job.created_at));
    let last_modified =
        HeaderValue::from_str(&httpdate::fmt_http_date(modified)).map_err(anyhow::Error::from)?;
    if http_date(request.headers(), header::IF_UNMODIFIED_SINCE)
        .is_some_and(|since| modified > since)
    {
        return Err(ApiError::PreconditionFailed(format!(
            "job {id} was created after the If-Unmodified-Since date"
        )));
    }
    // A date is a weaker validator than the ETag: asked only when no ETag was sent.
    let unmodified = request.headers().get(header::IF_NONE_MATCH).is_none()
        && http_date(request.headers(), header::IF_MODIFIED_SINCE)
            .is_some_and(|since| modified <= since);
    if unmodified {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::LAST_MODIFIED, last_modified)],
        )
            .into_response());
    }
    let (status, range) = match wanted_range(request.headers(), &etag, length) {
        Wanted::Whole => (StatusCode::OK, 0..length),
        Wanted::Part { first, last } => (StatusCode::PARTIAL_CONTENT, first..last + 1),
        Wanted::Unsatisfiable => return Ok(range_not_satisfiable(length)),
    };
    let body = state.jobs.read_content(&digest, range.clone()).await?;
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(range.end - range.start),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::LAST_MODIFIED, last_modified);
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range = format!("bytes {}-{}/{length}", range.start, range.end - 1);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&content_range).map_err(anyhow::Error::from)?,
        );
    }
    let content_type = job
        .content_type
        .as_deref()
        .and_then(|mime| HeaderValue::from_str(mime).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = content_disposition(job.filename.as_deref(), &digest);
    let headers = response.headers_mut();
    headers.insert(header::ETAG, etag);
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_DISPOSITION, disposition);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response.into_response())
}

/// Delete a finished job; its blob goes when no other job references it.
#[utoipa::path(
    delete,
    path = "/api/jobs/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, format = Uuid, description = "The job's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed job id", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        (status = 409, description = "The job has not finished", body = ErrorBody),
        CommonErrors,
    ),
    security(("bearer" = [])),
)]
#[tracing::instrument(skip_all)]
pub async fn delete(
    State(state): State<AppState>,
    auth: Authenticated,
    JobIdPath(id): JobIdPath,
) -> Result<StatusCode, ApiError> {
    match state.jobs.delete(id, auth.caller.scope()).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(no_such_job(id)),
        Err(Deletion::Running(_)) => Err(ApiError::Conflict(format!(
            "job {id} has not finished; only finished jobs can be deleted"
        ))),
        Err(Deletion::Failed(error)) => Err(ApiError::Internal(error)),
    }
}

/// An HTTP-date header (`If-Modified-Since`, `If-Unmodified-Since`); `None` when absent or
/// invalid (an invalid date is ignored, as RFC 9110 §13.1.3 asks).
fn http_date(headers: &HeaderMap, name: header::HeaderName) -> Option<SystemTime> {
    httpdate::parse_http_date(headers.get(name)?.to_str().ok()?).ok()
}

/// HTTP dates have whole seconds: a file's time is compared (and sent) without its fraction.
fn whole_seconds(time: SystemTime) -> SystemTime {
    let since_epoch = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since_epoch.as_secs())
}

/// What a download's `Range` header asks for, decided against the file's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wanted {
    /// No `Range`, or one to ignore: the whole file, 200.
    Whole,
    /// One byte range inside the file (inclusive bounds): 206.
    Part { first: u64, last: u64 },
    /// Byte ranges that all miss the file: 416.
    Unsatisfiable,
}

/// `Range` is acted on only when it is one header, in bytes, and `If-Range` (if any) names the
/// file's ETag (the file of a job never changes, so a date cannot tell more than that).
fn wanted_range(headers: &HeaderMap, etag: &HeaderValue, length: u64) -> Wanted {
    let mut ranges = headers.get_all(header::RANGE).iter();
    let (Some(range), None) = (ranges.next(), ranges.next()) else {
        return Wanted::Whole;
    };
    if headers.get(header::IF_RANGE).is_some_and(|tag| tag != etag) {
        return Wanted::Whole;
    }
    range
        .to_str()
        .map_or(Wanted::Whole, |text| parse_range(text, length))
}

/// `Range: bytes=<range-set>` against a file of `length` bytes (RFC 9110 §14.1.2): units
/// are compared case-insensitively, list elements may be empty or padded with spaces, numbers
/// too large for a `u64` are as good as infinite.
fn parse_range(text: &str, length: u64) -> Wanted {
    let Some((unit, set)) = text.split_once('=') else {
        return Wanted::Whole;
    };
    if !unit.trim_matches([' ', '\t']).eq_ignore_ascii_case("bytes") {
        return Wanted::Whole;
    }
    let mut specs = 0;
    let mut satisfiable = None;
    for spec in set
        .split(',')
        .map(|spec| spec.trim_matches([' ', '\t']))
        .filter(|spec| !spec.is_empty())
    {
        specs += 1;
        match byte_range(spec, length) {
            Err(InvalidRange) => return Wanted::Whole,
            Ok(None) => {}
            Ok(Some(range)) => satisfiable = Some(range),
        }
    }
    match (specs, satisfiable) {
        (0, _) => Wanted::Whole,
        (_, None) => Wanted::Unsatisfiable,
        (1, Some((first, last))) => Wanted::Part { first, last },
        _ => Wanted::Whole,
    }
}

struct InvalidRange;

/// One `first-last`, `first-` or `-suffix`: the bytes it selects, `None` if it misses the file.
fn byte_range(spec: &str, length: u64) -> Result<Option<(u64, u64)>, InvalidRange> {
    let number = |text: &str| {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidRange);
        }
        Ok(text.parse().unwrap_or(u64::MAX))
    };
    let (first, last) = spec.split_once('-').ok_or(InvalidRange)?;
    if first.is_empty() {
        let suffix = number(last)?;
        return Ok((suffix > 0 && length > 0).then(|| (length - suffix.min(length), length - 1)));
    }
    let first = number(first)?;
    let last = if last.is_empty() {
        u64::MAX
    } else {
        number(last)?
    };
    if last < first {
        return Err(InvalidRange);
    }
    Ok((first < length).then(|| (first, last.min(length - 1))))
}

/// 416 in the JSON every error uses, with the length a client needs to ask again.
fn range_not_satisfiable(length: u64) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: ErrorCode::RangeNotSatisfiable,
            message: format!("no requested range overlaps the file's {length} bytes"),
            quota: None,
        },
    };
    (
        StatusCode::RANGE_NOT_SATISFIABLE,
        [(header::CONTENT_RANGE, format!("bytes */{length}"))],
        Json(body),
    )
        .into_response()
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form, so no
/// client's name can break out of the header or name a path.
fn content_disposition(filename: Option<&str>, digest: &Sha256Digest) -> HeaderValue {
    let name = filename.map_or_else(|| digest.to_hex(), str::to_owned);
    let ascii: String = name
        .chars()
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' | '%' | ';' => '_',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut encoded = String::new();
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or(HeaderValue::from_static("attachment"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_quoted_safely_and_keep_the_exact_name() {
        let digest = Sha256Digest::from_bytes([0xab; 32]);
        let header = content_disposition(Some("naïve \"q\";.txt"), &digest);
        assert_eq!(
            header.to_str().unwrap(),
            "attachment; filename=\"na_ve _q__.txt\"; filename*=UTF-8''na%C3%AFve%20%22q%22%3B.txt"
        );
        let unnamed = content_disposition(None, &digest);
        assert!(unnamed.to_str().unwrap().contains(&digest.to_hex()));
    }

    #[test]
    fn range_headers_are_read_as_rfc_9110_says() {
        use Wanted::{Part, Unsatisfiable, Whole};
        let part = |first, last| Part { first, last };
        let cases = [
            ("bytes=0-9", part(0, 9)),
            ("bytes=90-", part(90, 99)),
            ("bytes=95-1000", part(95, 99)),
            ("bytes=-10", part(90, 99)),
            ("bytes=-1000", part(0, 99)),
            ("Bytes=1-2", part(1, 2)),
            ("bytes=1-2,", part(1, 2)),
            ("bytes= 1-2 , ", part(1, 2)),
            ("bytes=0-99999999999999999999999", part(0, 99)),
            // Nothing overlaps the file.
            ("bytes=100-", Unsatisfiable),
            ("bytes=99999999999999999999999-", Unsatisfiable),
            ("bytes=-0", Unsatisfiable),
            ("bytes=100-200, 300-", Unsatisfiable),
            // Several ranges: the whole file rather than multipart/byteranges.
            ("bytes=0-1,5-6", Whole),
            ("bytes=0-1,200-", Whole),
            // Another unit, or not a valid byte range set: ignored.
            ("items=0-5", Whole),
            ("bytes=5-2", Whole),
            ("bytes=abc", Whole),
            ("bytes=", Whole),
            ("bytes=,", Whole),
            ("bytes=-", Whole),
            ("bytes=1-2-3", Whole),
            ("bytes=+1-2", Whole),
            ("bytes=0x10-", Whole),
            ("bytes=0-1,x", Whole),
            ("bytes 0-5", Whole),
            ("", Whole),
        ];
        for (header, wanted) in cases {
            assert_eq!(parse_range(header, 100), wanted, "{header}");
        }
        // An empty file has no byte to send.
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn range_is_ignored_when_repeated_or_for_another_version() {
        let etag = HeaderValue::from_static("\"abc\"");
        let with = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(name, HeaderValue::from_static(value));
            }
            wanted_range(&headers, &etag, 10)
        };
        let part = Wanted::Part { first: 0, last: 1 };
        assert_eq!(with(&[(header::RANGE, "bytes=0-1")]), part);
        assert_eq!(
            with(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"abc\"")]),
            part
        );
        assert_eq!(
            with(&[(header::RANGE, "bytes=0-1"), (header::IF_RANGE, "\"old\"")]),
            Wanted::Whole
        );
        assert_eq!(
            with(&[(header::RANGE, "bytes=0-1"), (header::RANGE, "bytes=2-3")]),
            Wanted::Whole
        );
        assert_eq!(with(&[]), Wanted::Whole);
    }

    mod fuzz {
        use super::super::*;
        use crate::domain::fuzzing::fuzz_config;
        use proptest::prelude::*;

        /// One valid range spec, as a model of RFC 9110 reads it.
        #[derive(Clone, Debug)]
        enum Spec {
            FromTo(u64, u64),
            From(u64),
            Suffix(u64),
        }

        impl Spec {
            fn text(&self) -> String {
                match self {
                    Spec::FromTo(first, last) => format!("{first}-{last}"),
                    Spec::From(first) => format!("{first}-"),
                    Spec::Suffix(suffix) => format!("-{suffix}"),
                }
            }

            /// The bytes it selects in a file of `length` bytes, if any.
            fn select(&self, length: u64) -> Option<(u64, u64)> {
                match *self {
                    Spec::FromTo(first, last) => {
                        (first < length).then(|| (first, last.min(length - 1)))
                    }
                    Spec::From(first) => (first < length).then(|| (first, length - 1)),
                    Spec::Suffix(suffix) => (suffix > 0 && length > 0)
                        .then(|| (length - suffix.min(length), length - 1)),
                }
            }
        }

        fn spec() -> impl Strategy<Value = Spec> {
            prop_oneof![
                (0u64..300, 0u64..300).prop_map(|(a, b)| Spec::FromTo(a.min(b), a.max(b))),
                (0u64..300).prop_map(Spec::From),
                (0u64..300).prop_map(Spec::Suffix),
            ]
        }

        proptest! {
            #![proptest_config(fuzz_config(512))]

            /// Whatever the header, a range to serve lies inside the file.
            #[test]
            fn fuzz_any_range_header_selects_bytes_inside_the_file(
                text in prop_oneof![
                    "[bB][yY][tT][eE][sS] ?= ?[-0-9, ]{0,24}",
                    "[a-z]{0,6}=[-0-9,a-z ]{0,12}",
                    any::<String>(),
                ],
                length in prop_oneof![0u64..64, any::<u64>()],
            ) {
                if let Wanted::Part { first, last } = parse_range(&text, length) {
                    prop_assert!(first <= last && last < length, "{text}: {first}-{last} of {length}");
                }
            }

            /// Valid byte range sets are read as RFC 9110 defines them.
            #[test]
            fn fuzz_valid_range_sets_select_what_rfc_9110_says(
                specs in prop::collection::vec(spec(), 1..4),
                length in 0u64..300,
                spacing in "[ ]{0,2}",
            ) {
                let text = format!(
                    "bytes={}",
                    specs.iter().map(Spec::text).collect::<Vec<_>>().join(&format!("{spacing},{spacing}"))
                );
                let selected: Vec<_> = specs.iter().filter_map(|spec| spec.select(length)).collect();
                let expected = match (specs.len(), selected.as_slice()) {
                    (_, []) => Wanted::Unsatisfiable,
                    (1, [(first, last)]) => Wanted::Part { first: *first, last: *last },
                    _ => Wanted::Whole,
                };
                prop_assert_eq!(parse_range(&text, length), expected, "{}", text);
            }

            /// The download name survives `Content-Disposition`: `filename*` decodes back to it.
            #[test]
            fn fuzz_dispositions_carry_the_exact_name(name in any::<String>()) {
                let digest = Sha256Digest::from_bytes([7; 32]);
                let header = content_disposition(Some(&name), &digest);
                let text = header.to_str().unwrap();
                let encoded = text.split("filename*=UTF-8''").nth(1).unwrap();
                let mut bytes = Vec::new();
                let mut rest = encoded.as_bytes();
                while let Some((&byte, tail)) = rest.split_first() {
                    if byte == b'%' {
                        bytes.push(u8::from_str_radix(std::str::from_utf8(&tail[..2]).unwrap(), 16).unwrap());
                        rest = &tail[2..];
                    } else {
                        bytes.push(byte);
                        rest = tail;
                    }
                }
                prop_assert_eq!(String::from_utf8(bytes).unwrap(), name);
            }
        }
    }
}
