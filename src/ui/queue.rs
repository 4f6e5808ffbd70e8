//! The upload queue of the Start page: every file chosen, dropped or found in a dropped folder
//! becomes one `QueuedFile`, sent a few at a time (the page's "Uploads at a time" setting). This
//! module owns the queue's state and its figures (the overall bar); the browser half
//! (`browser::transfers`, loaded with the uploads' view) moves files through the phases.
// Much of this is driven by the browser half only; the server renders an empty queue.
#![cfg_attr(not(feature = "hydrate"), allow(dead_code))]
use super::{job_card::Connection, transfer::RateMeter};
use crate::domain::{JobId, JobState, JobStatus};
use leptos::prelude::*;

/// Where a file is on its way, as the page sees it (the server's state is in `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// In the queue, waiting for a free slot.
    Waiting,
    /// Holding a slot: declaring the upload, or asking the server's offset before resuming.
    Starting,
    /// Holding a slot: bytes on the wire.
    Sending,
    /// Stopped by the person; the server keeps what arrived.
    Paused,
    /// The upload could not go on (`problem` says why); Retry continues it.
    Failed,
    /// Every byte is on the server: the card follows the processing.
    Sent,
    Cancelling,
    Cancelled,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Starting => "starting",
            Phase::Sending => "sending",
            Phase::Paused => "paused",
            Phase::Failed => "failed",
            Phase::Sent => "sent",
            Phase::Cancelling => "cancelling",
            Phase::Cancelled => "cancelled",
        }
    }

    /// Phases that hold one of the queue's slots.
    pub fn holds_slot(self) -> bool {
        matches!(self, Phase::Starting | Phase::Sending)
    }
}

/// A file the person gave the page. The server renders no queued file, but its type must be
/// inhabited there too, so the shared view code compiles to reachable code.
#[cfg(feature = "hydrate")]
pub type FileHandle = send_wrapper::SendWrapper<web_sys::File>;
#[cfg(not(feature = "hydrate"))]
pub type FileHandle = ();

/// What runs for a file in the browser (its upload and its job's live updates); nothing on the
/// server, which never sends a file.
#[cfg(feature = "hydrate")]
pub type Running = super::browser::Running;
#[cfg(not(feature = "hydrate"))]
pub type Running = ();

/// One file in the queue, with everything its card shows.
#[derive(Clone)]
pub struct QueuedFile {
    pub key: u32,
    pub file: FileHandle,
    pub name: String,
    pub size: u64,
    /// Its place in a dropped or chosen folder (`dir/sub/file.txt`), kept in the metadata.
    pub path: Option<String>,
    /// The metadata text sent with it (its `path` included).
    pub metadata: String,
    /// See `NewFile::resumes`.
    pub resumes: Option<JobId>,
    pub phase: RwSignal<Phase>,
    pub job: RwSignal<Option<JobId>>,
    pub status: RwSignal<Option<JobStatus>>,
    pub connection: RwSignal<Connection>,
    /// Bytes the server holds or that are on the wire, of the total.
    pub sent: RwSignal<Option<(u64, u64)>>,
    pub problem: RwSignal<Option<String>>,
    /// Set by the upload once the server holds every byte.
    pub finished: RwSignal<bool>,
    /// Bytes per second over the last seconds, while sending.
    pub rate: RwSignal<Option<u64>>,
    /// The server's offset this upload went on from, when it was resumed.
    pub resumed_at: RwSignal<Option<u64>>,
    /// This browser's SHA-256 of the whole file (lower-case hex) and the worker's time for it,
    /// or why it could not be computed.
    pub local_digest: RwSignal<Option<Result<(String, u64), String>>>,
    pub meter: StoredValue<RateMeter>,
    pub running: StoredValue<Option<Running>, LocalStorage>,
}

impl QueuedFile {
    /// The job's final state as the card shows it: a cancel the page made wins over a late
    /// message from the server.
    pub fn shown_state(&self) -> Option<JobState> {
        match self.phase.get() {
            Phase::Cancelled => Some(JobState::Cancelled),
            Phase::Failed => Some(JobState::Failed),
            _ => self.status.with(|job| job.as_ref().map(|job| job.status)),
        }
    }

    /// Finished for good: completed, failed on the server, or cancelled.
    pub fn is_final(&self) -> bool {
        self.phase.get() == Phase::Cancelled
            || self
                .status
                .with(|job| job.as_ref().is_some_and(JobStatus::is_terminal))
    }
}

/// A file to add, as the browser found it.
pub struct NewFile {
    pub file: FileHandle,
    pub name: String,
    pub size: u64,
    pub path: Option<String>,
    /// The interrupted upload this file was checked to be the file of (Resume): it continues
    /// that job without hashing again what the check just hashed.
    pub resumes: Option<JobId>,
}

/// The person's verb on one card.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardAction {
    Pause,
    Resume,
    Retry,
    Cancel,
    Remove,
}

