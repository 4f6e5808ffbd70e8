//! The uploads service: everything about receiving a file's bytes. It owns the upload slots,
//! the free-disk floor, the temp files (through `staging`), the one-sender lock and running
//! hashes of resumable uploads, cancellation of a running receive, durable offsets, expiry,
//! the whole-file digest check, and what happens when a request is cut short. Routes parse
//! requests and map `UploadError`s (in `error.rs`); jobs change state only through `Jobs`.
//!
//! A file comes either whole, in one request (`receive_whole`, the multipart ingest), or in
//! any number of requests to a declared upload (`declare`, then `open` → `UploadSession`).
mod session;

pub use session::UploadSession;

use super::{
    jobs::{AlreadyFinished, Cancellation, Jobs, Refusal},
    quotas::QuotaExceeded,
    receive::{self, caused_by_full_disk, Partial, ReceiveError, Received},
    running::Registration,
    staging::{parts, Staging},
    store::{now, Admission, Resumable, StagedState, UploadRecord},
};
use crate::{
    api::Quotas,
    domain::{JobId, JobState, JobStatus, Owner, Scope, Sha256Digest},
};
use anyhow::Context;
use bytes::Bytes;
use futures::Stream;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why an expired upload failed.
pub const EXPIRED: &str = "expired: no bytes arrived in time";

/// What the service allows.
#[derive(Clone, Copy, Debug)]
pub struct UploadLimits {
    /// The largest file.
    pub max_bytes: u64,
    /// A request that sends nothing for this long is cut.
    pub idle: Duration,
    /// Below this much free disk, no new upload (or more bytes) is taken.
    pub min_free_disk: u64,
    /// A declared upload that receives nothing for this long expires.
    pub expiry: Duration,
    /// Unfinished declared uploads one credential may have.
    pub max_pending: u64,
    /// Uploads received at once.
    pub concurrent: usize,
}

/// Why an upload (or a request's part of one) did not go through.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the server is receiving as many uploads as it takes; retry shortly")]
    Busy,
    #[error(
        "free disk space on the server is below its floor; uploads are refused until space is freed"
    )]
    BelowDiskFloor,
    /// The disk filled up; the message says what was kept.
    #[error("{0}")]
    DiskFull(String),
    #[error("{0}")]
    TooLarge(String),
    /// The bytes stopped coming (cut, idle, malformed); the message says what was kept.
    #[error("{0}")]
    Interrupted(String),
    #[error("job {0} was cancelled during the upload")]
    Cancelled(JobId),
    #[error("no job with id {0}")]
    NotFound(JobId),
    /// Failed, cancelled or expired: the upload cannot go on.
    #[error("upload {id} is over: {reason}")]
    Over { id: JobId, reason: String },
    #[error("upload {0} cannot be continued: its stored part was lost")]
    Lost(JobId),
    #[error("another request is sending upload {0}; retry once it has finished")]
    AnotherSender(JobId),
    #[error("Upload-Offset is {sent} but the server has {durable} bytes of upload {id}")]
    WrongOffset { id: JobId, sent: u64, durable: u64 },
    #[error("upload {0} has changed since its creation")]
    Changed(JobId),
    #[error("upload {0} is complete; DELETE /api/jobs/{0} removes its job")]
    Complete(JobId),
    /// One request's bytes do not match their checksum (they were dropped).
    #[error("{0}")]
    ChunkChecksum(String),
    /// The whole file does not match its declared digest (the upload failed).
    #[error("{0}")]
    FileChecksum(String),
    #[error("{0}")]
    InvalidLength(String),
    #[error(
        "this credential has {limit} unfinished uploads, as many as it may have; finish one or \
         end it (DELETE its upload URL) first"
    )]
    TooManyPending { limit: u64 },
    /// A termination the job's cancel refused (it finished meanwhile).
    #[error(transparent)]
    NotCancelled(Cancellation),
    /// An account quota refused the upload; nothing of it was kept.
    #[error(transparent)]
    Quota(QuotaExceeded),
    /// Only the account an upload belongs to sends its bytes (an admin sees it, but does not
    /// write into another account's file).
    #[error("upload {0} belongs to another account; only its owner sends its bytes")]
    NotOwner(JobId),
    #[error(transparent)]
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for UploadError {
    /// A storage failure; a full disk is told apart, since the client may retry later.
    fn from(error: anyhow::Error) -> Self {
        let error = match error.downcast::<QuotaExceeded>() {
            Ok(exceeded) => return Self::Quota(exceeded),
            Err(error) => error,
        };
        if caused_by_full_disk(&error) {
            tracing::warn!(error = ?error, "the disk is full");
            return Self::DiskFull(DISK_FULL.to_owned());
        }
        Self::Failed(error)
    }
}

