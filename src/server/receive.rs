//! Streams an upload to a temp file while hashing it: the network side reads chunks, blocking
//! threads hash and write each chunk once, and bounded channels between them keep memory flat
//! whatever the size. A one-shot upload leaves nothing on disk when it fails; a resumable one
//! keeps the bytes that arrived before a cut or a full disk, fsync'd, with the hash state to
//! continue from.
use super::{blobs::Staged, store::StagedParts};
use crate::domain::Sha256Digest;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use sha2_state::{digest::common::hazmat::SerializableState, Digest as _};
use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

/// The running hash of an upload: the sha2 whose state can be stored (see Cargo.toml); the
/// tus checksums (`ChunkHasher`) stay on the other.
pub type RunningHash = sha2_state::Sha256;

/// Chunks in flight to each of the hashing and writing threads (each chunk is what hyper
/// hands over, typically ≤ 64 KiB; they are shared, not copied), bounding memory per upload.
const CHUNKS_IN_FLIGHT: usize = 32;
/// Writeback of the file is started after every this many bytes, so the final fsync only
/// waits for the tail instead of the whole file. Every tus PATCH ends with an fsync, so the
/// tail matters: 8 MiB took 64 MiB PATCHes from 0.79 to 0.92–0.96 of a one-shot upload's
/// speed (32 MiB before); 1 MiB lets an 8 MiB PATCH start its writeback while it is still
/// arriving instead of all at its end (`scripts/bench`, (d)).
const WRITEBACK_WINDOW: u64 = 1024 * 1024;
/// When the disk fills up mid-request, this much of what was written last is given back before
/// the rest is kept: the upload's new offset must still be recorded in the database, which
/// needs a few pages of disk too.
const FULL_DISK_HEADROOM: u64 = 256 * 1024;

/// A fully received upload, durable where it was staged (an fsync'd temp file, or an object).
#[derive(Debug)]
pub struct Received {
    pub staged: Staged,
    pub digest: Sha256Digest,
    pub size: u64,
}

/// An upload received up to `offset` across requests: its bytes up to there are durable in its
/// temp file (or, with `parts`, in the bucket) and `hasher` has hashed exactly them.
#[derive(Clone)]
pub struct Partial {
    pub offset: u64,
    pub hasher: RunningHash,
    /// Where the bytes are when they are staged in object storage; `None` in a temp file.
    pub parts: Option<StagedParts>,
}

impl Partial {
    pub fn empty() -> Self {
        Self {
            offset: 0,
            hasher: RunningHash::new(),
            parts: None,
        }
    }

    /// Continues from a stored hash state that covers `offset` bytes; `None` if the state does
    /// not read back (then the bytes are hashed again).
    pub fn resume(offset: u64, state: &[u8], parts: Option<StagedParts>) -> Option<Self> {
        let state = state.try_into().ok()?;
        Some(Self {
            offset,
            hasher: RunningHash::deserialize(state).ok()?,
            parts,
        })
    }

    /// The hash state to store with the offset (about a hundred bytes).
    pub fn hash_state(&self) -> Vec<u8> {
        self.hasher.serialize().to_vec()
    }

    /// Re-hashes the first `offset` bytes of `temp` (after a restart lost the running hash).
    /// Blocking.
    pub fn rehash(temp: &Path, offset: u64) -> io::Result<Self> {
        Self::empty().extend_from(temp, offset)
    }

    /// Hashes on from here through byte `to` of `temp`, which must hold them. Blocking.
    fn extend_from(mut self, temp: &Path, to: u64) -> io::Result<Self> {
        use std::io::{Read, Seek, SeekFrom};
        let mut file = File::open(temp)?;
        file.seek(SeekFrom::Start(self.offset))?;
        let wanted = to.saturating_sub(self.offset);
        let mut file = file.take(wanted);
        let mut buffer = vec![0; 1 << 20];
        let mut hashed = 0;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            self.hasher.update(&buffer[..read]);
            hashed += read as u64;
        }
        if hashed != wanted {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the temp file holds {} of {to} durable bytes",
                    self.offset + hashed
                ),
            ));
        }
        self.offset = to;
        Ok(self)
    }

    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest::from_bytes(self.hasher.clone().finalize().into())
    }
}

