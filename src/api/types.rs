//! Request and response bodies of the REST API, defined once for both halves.
use super::ErrorCode;
use crate::domain::{AccountName, JobId, JobState, JobStatus, KeyId, Role, Timestamp};
use serde::{Deserialize, Serialize};

/// The body of every error answer, 400 to 500: `{"error": {"code": "...", "message": "..."}}`.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable, machine-readable (`invalid_metadata`, `payload_too_large`, …).
    // Documented as a string: the set grows, and clients must accept codes they do not know.
    #[cfg_attr(feature = "ssr", schema(value_type = String))]
    pub code: ErrorCode,
    /// For people: what was wrong and how to fix it.
    pub message: String,
    /// Which account quota refused the request, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
}

/// An account quota.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// Bytes of the files its jobs hold, and of its unfinished uploads.
    StoredBytes,
    /// Uploads in progress at once.
    Uploads,
    /// Requests per second.
    RequestsPerSecond,
}

impl Quota {
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::StoredBytes => "stored_bytes",
            Quota::Uploads => "uploads",
            Quota::RequestsPerSecond => "requests_per_second",
        }
    }
}

/// The limits that apply to an account; `null`: not limited.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quotas {
    pub max_stored_bytes: Option<u64>,
    pub max_uploads: Option<u64>,
    pub max_requests_per_second: Option<u64>,
}

/// An account's own limits, set by an admin: `null` takes the server's default, 0 means no
/// limit. The body of `PUT /api/accounts/{name}/quotas`.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[serde(default)]
    pub max_stored_bytes: Option<u64>,
    #[serde(default)]
    pub max_uploads: Option<u64>,
    #[serde(default)]
    #[cfg_attr(feature = "ssr", schema(maximum = 1_000_000))]
    pub max_requests_per_second: Option<u64>,
}

/// What an account uses now, counted from its jobs.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Bytes of the files its jobs hold, plus what its unfinished uploads declared.
    pub stored_bytes: u64,
    /// Uploads in progress (jobs receiving).
    pub uploads: u64,
}

/// The 202 answer to `POST /api/ingest`.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestAccepted {
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = Uuid))]
    pub job_id: JobId,
    pub status: JobState,
    pub status_url: String,
    pub ws_url: String,
}

/// One page of `GET /api/jobs`, newest first.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobStatus>,
    /// Pass as `before` to get the next (older) page; absent on the last page.
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = Uuid))]
    pub next_before: Option<JobId>,
}

/// Why a call from the page failed: the HTTP status (0 when the server could not be reached or
/// answered something unreadable) and a message for people. Server functions and the page's
/// own requests share it, so the page decides alike whether to retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    pub status: u16,
    pub message: String,
}

impl CallError {
    /// Worth retrying with backoff: no answer, a timeout, a rate limit or a server fault.
    /// Other 4xx answers are permanent and their message is shown.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, 0 | 408 | 429) || self.status >= 500
    }
}

impl server_fn::error::FromServerFnError for CallError {
    type Encoder = server_fn::codec::JsonEncoding;

    fn from_server_fn_error(error: server_fn::error::ServerFnErrorErr) -> Self {
        use server_fn::error::ServerFnErrorErr;
        // On the server these come only from decoding a request: the caller's fault, so a 4xx
        // (server_fn would answer 500, which the page would retry for ever).
        #[cfg(feature = "ssr")]
        if let Some(refused) = refused_request(&error) {
            if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
                if let Ok(status) = axum::http::StatusCode::from_u16(refused.status) {
                    response.set_status(status);
                }
            }
            return refused;
        }
        let message = match error {
            ServerFnErrorErr::Request(_) | ServerFnErrorErr::Response(_) => {
                "the server could not be reached; check the connection".to_owned()
            }
            other => other.to_string(),
        };
        Self { status: 0, message }
    }
}

