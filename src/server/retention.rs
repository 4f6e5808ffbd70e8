//! Retention: finished jobs older than the retention period are deleted with their blobs, and
//! leftovers (temp files of no live upload, blobs no job references) are removed, all through
//! the same reference lock that uploads take, so a new upload of the same content is never hit.
use super::{
    jobs::{AlreadyFinished, Jobs},
    sessions::Sessions,
    store::now,
};
use crate::domain::{JobState, JobStatus};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio_util::sync::CancellationToken;

/// Jobs deleted per store query, so one sweep never holds much in memory.
const PAGE: u32 = 500;
/// Leftover files younger than this are left alone: they may belong to work in progress.
pub const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(3600);

/// Why an expired upload failed.
pub const EXPIRED: &str = "expired: no bytes arrived in time";

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub jobs: u64,
    pub temp_files: u64,
    pub blobs: u64,
    /// Uploads declared but sent nothing for `leftover_age`: failed as expired.
    pub expired_uploads: u64,
}

/// What a sweep removes, by age.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Finished jobs older than this go; `None` keeps them.
    pub keep: Option<Duration>,
    /// Uploads that sent nothing for this long expire.
    pub upload_expiry: Duration,
    /// Leftover files older than this go.
    pub leftover_age: Duration,
}

/// Deletes finished jobs past `keep`, expires stalled uploads, then removes leftover files.
pub async fn sweep(jobs: &Jobs, policy: Policy) -> anyhow::Result<Sweep> {
    let mut swept = Sweep::default();
    if let Some(keep) = policy.keep {
        swept.jobs = delete_finished_before(jobs, now() - keep).await?;
    }
    swept.expired_uploads = expire_stalled_uploads(jobs, policy.upload_expiry).await?;
    let leftover_age = policy.leftover_age;
    let old_enough = SystemTime::now()
        .checked_sub(leftover_age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let blobs = jobs.blobs().clone();
    let temp_files = tokio::task::spawn_blocking(move || blobs.list_temp()).await??;
    for (path, job, modified) in temp_files {
        if modified > old_enough {
            continue;
        }
        // A live upload's temp file is named by a job that is still receiving.
        let live = match job {
            Some(id) => jobs.status(id).await?.is_some_and(|job| !job.is_terminal()),
            None => false,
        };
        if !live {
            jobs.blobs().discard_temp(&path)?;
            swept.temp_files += 1;
        }
    }
    swept.blobs = jobs.remove_unreferenced_blobs(old_enough).await?;
    Ok(swept)
}

async fn delete_finished_before(jobs: &Jobs, cutoff: time::OffsetDateTime) -> anyhow::Result<u64> {
    let mut deleted = 0;
    loop {
        let expired = jobs.store().list_finished_before(cutoff, PAGE).await?;
        for job in &expired {
            // A job deleted meanwhile (by DELETE) is simply not counted.
            if jobs.delete(job.job_id).await.map_err(anyhow::Error::from)? {
                deleted += 1;
            }
        }
        if expired.len() < PAGE as usize {
            return Ok(deleted);
        }
    }
}

/// Fails resumable uploads still `receiving` whose last byte (or creation) is older than
/// `stalled_for` and that no request is sending right now; their temp data goes with them.
pub async fn expire_stalled_uploads(jobs: &Jobs, stalled_for: Duration) -> anyhow::Result<u64> {
    // One-shot uploads need no sweep: their request cuts them after the idle timeout.
    let cutoff = now() - stalled_for;
    let mut expired = 0;
    for id in jobs.store().resumable_uploads().await? {
        let Some(job) = jobs.status(id).await? else {
            continue;
        };
        if job.status == JobState::Receiving
            && job.updated_at <= cutoff
            && expire_upload(jobs, job).await?
        {
            expired += 1;
        }
    }
    Ok(expired)
}

/// Expires one upload unless a request is sending it right now: its bytes are removed and its
/// job fails with `EXPIRED`. False if it was not expired (being sent, or finished meanwhile).
pub async fn expire_upload(jobs: &Jobs, job: JobStatus) -> anyhow::Result<bool> {
    let Some(_sending) = jobs.lock_sending(job.job_id) else {
        return Ok(false);
    };
    jobs.blobs()
        .discard_temp(&jobs.blobs().temp_path(job.job_id))?;
    match jobs.fail(job, EXPIRED).await {
        Ok(()) => Ok(true),
        Err(error) if error.is::<AlreadyFinished>() => Ok(false),
        Err(error) => Err(error),
    }
}

/// Sweeps every `every` until shutdown; expired sessions go too.
pub async fn run(
    jobs: Arc<Jobs>,
    sessions: Arc<Sessions>,
    policy: Policy,
    every: Duration,
    shutdown: CancellationToken,
) {
    // The first sweep waits a full period: start-up has just recovered the data dir.
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if let Err(error) = sessions.prune().await {
            tracing::error!(error = ?error, "pruning expired sessions failed");
        }
        match sweep(&jobs, policy).await {
            Ok(swept) if swept != Sweep::default() => tracing::info!(?swept, "retention sweep"),
            Ok(_) => {}
            Err(error) => tracing::error!(error = ?error, "retention sweep failed"),
        }
    }
}
