//! The blob-store contract: every scenario runs on `LocalBlobs` (a folder) and on
//! `ObjectBlobs` (a fresh bucket on a real S3-compatible server), so both stores mean the same
//! thing to the services above them.
use crate::{
    helpers::{random_bytes, sha256_hex},
    s3::TestBucket,
};
use bytes::Bytes;
use futures::StreamExt;
use ingest::{
    domain::{JobId, Sha256Digest},
    server::blobs::{object::PART_SIZE, BlobStore, LocalBlobs, ObjectBlobs, Staged},
};
use sha2::{Digest, Sha256};
use std::{
    io,
    path::PathBuf,
    time::{Duration, SystemTime},
};

/// A store under test, with a folder for the temp files it is handed.
struct Fixture {
    store: Box<dyn BlobStore>,
    dir: tempfile::TempDir,
    _bucket: Option<TestBucket>,
}

impl Fixture {
    async fn local() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobs::open(dir.path()).unwrap();
        Fixture {
            store: Box::new(store),
            dir,
            _bucket: None,
        }
    }

    async fn s3() -> Fixture {
        let bucket = TestBucket::create().await;
        let store = ObjectBlobs::connect(&bucket.settings("blobs"))
            .await
            .expect("the bucket answers");
        Fixture {
            store: Box::new(store),
            dir: tempfile::tempdir().unwrap(),
            _bucket: Some(bucket),
        }
    }

    /// A finished temp file holding `bytes`, and its digest.
    fn temp_with(&self, bytes: &[u8]) -> (PathBuf, Sha256Digest) {
        let path = self
            .dir
            .path()
            .join(format!("{:016x}.part", rand::random::<u64>()));
        std::fs::write(&path, bytes).unwrap();
        let digest = Sha256Digest::from_bytes(Sha256::digest(bytes).into());
        (path, digest)
    }

    async fn put(&self, bytes: &[u8]) -> Sha256Digest {
        let (temp, digest) = self.temp_with(bytes);
        self.store
            .put(&Staged::File(temp.clone()), &digest)
            .await
            .expect("put");
        assert!(!temp.exists(), "the temp file is gone after a put");
        digest
    }

    async fn read(&self, digest: &Sha256Digest, range: std::ops::Range<u64>) -> Vec<u8> {
        let mut stream = self.store.read(digest, range).await.expect("read");
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("a chunk"));
        }
        bytes
    }
}

/// Generates one test per scenario and store.
macro_rules! on_every_store {
    ($($scenario:ident),* $(,)?) => {
        mod local {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Fixture::local().await).await
            })*
        }
        mod s3 {
            $(#[tokio::test]
            async fn $scenario() {
                super::$scenario(super::Fixture::s3().await).await
            })*
        }
    };
}

on_every_store!(
    a_put_blob_is_stated_and_read_back_by_range,
    a_large_blob_reads_back_whole_and_across_a_part_boundary,
    identical_content_is_stored_once,
    a_deleted_blob_is_gone,
    a_missing_blob_is_absent_and_cannot_be_read,
    the_listing_names_every_blob_with_when_it_was_written,
    the_store_answers_its_probe,
);

async fn a_put_blob_is_stated_and_read_back_by_range(store: Fixture) {
    let before = SystemTime::now() - Duration::from_secs(2);
    let bytes = b"0123456789 the stored text".to_vec();
    let digest = store.put(&bytes).await;
    let info = store.store.stat(&digest).await.unwrap().expect("stored");
    assert_eq!(info.size, bytes.len() as u64);
    assert!(info.modified >= before, "modified {:?}", info.modified);
    assert!(store.store.exists(&digest).await.unwrap());
    let len = bytes.len() as u64;
    assert_eq!(store.read(&digest, 0..len).await, bytes);
    assert_eq!(store.read(&digest, 2..5).await, b"234");
    assert_eq!(
        store.read(&digest, len - 1..len).await,
        b"t",
        "the last byte"
    );
    assert!(store.read(&digest, 3..3).await.is_empty(), "an empty range");
}