/// A checksum the client sent for one request's bytes (tus `Upload-Checksum`).
#[derive(Clone, Debug)]
pub struct ChunkChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub expected: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            _ => None,
        }
    }
}

/// Hashes one request's bytes with the client's algorithm.
pub(crate) enum ChunkHasher {
    Sha1(sha1::Sha1),
    Sha256(Sha256),
}

impl ChunkHasher {
    pub(crate) fn new(algorithm: ChecksumAlgorithm) -> Self {
        match algorithm {
            ChecksumAlgorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(hasher) => hasher.update(bytes),
            Self::Sha256(hasher) => hasher.update(bytes),
        }
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(hasher) => hasher.finalize().to_vec(),
            Self::Sha256(hasher) => hasher.finalize().to_vec(),
        }
    }
}

/// How much one request may send, how long it may stay silent, what stops it, and the checksum
/// its bytes must have.
pub struct Bounds<'a> {
    pub limit: u64,
    pub idle: Duration,
    pub cancelled: &'a CancellationToken,
    pub checksum: Option<ChunkChecksum>,
}

/// Live progress is reported at most this often per upload.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Reports the bytes received so far to whoever shows them: the first chunk's count at once,
/// later ones at most every `PROGRESS_EVERY`, and a count held back once the body has been
/// quiet that long, so a sender that pauses is shown exactly where it stopped (not up to
/// `PROGRESS_EVERY` of chunks behind, until its next byte).
struct ProgressReport<F> {
    report: F,
    last: Option<Instant>,
    held: Option<u64>,
}

impl<F: FnMut(u64)> ProgressReport<F> {
    fn new(report: F) -> Self {
        Self {
            report,
            last: None,
            held: None,
        }
    }

    /// `bytes` have arrived so far.
    fn saw(&mut self, bytes: u64) {
        if self.last.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            self.send(bytes);
        } else {
            self.held = Some(bytes);
        }
    }

    fn send(&mut self, bytes: u64) {
        self.last = Some(Instant::now());
        self.held = None;
        (self.report)(bytes);
    }

    /// When the count held back is due, if one is.
    fn due(&self) -> Option<Instant> {
        self.held.and(self.last).map(|at| at + PROGRESS_EVERY)
    }

    fn catch_up(&mut self) {
        if let Some(bytes) = self.held {
            self.send(bytes);
        }
    }
}

/// A request's body being read within its bounds, with the bytes counted so far and their
/// progress report: what both receiving loops (the temp file's here, the bucket's in
/// `staging::parts`) take their chunks from.
pub struct Incoming<'a, S, F> {
    body: S,
    limit: u64,
    idle: Duration,
    cancelled: &'a CancellationToken,
    received: u64,
    progress: ProgressReport<F>,
}

