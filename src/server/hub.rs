//! Live status fan-out: one `watch` channel per unfinished job that someone follows, that a
//! request is sending bytes to, or that is being received in one go or processed. A watch keeps
//! only the latest snapshot, so a slow subscriber never holds a backlog and memory stays bounded
//! per job; jobs nobody holds have no entry at all (the store has their state). The
//! `LiveStatus` trait is the seam a cluster fills (a follower on one node, the upload on
//! another); `StatusHub` is the one-process implementation.
use crate::domain::{JobId, JobStatus};
use bytes::Bytes;
use std::{
    collections::HashMap,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, OnceLock},
};
use tokio::sync::watch;

/// Publish a job's snapshots, and follow them.
pub trait LiveStatus: Send + Sync + 'static {
    /// Carries an unfinished job's snapshots until its final state is published, whoever
    /// watches: for jobs whose progress lives only here (an upload received in one request, a
    /// job being processed).
    fn carry(&self, status: JobStatus);
    /// Watches an unfinished job, carrying its snapshots (from `status` if nobody carries them
    /// yet) for as long as the returned `Watch`, or another, lives.
    fn hold(&self, status: JobStatus) -> Watch;
    /// Drops a job that never came to exist (its insert failed).
    fn forget(&self, id: JobId);
    /// Publishes a new snapshot of a carried job. Snapshots older than the current one (a
    /// writer that lost a race) are ignored. The final state reaches current watchers, then
    /// the job is carried no more.
    fn publish(&self, status: JobStatus);
    /// The live snapshot of an unfinished job; `None` for finished or unknown jobs (the store
    /// has those).
    fn current(&self, id: JobId) -> Option<JobStatus>;
    /// Follows a carried job. `None` means nobody carries it live: the store has its state.
    fn subscribe(&self, id: JobId) -> Option<Watch>;
}

type Entries = Arc<Mutex<HashMap<JobId, Entry>>>;

/// A snapshot as its followers get it: the status, and its JSON, made on first use and then
/// shared by every socket that sends it (10,000 followers of a job cost one serialization).
#[derive(Debug)]
pub struct Published {
    job: JobStatus,
    json: OnceLock<Bytes>,
}

impl Published {
    fn new(status: JobStatus) -> Arc<Self> {
        Arc::new(Self {
            job: status,
            json: OnceLock::new(),
        })
    }

    /// The status as JSON text.
    pub fn json(&self) -> Result<Bytes, serde_json::Error> {
        if let Some(json) = self.json.get() {
            return Ok(json.clone());
        }
        let made = Bytes::from(serde_json::to_vec(&self.job)?);
        Ok(self.json.get_or_init(|| made).clone())
    }
}

impl Deref for Published {
    type Target = JobStatus;

    fn deref(&self) -> &JobStatus {
        &self.job
    }
}

struct Entry {
    sender: watch::Sender<Arc<Published>>,
    /// Kept until the job's final state whoever watches (see `carry`). Unpinned entries go as
    /// soon as their last `Watch` does.
    pinned: bool,
}

#[derive(Default)]
pub struct StatusHub {
    /// Every entry goes when the job's final state is published.
    live: Entries,
}

impl StatusHub {
    fn watch(&self, id: JobId, receiver: watch::Receiver<Arc<Published>>) -> Watch {
        Watch {
            receiver,
            _release: Box::new(Unwatch {
                live: self.live.clone(),
                id,
            }),
        }
    }

    /// The jobs that have an entry now (someone watches or carries them).
    pub fn live_ids(&self) -> Vec<JobId> {
        let live = self.live.lock().expect("hub lock poisoned");
        live.keys().copied().collect()
    }

    #[cfg(test)]
    fn live_jobs(&self) -> usize {
        self.live.lock().expect("hub lock poisoned").len()
    }
}

impl LiveStatus for StatusHub {
    fn carry(&self, status: JobStatus) {
        let mut live = self.live.lock().expect("hub lock poisoned");
        live.entry(status.job_id)
            .or_insert_with(|| Entry {
                sender: watch::Sender::new(Published::new(status)),
                pinned: false,
            })
            .pinned = true;
    }

    fn hold(&self, status: JobStatus) -> Watch {
        let id = status.job_id;
        let mut live = self.live.lock().expect("hub lock poisoned");
        let receiver = live
            .entry(id)
            .or_insert_with(|| Entry {
                sender: watch::Sender::new(Published::new(status)),
                pinned: false,
            })
            .sender
            .subscribe();
        self.watch(id, receiver)
    }

    fn forget(&self, id: JobId) {
        self.live.lock().expect("hub lock poisoned").remove(&id);
    }

