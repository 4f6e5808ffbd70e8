//! The job lifecycle: the one place that changes jobs. It writes the store first and then
//! publishes live status (which drops stale snapshots), so a follower that finds no live entry
//! can trust the store. It stores finished uploads as blobs (under the reference lock that
//! deletions take), queues them, runs cancellations, and pages through jobs. Receiving bytes is
//! the uploads service's; REST routes, server functions, the uploads service and the worker
//! all change jobs through here. Jobs are claimed and one-shot uploads admitted under this
//! node's lease (`leases`); `keep_leases` renews them and recovers jobs whose lease ran out.
use super::{
    blobs::{BlobInfo, BlobStore, BlobStream},
    hub::{Follow, LiveStatus, Watch},
    leases::{HeldLease, Leases},
    metrics,
    quotas::QuotaExceeded,
    receive::Received,
    running::{Cancellations, Registration},
    staging::Staging,
    store::{
        now, Admission, Admitted, Claimed, JobStore, ListFilter, Resumable, StagedState,
        UploadRecord,
    },
};
use crate::{
    api::{JobPage, Usage},
    domain::{AccountId, JobId, JobState, JobStatus, Owner, Progress, Scope, Sha256Digest},
};
use anyhow::Context;
use std::{ops::Range, sync::Arc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Why a job could not be deleted.
#[derive(Debug, thiserror::Error)]
pub enum Deletion {
    #[error("the job is {0}; only finished jobs can be deleted")]
    Running(JobState),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Why a page of jobs could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum Paging {
    #[error("limit must be between 1 and {max}")]
    LimitOutOfRange { max: u32 },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The parts a job service stands on; each is a seam a cluster fills differently.
pub struct Parts {
    pub store: Arc<dyn JobStore>,
    pub live: Arc<dyn LiveStatus>,
    pub blobs: Arc<dyn BlobStore>,
    pub cancellations: Arc<dyn Cancellations>,
    pub staging: Arc<Staging>,
    /// This node's leases, over the same store.
    pub leases: Arc<Leases>,
}

pub struct Jobs {
    store: Arc<dyn JobStore>,
    live: Arc<dyn LiveStatus>,
    blobs: Arc<dyn BlobStore>,
    cancellations: Arc<dyn Cancellations>,
    /// Uploads' bytes at rest: released when their job is cancelled or finished.
    staging: Arc<Staging>,
    /// Held while a blob gains a reference (stored, then recorded on its job) and while one is
    /// checked for references and removed, so a deletion never races a new upload of the same
    /// content. It serves this process; the store's `lock_blob`, taken inside it, serves the
    /// cluster (and keeps this node to one database connection held for it at a time).
    blob_refs: tokio::sync::Mutex<()>,
    leases: Arc<Leases>,
    /// Wakes the worker when a job is queued.
    queued: Notify,
}

/// A job just taken from the queue, with its runner's registration (cancelling the job fires
/// it; it ends when dropped) and its lease (which the job's every write is conditioned on).
pub struct Running {
    pub job: JobStatus,
    pub registration: Registration,
    pub lease: HeldLease,
}

/// A write of a job this node was processing found it no longer this node's: it finished
/// elsewhere (a cancel) or its lease ran out and another node took it over. Nothing was
/// written; whoever made the change should simply stop.
#[derive(Debug, thiserror::Error)]
#[error("job {0} is no longer this node's to process")]
pub struct NotHeld(pub JobId);

/// Why an upload was not let in (nothing of it was recorded).
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
    #[error("this credential already has {limit} unfinished uploads")]
    TooManyPending { limit: u64 },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

/// A change to a job that has meanwhile finished (it was cancelled, say). Finished is final, so
/// the change was dropped; whoever made it should simply stop.
#[derive(Debug, thiserror::Error)]
#[error("job {0} has already finished")]
pub struct AlreadyFinished(pub JobId);

/// Why a job could not be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum Cancellation {
    #[error("no such job")]
    NotFound,
    #[error("the job has already {0}")]
    Finished(JobState),
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Jobs {
    pub fn new(parts: Parts) -> Self {
        let Parts {
            store,
            live,
            blobs,
            cancellations,
            staging,
            leases,
        } = parts;
        Self {
            store,
            live,
            blobs,
            cancellations,
            staging,
            blob_refs: tokio::sync::Mutex::new(()),
            leases,
            queued: Notify::new(),
        }
    }

    /// Succeeds when the store takes a durable write.
    pub async fn probe_database(&self) -> anyhow::Result<()> {
        self.store.ping().await
    }

    /// Succeeds when the blob store answers.
    pub async fn probe_blobs(&self) -> std::io::Result<()> {
        self.blobs.probe().await
    }

    /// A metadata-only job of `owner`, durable and queued when this returns.
    pub async fn submit_metadata(
        &self,
        owner: &Owner,
        metadata: serde_json::Value,
    ) -> anyhow::Result<JobStatus> {
        let job = JobStatus::new(JobId::new(), owner, JobState::Queued, metadata, now());
        self.store.insert(&job).await?;
        metrics::job_created("metadata");
        self.queued.notify_one();
        Ok(job)
    }

    /// A job whose file is about to arrive in one request (`job`, receiving), if its owner's
    /// quotas let it in; durable when this returns, so a crash mid-transfer leaves a record
    /// that the restart marks failed. The registration stops the request if the job is
    /// cancelled. Also answers how many more bytes the owner may store.
    pub async fn begin_upload(
        &self,
        job: &JobStatus,
        admission: Admission,
    ) -> Result<(Registration, Option<u64>), Refusal> {
        // Live byte counts exist only in live status, so an upload is carried from the start.
        self.live.carry(job.clone());
        // Registered before the job exists, so a cancel that finds the job also stops the request.
        let registration = self.cancellations.register(job.job_id);
        match self.admit(job, admission, None).await {
            Ok(bytes_left) => Ok((registration, bytes_left)),
            Err(refusal) => {
                self.live.forget(job.job_id);
                Err(refusal)
            }
        }
    }

    /// A resumable upload (`job`, receiving, `bytes_total` its declared length if stated),
    /// if its owner's quotas and its credential's cap on unfinished uploads let it in: its
    /// durable offset (0 for now) is recorded, so it survives restarts until its bytes are all
    /// in or it expires.
    pub async fn declare_upload(
        &self,
        job: &JobStatus,
        admission: Admission,
        resumable: Resumable,
    ) -> Result<(), Refusal> {
        self.admit(job, admission, Some(resumable)).await.map(drop)
    }

    async fn admit(
        &self,
        job: &JobStatus,
        admission: Admission,
        resumable: Option<Resumable>,
    ) -> Result<Option<u64>, Refusal> {
        let max_pending = resumable.as_ref().map_or(0, |r| r.max_pending);
        let account = || job.owner.clone();
        let lease = self.leases.lease();
        match self.store.admit(job, admission, resumable, lease).await? {
            Admitted::Yes { bytes_left } => {
                metrics::job_created("file");
                Ok(bytes_left)
            }
            Admitted::TooManyUploads { .. } => Err(QuotaExceeded::Uploads {
                account: account(),
                limit: admission.max_uploads.unwrap_or(0),
            }
            .into()),
            Admitted::OverStorage { used } => Err(QuotaExceeded::StoredBytes {
                account: account(),
                limit: admission.max_stored_bytes.unwrap_or(0),
                used,
            }
            .into()),
            Admitted::TooManyPending => Err(Refusal::TooManyPending { limit: max_pending }),
        }
    }

    /// What an account uses now, counted from its jobs.
    pub async fn usage(&self, account: AccountId) -> anyhow::Result<Usage> {
        self.store.usage(account).await
    }

    /// Bytes an account's files and unfinished uploads take, leaving out upload `except`.
    pub async fn stored_bytes_besides(
        &self,
        account: AccountId,
        except: JobId,
    ) -> anyhow::Result<u64> {
        self.store.stored_bytes_besides(account, except).await
    }

    /// A resumable upload's durable offset and declared digest; `None` if the job is not one.
    pub async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>> {
        self.store.upload(id).await
    }

    /// Resumable uploads still receiving.
    pub async fn resumable_uploads(&self) -> anyhow::Result<Vec<JobId>> {
        self.store.resumable_uploads().await
    }

    /// Joins whoever runs `id` (or registers as its runner): the token fires if it is
    /// cancelled. Read the job's state only after this, so no cancel is missed.
    pub fn join_running(&self, id: JobId) -> Registration {
        self.cancellations.join(id)
    }

    /// Records that a resumable upload's first `offset` bytes are durable: the offset and the
    /// job's progress in one write (HEAD, status readers and a restart read them there), then
    /// the live progress. Fails with `AlreadyFinished` if the job finished meanwhile (a
    /// cancel): then nothing is recorded.
    pub async fn record_received(
        &self,
        job: &JobStatus,
        offset: u64,
        staged: &StagedState,
    ) -> anyhow::Result<()> {
        let mut received = job.clone();
        received.bytes_done = offset;
        received.progress = Progress::receiving(offset, job.bytes_total);
        received.updated_at = now();
        if !self.store.save_received(&received, staged).await? {
            return Err(AlreadyFinished(job.job_id).into());
        }
        self.live.publish(received);
        Ok(())
    }

    /// Carries an unfinished job's snapshots live, for a follower or a request sending its
    /// bytes, until the returned watch (and every other) is dropped.
    pub async fn watch_live(&self, job: JobStatus) -> anyhow::Result<Watch> {
        let id = job.job_id;
        let live = self.live.hold(job);
        // A change saved between the caller's read and the entry's creation was published to
        // no one: read once more now that the entry catches every later change.
        if let Some(fresh) = self.store.get(id).await? {
            self.live.publish(fresh);
        }
        Ok(live)
    }

    /// Live byte count of an upload while a request sends it: published, not stored (the store
    /// records transitions, and a resumable upload's durable count: `record_received`).
    pub fn report_received(&self, job: &JobStatus, bytes_done: u64) {
        let mut live = job.clone();
        live.bytes_done = bytes_done;
        live.progress = Progress::receiving(bytes_done, job.bytes_total);
        self.report_progress(&mut live);
    }

    /// Progress within a state: published to followers and status readers, not stored. A
    /// restart re-queues or fails the job anyway, so storing it would only cost writes.
    pub fn report_progress(&self, job: &mut JobStatus) {
        job.updated_at = now();
        self.live.publish(job.clone());
    }

    /// Stores the received file as a blob and queues the job for processing; the receiving
    /// request's registration ends first (once queued, a runner of this job is the worker). If
    /// the job finished meanwhile (a cancel) or cannot be recorded, the stored blob goes again
    /// unless another job references the same content. Refused with `QuotaExceeded` (nothing
    /// stored) when the file would take its owner past `max_stored_bytes`: checked under the
    /// lock every storing takes, so uploads finishing together cannot pass it together.
    pub async fn finish_upload(
        &self,
        job: JobStatus,
        received: Received,
        registration: Registration,
        max_stored_bytes: Option<u64>,
    ) -> anyhow::Result<JobStatus> {
        let referencing = self.blob_refs.lock().await;
        let quota_owner = max_stored_bytes.map(|_| job.owner_id);
        let cluster = self.store.lock_blob(received.digest, quota_owner).await?;
        let stored = self
            .store_received(job, &received, registration, max_stored_bytes)
            .await;
        cluster.release().await;
        drop(referencing);
        let job = stored?;
        self.staging.forget_partial(job.job_id);
        metrics::upload_stored(&job, received.size);
        self.queued.notify_one();
        Ok(job)
    }

    /// `finish_upload` under the blob locks.
    async fn store_received(
        &self,
        mut job: JobStatus,
        received: &Received,
        registration: Registration,
        max_stored_bytes: Option<u64>,
    ) -> anyhow::Result<JobStatus> {
        let digest = received.digest;
        if let Some(limit) = max_stored_bytes {
            let others = self
                .store
                .stored_bytes_besides(job.owner_id, job.job_id)
                .await?;
            if others.saturating_add(received.size) > limit {
                return Err(QuotaExceeded::StoredBytes {
                    account: job.owner.clone(),
                    limit,
                    used: others,
                }
                .into());
            }
        }
        self.blobs
            .put(&received.staged, &digest)
            .await
            .context("storing the upload")?;
        drop(registration);
        job.status = JobState::Queued;
        job.sha256 = Some(digest);
        job.size = Some(received.size);
        job.bytes_done = received.size;
        job.bytes_total = Some(received.size);
        job.progress = Progress::queued(true);
        if let Err(error) = self.update(&mut job).await {
            if let Err(cleanup) = self.remove_if_unreferenced(digest).await {
                tracing::warn!(error = ?cleanup, job_id = %job.job_id, "removing a blob no job took failed");
            }
            return Err(error);
        }
        Ok(job)
    }

    /// Removes a stored blob unless a job references it. The caller holds `blob_refs` and the
    /// store's `lock_blob` of `digest`.
    async fn remove_if_unreferenced(&self, digest: Sha256Digest) -> anyhow::Result<bool> {
        if self.store.count_referencing(digest).await? > 0 {
            return Ok(false);
        }
        self.blobs
            .delete(&digest)
            .await
            .context("removing an unreferenced blob")?;
        Ok(true)
    }

    /// The size and age of a stored file; `None` if it is missing.
    pub async fn content_info(&self, digest: &Sha256Digest) -> anyhow::Result<Option<BlobInfo>> {
        Ok(self.blobs.stat(digest).await?)
    }

    /// Bytes `range` of a stored file.
    pub async fn read_content(
        &self,
        digest: &Sha256Digest,
        range: Range<u64>,
    ) -> anyhow::Result<BlobStream> {
        Ok(self.blobs.read(digest, range).await?)
    }

    /// Removes a finished job that `scope` sees, and its blob when no other job references
    /// it. `Ok(false)` if there is no such job; `Err(Deletion::Running)` if it has not
    /// finished.
    pub async fn delete(&self, id: JobId, scope: Scope) -> Result<bool, Deletion> {
        let Some(job) = self.status(id, scope).await? else {
            return Ok(false);
        };
        if !job.is_terminal() {
            return Err(Deletion::Running(job.status));
        }
        let _referencing = self.blob_refs.lock().await;
        let Some(digest) = job.sha256 else {
            return self.delete_record(id).await.map_err(Deletion::from);
        };
        let cluster = self.store.lock_blob(digest, None).await?;
        let deleted = match self.delete_record(id).await {
            Ok(true) => self.remove_if_unreferenced(digest).await.map(|_| true),
            other => other,
        };
        cluster.release().await;
        Ok(deleted?)
    }

    async fn delete_record(&self, id: JobId) -> anyhow::Result<bool> {
        let deleted = self.store.delete(id).await?;
        if deleted {
            tracing::info!(job_id = %id, "job deleted");
        }
        Ok(deleted)
    }

    /// Deletes finished jobs last changed before `cutoff` and the blobs they leave unreferenced,
    /// `page` at a time so memory stays flat; returns how many went. Each page's records go in
    /// one write, after which the sweep rests `rest` times as long as that write took, so a run
    /// of them holds at most 1/(1 + rest) of the store's time and ingestion keeps the rest.
    pub async fn delete_finished_before(
        &self,
        cutoff: time::OffsetDateTime,
        page: u32,
        rest: u32,
    ) -> anyhow::Result<u64> {
        let mut deleted = 0;
        loop {
            let expired = self.store.list_finished_before(cutoff, page).await?;
            let ids: Vec<JobId> = expired.iter().map(|job| job.job_id).collect();
            let started = tokio::time::Instant::now();
            let records = self.store.delete_finished(&ids).await?;
            let write_took = started.elapsed();
            if records > 0 {
                tracing::info!(jobs = records, "expired jobs deleted");
            }
            deleted += records;
            // A job deleted meanwhile (by DELETE) went with its blob already, or the blob is
            // still referenced: either way the check below finds nothing to remove.
            let mut digests: Vec<Sha256Digest> =
                expired.iter().filter_map(|job| job.sha256).collect();
            digests.sort_unstable();
            digests.dedup();
            for digest in digests {
                let _referencing = self.blob_refs.lock().await;
                let cluster = self.store.lock_blob(digest, None).await?;
                let removed = self.remove_if_unreferenced(digest).await;
                cluster.release().await;
                removed?;
            }
            if expired.len() < page as usize {
                return Ok(deleted);
            }
            tokio::time::sleep(write_took * rest).await;
        }
    }

    /// Puts a job whose processing was stopped back in the queue; its runner's registration
    /// ends before it is queued again.
    pub async fn requeue(&self, running: Running) -> anyhow::Result<()> {
        let Running {
            mut job,
            registration,
            lease,
        } = running;
        drop(registration);
        job.status = JobState::Queued;
        job.progress = Progress::queued(job.has_file());
        self.save_processing(&mut job, &lease).await?;
        tracing::info!(job_id = %job.job_id, "job re-queued");
        Ok(())
    }

    /// Stores a change to a job this node is processing, then tells its followers; only while
    /// the node still holds the job's lease, so no job is processed by two nodes at once.
    /// Fails with `NotHeld` (nothing written) when the job finished meanwhile or another node
    /// took it over.
    pub async fn save_processing(
        &self,
        job: &mut JobStatus,
        lease: &HeldLease,
    ) -> anyhow::Result<()> {
        job.updated_at = now();
        if !self.store.save_held(job, lease.node()).await? {
            return Err(NotHeld(job.job_id).into());
        }
        if job.is_terminal() {
            metrics::job_finished(job);
        }
        self.live.publish(job.clone());
        Ok(())
    }

    /// Marks a job this node is processing failed (see `save_processing`).
    pub async fn fail_processing(
        &self,
        mut job: JobStatus,
        lease: &HeldLease,
        error: impl Into<String>,
    ) -> anyhow::Result<()> {
        job.status = JobState::Failed;
        job.error = Some(error.into());
        self.save_processing(&mut job, lease).await
    }

    /// Lets go of a job this node stopped processing without writing (its lease was lost):
    /// followers here get the store's state, and this node carries it live no more.
    pub async fn let_go(&self, running: Running) {
        let id = running.job.job_id;
        drop(running);
        match self.store.get(id).await {
            Ok(Some(stored)) => self.live.publish(stored),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = ?error, job_id = %id, "reading a let-go job failed")
            }
        }
        self.live.forget(id);
    }

    /// Removes stored blobs that no job references and that were last written before
    /// `older_than` (a crash between storing a file and recording it can leave one).
    pub async fn remove_unreferenced_blobs(
        &self,
        older_than: std::time::SystemTime,
    ) -> anyhow::Result<u64> {
        let stored = self.blobs.list().await?;
        let mut removed = 0;
        for (digest, modified) in stored {
            if modified > older_than {
                continue;
            }
            let _referencing = self.blob_refs.lock().await;
            let cluster = self.store.lock_blob(digest, None).await?;
            let gone = self.remove_if_unreferenced(digest).await;
            cluster.release().await;
            if gone? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Marks a job failed with a message meant for people.
    pub async fn fail(&self, mut job: JobStatus, error: impl Into<String>) -> anyhow::Result<()> {
        // Keep how far it got: the live snapshot may be ahead of the caller's copy.
        if let Some(live) = self.live.current(job.job_id) {
            job.bytes_done = live.bytes_done;
            job.progress = live.progress;
        }
        job.status = JobState::Failed;
        job.error = Some(error.into());
        self.update(&mut job).await
    }

    /// Stores a changed job, then tells its followers.
    /// Fails with `AlreadyFinished` when the job finished meanwhile (or is gone).
    pub async fn update(&self, job: &mut JobStatus) -> anyhow::Result<()> {
        job.updated_at = now();
        if !self.store.save(job).await? {
            return Err(AlreadyFinished(job.job_id).into());
        }
        if job.is_terminal() {
            metrics::job_finished(job);
            self.staging.forget_partial(job.job_id);
        }
        self.live.publish(job.clone());
        Ok(())
    }

    /// Cancels an unfinished job that `scope` sees: queued jobs never run, an upload stops and
    /// its bytes are removed, processing stops after the current step. Returns the cancelled
    /// job. A job `scope` does not see is `NotFound`, as if there were none.
    pub async fn cancel(&self, id: JobId, scope: Scope) -> Result<JobStatus, Cancellation> {
        if !self.visible(id, scope).await? {
            return Err(Cancellation::NotFound);
        }
        // Read first: whether a job is a resumable upload never changes while it exists.
        let resumable = self.store.upload(id).await?.is_some();
        let Some(cancelled) = self.store.cancel(id).await? else {
            return match self.status(id, Scope::Everything).await? {
                Some(job) => Err(Cancellation::Finished(job.status)),
                None => Err(Cancellation::NotFound),
            };
        };
        // Whoever runs the job registered before reading the job's state, so it either saw
        // the cancel there or is stopped by this.
        // The cancel is recorded: failing to reach the runner must not hide that (it stops at
        // its next store write, which finds the job finished).
        if let Err(error) = self.cancellations.cancel(id).await {
            tracing::error!(error = ?error, job_id = %id, "reaching a cancelled job's runner failed");
        }
        metrics::job_finished(&cancelled);
        self.live.publish(cancelled.clone());
        // A one-shot upload's bytes belong to its request, which removes them once stopped. A
        // resumable upload's are released here.
        if resumable {
            self.staging.release(id).await;
        } else {
            self.staging.forget_partial(id);
        }
        tracing::info!(job_id = %id, "job cancelled");
        Ok(cancelled)
    }

    /// Whether job `id` exists and `scope` sees it: one read of the store, the same for a job
    /// of another account as for an unknown id, so neither the answer nor its timing tells
    /// them apart. Whose a job is never changes, so the check holds for whatever follows.
    async fn visible(&self, id: JobId, scope: Scope) -> anyhow::Result<bool> {
        Ok(self.stored(id, scope).await?.is_some())
    }

    /// The freshest state of a job `scope` sees: the live snapshot while the job runs, the
    /// stored one otherwise. `None` if there is no such job or `scope` does not see it.
    pub async fn status(&self, id: JobId, scope: Scope) -> anyhow::Result<Option<JobStatus>> {
        let job = match self.live.current(id) {
            Some(live) => Some(live),
            None => self.store.get(id).await?,
        };
        Ok(job.filter(|job| scope.sees(job.owner_id)))
    }

    /// The state the store holds of a job `scope` sees, leaving live progress aside.
    pub async fn stored(&self, id: JobId, scope: Scope) -> anyhow::Result<Option<JobStatus>> {
        Ok(self
            .store
            .get(id)
            .await?
            .filter(|job| scope.sees(job.owner_id)))
    }

    /// How many jobs are in `state`.
    pub async fn count_in_state(&self, state: JobState) -> anyhow::Result<u64> {
        self.store.count_in_state(state).await
    }

    /// Follows a job `scope` sees: live snapshots while it runs, its final state once
    /// finished; `None` if there is no such job or `scope` does not see it.
    pub async fn follow(&self, id: JobId, scope: Scope) -> anyhow::Result<Option<Follow>> {
        if !self.visible(id, scope).await? {
            return Ok(None);
        }
        if let Some(live) = self.live.subscribe(id) {
            return Ok(Some(Follow::Live(live)));
        }
        let Some(stored) = self.store.get(id).await? else {
            return Ok(None);
        };
        if stored.is_terminal() {
            return Ok(Some(Follow::Finished(Box::new(stored))));
        }
        Ok(Some(Follow::Live(self.watch_live(stored).await?)))
    }

    /// Newest first, with live progress for jobs that are running.
    pub async fn list(
        &self,
        filter: &ListFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        let mut jobs = self.store.list(filter, before, limit).await?;
        for job in &mut jobs {
            if let Some(live) = self.live.current(job.job_id) {
                *job = live;
            }
        }
        Ok(jobs)
    }

    /// One page of jobs, newest first: `limit` (default 50, at most 500) after `before`.
    pub async fn page(
        &self,
        filter: &ListFilter,
        before: Option<JobId>,
        limit: Option<u32>,
    ) -> Result<JobPage, Paging> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Paging::LimitOutOfRange { max: MAX_PAGE });
        }
        // One extra row tells whether there is a next page.
        let mut jobs = self.list(filter, before, limit + 1).await?;
        let next_before = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|job| job.job_id)
        } else {
            None
        };
        Ok(JobPage { jobs, next_before })
    }

    /// Claims up to `limit` queued jobs for processing, each registered to its runner. They
    /// are carried live while they run, so their progress reaches status readers as well as
    /// followers.
    pub async fn claim(&self, limit: u32) -> anyhow::Result<Vec<Running>> {
        let claimed = self.store.claim_queued(limit, self.leases.lease()).await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for Claimed { job, queued_at } in claimed {
            metrics::job_claimed((job.updated_at - queued_at).as_seconds_f64());
            let registration = self.cancellations.register(job.job_id);
            let lease = self.leases.hold(job.job_id);
            self.live.carry(job.clone());
            self.live.publish(job.clone());
            jobs.push(Running {
                job,
                registration,
                lease,
            });
        }
        Ok(jobs)
    }

    /// Resolves when a job may have been queued since the last call.
    pub async fn queued_notification(&self) {
        self.queued.notified().await
    }

    /// Start-up recovery: re-queues interrupted processing and fails interrupted one-shot
    /// uploads, those of earlier processes the store knows to be dead and those whose lease
    /// has run out; returns the resumable uploads that wait for their clients.
    pub async fn recover(&self) -> anyhow::Result<Vec<JobId>> {
        let recovery = self.store.recover_interrupted(self.leases.node()).await?;
        let expired = self.recover_expired().await?;
        let resumable = self.store.resumable_uploads().await?;
        tracing::info!(
            node = %self.leases.node(),
            failed_uploads = recovery.failed_uploads,
            resumable_uploads = resumable.len(),
            requeued = recovery.requeued,
            expired_leases = expired,
            "recovered after start-up"
        );
        Ok(resumable)
    }

    /// Jobs whose lease has run out (their node stopped): one-shot uploads fail, processing
    /// goes back to the queue. Returns how many changed.
    pub async fn recover_expired(&self) -> anyhow::Result<usize> {
        let recovered = self.store.recover_expired().await?;
        for job in &recovered {
            if job.is_terminal() {
                metrics::job_finished(job);
                self.staging.forget_partial(job.job_id);
                tracing::warn!(job_id = %job.job_id, "an upload's node stopped; the upload failed");
            } else {
                tracing::warn!(job_id = %job.job_id, "a job's node stopped; the job is queued again");
                self.queued.notify_one();
            }
            self.live.publish(job.clone());
        }
        Ok(recovered.len())
    }

    /// Renews this node's leases every third of a lease, and recovers jobs whose lease ran out
    /// (any node's), until shutdown.
    pub async fn keep_leases(self: Arc<Self>, shutdown: CancellationToken) {
        let every = self.leases.renew_every();
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            if let Err(error) = self.leases.renew().await {
                tracing::error!(error = ?error, "renewing leases failed");
            }
            if let Err(error) = self.recover_expired().await {
                tracing::error!(error = ?error, "recovering jobs whose lease ran out failed");
            }
        }
    }
}