impl<'a, S, E, F> Incoming<'a, S, F>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
    F: FnMut(u64),
{
    /// Reads `body` within `bounds` (its checksum is the caller's to check).
    pub fn new(body: S, bounds: &Bounds<'a>, on_progress: F) -> Self {
        Self {
            body,
            limit: bounds.limit,
            idle: bounds.idle,
            cancelled: bounds.cancelled,
            received: 0,
            progress: ProgressReport::new(on_progress),
        }
    }

    /// The bytes taken so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The chunk taken last is handled: its count goes to the progress report.
    pub fn handled(&mut self) {
        self.progress.saw(self.received);
    }

    /// The next chunk: `None` at the body's end, or why receiving stops (cancelled, silent for
    /// `idle`, cut short, past `limit`). While it waits, a count held back is reported.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ReceiveError> {
        let silent_until = Instant::now() + self.idle;
        let next = loop {
            let due = self.progress.due();
            // In this order: a cancel first; then the body, so that a chunk already there
            // never registers a timer (a timer is only registered when first polled).
            tokio::select! {
                biased;
                _ = self.cancelled.cancelled() => return Err(ReceiveError::Cancelled),
                next = tokio::time::timeout_at(silent_until, self.body.next()) => break next,
                () = tokio::time::sleep_until(due.unwrap_or(silent_until)), if due.is_some() => {
                    self.progress.catch_up();
                }
            }
        };
        match next {
            Err(_) => Err(ReceiveError::Interrupted {
                received: self.received,
                reason: format!("no data for {} s", self.idle.as_secs_f64()),
            }),
            Ok(None) => Ok(None),
            Ok(Some(Err(error))) => Err(ReceiveError::Interrupted {
                received: self.received,
                reason: error.to_string(),
            }),
            Ok(Some(Ok(chunk))) => {
                self.received += chunk.len() as u64;
                if self.received > self.limit {
                    return Err(ReceiveError::TooLarge { limit: self.limit });
                }
                Ok(Some(chunk))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The body stopped early: the client went away or the transfer broke.
    #[error("upload interrupted after {received} bytes: {reason}")]
    Interrupted { received: u64, reason: String },
    #[error("the upload exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload was cancelled")]
    Cancelled,
    #[error("the bytes do not match their Upload-Checksum")]
    ChecksumMismatch,
    /// The disk filled up (or the quota ran out). What was written before is kept and durable
    /// when the caller keeps partial uploads.
    #[error("the server's disk is full")]
    DiskFull(io::Error),
    #[error("writing the upload failed: {0}")]
    Io(io::Error),
}

impl From<io::Error> for ReceiveError {
    fn from(error: io::Error) -> Self {
        if is_disk_full(&error) {
            Self::DiskFull(error)
        } else {
            Self::Io(error)
        }
    }
}

/// Whether an I/O failure means the disk (or the quota) is full: ENOSPC (os error 28) or EDQUOT,
/// which the standard library reports as these kinds.
pub fn is_disk_full(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether a failure was caused, anywhere down its chain, by a full disk.
pub fn caused_by_full_disk(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(is_disk_full)
}

#[derive(Clone)]
enum Chunk {
    Data(Bytes),
    /// Sent after the last chunk to keep; a channel that closes without it means "abandon".
    End,
}

/// Receives `body` into a new `temp`, stopping with `TooLarge` as soon as more than `limit`
/// bytes arrived, and with `Interrupted` when no byte arrives for `idle`. `on_progress` sees
/// the running byte count as `ProgressReport` paces it. Nothing stays on disk if it fails.
pub async fn receive<S, E>(
    body: S,
    temp: PathBuf,
    limit: u64,
    idle: Duration,
    cancelled: &CancellationToken,
    on_progress: impl FnMut(u64),
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let bounds = Bounds {
        limit,
        idle,
        cancelled,
        checksum: None,
    };
    match append(body, &temp, Partial::empty(), bounds, on_progress).await {
        Ok(partial) => Ok(Received {
            digest: partial.digest(),
            size: partial.offset,
            staged: Staged::File(temp),
        }),
        Err(stopped) => {
            remove_if_present(&temp);
            Err(stopped.error)
        }
    }
}

/// Why `append` stopped early, and where the upload stands: advanced past the bytes that did
/// arrive (and are durable) when the body was cut, unchanged otherwise.
pub struct Stopped {
    pub error: ReceiveError,
    pub partial: Partial,
}

/// Appends `body` to `temp` from `from.offset` (creating the file if needed; bytes beyond the
/// durable offset, left by an earlier cut, are discarded first) and fsyncs. At most
/// `bounds.limit` bytes are taken: more is refused with `TooLarge` and the request's bytes are
/// dropped. A body cut short keeps what arrived, durably, unless a checksum was given (partial
/// bytes cannot be checked). Cancellation or a checksum mismatch drops this request's bytes.
///
/// Each chunk goes to two blocking threads at once: one hashes, one writes. Both read the same
/// buffer once, and on two cores hashing and copying into the page cache overlap.
pub async fn append<S, E>(
    body: S,
    temp: &Path,
    from: Partial,
    bounds: Bounds<'_>,
    on_progress: impl FnMut(u64),
) -> Result<Partial, Stopped>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let stop = |error: ReceiveError, partial: &Partial| Stopped {
        error,
        partial: partial.clone(),
    };
    // The file is open (and trimmed to the durable offset) before the first byte is counted,
    // so an upload that reports progress always has its temp file on disk.
    let path = temp.to_owned();
    let offset = from.offset;
    let file = tokio::task::spawn_blocking(move || open_at(&path, offset))
        .await
        .map_err(io::Error::other)
        .and_then(|opened| opened)
        .map_err(|error| stop(ReceiveError::from(error), &from))?;
    let (to_hasher, hasher_queue) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (to_writer, writer_queue) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let mut incoming = Incoming::new(body, &bounds, on_progress);
    let checksum = bounds.checksum;
    let start = from.hasher.clone();
    let chunk_hasher = checksum
        .as_ref()
        .map(|checksum| ChunkHasher::new(checksum.algorithm));
    let hasher =
        tokio::task::spawn_blocking(move || hash_chunks(start, chunk_hasher, hasher_queue));
    let writer = tokio::task::spawn_blocking(move || write_chunks(file, offset, writer_queue));

    let outcome = loop {
        let chunk = match incoming.next().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        let chunk = Chunk::Data(chunk);
        if to_writer.send(chunk.clone()).await.is_err() || to_hasher.send(chunk).await.is_err() {
            // A thread stopped early; its own error says why.
            break Ok(());
        }
        incoming.handled();
    };
    let received = incoming.received();

    // What arrived is kept when the body ended or was cut (and needs no checksum); dropped when
    // refused or cancelled.
    let keep = match outcome {
        Ok(()) => true,
        Err(ReceiveError::Interrupted { .. }) => checksum.is_none(),
        Err(_) => false,
    };
    if keep {
        let _ = to_writer.send(Chunk::End).await;
        let _ = to_hasher.send(Chunk::End).await;
    }
    drop((to_writer, to_hasher));
    let written = match joined(writer.await) {
        Ok(Written::Full { kept, error }) => {
            let keeps = kept > 0
                && checksum.is_none()
                && matches!(outcome, Ok(()) | Err(ReceiveError::Interrupted { .. }));
            return Err(disk_full(temp, from, kept, keeps, outcome, error).await);
        }
        written => written,
    };
    let hashed = hasher.await.ok().flatten();
    if let (Some(expected), Some((_, Some(actual)))) = (&checksum, &hashed) {
        if keep && expected.expected != *actual {
            // Written and fsync'd already: cut back to the durable offset.
            let path = temp.to_owned();
            let cut = tokio::task::spawn_blocking(move || {
                File::options().write(true).open(path)?.set_len(offset)
            })
            .await
            .map_err(io::Error::other)
            .and_then(|cut| cut);
            let error = match cut {
                Ok(()) => ReceiveError::ChecksumMismatch,
                Err(error) => ReceiveError::Io(error),
            };
            return Err(stop(error, &from));
        }
    }
    let hashed = hashed.map(|(hasher, _)| hasher);
    match (outcome, written, hashed) {
        (Ok(()), Ok(Written::All(written)), Some(hasher)) if written == received => Ok(Partial {
            offset: offset + written,
            hasher,
            parts: None,
        }),
        (
            Err(error @ ReceiveError::Interrupted { .. }),
            Ok(Written::All(written)),
            Some(hasher),
        ) if written == received => Err(Stopped {
            error,
            partial: Partial {
                offset: offset + written,
                hasher,
                parts: None,
            },
        }),
        (Err(error), _, _) => Err(stop(error, &from)),
        (Ok(()), Err(error), _) => Err(stop(ReceiveError::from(error), &from)),
        (Ok(()), _, _) => Err(stop(
            ReceiveError::Io(io::Error::other(
                "the upload stopped before the end of the body",
            )),
            &from,
        )),
    }
}

/// The disk filled up while this request's bytes were written, and the writer kept `kept` of
/// them durable. They count (hashed on from `from`) when `keeps`; otherwise the file goes back
/// to `from.offset`. A refusal or a cancellation says more than the full disk and is passed on.
async fn disk_full(
    temp: &Path,
    from: Partial,
    kept: u64,
    keeps: bool,
    outcome: Result<(), ReceiveError>,
    error: io::Error,
) -> Stopped {
    let path = temp.to_owned();
    let start = from.clone();
    let offset = from.offset;
    let kept = tokio::task::spawn_blocking(move || {
        if keeps {
            start.extend_from(&path, offset + kept)
        } else {
            File::options()
                .write(true)
                .open(&path)?
                .set_len(offset)
                .map(|()| start)
        }
    })
    .await
    .map_err(io::Error::other)
    .and_then(|kept| kept);
    let error = match outcome {
        Err(refused @ (ReceiveError::TooLarge { .. } | ReceiveError::Cancelled)) => refused,
        _ => ReceiveError::DiskFull(error),
    };
    match kept {
        Ok(partial) => Stopped { error, partial },
        // Read back or cut back failed: only what was durable before this request counts (the
        // next request trims anything beyond it).
        Err(_) => Stopped {
            error,
            partial: from,
        },
    }
}

/// Opens `path` for writing at `offset`, creating it if needed and cutting anything beyond.
fn open_at(path: &Path, offset: u64) -> io::Result<File> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    file.set_len(offset)?;
    file.seek(SeekFrom::Start(offset))?;
    Ok(file)
}

fn joined<T>(outcome: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    outcome.map_err(|join| io::Error::other(format!("upload thread failed: {join}")))?
}

/// Hashes every chunk after `hasher`'s state, and this request's bytes alone when a checksum
/// is to be checked; `None` when abandoned before the end.
fn hash_chunks(
    mut hasher: RunningHash,
    mut chunk_hasher: Option<ChunkHasher>,
    mut queue: mpsc::Receiver<Chunk>,
) -> Option<(RunningHash, Option<Vec<u8>>)> {
    while let Some(chunk) = queue.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => {
                hasher.update(&bytes);
                if let Some(chunk_hasher) = &mut chunk_hasher {
                    chunk_hasher.update(&bytes);
                }
            }
            Chunk::End => return Some((hasher, chunk_hasher.map(ChunkHasher::finish))),
        }
    }
    None
}