/// What a full disk answers when nothing of the upload could be kept.
pub const DISK_FULL: &str = "the server's disk is full; retry once space is freed";

impl UploadError {
    /// What the job records when this ends its upload: storage failures say nothing internal.
    fn reason(&self) -> String {
        match self {
            Self::Failed(_) => "storing the upload failed".to_owned(),
            Self::DiskFull(_) => "storing the upload failed: the disk is full".to_owned(),
            other => other.to_string(),
        }
    }
}

/// One of the server's upload slots, held while a request receives bytes.
pub struct UploadSlot {
    _permit: OwnedSemaphorePermit,
}

impl From<Refusal> for UploadError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Quota(exceeded) => Self::Quota(exceeded),
            Refusal::TooManyPending { limit } => Self::TooManyPending { limit },
            Refusal::Failed(error) => error.into(),
        }
    }
}

/// Who sends an upload: the account it is for, what that account sees, the quotas in force
/// for it, and the credential's label (its cap on unfinished uploads).
#[derive(Clone, Debug)]
pub struct Uploader {
    pub owner: Owner,
    pub scope: Scope,
    pub quotas: Quotas,
    pub credential: String,
}

impl Uploader {
    fn admission(&self) -> Admission {
        Admission {
            max_uploads: self.quotas.max_uploads,
            max_stored_bytes: self.quotas.max_stored_bytes,
        }
    }
}

/// A storage quota as it applies to one upload: the owner may store `limit` bytes, and
/// everything else it stores takes `others`.
#[derive(Clone, Debug)]
pub(crate) struct StorageQuota {
    pub account: crate::domain::AccountName,
    pub limit: u64,
    pub others: u64,
}

impl StorageQuota {
    /// The largest this upload may be.
    pub fn allows(&self) -> u64 {
        self.limit.saturating_sub(self.others)
    }

    pub fn exceeded(&self) -> UploadError {
        UploadError::Quota(QuotaExceeded::StoredBytes {
            account: self.account.clone(),
            limit: self.limit,
            used: self.others,
        })
    }
}

/// The fields of a declared (resumable) upload.
pub struct Declared {
    pub filename: Option<String>,
    /// `None`: stated later.
    pub length: Option<u64>,
    pub metadata: serde_json::Value,
    /// The digest the whole file must have.
    pub sha256: Option<Sha256Digest>,
}

pub struct Uploads {
    jobs: Arc<Jobs>,
    staging: Arc<Staging>,
    slots: Arc<Semaphore>,
    limits: UploadLimits,
}

impl Uploads {
    pub fn new(jobs: Arc<Jobs>, staging: Arc<Staging>, limits: UploadLimits) -> Self {
        Self {
            jobs,
            staging,
            slots: Arc::new(Semaphore::new(limits.concurrent)),
            limits,
        }
    }

    /// One of the server's upload slots, or `Busy` when all are taken.
    pub fn slot(&self) -> Result<UploadSlot, UploadError> {
        self.slots
            .clone()
            .try_acquire_owned()
            .map(|permit| UploadSlot { _permit: permit })
            .map_err(|_| UploadError::Busy)
    }

