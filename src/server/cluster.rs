//! What the nodes of a cluster tell each other, over PostgreSQL `LISTEN`/`NOTIFY` on one
//! channel: job snapshots, so a WebSocket on any node follows a job wherever it is received or
//! processed, and cancels, so a cancel on any node stops the job wherever it runs. `Cluster`
//! fills the `LiveStatus` and `Cancellations` seams around this node's own hub and runners.
//!
//! Snapshots are coalesced: each job's latest waits at most `FLUSH_EVERY` and goes with the
//! others in as few notifications as fit (a job sends at most a few a second, however fast its
//! bytes arrive). A notification carries only what changes while a job runs (state, progress,
//! bytes); a node that watches the job fills in the rest from the snapshot it has, and re-reads
//! the job from the store when its state changed (the writer sends after its commit).
//! Notifications sent while a node's listener is reconnecting are lost, so after every
//! (re)connect it re-reads the jobs it watches and checks the jobs it runs for cancels.
use super::{
    hub::{LiveStatus, StatusHub, Watch},
    running::{Cancellations, LocalCancellations, Registration},
    store::JobStore,
};
use crate::domain::{JobId, JobState, JobStatus};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::{postgres::PgListener, PgPool};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The one channel every node listens on.
const CHANNEL: &str = "ingest_cluster";
/// How long a job's latest snapshot may wait to be sent (state changes go at once).
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Snapshots per notification: one is at most ~200 bytes of JSON, and PostgreSQL refuses
/// payloads of 8000 bytes or more.
const SNAPSHOTS_PER_NOTIFICATION: usize = 30;
/// The pause before reconnecting a listener that failed to connect.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// One notification.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The sending node: a node ignores its own notifications.
    from: u64,
    #[serde(flatten)]
    body: Body,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Body {
    Snapshots { jobs: Vec<Snapshot> },
    Cancel { job: JobId },
}

/// What changes while a job runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Snapshot {
    id: JobId,
    status: JobState,
    progress: u8,
    bytes_done: u64,
    bytes_total: Option<u64>,
    /// `updated_at` in microseconds since the Unix epoch.
    updated_us: i64,
}

impl Snapshot {
    fn of(job: &JobStatus) -> Self {
        Self {
            id: job.job_id,
            status: job.status,
            progress: job.progress,
            bytes_done: job.bytes_done,
            bytes_total: job.bytes_total,
            updated_us: (job.updated_at.unix_timestamp_nanos() / 1000) as i64,
        }
    }

    /// `known` with this snapshot's changes; `None` if the state changed (the store has the
    /// fields that go with the new state).
    fn applied_to(&self, known: &JobStatus) -> Option<JobStatus> {
        if self.status != known.status {
            return None;
        }
        let updated_at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.updated_us) * 1000)
                .ok()?;
        Some(JobStatus {
            progress: self.progress,
            bytes_done: self.bytes_done,
            bytes_total: self.bytes_total,
            updated_at,
            ..known.clone()
        })
    }
}

/// This node's hub and runners, joined to the other nodes'.
pub struct Cluster {
    node: u64,
    pool: PgPool,
    store: Arc<dyn JobStore>,
    hub: StatusHub,
    runners: LocalCancellations,
    /// Each job's latest snapshot not yet sent.
    unsent: Mutex<HashMap<JobId, Snapshot>>,
    /// Wakes the sender at once (a state changed).
    urgent: Notify,
}

impl Cluster {
    pub fn new(pool: PgPool, store: Arc<dyn JobStore>) -> Arc<Self> {
        Arc::new(Self {
            node: rand::random(),
            pool,
            store,
            hub: StatusHub::default(),
            runners: LocalCancellations::default(),
            unsent: Mutex::new(HashMap::new()),
            urgent: Notify::new(),
        })
    }