/// The queue; cheap to copy into every handler.
#[derive(Clone, Copy)]
pub struct Queue {
    pub files: RwSignal<Vec<QueuedFile>>,
    /// Uploads at a time.
    pub parallel: RwSignal<u32>,
    /// Bytes per second of all uploads together.
    pub rate: RwSignal<Option<u64>>,
    pub meter: StoredValue<RateMeter>,
    next_key: StoredValue<u32>,
    /// What starts waiting files (`browser::transfers::pump`), handed over by the uploads' view
    /// once its code has loaded; until then files wait.
    driver: StoredValue<Option<fn(Queue)>>,
    /// The card to move focus to once it is on the page.
    focus: StoredValue<Option<u32>>,
}

/// The default of "Uploads at a time": enough to fill a link with small files, few enough that
/// each big one moves visibly.
pub const DEFAULT_PARALLEL: u32 = 3;

/// The overall bar's figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub files: usize,
    pub files_done: usize,
    pub bytes: u64,
    pub bytes_done: u64,
    pub sending: bool,
}

impl Queue {
    pub fn new() -> Self {
        Self {
            files: RwSignal::new(Vec::new()),
            parallel: RwSignal::new(DEFAULT_PARALLEL),
            rate: RwSignal::new(None),
            meter: StoredValue::new(RateMeter::default()),
            next_key: StoredValue::new(0),
            driver: StoredValue::new(None),
            focus: StoredValue::new(None),
        }
    }

    /// Adds `files` at the end of the queue with `metadata`, each waiting for a slot, and
    /// returns their keys.
    pub fn add(&self, files: Vec<NewFile>, metadata: &str) -> Vec<u32> {
        let added: Vec<QueuedFile> = files
            .into_iter()
            .map(|new| {
                let key = self.next_key.get_value();
                self.next_key.set_value(key + 1);
                QueuedFile {
                    key,
                    metadata: super::transfer::metadata_with_path(metadata, new.path.as_deref()),
                    file: new.file,
                    name: new.name,
                    size: new.size,
                    path: new.path,
                    resumes: new.resumes,
                    phase: RwSignal::new(Phase::Waiting),
                    job: RwSignal::new(None),
                    status: RwSignal::new(None),
                    connection: RwSignal::new(Connection::Closed),
                    sent: RwSignal::new(None),
                    problem: RwSignal::new(None),
                    finished: RwSignal::new(false),
                    rate: RwSignal::new(None),
                    resumed_at: RwSignal::new(None),
                    local_digest: RwSignal::new(None),
                    meter: StoredValue::new(RateMeter::default()),
                    running: StoredValue::new_local(None),
                }
            })
            .collect();
        let keys = added.iter().map(|file| file.key).collect();
        self.files.update(|files| files.extend(added));
        self.pump();
        keys
    }

    pub fn get(&self, key: u32) -> Option<QueuedFile> {
        self.files
            .with_untracked(|files| files.iter().find(|file| file.key == key).cloned())
    }

    /// Files done and in all, bytes done and in all; cancelled files count for nothing.
    pub fn totals(&self) -> Totals {
        self.files.with(|files| {
            let mut totals = Totals::default();
            for file in files.iter().filter(|f| f.phase.get() != Phase::Cancelled) {
                totals.files += 1;
                totals.bytes += file.size;
                let finished = file.finished.get() || file.phase.get() == Phase::Sent;
                if finished {
                    totals.files_done += 1;
                    totals.bytes_done += file.size;
                } else {
                    totals.bytes_done += file.sent.get().map_or(0, |(done, _)| done);
                }
                totals.sending |= file.phase.get().holds_slot();
            }
            totals
        })
    }

    /// Whether bytes are on their way (leaving the page now would interrupt them).
    pub fn is_sending(&self) -> bool {
        self.files.with_untracked(|files| {
            files
                .iter()
                .any(|file| file.phase.get_untracked().holds_slot())
        })
    }

    /// Starts waiting files while slots are free (once the code that sends them is here).
    pub fn pump(&self) {
        if let Some(pump) = self.driver.get_value() {
            pump(*self);
        }
    }

    /// Hands the queue what starts its waiting files.
    pub fn drive_with(&self, pump: fn(Queue)) {
        self.driver.set_value(Some(pump));
    }

    /// Moves focus to the card of `key` once it is on the page, so a keyboard or screen reader
    /// user lands on what changed.
    pub fn focus_when_shown(&self, key: Option<u32>) {
        self.focus.set_value(key);
    }

    /// Whether the card of `key` is to take the focus now (asked once, by the card).
    pub fn takes_focus(&self, key: u32) -> bool {
        let wanted = self.focus.get_value() == Some(key);
        if wanted {
            self.focus.set_value(None);
        }
        wanted
    }

    /// Does what the person asked on one card.
    pub fn act(&self, key: u32, action: CardAction) {
        #[cfg(feature = "hydrate")]
        super::browser::transfers::act(*self, key, action);
        #[cfg(not(feature = "hydrate"))]
        let _ = (key, action);
    }
}

impl Default for Queue {
    fn default() -> Self {
        Self::new()
    }
}