/// How the writing thread ended.
enum Written {
    /// Every chunk up to `Chunk::End`, fsync'd: this many bytes.
    All(u64),
    /// Abandoned before the end: the file is cut back to where this request started.
    Abandoned,
    /// The disk filled up: the first `kept` bytes of this request are durable and nothing of
    /// it lies beyond them.
    Full { kept: u64, error: io::Error },
}

/// Writes every chunk from `offset` and fsyncs at the end. Abandoned before the end, the file is
/// cut back to `offset`; on a full disk, what was written (less `FULL_DISK_HEADROOM`) is kept.
fn write_chunks(
    mut file: File,
    offset: u64,
    mut queue: mpsc::Receiver<Chunk>,
) -> io::Result<Written> {
    let mut written = 0u64;
    let mut flushed = 0u64;
    while let Some(chunk) = queue.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => {
                if let Err(error) = write_counted(&mut file, &bytes, &mut written) {
                    return keep_before_full(&file, offset, written, error);
                }
                if written - flushed >= WRITEBACK_WINDOW {
                    start_writeback(&file, offset + flushed, written - flushed);
                    flushed = written;
                }
            }
            Chunk::End => {
                // fdatasync: the data and the size it needs, not the times (a journal commit
                // less per PATCH).
                return match file.sync_data() {
                    Ok(()) => Ok(Written::All(written)),
                    // After a failed fsync the written pages may be gone while a later fsync
                    // succeeds: none of this request's bytes can be trusted.
                    Err(error) => keep_before_full(&file, offset, 0, error),
                };
            }
        }
    }
    file.set_len(offset)?;
    Ok(Written::Abandoned)
}

