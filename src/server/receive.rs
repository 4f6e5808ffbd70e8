//! Streams an upload to a temp file while hashing it: the network side reads chunks, blocking
//! threads hash and write each chunk once, and bounded channels between them keep memory flat
//! whatever the size. Nothing of a failed upload stays on disk.
use crate::domain::Sha256Digest;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
    time::Duration,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Chunks in flight to each of the hashing and writing threads (each chunk is what hyper
/// hands over, typically ≤ 64 KiB; they are shared, not copied), bounding memory per upload.
const CHUNKS_IN_FLIGHT: usize = 32;
/// Writeback of the file is started after every this many bytes, so the final fsync only
/// waits for the tail instead of the whole file.
const WRITEBACK_WINDOW: u64 = 32 * 1024 * 1024;

/// A fully received, fsync'd upload in its temp file.
#[derive(Debug)]
pub struct Received {
    pub temp: PathBuf,
    pub digest: Sha256Digest,
    pub size: u64,
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
    #[error("writing the upload failed: {0}")]
    Io(#[from] io::Error),
}

#[derive(Clone)]
enum Chunk {
    Data(Bytes),
    /// Sent after the last chunk; a channel that closes without it means "abandon".
    End,
}

/// Receives `body` into `temp`, stopping with `TooLarge` as soon as more than `limit` bytes
/// arrived, and with `Interrupted` when no byte arrives for `idle`. `on_progress` sees the
/// running byte count after each chunk.
///
/// Each chunk goes to two blocking threads at once: one hashes, one writes. Both read the same
/// buffer once, and on two cores hashing and copying into the page cache overlap.
pub async fn receive<S, E>(
    mut body: S,
    temp: PathBuf,
    limit: u64,
    idle: Duration,
    cancelled: &CancellationToken,
    mut on_progress: impl FnMut(u64),
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    // The file exists before the first byte is counted, so an upload that reports progress
    // always has its temp file on disk.
    let path = temp.clone();
    let file = tokio::task::spawn_blocking(move || {
        File::options().write(true).create_new(true).open(path)
    })
    .await
    .map_err(io::Error::other)??;
    let (to_hasher, hasher_queue) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (to_writer, writer_queue) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let hasher = tokio::task::spawn_blocking(move || hash_chunks(hasher_queue));
    let writer = tokio::task::spawn_blocking(move || write_chunks(file, writer_queue));

    let mut received = 0u64;
    let outcome = loop {
        let next = tokio::select! {
            next = tokio::time::timeout(idle, body.next()) => next,
            _ = cancelled.cancelled() => break Err(ReceiveError::Cancelled),
        };
        let next = match next {
            Ok(next) => next,
            Err(_) => {
                break Err(ReceiveError::Interrupted {
                    received,
                    reason: format!("no data for {} s", idle.as_secs_f64()),
                })
            }
        };
        let chunk = match next {
            None => break Ok(()),
            Some(Ok(chunk)) => chunk,
            Some(Err(error)) => {
                break Err(ReceiveError::Interrupted {
                    received,
                    reason: error.to_string(),
                })
            }
        };
        received += chunk.len() as u64;
        if received > limit {
            break Err(ReceiveError::TooLarge { limit });
        }
        let chunk = Chunk::Data(chunk);
        if to_writer.send(chunk.clone()).await.is_err() || to_hasher.send(chunk).await.is_err() {
            // A thread stopped early; its own error says why.
            break Ok(());
        }
        on_progress(received);
    };

    if outcome.is_ok() {
        let _ = to_writer.send(Chunk::End).await;
        let _ = to_hasher.send(Chunk::End).await;
    }
    drop((to_writer, to_hasher));
    let written = joined(writer.await);
    let digest = hasher.await.ok().flatten();
    let result = match (outcome, written, digest) {
        (Err(error), _, _) => Err(error),
        (Ok(()), Err(error), _) => Err(ReceiveError::Io(error)),
        (Ok(()), Ok(true), Some(digest)) => Ok(Received {
            temp: temp.clone(),
            digest,
            size: received,
        }),
        (Ok(()), Ok(_), _) => Err(ReceiveError::Io(io::Error::other(
            "the upload stopped before the end of the body",
        ))),
    };
    if result.is_err() {
        remove_if_present(&temp);
    }
    result
}

fn joined<T>(outcome: Result<io::Result<T>, tokio::task::JoinError>) -> io::Result<T> {
    outcome.map_err(|join| io::Error::other(format!("upload thread failed: {join}")))?
}

/// Hashes every chunk; `None` when abandoned before the end.
fn hash_chunks(mut queue: mpsc::Receiver<Chunk>) -> Option<Sha256Digest> {
    let mut hasher = Sha256::new();
    while let Some(chunk) = queue.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => hasher.update(&bytes),
            Chunk::End => return Some(Sha256Digest::from_bytes(hasher.finalize().into())),
        }
    }
    None
}

/// Writes every chunk and fsyncs at the end; `false` when abandoned before the end.
fn write_chunks(mut file: File, mut queue: mpsc::Receiver<Chunk>) -> io::Result<bool> {
    let mut written = 0u64;
    let mut flushed = 0u64;
    while let Some(chunk) = queue.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => {
                file.write_all(&bytes)?;
                written += bytes.len() as u64;
                if written - flushed >= WRITEBACK_WINDOW {
                    start_writeback(&file, flushed, written - flushed);
                    flushed = written;
                }
            }
            Chunk::End => {
                file.sync_all()?;
                return Ok(true);
            }
        }
    }
    Ok(false)
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
}