    fn publish(&self, status: JobStatus) {
        let mut live = self.live.lock().expect("hub lock poisoned");
        let id = status.job_id;
        let terminal = status.is_terminal();
        let Some(entry) = live.get(&id) else {
            return;
        };
        entry.sender.send_if_modified(|current| {
            // Finished is final, so a final state replaces any unfinished one, however its
            // time compares: on a cluster it may come from a node whose clock is behind.
            let newer = (terminal && !current.is_terminal())
                || (status.updated_at >= current.updated_at && status != current.job);
            if newer {
                *current = Published::new(status);
            }
            newer
        });
        if terminal {
            live.remove(&id);
        }
    }

    fn current(&self, id: JobId) -> Option<JobStatus> {
        let live = self.live.lock().expect("hub lock poisoned");
        live.get(&id).map(|entry| entry.sender.borrow().job.clone())
    }

    fn subscribe(&self, id: JobId) -> Option<Watch> {
        let live = self.live.lock().expect("hub lock poisoned");
        let receiver = live.get(&id)?.sender.subscribe();
        Some(self.watch(id, receiver))
    }
}

/// A job's live snapshots, for a follower or a request sending its bytes.
pub struct Watch {
    // Dropped before `_release` (fields drop in order), so the release sees it gone.
    receiver: watch::Receiver<Arc<Published>>,
    /// What the implementation does when this watch goes.
    _release: Box<dyn Send + Sync>,
}

impl Deref for Watch {
    type Target = watch::Receiver<Arc<Published>>;

    fn deref(&self) -> &Self::Target {
        &self.receiver
    }
}

impl DerefMut for Watch {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.receiver
    }
}

/// When the last watch of an unpinned entry goes, so does the entry: nobody is left to see its
/// snapshots.
struct Unwatch {
    live: Entries,
    id: JobId,
}

impl Drop for Unwatch {
    fn drop(&mut self) {
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
            &crate::domain::Owner::built_in_admin(),
            state,
            serde_json::json!({}),
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_snapshots_json_is_made_once_for_all_its_followers() {
        let hub = StatusHub::default();
        let id = JobId::new();
        hub.carry(status(id, JobState::Queued));
        let first = hub.subscribe(id).unwrap();
        let second = hub.subscribe(id).unwrap();
        let (a, b) = (
            first.borrow().json().unwrap(),
            second.borrow().json().unwrap(),
        );
        assert_eq!(a.as_ptr(), b.as_ptr(), "one serialization, shared");
        let parsed: JobStatus = serde_json::from_slice(&a).unwrap();
        assert_eq!(parsed, status(id, JobState::Queued));

        let mut next = status(id, JobState::Processing);
        next.updated_at += time::Duration::seconds(1);
        hub.publish(next.clone());
        let changed = first.borrow().json().unwrap();
        assert_ne!(changed, a, "a new snapshot has its own JSON");
        assert_eq!(serde_json::from_slice::<JobStatus>(&changed).unwrap(), next);
    }

    #[test]
    fn older_snapshots_do_not_replace_newer_ones() {
        let hub = StatusHub::default();
        let id = JobId::new();
        let mut newer = status(id, JobState::Processing);
        newer.updated_at += time::Duration::seconds(5);
        hub.carry(newer);
        hub.publish(status(id, JobState::Queued));
        assert_eq!(hub.current(id).unwrap().status, JobState::Processing);
    }

    #[test]
    fn a_final_state_replaces_an_unfinished_one_stamped_later() {
        let hub = StatusHub::default();
        let id = JobId::new();
        let mut receiving = status(id, JobState::Receiving);
        receiving.updated_at += time::Duration::seconds(5);
        hub.carry(receiving);
        let mut follower = hub.subscribe(id).expect("a carried job can be followed");
        hub.publish(status(id, JobState::Cancelled));
        assert!(
            hub.current(id).is_none(),
            "the entry goes with the final state"
        );
        assert_eq!(follower.borrow_and_update().status, JobState::Cancelled);
    }

    #[test]
    fn subscribers_see_the_final_state_after_the_entry_is_gone() {
        let hub = StatusHub::default();
        let id = JobId::new();
        hub.carry(status(id, JobState::Queued));
        let mut follower = hub.subscribe(id).expect("a carried job can be followed");
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
        hub.carry(status(id, JobState::Processing));
        drop(hub.hold(status(id, JobState::Processing)));
        assert!(hub.current(id).is_some());
        let mut done = status(id, JobState::Completed);
        done.updated_at += time::Duration::seconds(1);
        hub.publish(done);
        assert_eq!(hub.live_jobs(), 0);
    }
}
