//! Upload bytes at rest between requests: temp files under `tmp/` (named by job id, never by
//! the client's filename), or, when the blob store is a bucket, resumable uploads in that
//! bucket (`parts`: any node takes the next request); the running hash of each resumable
//! upload, and the one-sender lock (behind the `UploadLocks` seam: this process's, or
//! PostgreSQL's for a cluster, `pg_locks`). The uploads service owns the rules; this leaf owns
//! the state, so the job service can release it when a job is cancelled without depending on
//! the uploads service.
pub mod parts;
pub mod pg_locks;

use super::{
    blobs::{ObjectBlobs, Staged},
    receive::Partial,
    store::JobStore,
};
use crate::domain::JobId;
use async_trait::async_trait;
use std::{
    collections::{HashMap, HashSet},
    fs, io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};
use tokio::sync::Notify;

/// The right to send an upload's bytes: one sender per upload at a time, across the service.
#[async_trait]
pub trait UploadLocks: Send + Sync + 'static {
    /// The lock on `id`, or `None` while someone else holds it.
    async fn try_lock(&self, id: JobId) -> anyhow::Result<Option<UploadLock>>;
    /// The lock on `id`, once whoever holds it lets go.
    async fn lock(&self, id: JobId) -> anyhow::Result<UploadLock>;
}

/// A held upload lock; released when dropped.
pub struct UploadLock {
    _release: Box<dyn Send + Sync>,
}

impl UploadLock {
    pub fn new(release: impl Send + Sync + 'static) -> Self {
        Self {
            _release: Box::new(release),
        }
    }
}

/// Upload locks of this process.
#[derive(Default)]
pub struct LocalUploadLocks {
    held: Arc<Mutex<HashSet<JobId>>>,
    /// Wakes those waiting for a lock when one is released.
    released: Arc<Notify>,
}

struct LocalRelease {
    held: Arc<Mutex<HashSet<JobId>>>,
    released: Arc<Notify>,
    id: JobId,
}

impl Drop for LocalRelease {
    fn drop(&mut self) {
        self.held.lock().expect("upload locks").remove(&self.id);
        self.released.notify_waiters();
    }
}

impl LocalUploadLocks {
    fn take(&self, id: JobId) -> Option<UploadLock> {
        let inserted = self.held.lock().expect("upload locks").insert(id);
        // Built only on success: dropping a lock never taken would release the holder's.
        inserted.then(|| {
            UploadLock::new(LocalRelease {
                held: self.held.clone(),
                released: self.released.clone(),
                id,
            })
        })
    }
}

#[async_trait]
impl UploadLocks for LocalUploadLocks {
    async fn try_lock(&self, id: JobId) -> anyhow::Result<Option<UploadLock>> {
        Ok(self.take(id))
    }

    async fn lock(&self, id: JobId) -> anyhow::Result<UploadLock> {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            // Listening before trying, so a release between the try and the wait is not missed.
            released.as_mut().enable();
            if let Some(lock) = self.take(id) {
                return Ok(lock);
            }
            released.await;
        }
    }
}

/// Where uploads' bytes wait until they are stored under their digest.
pub struct Staging {
    tmp_dir: PathBuf,
    /// Where resumable uploads are staged when the blob store is a bucket.
    bucket: Option<ObjectBlobs>,
    /// Resumable uploads' records (a bucket-staged upload's multipart id is there).
    store: Arc<dyn JobStore>,
    locks: Arc<dyn UploadLocks>,
    /// Running hashes of resumable uploads between requests, so a PATCH continues without
    /// decoding the stored state (it is the same; this only saves the read).
    partials: Mutex<HashMap<JobId, Partial>>,
}

impl Staging {
    /// Creates `tmp/` under `data_dir` if needed. With `bucket`, resumable uploads are staged
    /// there (one-shot uploads still arrive in `tmp/`).
    pub fn open(
        data_dir: &Path,
        bucket: Option<ObjectBlobs>,
        store: Arc<dyn JobStore>,
        locks: Arc<dyn UploadLocks>,
    ) -> io::Result<Self> {
        let tmp_dir = data_dir.join("tmp");
        fs::create_dir_all(&tmp_dir)?;
        Ok(Self {
            tmp_dir,
            bucket,
            store,
            locks,
            partials: Mutex::default(),
        })
    }

    /// Where the bytes of `job`'s upload land while they arrive (one-shot uploads, and
    /// resumable ones without a bucket).
    pub fn temp_path(&self, job: JobId) -> PathBuf {
        self.tmp_dir.join(format!("{job}.part"))
    }

    /// The bucket resumable uploads are staged in, if they are.
    pub fn bucket(&self) -> Option<&ObjectBlobs> {
        self.bucket.as_ref()
    }

    /// Where a resumable upload is once all its bytes are in.
    pub fn staged_whole(&self, job: JobId) -> Staged {
        match &self.bucket {
            Some(bucket) => Staged::Object(bucket.staged_whole(job)),
            None => Staged::File(self.temp_path(job)),
        }
    }

