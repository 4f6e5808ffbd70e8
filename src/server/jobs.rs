//! The job service: the one place that changes jobs. It writes the store first and then
//! publishes to the hub (which drops stale snapshots), so a follower that finds no live entry
//! can trust the store.
//! REST routes, server functions and the worker all go through it.
use super::error::ApiError;
use super::{
    blobs::BlobStore,
    hub::{Follow, StatusHub},
    metrics,
    receive::{Partial, Received},
    store::{now, Claimed, JobStore, UploadRecord},
};
use crate::{
    api::JobPage,
    domain::{JobId, JobState, JobStatus, Progress, Sha256Digest},
};
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
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

pub struct Jobs {
    store: Arc<dyn JobStore>,
    hub: StatusHub,
    blobs: BlobStore,
    /// Held while a blob gains a reference (stored, then recorded on its job) and while one is
    /// checked for references and removed, so a deletion never races a new upload of the same
    /// content.
    blob_refs: tokio::sync::Mutex<()>,
    /// Wakes the worker when a job is queued.
    queued: Notify,
    /// One token per job being received or processed; cancelling the job fires it so the
    /// upload or the worker stops at once.
    running: std::sync::Mutex<HashMap<JobId, CancellationToken>>,
    /// Uploads a request is sending bytes to right now: one sender per upload at a time.
    sending: std::sync::Mutex<HashSet<JobId>>,
    /// Running hashes of resumable uploads between requests, so a PATCH continues without
    /// reading back what is on disk (a restart loses them; they are then re-hashed once).
    partials: std::sync::Mutex<HashMap<JobId, Partial>>,
}

/// Held by the one request sending an upload's bytes; released when dropped.
pub struct SendingLock<'a> {
    jobs: &'a Jobs,
    id: JobId,
}