async fn a_large_blob_reads_back_whole_and_across_a_part_boundary(store: Fixture) {
    // Two full parts and a short tail: above S3's 5 MiB minimum, so it goes up in parts.
    let bytes = random_bytes(2 * PART_SIZE + 123_457);
    let digest = store.put(&bytes).await;
    let len = bytes.len() as u64;
    assert_eq!(store.store.stat(&digest).await.unwrap().unwrap().size, len);
    let whole = store.read(&digest, 0..len).await;
    assert_eq!(whole.len(), bytes.len());
    assert_eq!(sha256_hex(&whole), digest.to_hex());
    let boundary = PART_SIZE as u64;
    let across = store.read(&digest, boundary - 1000..boundary + 1000).await;
    assert_eq!(across, bytes[PART_SIZE - 1000..PART_SIZE + 1000]);
    let tail = store.read(&digest, 2 * boundary - 5..len).await;
    assert_eq!(tail, bytes[2 * PART_SIZE - 5..]);
    assert_eq!(
        store.read(&digest, len - 1..len).await,
        [bytes[bytes.len() - 1]]
    );
}

async fn identical_content_is_stored_once(store: Fixture) {
    for bytes in [b"same bytes, twice".to_vec(), random_bytes(PART_SIZE + 10)] {
        let digest = store.put(&bytes).await;
        let first = store.store.stat(&digest).await.unwrap().unwrap();
        // S3 keeps times to the second: wait past one so a rewrite would show.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(store.put(&bytes).await, digest);
        let again = store.store.stat(&digest).await.unwrap().unwrap();
        assert_eq!(again.size, bytes.len() as u64);
        assert_eq!(
            again.modified, first.modified,
            "the stored blob was not written again"
        );
        assert_eq!(store.read(&digest, 0..bytes.len() as u64).await, bytes);
    }
    assert_eq!(store.store.list().await.unwrap().len(), 2);
}

async fn a_deleted_blob_is_gone(store: Fixture) {
    let kept = store.put(b"kept").await;
    let digest = store.put(b"deleted").await;
    store.store.delete(&digest).await.unwrap();
    assert!(!store.store.exists(&digest).await.unwrap());
    assert!(store.store.stat(&digest).await.unwrap().is_none());
    // Deleting what is not there is not an error (a retried sweep, say).
    store.store.delete(&digest).await.unwrap();
    assert!(store.store.exists(&kept).await.unwrap());
    let listed: Vec<_> = store.store.list().await.unwrap();
    assert_eq!(listed.iter().map(|(d, _)| *d).collect::<Vec<_>>(), [kept]);
}

async fn a_missing_blob_is_absent_and_cannot_be_read(store: Fixture) {
    let missing = Sha256Digest::from_bytes([9; 32]);
    assert!(store.store.stat(&missing).await.unwrap().is_none());
    assert!(!store.store.exists(&missing).await.unwrap());
    let read = match store.store.read(&missing, 0..4).await {
        Ok(mut stream) => stream.next().await.expect("an item").map(drop),
        Err(error) => Err(error),
    };
    let error = read.expect_err("a missing blob cannot be read");
    assert_eq!(error.kind(), io::ErrorKind::NotFound, "{error}");
    assert!(store.store.list().await.unwrap().is_empty());
}

async fn the_listing_names_every_blob_with_when_it_was_written(store: Fixture) {
    let before = SystemTime::now() - Duration::from_secs(2);
    let mut digests = Vec::new();
    for text in ["one", "two", "three"] {
        digests.push(store.put(text.as_bytes()).await);
    }
    let after = SystemTime::now() + Duration::from_secs(2);
    let mut listed = store.store.list().await.unwrap();
    listed.sort_by_key(|(digest, _)| digest.to_hex());
    digests.sort_by_key(|digest| digest.to_hex());
    assert_eq!(listed.iter().map(|(d, _)| *d).collect::<Vec<_>>(), digests);
    for (digest, modified) in listed {
        assert!(
            before <= modified && modified <= after,
            "{digest:?}: {modified:?}"
        );
        // S3 lists times to the millisecond but HEAD gives whole seconds.
        let info = store.store.stat(&digest).await.unwrap().unwrap();
        let apart = info
            .modified
            .max(modified)
            .duration_since(info.modified.min(modified));
        assert!(apart.unwrap() < Duration::from_secs(1), "{digest:?}");
    }
}

