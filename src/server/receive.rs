//! Streams an upload to a temp file while hashing it: the network side reads chunks, a blocking
//! thread hashes and writes each chunk once, and a bounded channel between them keeps memory
//! flat whatever the size. Nothing of a failed upload stays on disk.
use crate::domain::Sha256Digest;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use std::{
    fs::File,
    io::{self, Write},
    path::{Path, PathBuf},
};
use tokio::sync::mpsc;

/// Chunks in flight between the network and the disk (each is what hyper hands over, ≤ ~64 KiB
/// typically), bounding memory per upload to a few MiB at most.
const CHUNKS_IN_FLIGHT: usize = 32;

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
    #[error("writing the upload failed: {0}")]
    Io(#[from] io::Error),
}

enum Chunk {
    Data(Bytes),
    /// Sent after the last chunk; a channel that closes without it means "abandon".
    End,
}

/// Receives `body` into `temp`, stopping with `TooLarge` as soon as more than `limit` bytes
/// arrived. `on_progress` sees the running byte count after each chunk.
pub async fn receive<S, E>(
    mut body: S,
    temp: PathBuf,
    limit: u64,
    mut on_progress: impl FnMut(u64),
) -> Result<Received, ReceiveError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (chunks, queue) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer_path = temp.clone();
    let writer = tokio::task::spawn_blocking(move || hash_into_file(&writer_path, queue));

    let mut received = 0u64;
    let outcome = loop {
        let chunk = match body.next().await {
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
        if chunks.send(Chunk::Data(chunk)).await.is_err() {
            // The writer stopped early; its own error says why.
            break Ok(());
        }
        on_progress(received);
    };

    if outcome.is_ok() {
        let _ = chunks.send(Chunk::End).await;
    }
    drop(chunks);
    let written = writer
        .await
        .map_err(|join| io::Error::other(format!("upload writer panicked: {join}")));
    let result = match (outcome, written) {
        (Ok(()), Ok(Ok(Some(digest)))) => Ok(Received {
            temp: temp.clone(),
            digest,
            size: received,
        }),
        (Err(error), _) => Err(error),
        (Ok(()), Ok(Err(error))) | (Ok(()), Err(error)) => Err(ReceiveError::Io(error)),
        (Ok(()), Ok(Ok(None))) => Err(ReceiveError::Io(io::Error::other(
            "upload writer stopped before the end of the body",
        ))),
    };
    if result.is_err() {
        remove_if_present(&temp);
    }
    result
}

/// The blocking half: hash and write each chunk, then fsync. Returns `None` when abandoned.
fn hash_into_file(
    path: &Path,
    mut queue: mpsc::Receiver<Chunk>,
) -> io::Result<Option<Sha256Digest>> {
    let mut file = File::options().write(true).create_new(true).open(path)?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = queue.blocking_recv() {
        match chunk {
            Chunk::Data(bytes) => {
                hasher.update(&bytes);
                file.write_all(&bytes)?;
            }
            Chunk::End => {
                file.sync_all()?;
                return Ok(Some(Sha256Digest::from_bytes(hasher.finalize().into())));
            }
        }
    }
    Ok(None)
}

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

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, String>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn hashes_exactly_the_bytes_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("a.part");
        let received = receive(chunks(&[b"hello ", b"world"]), temp.clone(), 100, |_| {})
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
    async fn an_oversized_or_broken_body_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let temp = dir.path().join("b.part");
        let error = receive(chunks(&[b"0123456789", b"x"]), temp.clone(), 10, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(error, ReceiveError::TooLarge { limit: 10 }));
        assert!(!temp.exists());

        let broken = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err("reset".to_owned()),
        ]);
        let error = receive(broken, temp.clone(), 100, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            ReceiveError::Interrupted { received: 3, .. }
        ));
        assert!(!temp.exists());
    }
}
