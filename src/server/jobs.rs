//! The job service: the one place that changes jobs. It writes the store first and then
//! publishes to the hub (which drops stale snapshots), so a follower that finds no live entry
//! can trust the store. A resumable upload between requests lives only in the store.
//! REST routes, server functions and the worker all go through it.
use super::error::ApiError;
use super::{
    blobs::BlobStore,
    hub::{Follow, StatusHub, Watch},
    metrics,
    receive::{Partial, Received},
    store::{now, Claimed, JobStore, UploadRecord},
};
use crate::{
    api::{ErrorCode, JobPage},
    domain::{JobId, JobState, JobStatus, Progress, Sha256Digest},
};
use anyhow::Context;
use std::collections::{HashMap, HashSet};
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};
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
    /// One token per job being received or processed (a resumable upload only while a request
    /// sends it); cancelling the job fires it so the upload or the worker stops at once.
    running: std::sync::Mutex<HashMap<JobId, Running>>,
    /// Tells registrations apart, so a request only ever removes its own.
    registrations: AtomicU64,
    /// Uploads a request is sending bytes to right now: one sender per upload at a time.
    sending: std::sync::Mutex<HashSet<JobId>>,
    /// Wakes those waiting for a sending lock (a cancel) when one is released.
    released: Notify,
    /// Running hashes of resumable uploads between requests, so a PATCH continues without
    /// reading back what is on disk (a restart loses them; they are then re-hashed once).
    partials: std::sync::Mutex<HashMap<JobId, Partial>>,
}

struct Running {
    registration: u64,
    token: CancellationToken,
}

/// Held by the one request sending an upload's bytes (or by whoever removes them); released
/// when dropped.
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
        self.jobs.released.notify_waiters();
    }
}

/// The request sending a resumable upload's bytes: its sending lock, and its cancellation token,
/// registered before the request reads the job's state. So a cancel either shows in that read
/// or fires the token; no cancel is missed.
pub struct Sending<'a> {
    lock: SendingLock<'a>,
    /// `None` when the token was someone else's (the job is not receiving any more).
    registration: Option<u64>,
    token: CancellationToken,
}

impl Sending<'_> {
    /// Fires when the upload is cancelled.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.token
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        // Between requests an upload has no token: nothing is left behind per waiting upload.
        if let Some(registration) = self.registration {
            let mut running = self.lock.jobs.running.lock().expect("running lock");
            if running
                .get(&self.lock.id)
                .is_some_and(|entry| entry.registration == registration)
            {
                running.remove(&self.lock.id);
            }
        }
        // The sending lock goes after this, with the field.
    }
}

