//! Retention: finished jobs older than the retention period are deleted with their blobs,
//! stalled uploads expire, and leftovers (temp files of no live upload, blobs no job
//! references) are removed. The policy is here; each service does its own removing. What
//! concerns the shared database and blob store runs once per sweep period across the cluster
//! (a periodic-task claim); each node clears its own temp files.
use super::{jobs::Jobs, leases::Leases, sessions::Sessions, store::now, uploads::Uploads};
use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};
use tokio_util::sync::CancellationToken;

/// Jobs deleted per store query, so one sweep never holds much in memory, and one write of
/// it holds up the ingests committed with it only briefly.
const PAGE: u32 = 100;
/// How many times as long as a page's one write took the sweep then rests: at most a fifth of
/// the store's time goes to the sweep's writes (scripts/bench_scale (l)).
const REST_AFTER_PAGE: u32 = 4;
/// Leftover files younger than this are left alone: they may belong to work in progress.
pub const LEFTOVER_MIN_AGE: Duration = Duration::from_secs(3600);

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

/// The periodic-task name the shared part of a sweep is claimed under.
const SHARED_SWEEP: &str = "retention";

/// Deletes finished jobs past `keep`, expires stalled uploads, then removes leftover files.
pub async fn sweep(jobs: &Jobs, uploads: &Uploads, policy: Policy) -> anyhow::Result<Sweep> {
    let mut swept = sweep_shared(jobs, uploads, policy).await?;
    swept.temp_files = sweep_local(uploads, policy).await?;
    Ok(swept)
}

/// What one node does for the whole cluster: jobs, stalled uploads and blobs, which live in
/// the shared database and blob store.
async fn sweep_shared(jobs: &Jobs, uploads: &Uploads, policy: Policy) -> anyhow::Result<Sweep> {
    let mut swept = Sweep::default();
    if let Some(keep) = policy.keep {
        swept.jobs = jobs
            .delete_finished_before(now() - keep, PAGE, REST_AFTER_PAGE)
            .await?;
    }
    swept.expired_uploads = uploads.expire_stalled(policy.upload_expiry).await?;
    swept.blobs = jobs
        .remove_unreferenced_blobs(leftovers_before(policy))
        .await?;
    Ok(swept)
}

/// What every node does for itself: its own leftover temp files.
async fn sweep_local(uploads: &Uploads, policy: Policy) -> anyhow::Result<u64> {
    uploads.remove_leftovers(leftovers_before(policy)).await
}

fn leftovers_before(policy: Policy) -> SystemTime {
    SystemTime::now()
        .checked_sub(policy.leftover_age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Sweeps every `every` until shutdown; expired sessions go too. The shared part (and the
/// session pruning) runs on the node that claims it, at most once per `every` across the
/// cluster.
pub async fn run(
    jobs: Arc<Jobs>,
    uploads: Arc<Uploads>,
    sessions: Arc<Sessions>,
    leases: Arc<Leases>,
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
        let started = std::time::Instant::now();
        let mut swept = Sweep::default();
        match leases.claim_periodic(SHARED_SWEEP, every).await {
            Ok(true) => {
                if let Err(error) = sessions.prune().await {
                    tracing::error!(error = ?error, "pruning expired sessions failed");
                }
                match sweep_shared(&jobs, &uploads, policy).await {
                    Ok(shared) => swept = shared,
                    Err(error) => tracing::error!(error = ?error, "retention sweep failed"),
                }
            }
            Ok(false) => tracing::debug!("another node runs this period's retention sweep"),
            Err(error) => tracing::error!(error = ?error, "claiming the retention sweep failed"),
        }
        match sweep_local(&uploads, policy).await {
            Ok(temp_files) => swept.temp_files = temp_files,
            Err(error) => tracing::error!(error = ?error, "removing leftover temp files failed"),
        }
        if swept != Sweep::default() {
            let elapsed_ms = started.elapsed().as_millis() as u64;
            tracing::info!(?swept, elapsed_ms, "retention sweep");
        }
    }
}
