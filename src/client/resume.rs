//! What an interrupted upload needs to be continued by running the same command again: for
//! each file (by server and canonical path), its size, modification time and SHA-256 when the
//! upload began, and the upload's URL. Kept as one small JSON file per upload in the user's
//! cache directory (`$XDG_CACHE_HOME/ingest/uploads/`), and forgotten once the upload is in.
use crate::domain::{JobId, Sha256Digest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// A file as it was when its upload began.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileIdentity {
    pub size: u64,
    /// Nanoseconds since the epoch (0 where the platform gives none).
    pub modified_ns: u128,
    pub sha256: Sha256Digest,
}

/// An upload begun and not yet known to be complete.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Unfinished {
    pub server: String,
    pub path: PathBuf,
    pub file: FileIdentity,
    pub job_id: JobId,
}

/// The records of one user, in one directory.
pub struct ResumeRecords {
    dir: Option<PathBuf>,
}

impl ResumeRecords {
    /// The user's cache directory; without one, nothing is remembered (and the client says so).
    pub fn in_cache_dir() -> Self {
        Self {
            dir: dirs::cache_dir().map(|dir| dir.join("ingest").join("uploads")),
        }
    }

    pub fn is_available(&self) -> bool {
        self.dir.is_some()
    }

    /// The upload begun for this file on this server, if one is remembered.
    pub fn find(&self, server: &str, path: &Path) -> Option<Unfinished> {
        let file = self.file_for(server, path)?;
        let text = std::fs::read(&file).ok()?;
        let record: Unfinished = serde_json::from_slice(&text).ok()?;
        // The name is a digest of these; anything else is someone else's file.
        (record.server == server && record.path == path).then_some(record)
    }

    /// Remembers an upload; written to a temporary file and renamed, so a crash leaves the old
    /// record or the new one, never half of one.
    pub fn remember(&self, record: &Unfinished) -> std::io::Result<()> {
        let Some(file) = self.file_for(&record.server, &record.path) else {
            return Ok(());
        };
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = file.with_extension("json.part");
        let mut out = std::fs::File::create(&partial)?;
        out.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
        out.sync_all()?;
        std::fs::rename(&partial, &file)
    }

    pub fn forget(&self, server: &str, path: &Path) {
        if let Some(file) = self.file_for(server, path) {
            let _ = std::fs::remove_file(file);
        }
    }

    /// One file per server and path, named by their digest (a path is never a file name here).
    fn file_for(&self, server: &str, path: &Path) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut hasher = Sha256::new();
        hasher.update(server.as_bytes());
        hasher.update([0]);
        hasher.update(path.as_os_str().as_encoded_bytes());
        Some(dir.join(format!("{}.json", hex::encode(hasher.finalize()))))
    }
}