/// Why a resumable upload could not be declared.
#[derive(Debug, thiserror::Error)]
pub enum Declaration {
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
    pub fn new(store: Arc<dyn JobStore>, blobs: BlobStore) -> Self {
        Self {
            store,
            hub: StatusHub::default(),
            blobs,
            blob_refs: tokio::sync::Mutex::new(()),
            queued: Notify::new(),
            running: Default::default(),
            registrations: AtomicU64::new(0),
            sending: Default::default(),
            released: Notify::new(),
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

    /// A job whose file is about to arrive in this request; durable in `receiving` when this
    /// returns, so a crash mid-transfer leaves a record that the restart marks failed.
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
        // Registered before the job exists, so a cancel that finds the job also stops the request.
        self.start_running(job.job_id);
        if let Err(error) = self.store.insert(&job).await {
            self.hub.forget(job.job_id);
            self.stop_running(job.job_id);
            return Err(error);
        }
        metrics::job_created("file");
        Ok(job)
    }

    /// A resumable upload of `length` bytes (`None`: stated later) declared by `owner` (a
    /// credential's label): a receiving job whose durable offset (0 for now) is recorded, so it
    /// survives restarts until its bytes are all in or it expires. Refused, with nothing
    /// recorded, when `owner` already has `max_pending` of them unfinished. Between requests it
    /// lives only in the store: waiting uploads cost no memory.
    pub async fn declare_upload(
        &self,
        filename: Option<String>,
        length: Option<u64>,
        metadata: serde_json::Value,
        expected_sha256: Option<Sha256Digest>,
        owner: &str,
        max_pending: u64,
    ) -> Result<JobStatus, Declaration> {
        let mut job = JobStatus::new(JobId::new(), JobState::Receiving, metadata, now());
        job.filename = filename;
        job.bytes_total = length;
        let declared = self
            .store
            .declare_upload(&job, owner, expected_sha256, max_pending)
            .await?;
        if !declared {
            return Err(Declaration::TooManyPending { limit: max_pending });
        }
        metrics::job_created("file");
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

    /// Records that a resumable upload's bytes up to `partial.offset` are durable: the offset
    /// and the job's progress in one write (HEAD, status readers and a restart read them
    /// there), then the running hash and the live progress. Fails with `AlreadyFinished` if the
    /// job finished meanwhile (a cancel): then nothing is recorded.
    pub async fn record_partial(&self, job: &JobStatus, partial: Partial) -> anyhow::Result<()> {
        let id = job.job_id;
        let mut received = job.clone();
        received.bytes_done = partial.offset;
        received.progress = Progress::receiving(partial.offset, job.bytes_total);
        received.updated_at = now();
        // Kept before the write: a cancel removes it after its own write, so a hash kept for a
        // job that the cancel finished cannot stay behind.
        let previous = self
            .partials
            .lock()
            .expect("partials lock")
            .insert(id, partial);
        match self.store.save_received(&received).await {
            Ok(true) => {
                self.hub.publish(received);
                Ok(())
            }
            failed => {
                let mut partials = self.partials.lock().expect("partials lock");
                match previous {
                    Some(previous) => partials.insert(id, previous),
                    None => partials.remove(&id),
                };
                match failed {
                    Err(error) => Err(error),
                    _ => Err(AlreadyFinished(id).into()),
                }
            }
        }
    }

    /// Takes the right to send `id`'s bytes and registers for its cancellation; `None` while
    /// another request sends them. Read the job's state only after this.
    pub fn start_sending(&self, id: JobId) -> Option<Sending<'_>> {
        let lock = self.lock_sending(id)?;
        let mut running = self.running.lock().expect("running lock");
        let (registration, token) = match running.get(&id) {
            Some(existing) => (None, existing.token.clone()),
            None => {
                let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
                let token = CancellationToken::new();
                let entry = Running {
                    registration,
                    token: token.clone(),
                };
                running.insert(id, entry);
                (Some(registration), token)
            }
        };
        drop(running);
        Some(Sending {
            lock,
            registration,
            token,
        })
    }

    /// Carries an unfinished job's snapshots live, for a follower or a request sending its
    /// bytes, until the returned watch (and every other) is dropped.
    pub async fn watch_live(&self, job: JobStatus) -> anyhow::Result<Watch> {
        let id = job.job_id;
        let live = self.hub.hold(job);
        // A change saved between the caller's read and the entry's creation was published to
        // no one: read once more now that the entry catches every later change.
        if let Some(fresh) = self.store.get(id).await? {
            self.hub.publish(fresh);
        }
        Ok(live)
    }

    /// Live byte count of an upload while a request sends it: published, not stored (the store
    /// records transitions, and a resumable upload's durable count: `record_partial`).
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

    /// Stores the received file under its digest and queues the job for processing. If the job
    /// finished meanwhile (a cancel) or cannot be recorded, the stored file goes again unless
    /// another job references the same content.
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
        // The request's token goes before the job is queued: once queued, a token under this id
        // is the worker's.
        self.stop_running(job.job_id);
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
        drop(referencing);
        self.partials
            .lock()
            .expect("partials lock")
            .remove(&job.job_id);
        metrics::upload_stored(&job, received.size);
        self.queued.notify_one();
        Ok(job)
    }

