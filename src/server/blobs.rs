//! Content-addressed file storage under the data dir: `tmp/` for uploads in flight (named by
//! job id, never by the client's filename) and `blobs/ab/abcd…` keyed by SHA-256.
use crate::domain::{JobId, Sha256Digest};
use std::{
    fs, io,
    path::{Path, PathBuf},
    time::SystemTime,
};

#[derive(Clone, Debug)]
pub struct BlobStore {
    tmp_dir: PathBuf,
    blob_dir: PathBuf,
}

impl BlobStore {
    /// Creates `tmp/` and `blobs/` under `data_dir` if needed.
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let store = Self {
            tmp_dir: data_dir.join("tmp"),
            blob_dir: data_dir.join("blobs"),
        };
        fs::create_dir_all(&store.tmp_dir)?;
        fs::create_dir_all(&store.blob_dir)?;
        Ok(store)
    }

    /// Where the bytes of `job`'s upload land while they arrive.
    pub fn temp_path(&self, job: JobId) -> PathBuf {
        self.tmp_dir.join(format!("{job}.part"))
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp_dir
    }

    /// Bytes free for uploads on the file system that holds them.
    pub fn free_space(&self) -> io::Result<u64> {
        fs4::available_space(&self.tmp_dir)
    }

    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.blob_dir.join(&hex[..2]).join(hex)
    }

    /// Moves a finished, fsync'd temp file to its content address and makes the rename durable.
    /// Identical content is stored once: if the blob exists, the temp file is dropped.
    /// Blocking: call from a blocking thread.
    pub fn commit(&self, temp: &Path, digest: &Sha256Digest) -> io::Result<PathBuf> {
        let target = self.blob_path(digest);
        let shard = target.parent().expect("a blob path has a shard directory");
        if target.exists() {
            fs::remove_file(temp)?;
            return Ok(target);
        }
        fs::create_dir_all(shard)?;
        fs::rename(temp, &target)?;
        sync_dir(shard)?;
        sync_dir(&self.blob_dir)?;
        Ok(target)
    }

    /// Removes a stored blob if it is there. Blocking. Callers make sure no job references it.
    pub fn remove_blob(&self, digest: &Sha256Digest) -> io::Result<()> {
        match fs::remove_file(self.blob_path(digest)) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Removes a temp file if it is there.
    pub fn discard_temp(&self, temp: &Path) -> io::Result<()> {
        match fs::remove_file(temp) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Every stored blob's digest with its last modification time. Blocking.
    pub fn list_blobs(&self) -> io::Result<Vec<(Sha256Digest, SystemTime)>> {
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

    /// Temp files with the job they belong to (if the name says) and their age. Blocking.
    pub fn list_temp(&self) -> io::Result<Vec<(PathBuf, Option<JobId>, SystemTime)>> {
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
    /// at start-up no other belongs to a live upload.
    pub fn clear_temp(&self, keep: &[JobId]) -> io::Result<usize> {
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

/// fsync on a directory makes a rename or a new entry in it durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_content_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let digest = Sha256Digest::from_bytes([7; 32]);
        for job in [JobId::new(), JobId::new()] {
            let temp = store.temp_path(job);
            fs::write(&temp, b"same").unwrap();
            let stored = store.commit(&temp, &digest).unwrap();
            assert_eq!(fs::read(stored).unwrap(), b"same");
            assert!(!temp.exists());
        }
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        let shard = store.blob_path(&digest).parent().unwrap().to_owned();
        assert_eq!(fs::read_dir(shard).unwrap().count(), 1);
    }
}
