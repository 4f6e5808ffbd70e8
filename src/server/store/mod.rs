//! Storage behind the `JobStore` and `SessionStore` traits, so a Postgres backend can sit
//! beside SQLite.
mod sqlite;

pub use sqlite::{now, SqliteStore};

use crate::domain::{JobId, JobState, JobStatus, Sha256Digest};
use async_trait::async_trait;

/// Durable job records and the work queue. Every write returns only once it is on disk.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a new job.
    async fn insert(&self, job: &JobStatus) -> anyhow::Result<()>;
    /// Replaces the mutable fields of an unfinished job; false if there is no such job or it
    /// has already finished (finished is final).
    async fn save(&self, job: &JobStatus) -> anyhow::Result<bool>;
    async fn get(&self, id: JobId) -> anyhow::Result<Option<JobStatus>>;
    /// Newest first; `before` continues after that job; `state` filters.
    async fn list(
        &self,
        state: Option<JobState>,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>>;
    /// Moves up to `limit` of the oldest queued jobs to `processing` and returns them, oldest
    /// first.
    async fn claim_queued(&self, limit: u32) -> anyhow::Result<Vec<Claimed>>;
    /// After a restart: one-shot uploads that were mid-transfer fail (resumable ones wait for
    /// their client), jobs that were mid-processing go back to the queue.
    async fn recover_interrupted(&self) -> anyhow::Result<Recovery>;
    async fn count_in_state(&self, state: JobState) -> anyhow::Result<u64>;
    /// Finished jobs (completed, failed, cancelled) last changed before `cutoff`, oldest first.
    async fn list_finished_before(
        &self,
        cutoff: time::OffsetDateTime,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>>;
    /// Moves an unfinished job to `cancelled` and returns it; `None` if there is no such job or
    /// it has already finished.
    async fn cancel(&self, id: JobId) -> anyhow::Result<Option<JobStatus>>;
    /// Removes a job's record; false if there was none.
    async fn delete(&self, id: JobId) -> anyhow::Result<bool>;
    /// How many jobs reference the blob with this digest.
    async fn count_referencing(&self, digest: Sha256Digest) -> anyhow::Result<u64>;
    /// Succeeds when the database takes a durable write (a full disk fails it).
    async fn ping(&self) -> anyhow::Result<()>;
    /// Records a new job as a resumable upload with nothing durable yet, declared by `owner`
    /// (a credential's label), unless `owner` already has `max_pending` resumable uploads still
    /// receiving: then nothing is recorded and the answer is false. Counting and recording are
    /// one write, so concurrent declarations cannot pass the cap together.
    async fn declare_upload(
        &self,
        job: &JobStatus,
        owner: &str,
        expected_sha256: Option<Sha256Digest>,
        max_pending: u64,
    ) -> anyhow::Result<bool>;
    /// Records that the first `job.bytes_done` bytes of a resumable upload are durable: its
    /// offset, and its job's `bytes_done`, `progress` and `updated_at`, in one write. False if
    /// the job is no longer receiving (it was cancelled, say): nothing is recorded then.
    async fn save_received(&self, job: &JobStatus) -> anyhow::Result<bool>;
    /// A resumable upload's record; `None` if the job is not one.
    async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>>;
    /// Resumable uploads still receiving.
    async fn resumable_uploads(&self) -> anyhow::Result<Vec<JobId>>;
}

/// What the store keeps about a resumable upload besides its job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// Bytes durable in the temp file.
    pub offset: u64,
    /// The digest the client declared for the whole file, checked when it is complete.
    pub expected_sha256: Option<Sha256Digest>,
}

/// Browser sessions, by the SHA-256 of their cookie value. Writes are durable on return.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert_session(
        &self,
        id_hash: [u8; 32],
        created: time::OffsetDateTime,
        expires: time::OffsetDateTime,
    ) -> anyhow::Result<()>;
    async fn delete_session(&self, id_hash: [u8; 32]) -> anyhow::Result<()>;
    /// Sessions that have not expired at `now`, with their expiry.
    async fn live_sessions(
        &self,
        now: time::OffsetDateTime,
    ) -> anyhow::Result<Vec<([u8; 32], time::OffsetDateTime)>>;
    /// Deletes sessions expired at `now`; returns how many.
    async fn prune_sessions(&self, now: time::OffsetDateTime) -> anyhow::Result<u64>;
}

/// A job the worker has just taken from the queue.
#[derive(Debug)]
pub struct Claimed {
    pub job: JobStatus,
    /// When it entered the queue, for the queue-wait metric.
    pub queued_at: time::OffsetDateTime,
}

/// What `recover_interrupted` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub failed_uploads: u64,
    pub requeued: u64,
}

/// The error recorded on jobs cancelled through the API.
pub const CANCELLED_BY_REQUEST: &str = "cancelled by request";

/// The error recorded on uploads that a restart cut off.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by server restart";
