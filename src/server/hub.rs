//! Live status fan-out: one `watch` channel per unfinished job that someone follows, that a
//! request is sending bytes to, or that is being received in one go or processed. A watch keeps
//! only the latest snapshot, so a slow subscriber never holds a backlog and memory stays bounded
//! per job; jobs nobody holds have no entry at all (the store has their state).
use crate::domain::{JobId, JobStatus};
use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
};
use tokio::sync::watch;

type Entries = Arc<Mutex<HashMap<JobId, Entry>>>;

struct Entry {
    sender: watch::Sender<JobStatus>,
    /// Kept until the job's final state whoever watches: jobs whose progress lives only here
    /// (an upload received in one request, a job being processed). Unpinned entries go as soon
    /// as their last `Watch` does.
    pinned: bool,
}

#[derive(Default)]
pub struct StatusHub {
    /// Every entry goes when the job's final state is published.
    live: Entries,
    open_sockets: AtomicUsize,
}

impl StatusHub {
    /// Starts carrying an unfinished job's snapshots until its final state (or pins the entry
    /// that exists) and subscribes to them.
    pub fn track(&self, status: JobStatus) -> watch::Receiver<JobStatus> {
        let mut live = self.live.lock().expect("hub lock poisoned");
        let entry = live.entry(status.job_id).or_insert_with(|| Entry {
            sender: watch::Sender::new(status),
            pinned: false,
        });
        entry.pinned = true;
        entry.sender.subscribe()
    }

    /// Watches an unfinished job, carrying its snapshots (from `status` if nobody carries them
    /// yet) for as long as the returned `Watch`, or another, lives.
    pub fn hold(&self, status: JobStatus) -> Watch {
        let id = status.job_id;
        let mut live = self.live.lock().expect("hub lock poisoned");
        let receiver = live
            .entry(id)
            .or_insert_with(|| Entry {
                sender: watch::Sender::new(status),
                pinned: false,
            })
            .sender
            .subscribe();
        self.watch(id, receiver)
    }

    /// Drops a job that never came to exist (its insert failed).
    pub fn forget(&self, id: JobId) {
        self.live.lock().expect("hub lock poisoned").remove(&id);
    }

    /// Publishes a new snapshot of a carried job. Snapshots older than the current one (a
    /// writer that lost a race) and snapshots of finished jobs are ignored. The final state
    /// reaches current subscribers, then the entry is dropped (their receivers keep it).
    pub fn publish(&self, status: JobStatus) {
        let mut live = self.live.lock().expect("hub lock poisoned");
        let id = status.job_id;
        let terminal = status.is_terminal();
        let Some(entry) = live.get(&id) else {
            return;
        };
        entry.sender.send_if_modified(|current| {
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
        live.get(&id).map(|entry| entry.sender.borrow().clone())
    }

    /// Follows a job that has an entry. `None` means nobody carries it live: the store has
    /// its state (see `Jobs::follow`).
    pub fn subscribe(&self, id: JobId) -> Option<Watch> {
        let live = self.live.lock().expect("hub lock poisoned");
        let receiver = live.get(&id)?.sender.subscribe();
        Some(self.watch(id, receiver))
    }

    fn watch(&self, id: JobId, receiver: watch::Receiver<JobStatus>) -> Watch {
        Watch {
            receiver: Some(receiver),
            live: self.live.clone(),
            id,
        }
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

/// A job's live snapshots, for a follower or a request sending its bytes. When the last one of
/// an unpinned entry goes, so does the entry: nobody is left to see its snapshots.
pub struct Watch {
    /// Always `Some` until dropped; taken in `drop` so the count below no longer includes it.
    receiver: Option<watch::Receiver<JobStatus>>,
    live: Entries,
    id: JobId,
}

impl Deref for Watch {
    type Target = watch::Receiver<JobStatus>;

    fn deref(&self) -> &Self::Target {
        self.receiver.as_ref().expect("a watch has a receiver")
    }
}

impl DerefMut for Watch {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.receiver.as_mut().expect("a watch has a receiver")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut live = self.live.lock().expect("hub lock poisoned");
        // New receivers are made under this lock, so a count of zero means nobody watches.
        let unwatched = live
            .get(&self.id)
            .is_some_and(|entry| !entry.pinned && entry.sender.receiver_count() == 0);
        if unwatched {
            live.remove(&self.id);
        }
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
    Live(Watch),
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

    #[test]
    fn an_entry_held_by_watches_goes_with_the_last_of_them() {
        let hub = StatusHub::default();
        let id = JobId::new();
        let sender = hub.hold(status(id, JobState::Receiving));
        let follower = hub.subscribe(id).expect("the entry exists while held");
        drop(sender);
        assert!(hub.current(id).is_some(), "the follower still watches");
        drop(follower);
        assert!(hub.current(id).is_none());
        assert_eq!(hub.live_jobs(), 0);
    }

    #[test]
    fn a_tracked_entry_stays_until_the_final_state_whoever_watches() {
        let hub = StatusHub::default();
        let id = JobId::new();
        drop(hub.track(status(id, JobState::Processing)));
        drop(hub.hold(status(id, JobState::Processing)));
        assert!(hub.current(id).is_some());
        let mut done = status(id, JobState::Completed);
        done.updated_at += time::Duration::seconds(1);
        hub.publish(done);
        assert_eq!(hub.live_jobs(), 0);
    }
}
