//! Live status fan-out: one `watch` channel per unfinished job. A watch keeps only the latest
//! snapshot, so a slow subscriber never holds a backlog and memory stays bounded per job.
use crate::domain::{JobId, JobStatus};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Mutex,
    },
};
use tokio::sync::watch;

#[derive(Default)]
pub struct StatusHub {
    /// Every unfinished job has an entry; a job's entry goes when its final state is published.
    live: Mutex<HashMap<JobId, watch::Sender<JobStatus>>>,
    open_sockets: AtomicUsize,
}

impl StatusHub {
    /// Starts following a new or recovered unfinished job. Called before the job can be
    /// claimed by the worker, so no later snapshot can arrive before its entry exists.
    pub fn track(&self, status: JobStatus) {
        let mut live = self.live.lock().expect("hub lock poisoned");
        if !status.is_terminal() {
            live.entry(status.job_id)
                .or_insert_with(|| watch::Sender::new(status));
        }
    }

    /// Drops a job that never came to exist (its insert failed).
    pub fn forget(&self, id: JobId) {
        self.live.lock().expect("hub lock poisoned").remove(&id);
    }

    /// Publishes a new snapshot of a tracked job. Snapshots older than the current one (a
    /// writer that lost a race) and snapshots of finished jobs are ignored. The final state
    /// reaches current subscribers, then the entry is dropped (their receivers keep it).
    pub fn publish(&self, status: JobStatus) {
        let mut live = self.live.lock().expect("hub lock poisoned");
        let id = status.job_id;
        let terminal = status.is_terminal();
        let Some(sender) = live.get(&id) else {
            return;
        };
        if status.updated_at < sender.borrow().updated_at {
            return;
        }
        sender.send_replace(status);
        if terminal {
            live.remove(&id);
        }
    }

    /// The live snapshot of an unfinished job; `None` for finished or unknown jobs (the store
    /// has those).
    pub fn current(&self, id: JobId) -> Option<JobStatus> {
        let live = self.live.lock().expect("hub lock poisoned");
        live.get(&id).map(|sender| sender.borrow().clone())
    }

    /// Follows an unfinished job. `None` means the job is finished (or unknown): because the
    /// store is written before the final publish, the store then holds its final state.
    pub fn subscribe(&self, id: JobId) -> Option<watch::Receiver<JobStatus>> {
        let live = self.live.lock().expect("hub lock poisoned");
        live.get(&id).map(watch::Sender::subscribe)
    }

    pub fn live_jobs(&self) -> usize {
        self.live.lock().expect("hub lock poisoned").len()
    }

    /// Counts an open WebSocket for as long as the guard lives.
    pub fn socket_opened(&self) -> SocketGuard<'_> {
        self.open_sockets.fetch_add(1, Ordering::Relaxed);
        SocketGuard(self)
    }

    pub fn open_sockets(&self) -> usize {
        self.open_sockets.load(Ordering::Relaxed)
    }
}

pub struct SocketGuard<'a>(&'a StatusHub);

impl Drop for SocketGuard<'_> {
    fn drop(&mut self) {
        self.0.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::JobState;

    fn status(id: JobId, state: JobState) -> JobStatus {
        JobStatus::new(
            id,
            state,
            serde_json::json!({}),
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn subscribers_see_the_final_state_after_the_entry_is_gone() {
        let hub = StatusHub::default();
        let id = JobId::new();
        hub.track(status(id, JobState::Queued));
        let mut follower = hub.subscribe(id).unwrap();
        hub.publish(status(id, JobState::Processing));
        hub.publish(status(id, JobState::Completed));
        assert!(hub.subscribe(id).is_none());
        assert_eq!(hub.live_jobs(), 0);
        // Only the latest snapshot is kept: the follower skips `Processing`.
        assert!(follower.has_changed().unwrap_or(true));
        assert_eq!(follower.borrow_and_update().status, JobState::Completed);
        // A late snapshot of a finished job does not bring it back.
        hub.publish(status(id, JobState::Queued));
        assert!(hub.current(id).is_none());
    }
}