    /// Sends snapshots until `stop`, then what is left.
    pub async fn send_snapshots(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FLUSH_EVERY) => {}
                _ = self.urgent.notified() => {}
                _ = stop.cancelled() => break,
            }
            self.flush().await;
        }
        self.flush().await;
    }

    async fn flush(&self) {
        let unsent: Vec<Snapshot> = {
            let mut unsent = self.unsent.lock().expect("unsent snapshots");
            unsent.drain().map(|(_, snapshot)| snapshot).collect()
        };
        for jobs in unsent.chunks(SNAPSHOTS_PER_NOTIFICATION) {
            let body = Body::Snapshots {
                jobs: jobs.to_vec(),
            };
            if let Err(error) = self.notify(body).await {
                // Followers on other nodes miss these steps; the next snapshot (or the
                // final state, which they re-read) catches them up.
                tracing::warn!(error = ?error, "sending job snapshots to the cluster failed");
            }
        }
    }

    async fn notify(&self, body: Body) -> anyhow::Result<()> {
        let payload = serde_json::to_string(&Message {
            from: self.node,
            body,
        })?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Listens to the other nodes until `stop`, reconnecting when the connection drops.
    pub async fn listen(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let listener = tokio::select! {
                listener = self.subscribe() => listener,
                _ = stop.cancelled() => return,
            };
            match listener {
                Ok(listener) => {
                    tokio::select! {
                        () = self.hear(listener) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "listening to the cluster failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(RECONNECT_AFTER) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn subscribe(&self) -> anyhow::Result<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }

    /// Handles notifications until the connection is lost, catching up first: the listener is
    /// already listening then, so nothing sent after the catch-up's reads is missed.
    async fn hear(&self, mut listener: PgListener) {
        self.catch_up().await;
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => self.heard(notification.payload()).await,
                // Lost: `listen` subscribes anew (then catches up) rather than let `try_recv`
                // reconnect on its own, which would leave no moment to catch up after it.
                Ok(None) => {
                    tracing::warn!("the cluster's listener lost its connection; reconnecting");
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = ?error, "the cluster's listener failed");
                    return;
                }
            }
        }
    }

    async fn heard(&self, payload: &str) {
        let message: Message = match serde_json::from_str(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "an unreadable cluster notification was ignored");
                return;
            }
        };
        if message.from == self.node {
            return;
        }
        match message.body {
            Body::Snapshots { jobs } => {
                for snapshot in jobs {
                    self.apply(&snapshot).await;
                }
            }
            Body::Cancel { job } => {
                // The final state first (the cancel is committed), so that once the runner
                // stops, nobody reads this node's stale live snapshot; its own notification
                // may still be on the way.
                if self.hub.current(job).is_some() {
                    self.reload(job).await;
                }
                // Never fails: the local runners are in memory.
                let _ = self.runners.cancel(job).await;
            }
        }
    }

    /// Brings this node's watchers up to date with another node's snapshot.
    async fn apply(&self, snapshot: &Snapshot) {
        let Some(known) = self.hub.current(snapshot.id) else {
            return; // nobody here follows it
        };
        match snapshot.applied_to(&known) {
            Some(next) => self.hub.publish(next),
            None => self.reload(snapshot.id).await,
        }
    }

    async fn reload(&self, id: JobId) {
        match self.store.get(id).await {
            Ok(Some(job)) => self.hub.publish(job),
            // Deleted: its followers end when the hub's entry goes with them.
            Ok(None) => {}
            Err(error) => tracing::warn!(error = ?error, job_id = %id, "re-reading a job failed"),
        }
    }

    /// What notifications may have been missed: the watched jobs' states, and cancels of the
    /// jobs this node runs.
    async fn catch_up(&self) {
        for id in self.hub.live_ids() {
            self.reload(id).await;
        }
        for id in self.runners.running_ids() {
            if let Ok(Some(job)) = self.store.get(id).await {
                if job.status == JobState::Cancelled {
                    let _ = self.runners.cancel(id).await;
                }
            }
        }
    }
}

impl LiveStatus for Cluster {
    fn carry(&self, status: JobStatus) {
        self.hub.carry(status);
    }