/// A server function call the server cannot decode: 413 over the body limit, else 400.
#[cfg(feature = "ssr")]
fn refused_request(error: &server_fn::error::ServerFnErrorErr) -> Option<CallError> {
    use server_fn::error::ServerFnErrorErr;
    let (status, message) = match error {
        ServerFnErrorErr::Args(detail) | ServerFnErrorErr::MissingArg(detail) => {
            (400, format!("invalid arguments: {detail}"))
        }
        ServerFnErrorErr::Deserialization(detail) if detail.contains("length limit exceeded") => {
            (413, "the request body is too large".to_owned())
        }
        ServerFnErrorErr::Deserialization(_) => (400, "the request body is unreadable".to_owned()),
        _ => return None,
    };
    Some(CallError { status, message })
}

/// What the page shows about the service it talks to; nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub version: String,
    pub max_upload_bytes: u64,
    /// The page checks metadata against the same limit as the server.
    pub max_metadata_bytes: usize,
}

/// The body of `/readyz`: every check, and whether all passed.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// `ready` or `unready`.
    pub status: String,
    pub checks: ReadinessChecks,
}

#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessChecks {
    pub database: Check,
    /// Whether the blob store answers (the data dir's folder, or the S3 bucket).
    pub blob_store: Check,
    pub data_dir: Check,
    pub disk: Check,
    /// Whether the API keys are fresh (refreshed from the store within a few seconds).
    pub keys: Check,
}

#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// An account, as `GET /api/accounts` lists it.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    #[cfg_attr(feature = "ssr", schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub name: AccountName,
    pub role: Role,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    /// Its own limits (`null`: the server's default).
    pub quotas: QuotaOverrides,
}

/// The body of `POST /api/accounts`.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAccount {
    /// 1–64 letters, digits, `-` or `_`; `admin` is reserved for the built-in account.
    #[cfg_attr(feature = "ssr", schema(value_type = String, pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub name: AccountName,
    /// `member` when left out.
    #[serde(default)]
    pub role: Role,
}

/// A key as lists show it: never the key itself.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    #[cfg_attr(feature = "ssr", schema(value_type = String, pattern = "^[0-9a-f]{12}$"))]
    pub key_id: KeyId,
    #[cfg_attr(feature = "ssr", schema(value_type = String))]
    pub account: AccountName,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub revoked_at: Option<Timestamp>,
    /// Coarse: recorded at most once a minute.
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub last_used_at: Option<Timestamp>,
}

/// The body of `POST /api/accounts/{name}/keys`.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// Days until the key stops working, 1–36500; never when left out.
    #[serde(default)]
    #[cfg_attr(feature = "ssr", schema(minimum = 1, maximum = 36500))]
    pub expires_in_days: Option<u32>,
}

/// The 201 answer to `POST /api/accounts/{name}/keys`: the only time the key is shown.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedKey {
    #[cfg_attr(feature = "ssr", schema(value_type = String, pattern = "^[0-9a-f]{12}$"))]
    pub key_id: KeyId,
    /// `ingest_<key_id>_<secret>`: send it as `Authorization: Bearer <key>`.
    pub key: String,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub expires_at: Option<Timestamp>,
}

/// The answer to `GET /api/me`: who the caller is.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    #[cfg_attr(feature = "ssr", schema(value_type = String))]
    pub account: AccountName,
    pub role: Role,
    /// The key the request (or its session) came with; absent for `INGEST_TOKEN`.
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>))]
    pub key_id: Option<KeyId>,
    pub usage: Usage,
    /// The limits in force (`null`: not limited).
    pub quotas: Quotas,
}

/// Who is signed in, as the page shows it ("Signed in as alice (member)"): what `GET /api/me`
/// answers without usage and quotas, which the page does not show and would cost a read of the
/// account's jobs on every page view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub account: AccountName,
    pub role: Role,
    /// The key the session was opened with; `None` for `INGEST_TOKEN`.
    pub key_id: Option<KeyId>,
}

/// Everything but the key itself, so the key never reaches a log.
impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedKey")
            .field("key_id", &self.key_id)
            .field("key", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}
