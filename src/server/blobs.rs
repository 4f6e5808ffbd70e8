//! Content-addressed file storage: each stored file is a blob keyed by its SHA-256. The
//! `BlobStore` trait is the seam: `LocalBlobs` keeps them in a folder, `blobs/ab/abcd…`, under
//! the data dir; `ObjectBlobs` (in `object`) in an S3-compatible bucket, for a cluster.
pub mod object;

pub use object::{ObjectBlobs, S3Credentials, S3Endpoint, S3Location, S3Settings, StagingKey};

use crate::domain::Sha256Digest;
use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::{
    fs, io,
    ops::Range,
    path::{Path, PathBuf},
    pin::Pin,
    time::SystemTime,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// A blob's bytes as they are read.
pub type BlobStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where a finished upload's bytes wait to be stored under their digest.
#[derive(Debug)]
pub enum Staged {
    /// A fsync'd temp file on this node.
    File(PathBuf),
    /// An object in the blob store's own bucket (a resumable upload staged there).
    Object(object::StagingKey),
}

/// Where stored files live. Blobs never change once stored; the callers make sure no job
/// references a blob they delete.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the finished bytes `staged` as the blob `digest`, durably; what was staged is
    /// gone afterwards. Identical content is stored once.
    async fn put(&self, staged: &Staged, digest: &Sha256Digest) -> io::Result<()>;
    /// The blob's size and when it was stored; `None` if it is not stored.
    async fn stat(&self, digest: &Sha256Digest) -> io::Result<Option<BlobInfo>>;
    /// Bytes `range` of a stored blob (which must lie inside it).
    async fn read(&self, digest: &Sha256Digest, range: Range<u64>) -> io::Result<BlobStream>;
    /// Removes a blob if it is stored.
    async fn delete(&self, digest: &Sha256Digest) -> io::Result<()>;
    /// Every stored blob with when it was written.
    async fn list(&self) -> io::Result<Vec<(Sha256Digest, SystemTime)>>;
    /// Bytes free for more blobs; `None` when the store has no such bound (object storage).
    async fn free_space(&self) -> io::Result<Option<u64>>;

    /// Succeeds when the store answers (for `/readyz`); cheap, since it runs up to once a
    /// second.
    async fn probe(&self) -> io::Result<()>;

    async fn exists(&self, digest: &Sha256Digest) -> io::Result<bool> {
        Ok(self.stat(digest).await?.is_some())
    }
}

/// What the store knows of a stored blob.
#[derive(Clone, Copy, Debug)]
pub struct BlobInfo {
    pub size: u64,
    pub modified: SystemTime,
}

/// Blobs in a local folder.
#[derive(Clone, Debug)]
pub struct LocalBlobs {
    blob_dir: PathBuf,
}

impl LocalBlobs {
    /// Creates `blobs/` under `data_dir` if needed.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let blob_dir = data_dir.join("blobs");
        fs::create_dir_all(&blob_dir)?;
        Ok(Self { blob_dir })
    }

    fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.blob_dir.join(&hex[..2]).join(hex)
    }

    /// Moves the temp file to its content address and makes the rename durable. Blocking.
    fn commit(&self, temp: &Path, digest: &Sha256Digest) -> io::Result<()> {
        let target = self.blob_path(digest);
        let shard = target.parent().expect("a blob path has a shard directory");
        if target.exists() {
            // Stored already (perhaps by another account): the same durable-sync work as a
            // new blob, so how long storing takes does not tell that someone had this file.
            fs::remove_file(temp)?;
        } else {
            fs::create_dir_all(shard)?;
            fs::rename(temp, &target)?;
        }
        sync_dir(shard)?;
        sync_dir(&self.blob_dir)
    }

    /// Blocking.
    fn list_blocking(&self) -> io::Result<Vec<(Sha256Digest, SystemTime)>> {
        let mut blobs = Vec::new();
        for shard in fs::read_dir(&self.blob_dir)? {
            let shard = shard?;
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in fs::read_dir(shard.path())? {
                let entry = entry?;
                let name = entry.file_name();
                // Anything that is not named by a digest was not put there by this store.
                if let Some(digest) = name.to_str().and_then(|n| Sha256Digest::parse(n).ok()) {
                    blobs.push((digest, entry.metadata()?.modified()?));
                }
            }
        }
        Ok(blobs)
    }
}

#[async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, staged: &Staged, digest: &Sha256Digest) -> io::Result<()> {
        let Staged::File(temp) = staged else {
            return Err(io::Error::other(
                "an object staged in a bucket cannot go to a local blob folder",
            ));
        };
        let (store, temp, digest) = (self.clone(), temp.to_owned(), *digest);
        tokio::task::spawn_blocking(move || store.commit(&temp, &digest))
            .await
            .map_err(io::Error::other)?
    }

    async fn stat(&self, digest: &Sha256Digest) -> io::Result<Option<BlobInfo>> {
        match tokio::fs::metadata(self.blob_path(digest)).await {
            Ok(metadata) => Ok(Some(BlobInfo {
                size: metadata.len(),
                modified: metadata.modified()?,
            })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    async fn read(&self, digest: &Sha256Digest, range: Range<u64>) -> io::Result<BlobStream> {
        let mut file = tokio::fs::File::open(self.blob_path(digest)).await?;
        file.seek(io::SeekFrom::Start(range.start)).await?;
        let part = file.take(range.end.saturating_sub(range.start));
        Ok(tokio_util::io::ReaderStream::with_capacity(part, 64 * 1024).boxed())
    }

    async fn delete(&self, digest: &Sha256Digest) -> io::Result<()> {
        match tokio::fs::remove_file(self.blob_path(digest)).await {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    async fn list(&self) -> io::Result<Vec<(Sha256Digest, SystemTime)>> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.list_blocking())
            .await
            .map_err(io::Error::other)?
    }

    async fn free_space(&self) -> io::Result<Option<u64>> {
        fs4::available_space(&self.blob_dir).map(Some)
    }

    async fn probe(&self) -> io::Result<()> {
        // Whether the disk takes writes is the data-dir check's; here only that the folder is
        // still there.
        match tokio::fs::metadata(&self.blob_dir).await? {
            metadata if metadata.is_dir() => Ok(()),
            _ => Err(io::Error::other("the blob folder is not a directory")),
        }
    }
}

/// fsync on a directory makes a rename or a new entry in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn identical_content_is_stored_once_and_read_back_by_range() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobs::open(dir.path()).unwrap();
        let digest = Sha256Digest::from_bytes([7; 32]);
        for name in ["one.part", "two.part"] {
            let temp = dir.path().join(name);
            fs::write(&temp, b"same").unwrap();
            store
                .put(&Staged::File(temp.clone()), &digest)
                .await
                .unwrap();
            assert!(!temp.exists());
        }
        assert_eq!(store.stat(&digest).await.unwrap().unwrap().size, 4);
        assert_eq!(store.list().await.unwrap().len(), 1);
        let mut read = Vec::new();
        let mut stream = store.read(&digest, 1..3).await.unwrap();
        while let Some(chunk) = stream.next().await {
            read.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(read, b"am");
        store.delete(&digest).await.unwrap();
        assert!(!store.exists(&digest).await.unwrap());
    }
}