    fn hold(&self, status: JobStatus) -> Watch {
        self.hub.hold(status)
    }

    fn forget(&self, id: JobId) {
        self.hub.forget(id);
    }

    /// Here at once; to the other nodes with the next batch (at once if the state changed:
    /// a job just queued, started, finished).
    fn publish(&self, status: JobStatus) {
        let snapshot = Snapshot::of(&status);
        let state_changed = self
            .hub
            .current(status.job_id)
            .is_none_or(|known| known.status != status.status);
        self.hub.publish(status);
        let mut unsent = self.unsent.lock().expect("unsent snapshots");
        // A final state not yet sent stays: a runner's last progress report may come after it.
        match unsent.get(&snapshot.id) {
            Some(waiting) if waiting.status.is_terminal() && !snapshot.status.is_terminal() => {}
            _ => {
                unsent.insert(snapshot.id, snapshot);
            }
        }
        drop(unsent);
        if state_changed {
            self.urgent.notify_one();
        }
    }

    fn current(&self, id: JobId) -> Option<JobStatus> {
        self.hub.current(id)
    }

    fn subscribe(&self, id: JobId) -> Option<Watch> {
        self.hub.subscribe(id)
    }
}

#[async_trait]
impl Cancellations for Cluster {
    fn register(&self, id: JobId) -> Registration {
        self.runners.register(id)
    }

    fn join(&self, id: JobId) -> Registration {
        self.runners.join(id)
    }

    async fn cancel(&self, id: JobId) -> anyhow::Result<()> {
        self.runners.cancel(id).await?;
        self.notify(Body::Cancel { job: id }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Owner;

    fn job(state: JobState) -> JobStatus {
        JobStatus::new(
            JobId::new(),
            &Owner::built_in_admin(),
            state,
            serde_json::json!({"big": "x".repeat(10_000)}),
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_snapshot_carries_progress_onto_the_known_job_and_not_a_new_state() {
        let known = job(JobState::Receiving);
        let mut later = known.clone();
        later.bytes_done = 4096;
        later.progress = 7;
        later.updated_at += time::Duration::milliseconds(1500);
        let applied = Snapshot::of(&later).applied_to(&known);
        assert_eq!(applied, Some(later.clone()));
        later.status = JobState::Processing;
        assert_eq!(Snapshot::of(&later).applied_to(&known), None);
    }

    #[tokio::test]
    async fn an_unsent_final_state_is_not_replaced_by_a_later_progress_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::server::store::SqliteStore::open(&dir.path().join("ingest.db"))
            .await
            .unwrap();
        // Never connects: publishing only queues.
        let pool = PgPool::connect_lazy("postgres://nobody@127.0.0.1:1/none").unwrap();
        let cluster = Cluster::new(pool, Arc::new(store));
        let receiving = job(JobState::Receiving);
        cluster.carry(receiving.clone());
        let mut cancelled = receiving.clone();
        cancelled.status = JobState::Cancelled;
        cluster.publish(cancelled.clone());
        let mut late = receiving.clone();
        late.bytes_done = 10;
        late.updated_at += time::Duration::seconds(1);
        cluster.publish(late);
        let unsent = cluster.unsent.lock().unwrap();
        assert_eq!(
            unsent.get(&receiving.job_id),
            Some(&Snapshot::of(&cancelled))
        );
    }

    #[test]
    fn a_full_notification_stays_under_postgresqls_payload_limit() {
        let mut worst = job(JobState::Processing);
        worst.bytes_done = u64::MAX;
        worst.bytes_total = Some(u64::MAX);
        worst.progress = 100;
        let message = Message {
            from: u64::MAX,
            body: Body::Snapshots {
                jobs: vec![Snapshot::of(&worst); SNAPSHOTS_PER_NOTIFICATION],
            },
        };
        let payload = serde_json::to_string(&message).unwrap();
        assert!(payload.len() < 8000, "{} bytes", payload.len());
    }
}
