//! Job identity (`JobId`), lifecycle (`JobState`) and the snapshot every client sees (`JobStatus`).
use super::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use time::OffsetDateTime;
use uuid::Uuid;

/// Identifies one ingest job. Only ever created fresh or parsed from a canonical UUID.
/// New ids are UUIDv7: random enough not to be guessed, and ordered by creation time, which
/// keeps the database's index on them appending instead of writing all over.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(Uuid);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a job id is a UUID such as 3f2a9c1e-8d4b-4f6a-9e2d-1b7c5a0e4f3d")]
pub struct InvalidJobId;

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Accepts only the hyphenated form the API hands out, so one job has one spelling.
    pub fn parse(text: &str) -> Result<Self, InvalidJobId> {
        if text.len() != 36 {
            return Err(InvalidJobId);
        }
        Uuid::try_parse(text).map(Self).map_err(|_| InvalidJobId)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

/// Where a job is in its life. `Completed`, `Failed` and `Cancelled` are final.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Receiving,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown job status {0:?}: expected queued, receiving, processing, completed, failed or cancelled")]
pub struct UnknownJobState(pub String);

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Receiving,
        JobState::Processing,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Receiving => "receiving",
            JobState::Processing => "processing",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownJobState(text.to_owned()))
    }
}

/// Everything a client may know about a job, as served by `GET /api/status/{id}` and the
/// WebSocket. The same struct is stored, published and rendered.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobStatus {
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = Uuid))]
    pub job_id: JobId,
    pub status: JobState,
    /// 0–100 over the whole job: receiving first, then processing.
    pub progress: u8,
    pub bytes_done: u64,
    /// Expected upload size; `None` while unknown (no Content-Length) or for metadata-only jobs.
    pub bytes_total: Option<u64>,
    /// The client's name for the file: shown to people, never used as a path.
    pub filename: Option<String>,
    pub size: Option<u64>,
    /// Lower-case hex, once the whole file is stored.
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, pattern = "^[0-9a-f]{64}$"))]
    pub sha256: Option<Sha256Digest>,
    /// Detected from the stored bytes, not taken from the client.
    pub content_type: Option<String>,
    /// The JSON object given when the job was started.
    #[cfg_attr(feature = "ssr", schema(value_type = Object))]
    pub metadata: serde_json::Value,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl JobStatus {
    /// A fresh job in `state`, created at `now`.
    pub fn new(
        job_id: JobId,
        state: JobState,
        metadata: serde_json::Value,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            job_id,
            status: state,
            progress: 0,
            bytes_done: 0,
            bytes_total: None,
            filename: None,
            size: None,
            sha256: None,
            content_type: None,
            metadata,
            error: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// Whether the job carries (or is receiving) a file rather than metadata only.
    pub fn has_file(&self) -> bool {
        self.filename.is_some() || self.sha256.is_some() || self.bytes_done > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_and_reject_other_spellings() {
        let id = JobId::new();
        assert_eq!(JobId::parse(&id.to_string()), Ok(id));
        assert_eq!(JobId::parse("not-a-uuid"), Err(InvalidJobId));
        let simple = id.as_uuid().simple().to_string();
        assert_eq!(JobId::parse(&simple), Err(InvalidJobId));
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("done".parse::<JobState>().is_err());
    }
}