    /// Refuses a new upload, or more bytes, while free disk is below the floor: past it an
    /// upload would likely fill the disk part-way (and leave nothing for the database). Jobs
    /// without a file still go through.
    pub fn check_free_disk(&self) -> Result<(), UploadError> {
        match self.staging.free_space() {
            Ok(free) if free < self.limits.min_free_disk => Err(UploadError::BelowDiskFloor),
            Ok(_) => Ok(()),
            // Unknown is not full: the write itself will tell.
            Err(error) => {
                tracing::warn!(%error, "cannot read free disk space");
                Ok(())
            }
        }
    }

    /// Whether uploads can land: a file can be written where they arrive, and free disk is
    /// above the floor. For the readiness probe.
    pub async fn check_storage(&self) -> StorageCheck {
        let staging = self.staging.clone();
        let writable = match tokio::task::spawn_blocking(move || staging.probe_write()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("the upload directory takes no files: {error}")),
            Err(_) => Err("the upload directory check did not finish".to_owned()),
        };
        let free = match self.staging.free_space() {
            Ok(free) if free >= self.limits.min_free_disk => Ok(()),
            Ok(_) => Err("free disk space is below the floor".to_owned()),
            Err(error) => Err(format!("cannot read free disk space: {error}")),
        };
        StorageCheck { writable, free }
    }

    /// Receives a whole file in this request: creates its job (in `receiving`, with
    /// `metadata` so far), streams `body` (at most the upload limit) into a temp file while
    /// hashing it, and returns it ready to `finish`. If the bytes do not all arrive, the job
    /// fails with the reason (unless it was cancelled, which finished it) and nothing stays on
    /// disk.
    pub async fn receive_whole<S, E>(
        &self,
        _slot: &UploadSlot,
        uploader: &Uploader,
        filename: Option<String>,
        bytes_total: Option<u64>,
        metadata: serde_json::Value,
        body: S,
    ) -> Result<WholeFile<'_>, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.check_free_disk()?;
        let mut job = JobStatus::new(
            JobId::new(),
            &uploader.owner,
            JobState::Receiving,
            metadata,
            now(),
        );
        job.filename = filename;
        job.bytes_total = bytes_total;
        let (registration, bytes_left) = self.jobs.begin_upload(&job, uploader.admission()).await?;
        // The storage quota bounds a body of unknown length as it arrives (the final check is
        // when the file is stored).
        let quota_ceiling = bytes_left.map(|left| left.saturating_add(bytes_total.unwrap_or(0)));
        let limit = quota_ceiling.map_or(self.limits.max_bytes, |ceiling| {
            ceiling.min(self.limits.max_bytes)
        });
        let received = self
            .receive_into_staging(&job, body, limit, &registration)
            .await;
        let error = match received {
            Ok(received) => {
                return Ok(WholeFile {
                    uploads: self,
                    job,
                    received,
                    registration,
                    max_stored_bytes: uploader.quotas.max_stored_bytes,
                })
            }
            Err(ReceiveError::Cancelled) => return Err(UploadError::Cancelled(job.job_id)),
            Err(error) => error,
        };
        let problem = match error {
            ReceiveError::TooLarge { limit } if limit < self.limits.max_bytes => {
                let quota = uploader.quotas.max_stored_bytes.unwrap_or(0);
                UploadError::Quota(QuotaExceeded::StoredBytes {
                    account: job.owner.clone(),
                    limit: quota,
                    used: quota.saturating_sub(limit),
                })
            }
            ReceiveError::TooLarge { limit } => too_large(limit),
            error @ (ReceiveError::Interrupted { .. }
            | ReceiveError::Cancelled
            | ReceiveError::ChecksumMismatch) => UploadError::Interrupted(error.to_string()),
            // A one-shot upload cannot resume: its bytes are gone (`receive` removed them).
            ReceiveError::DiskFull(_) => UploadError::DiskFull(DISK_FULL.to_owned()),
            ReceiveError::Io(error) => UploadError::Failed(anyhow::anyhow!(
                "receiving job {}: writing the upload failed: {error}",
                job.job_id
            )),
        };
        self.fail_quietly(job, problem.reason()).await;
        Err(problem)
    }

    /// Receives a whole file: into a temp file, or, when the blob store is a bucket, straight
    /// into a multipart upload there (hashed on the way; one part in memory, nothing on
    /// disk). Nothing stays staged when it fails.
    async fn receive_into_staging<S, E>(
        &self,
        job: &JobStatus,
        body: S,
        limit: u64,
        registration: &Registration,
    ) -> Result<Received, ReceiveError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = job.job_id;
        let progress = self.progress_reporter(job, 0);
        let Some(bucket) = self.staging.bucket() else {
            let temp = self.staging.temp_path(id);
            let cancelled = registration.cancelled();
            return receive::receive(body, temp, limit, self.limits.idle, cancelled, progress)
                .await;
        };
        let bounds = receive::Bounds {
            limit,
            idle: self.limits.idle,
            cancelled: registration.cancelled(),
            checksum: None,
        };
        let end = parts::FileEnd::WithTheBody;
        match parts::append(bucket, id, body, Partial::empty(), end, bounds, progress).await {
            Ok(whole) => Ok(Received {
                digest: whole.digest(),
                size: whole.offset,
                staged: self.staging.staged_whole(id),
            }),
            Err(stopped) => Err(stopped.error),
        }
    }

    /// Declares a resumable upload and creates its job (`receiving`, nothing durable yet).
    /// Refused before the job exists when it is too large, the disk is below its floor, the
    /// server takes no more uploads right now, the uploader's credential has as many
    /// unfinished ones as it may, or its account's quotas do not let it in.
    pub async fn declare(
        &self,
        declared: Declared,
        uploader: &Uploader,
    ) -> Result<JobStatus, UploadError> {
        if declared
            .length
            .is_some_and(|length| length > self.limits.max_bytes)
        {
            return Err(too_large(self.limits.max_bytes));
        }
        self.check_free_disk()?;
        drop(self.slot()?);
        let mut job = JobStatus::new(
            JobId::new(),
            &uploader.owner,
            JobState::Receiving,
            declared.metadata,
            now(),
        );
        job.filename = declared.filename;
        job.bytes_total = declared.length;
        let resumable = Resumable {
            credential: uploader.credential.clone(),
            expected_sha256: declared.sha256,
            max_pending: self.limits.max_pending,
        };
        self.jobs
            .declare_upload(&job, uploader.admission(), resumable)
            .await?;
        tracing::info!(job_id = %job.job_id, length = ?declared.length, "upload created");
        Ok(job)
    }

    /// Takes the right to send upload `id`'s bytes (`AnotherSender` while another request has
    /// it), then reads the upload: after joining its runner, so a cancel from before shows in
    /// this read and one from after stops the session. Only the upload's own account sends
    /// its bytes: that is checked first, so another account neither holds the lock nor learns
    /// from it that the upload exists.
    pub async fn open(
        &self,
        id: JobId,
        uploader: &Uploader,
    ) -> Result<UploadSession<'_>, UploadError> {
        let owner = match self.jobs.stored(id, uploader.scope).await? {
            None => return Err(UploadError::NotFound(id)),
            Some(job) => job.owner_id,
        };
        if owner != uploader.owner.id {
            return Err(UploadError::NotOwner(id));
        }
        let Some(lock) = self.staging.locks().try_lock(id).await? else {
            return Err(UploadError::AnotherSender(id));
        };
        let registration = self.jobs.join_running(id);
        let (job, record) = self.upload(id, uploader.scope).await?;
        // The most this upload may grow to under its owner's storage quota, beside everything
        // else the owner stores: a length stated later, or bytes arriving before one is, are
        // held to it as they come, not only once the file is complete.
        let quota = match uploader.quotas.max_stored_bytes {
            None => None,
            Some(limit) => {
                let others = self.jobs.stored_bytes_besides(owner, id).await?;
                Some(StorageQuota {
                    account: uploader.owner.name.clone(),
                    limit,
                    others,
                })
            }
        };
        Ok(UploadSession::new(
            self,
            lock,
            registration,
            job,
            record,
            quota,
        ))
    }

    /// A declared upload `scope` sees and how many of its bytes are durable: `NotFound` if
    /// there is none (or it is not a declared upload, or `scope` does not see it), `Over` once
    /// it failed, was cancelled or expired (an upload past its expiry is expired now rather
    /// than at the next sweep).
    pub async fn describe(&self, id: JobId, scope: Scope) -> Result<(JobStatus, u64), UploadError> {
        let (job, record) = self.upload(id, scope).await?;
        let durable = durable_offset(&job, record.offset);
        Ok((job, durable))
    }

    /// A declared upload's durable offset as recorded (0 if it has none): what a creation
    /// whose first bytes were not all kept answers.
    pub async fn recorded_offset(&self, id: JobId) -> Result<u64, UploadError> {
        Ok(self
            .jobs
            .upload(id)
            .await?
            .map_or(0, |upload| upload.offset))
    }

    /// Whether job `id` is still receiving.
    pub async fn still_receiving(&self, id: JobId) -> bool {
        matches!(
            self.jobs.status(id, Scope::Everything).await,
            Ok(Some(job)) if job.status == JobState::Receiving
        )
    }

    /// The freshest state of job `id` (which the caller has already been let at).
    pub async fn status(&self, id: JobId) -> Result<Option<JobStatus>, UploadError> {
        Ok(self.jobs.status(id, Scope::Everything).await?)
    }

    /// Ends an unfinished declared upload `scope` sees: its job is cancelled and its bytes
    /// removed.
    pub async fn terminate(&self, id: JobId, scope: Scope) -> Result<(), UploadError> {
        let (job, _) = self.upload(id, scope).await?;
        if job.status != JobState::Receiving {
            return Err(UploadError::Complete(id));
        }
        match self.jobs.cancel(id, scope).await {
            Ok(_) => Ok(()),
            // Finished between the read and the cancel: answered as any refused cancel.
            Err(Cancellation::Failed(error)) => Err(error.into()),
            Err(refused) => Err(UploadError::NotCancelled(refused)),
        }
    }

    /// When a declared upload that receives nothing more expires: its last change plus the
    /// expiry; `None` once it is no longer receiving.
    pub fn expires_at(&self, job: &JobStatus) -> Option<SystemTime> {
        (job.status == JobState::Receiving)
            .then(|| SystemTime::from(job.updated_at) + self.limits.expiry)
    }

    /// Fails declared uploads still receiving whose last byte (or creation) is older than
    /// `stalled_for` and that no request is sending right now; their bytes go with them.
    pub async fn expire_stalled(&self, stalled_for: Duration) -> anyhow::Result<u64> {
        // One-shot uploads need no sweep: their request cuts them after the idle timeout.
        let cutoff = now() - stalled_for;
        let mut expired = 0;
        for id in self.jobs.resumable_uploads().await? {
            let Some(job) = self.jobs.status(id, Scope::Everything).await? else {
                continue;
            };
            if job.status == JobState::Receiving
                && job.updated_at <= cutoff
                && self.expire(job).await?
            {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// Removes temp files older than `older_than` that belong to no unfinished job (a crash
    /// can leave them); returns how many.
    pub async fn remove_leftovers(&self, older_than: SystemTime) -> anyhow::Result<u64> {
        let staging = self.staging.clone();
        let temp_files = tokio::task::spawn_blocking(move || staging.list()).await??;
        let mut removed = 0;
        for (path, job, modified) in temp_files {
            if modified > older_than {
                continue;
            }
            // A live upload's temp file is named by a job that is still receiving.
            let live = match job {
                Some(id) => self
                    .jobs
                    .status(id, Scope::Everything)
                    .await?
                    .is_some_and(|job| !job.is_terminal()),
                None => false,
            };
            if !live {
                self.staging.discard(&path)?;
                removed += 1;
            }
        }
        // In the bucket: what a node that died mid-request, or a failed clean-up, left.
        let staged = match self.staging.bucket() {
            Some(bucket) => bucket.staged_jobs().await?,
            None => Vec::new(),
        };
        for (id, modified) in staged {
            if modified > older_than {
                continue;
            }
            let live = self
                .jobs
                .status(id, Scope::Everything)
                .await?
                .is_some_and(|job| job.status == JobState::Receiving);
            if !live {
                self.staging.discard_upload(id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Start-up recovery: interrupted jobs are recovered (see `Jobs::recover`), and every temp
    /// file goes but those of declared uploads, which wait for their clients.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let resumable = self.jobs.recover().await?;
        let staging = self.staging.clone();
        let removed =
            tokio::task::spawn_blocking(move || staging.clear_except(&resumable)).await??;
        tracing::info!(temp_files_removed = removed, "upload staging cleared");
        Ok(())
    }

    /// Expires one declared upload unless a request is sending it right now: its bytes are
    /// removed and its job fails with `EXPIRED`. False if it was not expired (being sent, or
    /// finished meanwhile).
    async fn expire(&self, job: JobStatus) -> anyhow::Result<bool> {
        let Some(_sending) = self.staging.locks().try_lock(job.job_id).await? else {
            return Ok(false);
        };
        self.staging.discard_upload(job.job_id).await?;
        match self.jobs.fail(job, EXPIRED).await {
            Ok(()) => Ok(true),
            Err(error) if error.is::<AlreadyFinished>() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The declared upload `id` and its record, checked as `describe` says. A job `scope`
    /// does not see is `NotFound` before anything else happens to it.
    async fn upload(
        &self,
        id: JobId,
        scope: Scope,
    ) -> Result<(JobStatus, UploadRecord), UploadError> {
        let Some(job) = self.jobs.status(id, scope).await? else {
            return Err(UploadError::NotFound(id));
        };
        let Some(record) = self.jobs.upload(id).await? else {
            return Err(UploadError::NotFound(id));
        };
        let over = |reason: &str| UploadError::Over {
            id,
            reason: reason.to_owned(),
        };
        match job.status {
            JobState::Failed | JobState::Cancelled => {
                Err(over(job.error.as_deref().unwrap_or("cancelled")))
            }
            JobState::Receiving
                if self
                    .expires_at(&job)
                    .is_some_and(|expiry| SystemTime::now() > expiry) =>
            {
                if self.expire(job.clone()).await? {
                    return Err(over(EXPIRED));
                }
                Ok((job, record))
            }
            _ => Ok((job, record)),
        }
    }

    /// Where a declared upload stands at its durable offset: its running hash kept from this
    /// node's last request, or as `record` stored it (by whichever node); re-read from the temp
    /// file for an upload recorded before hash states were stored.
    async fn partial(&self, id: JobId, record: &UploadRecord) -> anyhow::Result<Partial> {
        let offset = record.offset;
        let parts = record.staged.parts.clone();
        if let Some(mut partial) = self.staging.partial(id, offset) {
            // The parts as recorded: only the hash is taken from memory.
            partial.parts = parts;
            return Ok(partial);
        }
        if offset == 0 {
            return Ok(Partial {
                parts,
                ..Partial::empty()
            });
        }
        let state = record.staged.hash_state.as_deref();
        if let Some(partial) = state.and_then(|state| Partial::resume(offset, state, parts)) {
            return Ok(partial);
        }
        anyhow::ensure!(
            self.staging.bucket().is_none(),
            "upload {id} is staged in the bucket without a hash state"
        );
        let temp = self.staging.temp_path(id);
        let started = Instant::now();
        let partial = tokio::task::spawn_blocking(move || Partial::rehash(&temp, offset))
            .await?
            .context("re-reading a resumable upload")?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(job_id = %id, offset, elapsed_ms, "re-hashed the durable part of an upload");
        Ok(partial)
    }

    /// Records that a declared upload's bytes up to `partial.offset` are durable (they were
    /// `before`), with the running hash's state and the bucket's parts, and keeps the hash for
    /// this node's next request. Fails with `AlreadyFinished` if the job finished meanwhile (a
    /// cancel): then nothing is recorded.
    async fn record(&self, job: &JobStatus, partial: Partial, before: u64) -> anyhow::Result<()> {
        let id = job.job_id;
        let offset = partial.offset;
        let staged = StagedState {
            hash_state: Some(partial.hash_state()),
            parts: partial.parts.clone(),
        };
        // Kept before the write: a cancel forgets it after its own write, so a hash kept for a
        // job that the cancel finished cannot stay behind.
        let previous = self.staging.keep_partial(id, partial);
        let recorded = self.jobs.record_received(job, offset, &staged).await;
        match &recorded {
            Err(_) => self.staging.restore_partial(id, previous),
            Ok(()) if offset != before => self.staging.superseded(id, before).await,
            Ok(()) => {}
        }
        recorded
    }

    /// Publishes an upload's live byte count (`base` bytes were already there); how often is
    /// the receiving loop's (`receive::Incoming`).
    fn progress_reporter<'a>(&'a self, job: &'a JobStatus, base: u64) -> impl FnMut(u64) + 'a {
        move |bytes| self.jobs.report_received(job, base + bytes)
    }

    /// Records a job as failed, logging (not returning) a failure to do so: the client's
    /// answer is already decided.
    async fn fail_quietly(&self, job: JobStatus, reason: String) {
        if let Err(error) = self.jobs.fail(job, reason).await {
            tracing::error!(error = ?error, "recording a failed upload failed");
        }
    }

    /// An upload that cannot go on: its bytes are removed and its job recorded as failed.
    async fn abandon(&self, job: JobStatus, reason: String) {
        self.staging.discard_quietly(job.job_id).await;
        self.fail_quietly(job, reason).await;
    }
}

/// The readiness of upload storage: each part `Err` with a reason for people.
pub struct StorageCheck {
    pub writable: Result<(), String>,
    pub free: Result<(), String>,
}

/// A file received whole into its temp file, its job still `receiving`.
pub struct WholeFile<'a> {
    uploads: &'a Uploads,
    job: JobStatus,
    received: Received,
    registration: Registration,
    /// The owner's storage quota, checked again when the file is stored.
    max_stored_bytes: Option<u64>,
}

impl WholeFile<'_> {
    /// Stores the file with the job's final `metadata` and queues the job. If that fails the
    /// job fails too and its bytes go (nobody can resume it), unless it was cancelled
    /// meanwhile (then it is over already).
    pub async fn finish(self, metadata: serde_json::Value) -> Result<JobStatus, UploadError> {
        let Self {
            uploads,
            mut job,
            received,
            registration,
            max_stored_bytes,
        } = self;
        job.metadata = metadata;
        let id = job.job_id;
        match uploads
            .jobs
            .finish_upload(job.clone(), received, registration, max_stored_bytes)
            .await
        {
            Ok(job) => Ok(job),
            Err(error) if error.is::<AlreadyFinished>() => {
                uploads.staging.discard_quietly(id).await;
                Err(UploadError::Cancelled(id))
            }
            Err(error) => {
                let problem = UploadError::from(error);
                uploads.abandon(job, problem.reason()).await;
                Err(problem)
            }
        }
    }

    /// The request failed after the file arrived: the job fails with `reason` and the bytes
    /// are removed.
    pub async fn abandon(self, reason: String) {
        self.uploads.abandon(self.job, reason).await;
    }
}

fn too_large(limit: u64) -> UploadError {
    UploadError::TooLarge(format!("the upload exceeds the limit of {limit} bytes"))
}

/// Bytes on disk for good: the recorded offset while receiving, all of them afterwards.
fn durable_offset(job: &JobStatus, stored: u64) -> u64 {
    match job.status {
        JobState::Receiving => stored,
        _ => job.size.or(job.bytes_total).unwrap_or(stored),
    }
}
