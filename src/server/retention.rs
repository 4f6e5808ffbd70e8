//! Retention: finished jobs older than the retention period are deleted with their blobs, and
//! leftovers (temp files of no live upload, blobs no job references) are removed, all through
//! the same reference lock that uploads take, so a new upload of the same content is never hit.
use super::{jobs::Jobs, sessions::Sessions, store::now};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio_util::sync::CancellationToken;

/// Jobs deleted per store query, so one sweep never holds much in memory.
const PAGE: u32 = 500;
/// Leftover files younger than this are left alone: they may belong to work in progress.
pub const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(3600);

/// What one sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub jobs: u64,
    pub temp_files: u64,
    pub blobs: u64,
}

/// Deletes finished jobs last changed more than `keep` ago, then leftover files older than
/// `leftover_age`.
pub async fn sweep(jobs: &Jobs, keep: Duration, leftover_age: Duration) -> anyhow::Result<Sweep> {
    let mut swept = Sweep::default();
    let cutoff = now() - keep;
    loop {
        let expired = jobs.store().list_finished_before(cutoff, PAGE).await?;
        if expired.is_empty() {
            break;
        }
        for job in &expired {
            // A job deleted meanwhile (by DELETE) is simply not counted.
            if jobs.delete(job.job_id).await.map_err(anyhow::Error::from)? {
                swept.jobs += 1;
            }
        }
        if expired.len() < PAGE as usize {
            break;
        }
    }
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

/// Sweeps every `every` until shutdown; expired sessions go too.
pub async fn run(
    jobs: Arc<Jobs>,
    sessions: Arc<Sessions>,
    keep: Duration,
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
        match sweep(&jobs, keep, LEFTOVER_MIN_AGE).await {
            Ok(swept) if swept != Sweep::default() => tracing::info!(?swept, "retention sweep"),
            Ok(_) => {}
            Err(error) => tracing::error!(error = ?error, "retention sweep failed"),
        }
    }
}