/// Writes all of `bytes`, counting in `written` every byte the file took, even when a later
/// part of them fails.
fn write_counted(file: &mut File, bytes: &[u8], written: &mut u64) -> io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match file.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(taken) => {
                *written += taken as u64;
                rest = &rest[taken..];
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// After a write failed with `written` bytes of this request taken: on a full disk, keeps them
/// less `FULL_DISK_HEADROOM` (given back so the new offset can be recorded) and fsyncs; any
/// other failure is passed on.
fn keep_before_full(
    file: &File,
    offset: u64,
    written: u64,
    error: io::Error,
) -> io::Result<Written> {
    if !is_disk_full(&error) {
        return Err(error);
    }
    let kept = written.saturating_sub(FULL_DISK_HEADROOM);
    let kept = match file.set_len(offset + kept).and_then(|()| file.sync_all()) {
        Ok(()) => kept,
        Err(_) => {
            // Not durable after all: nothing of this request counts.
            let _ = file.set_len(offset);
            0
        }
    };
    Ok(Written::Full { kept, error })
}

/// Asks the kernel to start writing a range to disk without waiting (the "bytes per sync"
/// idea): dirty pages do not pile up, and the final fsync has little left to do.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the lifetime of `file`; the call only reads its
    // arguments. Failure is harmless (the final fsync still makes the data durable).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn remove_if_present(path: &Path) {
    if let Err(error) = std::fs::remove_file(path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "could not remove a temp file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    const IDLE: Duration = Duration::from_secs(5);

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn a_count_held_back_is_reported_once_the_body_goes_quiet() {
        // Three chunks at once, then a sender that stops without ending its body: the first
        // count is reported at once, the next two are held back by the pace, and the last of
        // them is reported while the body is quiet, before the idle timeout ends it.
        let body = chunks(&[b"a", b"bc", b"def"]).chain(stream::pending());
        let mut reported = Vec::new();
        let cancelled = CancellationToken::new();
        let idle = PROGRESS_EVERY * 4;
        let bounds = Bounds {
            limit: 100,
            idle,
            cancelled: &cancelled,
            checksum: None,
        };
        let mut incoming = Incoming::new(body, &bounds, |n| reported.push(n));
        for _ in 0..3 {
            assert!(incoming.next().await.unwrap().is_some());
            incoming.handled();
        }
        assert!(matches!(
            incoming.next().await,
            Err(ReceiveError::Interrupted { received: 6, .. })
        ));
        drop(incoming);
        assert_eq!(reported, [1, 6]);
    }

    /// Receives `parts` into `temp` with nothing cancelling it.
    async fn receive_parts(
        parts: &[&'static [u8]],
        temp: &Path,
        limit: u64,
    ) -> Result<Received, ReceiveError> {
        receive(
            chunks(parts),
            temp.to_owned(),
            limit,
            IDLE,
            &CancellationToken::new(),
            |_| {},
        )
        .await
    }

    #[test]
    fn a_stored_hash_state_continues_where_it_stopped() {
        let mut first = Partial::empty();
        first.hasher.update(b"hello ");
        first.offset = 6;
        let state = first.hash_state();
        let mut resumed = Partial::resume(6, &state, None).expect("the state reads back");
        resumed.hasher.update(b"world");
        assert_eq!(
            resumed.digest().to_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert!(
            Partial::resume(6, &state[1..], None).is_none(),
            "a cut state"
        );
    }

    #[tokio::test]
    async fn hashes_exactly_the_bytes_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("a.part");
        let received = receive_parts(&[b"hello ", b"world"], &temp, 100)
            .await
            .unwrap();
        assert_eq!(received.size, 11);
        assert_eq!(
            received.digest.to_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(temp).unwrap(), b"hello world");
    }

    #[tokio::test]
    async fn a_cancelled_upload_stops_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("c.part");
        let cancelled = CancellationToken::new();
        // A body that sends one chunk and then waits forever.
        let body = stream::iter(vec![Ok::<_, String>(Bytes::from_static(b"abc"))])
            .chain(stream::pending());
        let cancel = cancelled.clone();
        let error = receive(Box::pin(body), temp.clone(), 100, IDLE, &cancelled, |_| {
            cancel.cancel()
        })
        .await
        .unwrap_err();
        assert!(matches!(error, ReceiveError::Cancelled));
        assert!(!temp.exists());
    }

    #[tokio::test]
    async fn an_oversized_or_broken_body_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("b.part");
        let error = receive_parts(&[b"0123456789", b"x"], &temp, 10)
            .await
            .unwrap_err();
        assert!(matches!(error, ReceiveError::TooLarge { limit: 10 }));
        assert!(!temp.exists());

        let broken = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("reset".to_owned()),
        ]);
        let error = receive(
            broken,
            temp.clone(),
            100,
            IDLE,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert!(matches!(
            error,
            ReceiveError::Interrupted { received: 3, .. }
        ));
        assert!(!temp.exists());
    }

    fn bounds(limit: u64, cancelled: &CancellationToken) -> Bounds<'_> {
        Bounds {
            limit,
            idle: IDLE,
            cancelled,
            checksum: None,
        }
    }

    #[tokio::test]
    async fn appending_in_pieces_gives_the_digest_of_the_whole_and_refusals_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("r.part");
        let token = CancellationToken::new();
        let first = append(
            chunks(&[b"hello "]),
            &temp,
            Partial::empty(),
            bounds(100, &token),
            |_| {},
        )
        .await
        .ok()
        .unwrap();
        assert_eq!(first.offset, 6);
        // Too much for what is left: refused, the file stays at the durable offset.
        let refused = append(
            chunks(&[b"world!!"]),
            &temp,
            first.clone(),
            bounds(5, &token),
            |_| {},
        )
        .await
        .err()
        .unwrap();
        assert!(matches!(refused.error, ReceiveError::TooLarge { limit: 5 }));
        assert_eq!(refused.partial.offset, 6);
        assert_eq!(std::fs::read(&temp).unwrap(), b"hello ");
        // A cut keeps what arrived; bytes past the durable offset are dropped on the next append.
        let cut = stream::iter(vec![
            Ok(Bytes::from_static(b"wor")),
            Err("reset".to_owned()),
        ]);
        let kept = append(cut, &temp, first, bounds(5, &token), |_| {})
            .await
            .err()
            .unwrap();
        assert!(matches!(
            kept.error,
            ReceiveError::Interrupted { received: 3, .. }
        ));
        assert_eq!(kept.partial.offset, 9);
        let resumed = Partial::rehash(&temp, 9).unwrap();
        let done = append(chunks(&[b"ld"]), &temp, resumed, bounds(2, &token), |_| {})
            .await
            .ok()
            .unwrap();
        assert_eq!(done.offset, 11);
        assert_eq!(
            done.digest().to_hex(),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(std::fs::read(&temp).unwrap(), b"hello world");
        assert!(Partial::rehash(&temp, 12).is_err());
    }
}