    /// Removes a stored blob unless a job references it. The caller holds `blob_refs`.
    async fn remove_if_unreferenced(&self, digest: Sha256Digest) -> anyhow::Result<bool> {
        if self.store.count_referencing(digest).await? > 0 {
            return Ok(false);
        }
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.remove_blob(&digest))
            .await?
            .context("removing an unreferenced blob")?;
        Ok(true)
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
            self.remove_if_unreferenced(digest).await?;
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
            if self.remove_if_unreferenced(digest).await? {
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
        // Read first: whether a job is a resumable upload never changes while it exists.
        let resumable = self.store.upload(id).await?.is_some();
        let Some(cancelled) = self.store.cancel(id).await? else {
            return match self.status(id).await? {
                Some(job) => Err(Cancellation::Finished(job.status)),
                None => Err(Cancellation::NotFound),
            };
        };
        // Whoever runs the job registered its token before reading the job's state, so it
        // either saw the cancel there or is stopped by this.
        if let Some(running) = self.running.lock().expect("running lock").remove(&id) {
            running.token.cancel();
        }
        self.partials.lock().expect("partials lock").remove(&id);
        metrics::job_finished(&cancelled);
        self.hub.publish(cancelled.clone());
        // A one-shot upload's bytes belong to its request, which removes them once stopped. A
        // resumable upload's are removed here, once no request sends them (one that does
        // stops at once, and nothing it records for a cancelled job counts).
        if resumable {
            let _sending = self.wait_sending(id).await;
            if let Err(error) = self.blobs.discard_temp(&self.blobs.temp_path(id)) {
                tracing::warn!(%error, job_id = %id, "removing a cancelled upload's bytes failed");
            }
        }
        tracing::info!(job_id = %id, "job cancelled");
        Ok(cancelled)
    }

    /// The right to send `id`'s bytes, or `None` while another request holds it.
    pub fn lock_sending(&self, id: JobId) -> Option<SendingLock<'_>> {
        let inserted = self.sending.lock().expect("sending lock").insert(id);
        // Built only on success: dropping a lock that was never taken would release the holder's.
        inserted.then(|| SendingLock { jobs: self, id })
    }

    /// The right to send `id`'s bytes, once the request holding it (if any) lets go.
    async fn wait_sending(&self, id: JobId) -> SendingLock<'_> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Listening before trying, so a release between the try and the wait is not missed.
            released.as_mut().enable();
            if let Some(lock) = self.lock_sending(id) {
                return lock;
            }
            released.await;
        }
    }

    /// The token that fires if the job is cancelled while it runs.
    pub fn cancellation(&self, id: JobId) -> CancellationToken {
        self.running
            .lock()
            .expect("running lock")
            .get(&id)
            .map(|running| running.token.clone())
            .unwrap_or_default()
    }

    fn start_running(&self, id: JobId) {
        let registration = self.registrations.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.running.lock().expect("running lock").insert(
            id,
            Running {
                registration,
                token,
            },
        );
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
        Ok(Some(Follow::Live(self.watch_live(stored).await?)))
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
                ErrorCode::InvalidQuery,
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

    /// Start-up recovery: re-queues interrupted processing, fails interrupted one-shot uploads
    /// and removes temp files but those of resumable uploads, which stay in the store only.
    pub async fn recover(&self) -> anyhow::Result<()> {
        let recovery = self.store.recover_interrupted().await?;
        let resumable = self.store.resumable_uploads().await?;
        let waiting = resumable.len();
        let blobs = self.blobs.clone();
        let removed = tokio::task::spawn_blocking(move || blobs.clear_temp(&resumable)).await??;
        tracing::info!(
            failed_uploads = recovery.failed_uploads,
            resumable_uploads = waiting,
            requeued = recovery.requeued,
            temp_files_removed = removed,
            "recovered after start-up"
        );
        Ok(())
    }
}
