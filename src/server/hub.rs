//! Live status fan-out: one `watch` channel per unfinished job that someone follows (or that is
//! receiving bytes). A watch keeps only the latest snapshot, so a slow subscriber never holds a
//! backlog and memory stays bounded per job.
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
    /// Unfinished jobs being followed or uploaded; an entry goes when the final state is
    /// published. Jobs nobody follows have no entry: the store has their state.
    live: Mutex<HashMap<JobId, watch::Sender<JobStatus>>>,
    open_sockets: AtomicUsize,
}

impl StatusHub {
    /// Starts carrying an unfinished job's snapshots (or joins the entry that exists) and
    /// subscribes to them.
    pub fn track(&self, status: JobStatus) -> watch::Receiver<JobStatus> {
        let mut live = self.live.lock().expect("hub lock poisoned");
        live.entry(status.job_id)
            .or_insert_with(|| watch::Sender::new(status))
            .subscribe()
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
        sender.send_if_modified(|current| {
            let newer = status.updated_at >= current.updated_at && status != *current;
            if newer {
                *current = status;
            }
            newer
        });
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

    /// Follows a job that has an entry. `None` means nobody carries it live: the store has
    /// its state (see `Jobs::follow`).
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

/// What following a job gives: its live snapshots, or the final state of a finished job.
pub enum Follow {
    Live(watch::Receiver<JobStatus>),
    Finished(Box<JobStatus>),
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
    fn older_snapshots_do_not_replace_newer_ones() {
        let hub = StatusHub::default();
        let id = JobId::new();
        let mut newer = status(id, JobState::Processing);
        newer.updated_at += time::Duration::seconds(5);
        hub.track(newer);
        hub.publish(status(id, JobState::Queued));
        assert_eq!(hub.current(id).unwrap().status, JobState::Processing);
    }

    #[test]
    fn subscribers_see_the_final_state_after_the_entry_is_gone() {
        let hub = StatusHub::default();
        let id = JobId::new();
        let mut follower = hub.track(status(id, JobState::Queued));
        let later = |state, seconds| {
            let mut next = status(id, state);
            next.updated_at += time::Duration::seconds(seconds);
            next
        };
        hub.publish(later(JobState::Processing, 1));
        hub.publish(later(JobState::Completed, 2));
        assert!(hub.subscribe(id).is_none());
        assert_eq!(hub.live_jobs(), 0);
        // Only the latest snapshot is kept: the follower skips `Processing`.
        assert!(follower.has_changed().unwrap_or(true));
        assert_eq!(follower.borrow_and_update().status, JobState::Completed);
        // A late snapshot of a finished job does not bring it back.
        hub.publish(later(JobState::Queued, 3));
        assert!(hub.current(id).is_none());
    }
}