    /// Removes everything staged for upload `job`: its temp file, and in the bucket its
    /// multipart upload and objects.
    pub async fn discard_upload(&self, job: JobId) -> io::Result<()> {
        self.discard(&self.temp_path(job))?;
        let Some(bucket) = &self.bucket else {
            return Ok(());
        };
        let record = self.store.upload(job).await.map_err(io::Error::other)?;
        let upload_id = record
            .and_then(|record| record.staged.parts)
            .and_then(|parts| parts.upload_id);
        if let Some(upload_id) = upload_id {
            // A completed upload has nothing to abort: its object goes below.
            if let Err(error) = bucket.abort_parts(job, &upload_id).await {
                tracing::info!(%error, job_id = %job, "aborting a staged multipart upload failed");
            }
        }
        bucket.remove_staged(job).await
    }

    /// After a resumable upload is stored as a blob: what is left of its staging (the last
    /// tail, which the final request read back) goes.
    pub async fn stored(&self, job: JobId) {
        if let Some(bucket) = &self.bucket {
            if let Err(error) = bucket.remove_staged(job).await {
                tracing::warn!(%error, job_id = %job, "removing a stored upload's staging failed");
            }
        }
    }

    /// After durable offset `offset` is recorded: the tail of the offset before it is not
    /// needed any more (a failure to remove it leaves it to the final clean-up).
    pub async fn superseded(&self, job: JobId, previous: u64) {
        if let Some(bucket) = &self.bucket {
            if let Err(error) = bucket.remove_tail(job, previous).await {
                tracing::warn!(%error, job_id = %job, "removing a superseded tail failed");
            }
        }
    }

    pub fn locks(&self) -> &dyn UploadLocks {
        self.locks.as_ref()
    }

    /// Bytes free for uploads on the file system that holds them.
    pub fn free_space(&self) -> io::Result<u64> {
        fs4::available_space(&self.tmp_dir)
    }

    /// Creates, writes and removes a file in `tmp/`: the readiness check that uploads can land.
    /// Blocking.
    pub fn probe_write(&self) -> io::Result<()> {
        use std::io::Write;
        let probe = self
            .tmp_dir
            .join(format!(".readyz-{}", uuid::Uuid::new_v4()));
        let written = fs::File::create_new(&probe).and_then(|mut file| file.write_all(b"ok"));
        let removed = fs::remove_file(&probe);
        written.and(removed)
    }

    /// Removes a temp file if it is there.
    pub fn discard(&self, temp: &Path) -> io::Result<()> {
        match fs::remove_file(temp) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Removes what is staged for `id`, logging (not returning) a failure to: the caller's
    /// outcome is decided already.
    pub async fn discard_quietly(&self, id: JobId) {
        if let Err(error) = self.discard_upload(id).await {
            tracing::warn!(%error, job_id = %id, "removing an upload's bytes failed");
        }
    }

    /// Everything staged for a resumable upload that is over (cancelled): its running hash,
    /// and its bytes once no request sends them (one that does is stopped by the cancel, and
    /// nothing it records for a finished job counts).
    pub async fn release(&self, id: JobId) {
        self.forget_partial(id);
        match self.locks.lock(id).await {
            Ok(_sending) => self.discard_quietly(id).await,
            Err(error) => {
                tracing::warn!(error = ?error, job_id = %id, "taking an upload's lock to remove its bytes failed")
            }
        }
    }

    /// The running hash kept for `id`, if it covers exactly `offset` bytes.
    pub fn partial(&self, id: JobId, offset: u64) -> Option<Partial> {
        let partials = self.partials.lock().expect("partials lock");
        partials
            .get(&id)
            .filter(|partial| partial.offset == offset)
            .cloned()
    }

    /// Keeps `partial` as `id`'s running hash; returns the one it replaces.
    pub fn keep_partial(&self, id: JobId, partial: Partial) -> Option<Partial> {
        self.partials
            .lock()
            .expect("partials lock")
            .insert(id, partial)
    }

    /// Puts back what `keep_partial` replaced (the write it went with failed).
    pub fn restore_partial(&self, id: JobId, previous: Option<Partial>) {
        let mut partials = self.partials.lock().expect("partials lock");
        match previous {
            Some(previous) => partials.insert(id, previous),
            None => partials.remove(&id),
        };
    }

    pub fn forget_partial(&self, id: JobId) {
        self.partials.lock().expect("partials lock").remove(&id);
    }

    /// Temp files with the job they belong to (if the name says) and their age. Blocking.
    pub fn list(&self) -> io::Result<Vec<(PathBuf, Option<JobId>, SystemTime)>> {
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.tmp_dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let job = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_suffix(".part"))
                .and_then(|id| JobId::parse(id).ok());
            files.push((entry.path(), job, entry.metadata()?.modified()?));
        }
        Ok(files)
    }

    /// Removes every temp file but those of `keep` (resumable uploads waiting for their client):
    /// at start-up no other belongs to a live upload. Blocking.
    pub fn clear_except(&self, keep: &[JobId]) -> io::Result<usize> {
        let kept: Vec<PathBuf> = keep.iter().map(|id| self.temp_path(*id)).collect();
        let mut removed = 0;
        for entry in fs::read_dir(&self.tmp_dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() && !kept.contains(&entry.path()) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_upload_has_one_sender_at_a_time() {
        let locks = LocalUploadLocks::default();
        let id = JobId::new();
        let held = locks.try_lock(id).await.unwrap().expect("free at first");
        assert!(locks.try_lock(id).await.unwrap().is_none());
        assert!(locks.try_lock(JobId::new()).await.unwrap().is_some());
        let waiter = tokio::spawn(async move {
            let _lock = locks.lock(id).await.unwrap();
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the waiter gets the lock once it is released")
            .unwrap();
    }
}
