//! Job identity (`JobId`), lifecycle (`JobState`) and the snapshot every client sees (`JobStatus`).
use super::{AccountId, AccountName, Owner, Sha256Digest};
use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};
use uuid::Uuid;

/// An instant in RFC 3339. The server works with real times; the browser only shows them, so
/// it keeps the server's text (a date parser in the wasm bundle would cost ~10 KB).
#[cfg(feature = "ssr")]
pub type Timestamp = time::OffsetDateTime;
#[cfg(not(feature = "ssr"))]
pub type Timestamp = String;

/// A job's metadata: a JSON object. The server works with it; the browser never looks inside,
/// so it keeps the text (building `serde_json::Value`s would cost ~15 KB of wasm).
#[cfg(feature = "ssr")]
pub type Metadata = serde_json::Value;
#[cfg(not(feature = "ssr"))]
pub type Metadata = RawMetadata;

/// The metadata object as the server sent it.
#[cfg(not(feature = "ssr"))]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawMetadata(Box<serde_json::value::RawValue>);

#[cfg(not(feature = "ssr"))]
impl PartialEq for RawMetadata {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Identifies one ingest job. Only ever created fresh, parsed from a canonical UUID, or read
/// back from a database's UUID column.
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

    /// The job id a database's UUID column holds: every UUID spells exactly one job id.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
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
    /// The account that created the job.
    #[cfg_attr(feature = "ssr", schema(value_type = String))]
    pub owner: AccountName,
    /// The same account by number (what isolation compares): never sent, since a name is all a
    /// client needs.
    #[serde(skip)]
    pub owner_id: AccountId,
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
    pub metadata: Metadata,
    pub error: Option<String>,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

impl JobStatus {
    /// A fresh job of account `owner` (`owner_id`) in `state`, created at `now`.
    #[cfg(feature = "ssr")]
    pub fn new(
        job_id: JobId,
        owner: &Owner,
        state: JobState,
        metadata: serde_json::Value,
        now: Timestamp,
    ) -> Self {
        Self {
            job_id,
            owner: owner.name.clone(),
            owner_id: owner.id,
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

    /// Whether this snapshot is older than `other` (a late answer overtaken by a newer one).
    pub fn is_older_than(&self, other: &JobStatus) -> bool {
        #[cfg(feature = "ssr")]
        let older = self.updated_at < other.updated_at;
        #[cfg(not(feature = "ssr"))]
        let older = matches!(
            (unix_millis(&self.updated_at), unix_millis(&other.updated_at)),
            (Some(mine), Some(theirs)) if mine < theirs
        );
        older
    }

    /// Milliseconds from creation to the last change: for a finished job, how long it took.
    pub fn elapsed_ms(&self) -> Option<i64> {
        #[cfg(feature = "ssr")]
        let elapsed = Some((self.updated_at - self.created_at).whole_milliseconds() as i64);
        #[cfg(not(feature = "ssr"))]
        let elapsed = Some(unix_millis(&self.updated_at)? - unix_millis(&self.created_at)?);
        elapsed
    }

    /// The account the job belongs to.
    pub fn owner(&self) -> Owner {
        Owner {
            id: self.owner_id,
            name: self.owner.clone(),
        }
    }

    /// Whether the job carries (or is receiving) a file rather than metadata only.
    pub fn has_file(&self) -> bool {
        self.filename.is_some() || self.sha256.is_some() || self.bytes_done > 0
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 instant such as
/// `2026-11-26T01:48:21.123456789Z` or `…+01:00`; `None` if it is not one.
#[cfg_attr(feature = "ssr", allow(dead_code))]
fn unix_millis(text: &str) -> Option<i64> {
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if !separators
        .iter()
        .all(|&(at, want)| text.as_bytes().get(at) == Some(&want))
    {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let rest = text.get(19..)?;
    let fraction_len = rest.strip_prefix('.').map_or(0, |tail| {
        tail.bytes().take_while(u8::is_ascii_digit).count()
    });
    let millis = if fraction_len == 0 {
        0
    } else {
        let fraction = &rest[1..1 + fraction_len];
        format!("{fraction:0<3}")[..3].parse::<i64>().ok()?
    };
    let zone = &rest[if fraction_len == 0 {
        0
    } else {
        1 + fraction_len
    }..];
    let offset_minutes = match zone.as_bytes().first()? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let hours: i64 = zone.get(1..3)?.parse().ok()?;
            let minutes: i64 = zone.get(4..6)?.parse().ok()?;
            let total = hours * 60 + minutes;
            if *sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian), after Howard Hinnant's algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_instants_become_unix_milliseconds() {
        assert_eq!(unix_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(unix_millis("2000-03-01T00:00:01.5Z"), Some(951_868_801_500));
        assert_eq!(
            unix_millis("2026-11-26T01:48:21.123456789Z"),
            Some(1_795_657_701_123)
        );
        assert_eq!(
            unix_millis("2026-11-26T02:48:21.123+01:00"),
            unix_millis("2026-11-26T01:48:21.123Z")
        );
        assert_eq!(unix_millis("2026-11-26 01:48:21Z"), None);
        assert_eq!(unix_millis("yesterday"), None);
    }

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