impl Drop for SendingLock<'_> {
    fn drop(&mut self) {
        self.jobs
            .sending
            .lock()
            .expect("sending lock")
            .remove(&self.id);
    }
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
    pub fn new(store: Arc<dyn JobStore>, blobs: BlobStore) -> Self {
        Self {
            store,
            hub: StatusHub::default(),
            blobs,
            blob_refs: tokio::sync::Mutex::new(()),
            queued: Notify::new(),
            running: Default::default(),
            sending: Default::default(),
            partials: Default::default(),
        }
    }

    pub fn hub(&self) -> &StatusHub {
        &self.hub
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn store(&self) -> &dyn JobStore {
        self.store.as_ref()
    }

    /// Succeeds when the store takes a durable write.
    pub async fn probe_database(&self) -> anyhow::Result<()> {
        self.store.ping().await
    }

    /// A metadata-only job, durable and queued when this returns.
    pub async fn submit_metadata(&self, metadata: serde_json::Value) -> anyhow::Result<JobStatus> {
        let job = JobStatus::new(JobId::new(), JobState::Queued, metadata, now());
        self.store.insert(&job).await?;
        metrics::job_created("metadata");
        self.queued.notify_one();
        Ok(job)
    }

    /// A job whose file is about to arrive; durable in `receiving` when this returns, so a
    /// crash mid-transfer leaves a record that the restart marks failed.
    pub async fn begin_upload(
        &self,
        filename: Option<String>,
        bytes_total: Option<u64>,
        metadata: serde_json::Value,
    ) -> anyhow::Result<JobStatus> {
        let mut job = JobStatus::new(JobId::new(), JobState::Receiving, metadata, now());
        job.filename = filename;
        job.bytes_total = bytes_total;
        // Live byte counts exist only in the hub, so an upload is carried there from the start.
        drop(self.hub.track(job.clone()));
        if let Err(error) = self.store.insert(&job).await {
            self.hub.forget(job.job_id);
            return Err(error);
        }
        metrics::job_created("file");
        self.start_running(job.job_id);
        Ok(job)
    }

    /// A resumable upload of `length` bytes (`None`: stated later): a receiving job whose durable
    /// offset (0 for now)
    /// is recorded, so it survives restarts until its bytes are all in or it expires.
    pub async fn declare_upload(
        &self,
        filename: Option<String>,
        length: Option<u64>,
        metadata: serde_json::Value,
        expected_sha256: Option<Sha256Digest>,
    ) -> anyhow::Result<JobStatus> {
        let job = self.begin_upload(filename, length, metadata).await?;
        if let Err(error) = self.store.insert_upload(job.job_id, expected_sha256).await {
            // Without its offset the upload could not be resumed: it fails now, not later.
            let _ = self.fail(job, "storing the upload failed").await;
            return Err(error);
        }
        Ok(job)
    }

    /// A resumable upload's durable offset and declared digest; `None` if the job is not one.
    pub async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>> {
        self.store.upload(id).await
    }

    /// Where a resumable upload stands: its durable offset and the hash of the bytes so far
    /// (kept from the last request, or re-read from the temp file after a restart).
    pub async fn partial(&self, id: JobId, offset: u64) -> anyhow::Result<Partial> {
        let kept = self
            .partials
            .lock()
            .expect("partials lock")
            .get(&id)
            .cloned();
        if let Some(partial) = kept.filter(|partial| partial.offset == offset) {
            return Ok(partial);
        }
        if offset == 0 {
            return Ok(Partial::empty());
        }
        let temp = self.blobs.temp_path(id);
        let started = std::time::Instant::now();
        let partial = tokio::task::spawn_blocking(move || Partial::rehash(&temp, offset))
            .await?
            .context("re-reading a resumable upload")?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(job_id = %id, offset, elapsed_ms, "re-hashed the durable part of an upload");
        Ok(partial)
    }

    /// Records that a resumable upload's bytes up to `partial.offset` are durable: the store
    /// first (HEAD answers from it), then the running hash and the live progress.
    pub async fn record_partial(&self, job: &JobStatus, partial: Partial) -> anyhow::Result<()> {
        self.store
            .save_upload_offset(job.job_id, partial.offset)
            .await?;
        self.report_received(job, partial.offset);
        self.partials
            .lock()
            .expect("partials lock")
            .insert(job.job_id, partial);
        Ok(())
    }

    /// The token that fires when `id` is cancelled, registered if it was not (a resumable
    /// upload continued after a restart).
    pub fn running_token(&self, id: JobId) -> CancellationToken {
        self.running
            .lock()
            .expect("running lock")
            .entry(id)
            .or_default()
            .clone()
    }

    /// Live byte count of an upload: published, not stored (the store records transitions).
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
        self.hub.publish(job.clone());
    }

    /// Stores the received file under its digest and queues the job for processing.
    pub async fn finish_upload(
        &self,
        mut job: JobStatus,
        received: Received,
    ) -> anyhow::Result<JobStatus> {
        let blobs = self.blobs.clone();
        let digest = received.digest;
        let temp = received.temp.clone();
        let referencing = self.blob_refs.lock().await;
        tokio::task::spawn_blocking(move || blobs.commit(&temp, &digest))
            .await?
            .context("storing the upload")?;
        job.status = JobState::Queued;
        job.sha256 = Some(digest);
        job.size = Some(received.size);
        job.bytes_done = received.size;
        job.bytes_total = Some(received.size);
        job.progress = Progress::queued(true);
        self.update(&mut job).await?;
        drop(referencing);
        self.stop_running(job.job_id);
        self.partials
            .lock()
            .expect("partials lock")
            .remove(&job.job_id);
        metrics::upload_stored(&job, received.size);
        self.queued.notify_one();
        Ok(job)
    }

    /// Removes a finished job, and its blob when no other job references it. `Ok(false)` if
    /// there is no such job; `Err(Deletion::Running)` if it has not finished.
    pub async fn delete(&self, id: JobId) -> Result<bool, Deletion> {
        let Some(job) = self.status(id).await? else {
            return Ok(false);
        };
        if !job.is_terminal() {
            return Err(Deletion::Running(job.status));
        }
        let _referencing = self.blob_refs.lock().await;
        if !self.store.delete(id).await? {
            return Ok(false);
        }
        if let Some(digest) = job.sha256 {
            if self.store.count_referencing(digest).await? == 0 {
                let blobs = self.blobs.clone();
                tokio::task::spawn_blocking(move || blobs.remove_blob(&digest))
                    .await
                    .map_err(anyhow::Error::from)?
                    .context("removing an unreferenced blob")?;
            }
        }
        tracing::info!(job_id = %id, "job deleted");
        Ok(true)
    }

    /// Puts a job whose processing was stopped back in the queue.
    pub async fn requeue(&self, mut job: JobStatus) -> anyhow::Result<()> {
        job.status = JobState::Queued;
        job.progress = Progress::queued(job.has_file());
        self.update(&mut job).await?;
        self.stop_running(job.job_id);
        tracing::info!(job_id = %job.job_id, "job re-queued");
        Ok(())
    }

    /// Removes stored blobs that no job references and that were last written before
    /// `older_than` (a crash between storing a file and recording it can leave one).
    pub async fn remove_unreferenced_blobs(
        &self,
        older_than: std::time::SystemTime,
    ) -> anyhow::Result<u64> {
        let blobs = self.blobs.clone();
        let stored = tokio::task::spawn_blocking(move || blobs.list_blobs()).await??;
        let mut removed = 0;
        for (digest, modified) in stored {
            if modified > older_than {
                continue;
            }
            let _referencing = self.blob_refs.lock().await;
            if self.store.count_referencing(digest).await? == 0 {
                let blobs = self.blobs.clone();
                tokio::task::spawn_blocking(move || blobs.remove_blob(&digest)).await??;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Marks a job failed with a message meant for people.
    pub async fn fail(&self, mut job: JobStatus, error: impl Into<String>) -> anyhow::Result<()> {
        // Keep how far it got: the live snapshot may be ahead of the caller's copy.
        if let Some(live) = self.hub.current(job.job_id) {
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
            self.stop_running(job.job_id);
            self.partials
                .lock()
                .expect("partials lock")
                .remove(&job.job_id);
        }
        self.hub.publish(job.clone());
        Ok(())
    }

    /// Cancels an unfinished job: queued jobs never run, an upload stops and its bytes are
    /// removed, processing stops after the current step. Returns the cancelled job.
    pub async fn cancel(&self, id: JobId) -> Result<JobStatus, Cancellation> {
        let Some(cancelled) = self.store.cancel(id).await? else {
            return match self.status(id).await? {
                Some(job) => Err(Cancellation::Finished(job.status)),
                None => Err(Cancellation::NotFound),
            };
        };
        if let Some(running) = self.running.lock().expect("running lock").remove(&id) {
            running.cancel();
        }
        self.partials.lock().expect("partials lock").remove(&id);
        // A resumable upload between requests has nobody to remove its bytes; one being sent
        // removes them itself when the cancellation reaches it.
        if let Some(_sending) = self.lock_sending(id) {
            if let Err(error) = self.blobs.discard_temp(&self.blobs.temp_path(id)) {
                tracing::warn!(%error, job_id = %id, "removing a cancelled upload's bytes failed");
            }
        }
        metrics::job_finished(&cancelled);
        self.hub.publish(cancelled.clone());
        tracing::info!(job_id = %id, "job cancelled");
        Ok(cancelled)
    }

    /// The right to send `id`'s bytes, or `None` while another request holds it.
    pub fn lock_sending(&self, id: JobId) -> Option<SendingLock<'_>> {
        let inserted = self.sending.lock().expect("sending lock").insert(id);
        // Built only on success: dropping a lock that was never taken would release the holder's.
        inserted.then(|| SendingLock { jobs: self, id })
    }

    /// The token that fires if the job is cancelled while it runs.
    pub fn cancellation(&self, id: JobId) -> CancellationToken {
        self.running
            .lock()
            .expect("running lock")
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    fn start_running(&self, id: JobId) {
        self.running
            .lock()
            .expect("running lock")
            .insert(id, CancellationToken::new());
    }

    fn stop_running(&self, id: JobId) {
        self.running.lock().expect("running lock").remove(&id);
    }

    /// The freshest state: the live snapshot while the job runs, the stored one otherwise.
    pub async fn status(&self, id: JobId) -> anyhow::Result<Option<JobStatus>> {
        if let Some(live) = self.hub.current(id) {
            return Ok(Some(live));
        }
        self.store.get(id).await
    }

    /// Follows a job: live snapshots while it runs, its final state once finished; `None` if
    /// there is no such job.
    pub async fn follow(&self, id: JobId) -> anyhow::Result<Option<Follow>> {
        if let Some(live) = self.hub.subscribe(id) {
            return Ok(Some(Follow::Live(live)));
        }
        let Some(stored) = self.store.get(id).await? else {
            return Ok(None);
        };
        if stored.is_terminal() {
            return Ok(Some(Follow::Finished(Box::new(stored))));
        }
        let live = self.hub.track(stored);
        // A change saved between the read and the entry's creation was published to no one:
        // read once more now that the entry catches every later change.
        if let Some(fresh) = self.store.get(id).await? {
            self.hub.publish(fresh);
        }
        Ok(Some(Follow::Live(live)))
    }

    /// Newest first, with live progress for jobs that are running.
    pub async fn list(
        &self,
        state: Option<JobState>,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        let mut jobs = self.store.list(state, before, limit).await?;
        for job in &mut jobs {
            if let Some(live) = self.hub.current(job.job_id) {
                *job = live;
            }
        }
        Ok(jobs)
    }

    /// One page of jobs, newest first: `limit` (default 50, at most 500) after `before`.
    pub async fn page(
        &self,
        state: Option<JobState>,
        before: Option<JobId>,
        limit: Option<u32>,
    ) -> Result<JobPage, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
        // One extra row tells whether there is a next page.
        let mut jobs = self.list(state, before, limit + 1).await?;
        let next_before = if jobs.len() > limit as usize {
            jobs.truncate(limit as usize);
            jobs.last().map(|job| job.job_id)
        } else {
            None
        };
        Ok(JobPage { jobs, next_before })
    }

    /// Claims up to `limit` queued jobs for processing. They are carried live in the hub
    /// while they run, so their progress reaches status readers as well as followers.
    pub async fn claim(&self, limit: u32) -> anyhow::Result<Vec<JobStatus>> {
        let claimed = self.store.claim_queued(limit).await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for Claimed { job, queued_at } in claimed {
            metrics::job_claimed((job.updated_at - queued_at).as_seconds_f64());
            jobs.push(job);
        }
        for job in &jobs {
            self.start_running(job.job_id);
            drop(self.hub.track(job.clone()));
            self.hub.publish(job.clone());
        }
        Ok(jobs)
    }

    /// Resolves when a job may have been queued since the last call.
    pub async fn queued_notification(&self) {
        self.queued.notified().await
    }

    /// Start-up recovery: re-queues interrupted processing, fails interrupted uploads and
    /// removes their temp files.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let recovery = self.store.recover_interrupted().await?;
        let resumable = self.store.resumable_uploads().await?;
        let blobs = self.blobs.clone();
        let keep = resumable.clone();
        let removed = tokio::task::spawn_blocking(move || blobs.clear_temp(&keep)).await??;
        for id in &resumable {
            // Their durable offset is in the store; the live view starts from it.
            if let (Some(job), Some(upload)) =
                (self.store.get(*id).await?, self.store.upload(*id).await?)
            {
                self.hub.track(job.clone());
                self.report_received(&job, upload.offset);
            }
        }
        let queued = self
            .store
            .list(Some(JobState::Queued), None, u32::MAX)
            .await?;
        for job in queued {
            self.hub.track(job);
        }
        tracing::info!(
            failed_uploads = recovery.failed_uploads,
            resumable_uploads = resumable.len(),
            requeued = recovery.requeued,
            temp_files_removed = removed,
            "recovered after start-up"
        );
        Ok(())
    }
}