async fn the_store_answers_its_probe(store: Fixture) {
    store.store.probe().await.unwrap();
    // Only a folder on a disk has a free-space figure.
    let free = store.store.free_space().await.unwrap();
    assert_eq!(free.is_some(), store._bucket.is_none(), "{free:?}");
}

/// Resumable uploads staged in the bucket (S3 only: a folder stages nothing, and refuses an
/// object to store): parts and a tail under the staging prefix, completed into one object,
/// stored under the digest once, and nothing of the staging left.
#[tokio::test]
async fn a_staged_upload_is_stored_under_its_digest_once_and_leaves_no_staging() {
    let bucket = TestBucket::create().await;
    let store = ObjectBlobs::connect(&bucket.settings("blobs"))
        .await
        .expect("the bucket answers");
    let bytes = random_bytes(PART_SIZE + 1_000_001);
    let digest = Sha256Digest::from_bytes(Sha256::digest(&bytes).into());
    let staged_keys = async || -> Vec<String> {
        let keys = bucket.keys().await;
        keys.into_iter()
            .filter(|key| key.starts_with("blobs/staging/"))
            .collect()
    };

    // Once in parts, with a tail kept on the way; once whole (a file short of a part).
    let job = JobId::new();
    let upload_id = store.begin_parts(job).await.unwrap();
    let first = store
        .put_part(
            job,
            &upload_id,
            0,
            Bytes::copy_from_slice(&bytes[..PART_SIZE]),
        )
        .await
        .unwrap();
    let rest = Bytes::copy_from_slice(&bytes[PART_SIZE..]);
    store
        .put_tail(job, bytes.len() as u64, rest.clone())
        .await
        .unwrap();
    assert_eq!(
        store.read_tail(job, bytes.len() as u64).await.unwrap(),
        rest
    );
    let second = store.put_part(job, &upload_id, 1, rest).await.unwrap();
    let staged = store
        .complete_parts(job, &upload_id, vec![first, second])
        .await
        .unwrap();
    store.put(&Staged::Object(staged), &digest).await.unwrap();
    assert_eq!(
        staged_keys().await.len(),
        1,
        "the tail waits for its clean-up"
    );
    store.remove_staged(job).await.unwrap();
    assert_eq!(staged_keys().await, Vec::<String>::new());
    let stored = store.stat(&digest).await.unwrap().expect("stored");
    assert_eq!(stored.size, bytes.len() as u64);

    // The same content again: copied over the identical object (the same work as the first
    // time, so its timing tells nothing), still one object under the digest.
    let again = JobId::new();
    let whole = store
        .put_whole(again, Bytes::from(bytes.clone()))
        .await
        .unwrap();
    store.put(&Staged::Object(whole), &digest).await.unwrap();
    assert_eq!(staged_keys().await, Vec::<String>::new());
    let kept = store.stat(&digest).await.unwrap().unwrap();
    assert_eq!(kept.size, stored.size);
    assert_eq!(
        store.list().await.unwrap().len(),
        1,
        "one object per digest"
    );
    let mut read = Vec::new();
    let mut stream = store.read(&digest, 0..bytes.len() as u64).await.unwrap();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert!(read == bytes, "the stored bytes");

    let folder = tempfile::tempdir().unwrap();
    let local = LocalBlobs::open(folder.path()).unwrap();
    let refused = local
        .put(&Staged::Object(store.staged_whole(again)), &digest)
        .await;
    assert!(refused.is_err(), "a folder does not store bucket objects");
}
