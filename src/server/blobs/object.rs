//! Blobs in S3-compatible object storage (`INGEST_BLOB_STORE=s3://bucket[/prefix]`), through
//! the `object_store` crate: keys `<prefix>/ab/abcd…` like the local layout, large files put
//! with multipart uploads in bounded memory, ranges read with ranged GETs. Resumable uploads
//! can be staged in the same bucket, under `<prefix>/staging/<job id>/` (a multipart upload
//! of the whole file, and the tail short of a part): the operations on them are here, the
//! rules for them in `staging`.
use super::{BlobInfo, BlobStore, BlobStream, Staged};
use crate::domain::{JobId, Sha256Digest};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{
    aws::{AmazonS3, AmazonS3Builder},
    multipart::{MultipartStore, PartId},
    path::Path as Key,
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutPayload,
    RetryConfig, WriteMultipart,
};
use secrecy::{ExposeSecret, SecretString};
use std::{fmt, io, ops::Range, sync::Arc, time::Duration, time::SystemTime};
use tokio::io::AsyncReadExt;

/// Size of each multipart part: above S3's 5 MiB minimum for every part but the last, and
/// small enough that a put holds little memory. Files below it go up in one PUT.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// S3 allows at most this many parts, so files above 78 GiB get proportionally larger parts.
const MAX_PARTS: u64 = 10_000;
/// Parts uploaded at once beyond the one being filled: a put holds at most
/// `(PARTS_IN_FLIGHT + 2) × part size` (24 MiB with 8 MiB parts) plus the read buffer.
const PARTS_IN_FLIGHT: usize = 1;
const READ_BUFFER: usize = 1024 * 1024;
/// The largest object S3 copies in one request (CopyObject); larger staged uploads are read
/// and written again.
const MAX_COPY: u64 = 5 * 1024 * 1024 * 1024;
/// How long start-up and `/readyz` wait for the store before calling it unreachable (the
/// client's own retries would otherwise go on for minutes).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// `s3://bucket[/prefix]`, parsed: where the blobs go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    prefix: String,
}

impl S3Location {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const SHAPE: &str = "must be s3://bucket[/prefix]";
        let rest = text.strip_prefix("s3://").ok_or(SHAPE)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        // S3's bucket naming rules, which also keep user info, ports and queries out.
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err("must be s3://bucket[/prefix] with a valid bucket name");
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            // object_store's own rules: no empty, `.` or `..` segments, no control characters.
            let parsed = Key::parse(prefix).map_err(|_| "the prefix is not a valid object path")?;
            if parsed.as_ref() != prefix || prefix.contains(['?', '#']) {
                return Err("the prefix is not a valid object path");
            }
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            prefix => write!(f, "s3://{}/{prefix}", self.bucket),
        }
    }
}

/// A non-AWS endpoint (`http://127.0.0.1:9000`, `https://s3.example.net`). User info is
/// refused: credentials come from the `AWS_*` variables only, so they never sit in a URL
/// that is logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Endpoint(String);

impl S3Endpoint {
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        const SHAPE: &str = "must be http(s)://host[:port]";
        let uri: axum::http::Uri = text.parse().map_err(|_| SHAPE)?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(SHAPE);
        };
        if !matches!(scheme, "http" | "https") || authority.host().is_empty() {
            return Err(SHAPE);
        }
        if authority.as_str().contains('@') {
            return Err("must not carry credentials (use the AWS_* variables)");
        }
        Ok(Self(text.trim_end_matches('/').to_owned()))
    }

    fn is_plain_http(&self) -> bool {
        self.0.starts_with("http://")
    }
}

impl fmt::Display for S3Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Credentials given in settings rather than read from the `AWS_*` variables (the tests use
/// this so they need not change the process environment). The secret never shows in `Debug`.
#[derive(Clone, Debug)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub region: String,
}

/// Everything needed to reach the bucket.
#[derive(Clone, Debug)]
pub struct S3Settings {
    pub location: S3Location,
    /// `None`: AWS itself (or `AWS_ENDPOINT`).
    pub endpoint: Option<S3Endpoint>,
    /// `None`: credentials and region from the standard `AWS_*` variables.
    pub credentials: Option<S3Credentials>,
}

/// The blob store did not answer at start-up: a setting to fix, so the server refuses to start
/// (exit 2). Names the store and endpoint, never credentials.
#[derive(Debug, thiserror::Error)]
#[error("blob store {store} is unavailable: {reason}")]
pub struct BlobStoreUnavailable {
    pub store: String,
    pub reason: String,
}

/// Blobs as objects in a bucket.
#[derive(Clone, Debug)]
pub struct ObjectBlobs {
    store: Arc<AmazonS3>,
    prefix: Key,
}

impl ObjectBlobs {
    /// Builds the client and checks that the bucket answers (a listing of the prefix).
    pub async fn connect(settings: &S3Settings) -> Result<Self, BlobStoreUnavailable> {
        let unavailable = |reason: String| BlobStoreUnavailable {
            store: match &settings.endpoint {
                Some(endpoint) => format!("{} at {endpoint}", settings.location),
                None => settings.location.to_string(),
            },
            reason,
        };
        let blobs = Self::build(settings).map_err(|error| unavailable(one_line(&error)))?;
        blobs
            .probe()
            .await
            .map_err(|error| unavailable(one_line(&error)))?;
        Ok(blobs)
    }

    fn build(settings: &S3Settings) -> object_store::Result<Self> {
        // reqwest is built without a bundled TLS provider (see Cargo.toml): use ring, as the
        // listener does. Installing twice is refused harmlessly.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&settings.location.bucket)
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    // A part of 8 MiB needs ~280 KB/s to make it.
                    .with_timeout(Duration::from_secs(30)),
            )
            .with_retry(RetryConfig {
                max_retries: 5,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            });
        if let Some(endpoint) = &settings.endpoint {
            builder = builder
                .with_endpoint(&endpoint.0)
                .with_allow_http(endpoint.is_plain_http());
        }
        if let Some(credentials) = &settings.credentials {
            builder = builder
                .with_access_key_id(&credentials.access_key_id)
                .with_secret_access_key(credentials.secret_access_key.expose_secret())
                .with_region(&credentials.region);
        }
        let prefix = Key::parse(&settings.location.prefix)?;
        Ok(Self {
            store: Arc::new(builder.build()?),
            prefix,
        })
    }

    fn key(&self, digest: &Sha256Digest) -> Key {
        let hex = digest.to_hex();
        self.prefix.clone().join(&hex[..2]).join(hex)
    }

    /// Uploads `temp` in parts, reading it a buffer at a time; completes the upload only if
    /// no object has meanwhile been stored under `key`.
    async fn put_in_parts(
        &self,
        key: &Key,
        mut file: tokio::fs::File,
        size: u64,
    ) -> io::Result<()> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS) as usize);
        let upload = self.store.put_multipart(key).await.map_err(to_io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
        let mut buffer = vec![0; READ_BUFFER];
        let sent: io::Result<()> = async {
            loop {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(to_io)?;
                let read = file.read(&mut buffer).await?;
                if read == 0 {
                    return Ok(());
                }
                writer.write(&buffer[..read]);
            }
        }
        .await;
        // Content-addressed: an object already under this key has these very bytes. Its
        // upload is still sent in full and then dropped, so the call takes as long whether or
        // not another account stored the file first (see the README).
        let stored_already = match sent {
            Ok(()) => self.head(key).await.map(|found| found.is_some()),
            Err(error) => Err(error),
        };
        match stored_already {
            Ok(false) => writer.finish().await.map(drop).map_err(to_io),
            Ok(true) => writer.abort().await.map_err(to_io),
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, key = %key, "aborting a failed multipart upload failed");
                }
                Err(error)
            }
        }
    }

    async fn head(&self, key: &Key) -> io::Result<Option<BlobInfo>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(BlobInfo {
                size: meta.size,
                modified: SystemTime::from(meta.last_modified),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(to_io(error)),
        }
    }
}

/// A staged upload's object in the bucket, complete and ready to be stored under its digest.
#[derive(Clone, Debug)]
pub struct StagingKey(Key);

/// Staging resumable uploads in the bucket. Each call is one request to the bucket; none keeps
/// state here (the uploads table keeps the multipart id and parts).
impl ObjectBlobs {
    /// `<prefix>/staging/<job>`: everything staged for one upload is under it.
    fn staging_dir(&self, job: JobId) -> Key {
        self.prefix.clone().join("staging").join(job.to_string())
    }

    /// The staged whole file: the multipart upload's object, or a file short of a part.
    pub fn staged_whole(&self, job: JobId) -> StagingKey {
        StagingKey(self.whole_key(job))
    }

    fn whole_key(&self, job: JobId) -> Key {
        self.staging_dir(job).join("whole")
    }

    /// The durable bytes past the parts when `offset` bytes are durable: named by the offset,
    /// so writing the next one never touches the one the uploads table still points at.
    fn tail_key(&self, job: JobId, offset: u64) -> Key {
        self.staging_dir(job).join(format!("tail-{offset}"))
    }

    /// Starts the multipart upload a staged upload's parts go to; returns its id.
    pub async fn begin_parts(&self, job: JobId) -> io::Result<String> {
        self.store
            .create_multipart(&self.whole_key(job))
            .await
            .map_err(to_io)
    }

    /// Uploads part `index` (from 0) of a staged upload; returns its ETag. Sending the same
    /// index again replaces the part.
    pub async fn put_part(
        &self,
        job: JobId,
        upload_id: &str,
        index: usize,
        bytes: Bytes,
    ) -> io::Result<String> {
        let upload_id = upload_id.to_owned();
        self.store
            .put_part(&self.whole_key(job), &upload_id, index, bytes.into())
            .await
            .map(|part| part.content_id)
            .map_err(to_io)
    }

    /// Completes a staged upload's multipart upload from `etags` (in order).
    pub async fn complete_parts(
        &self,
        job: JobId,
        upload_id: &str,
        etags: Vec<String>,
    ) -> io::Result<StagingKey> {
        let key = self.whole_key(job);
        let parts = etags
            .into_iter()
            .map(|content_id| PartId { content_id })
            .collect();
        self.store
            .complete_multipart(&key, &upload_id.to_owned(), parts)
            .await
            .map_err(to_io)?;
        Ok(StagingKey(key))
    }

    /// Drops a staged upload's multipart upload and its parts.
    pub async fn abort_parts(&self, job: JobId, upload_id: &str) -> io::Result<()> {
        match self
            .store
            .abort_multipart(&self.whole_key(job), &upload_id.to_owned())
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(to_io(error)),
        }
    }

    /// Stages a whole file shorter than a part in one PUT.
    pub async fn put_whole(&self, job: JobId, bytes: Bytes) -> io::Result<StagingKey> {
        let key = self.whole_key(job);
        self.store
            .put(&key, PutPayload::from(bytes))
            .await
            .map_err(to_io)?;
        Ok(StagingKey(key))
    }

    /// Stores the tail of a staged upload with `offset` bytes durable.
    pub async fn put_tail(&self, job: JobId, offset: u64, bytes: Bytes) -> io::Result<()> {
        self.store
            .put(&self.tail_key(job, offset), PutPayload::from(bytes))
            .await
            .map(drop)
            .map_err(to_io)
    }

    /// The tail of a staged upload with `offset` bytes durable.
    pub async fn read_tail(&self, job: JobId, offset: u64) -> io::Result<Bytes> {
        self.store
            .get(&self.tail_key(job, offset))
            .await
            .map_err(to_io)?
            .bytes()
            .await
            .map_err(to_io)
    }

    /// Removes the tail of a staged upload with `offset` bytes durable, if it is there.
    pub async fn remove_tail(&self, job: JobId, offset: u64) -> io::Result<()> {
        match self.store.delete(&self.tail_key(job, offset)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(to_io(error)),
        }
    }

    /// Removes every object staged for `job` (not its multipart upload: `abort_parts`).
    pub async fn remove_staged(&self, job: JobId) -> io::Result<()> {
        let dir = self.staging_dir(job);
        let mut listing = self.store.list(Some(&dir));
        while let Some(meta) = listing.try_next().await.map_err(to_io)? {
            match self.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(to_io(error)),
            }
        }
        Ok(())
    }

    /// Jobs with objects staged in the bucket, with when the newest was written (to find
    /// those a crash left behind).
    pub async fn staged_jobs(&self) -> io::Result<Vec<(JobId, SystemTime)>> {
        let dir = self.prefix.clone().join("staging");
        let mut listing = self.store.list(Some(&dir));
        let mut jobs: std::collections::HashMap<JobId, SystemTime> = Default::default();
        while let Some(meta) = listing.try_next().await.map_err(to_io)? {
            let job = meta
                .location
                .prefix_match(&dir)
                .and_then(|mut parts| parts.next())
                .and_then(|part| JobId::parse(part.as_ref()).ok());
            if let Some(job) = job {
                let modified = SystemTime::from(meta.last_modified);
                let newest = jobs.entry(job).or_insert(modified);
                *newest = (*newest).max(modified);
            }
        }
        Ok(jobs.into_iter().collect())
    }

    /// Stores a staged object under `digest` (a server-side copy, unless the digest is stored
    /// already: identical content is stored once), then removes it.
    async fn put_staged(&self, staged: &StagingKey, digest: &Sha256Digest) -> io::Result<()> {
        let key = self.key(digest);
        // Copied even when the digest is stored already (the same bytes replace the same
        // bytes): skipping the copy would make a duplicate finish sooner, and that timing would
        // tell a member that some other account stored this file.
        let size = self.head(&staged.0).await?.map_or(0, |info| info.size);
        if size <= MAX_COPY {
            self.store.copy(&staged.0, &key).await.map_err(to_io)?;
        } else {
            self.copy_through(&staged.0, &key).await?;
        }
        match self.store.delete(&staged.0).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(to_io(error)),
        }
    }
}

impl ObjectBlobs {
    /// Copies an object too large for one server-side copy by reading it and writing it again
    /// in parts (bounded memory, as `put_in_parts`).
    async fn copy_through(&self, from: &Key, to: &Key) -> io::Result<()> {
        let mut source = self.store.get(from).await.map_err(to_io)?.into_stream();
        let upload = self.store.put_multipart(to).await.map_err(to_io)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let copied: io::Result<()> = async {
            while let Some(bytes) = source.try_next().await.map_err(to_io)? {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(to_io)?;
                writer.write(&bytes);
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => writer.finish().await.map(drop).map_err(to_io),
            Err(error) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(error = %abort, key = %to, "aborting a failed copy failed");
                }
                Err(error)
            }
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    #[tracing::instrument(skip(self, staged), fields(digest = %digest.to_hex()))]
    async fn put(&self, staged: &Staged, digest: &Sha256Digest) -> io::Result<()> {
        let temp = match staged {
            Staged::File(temp) => temp,
            Staged::Object(key) => return self.put_staged(key, digest).await,
        };
        let key = self.key(digest);
        let mut file = tokio::fs::File::open(temp).await?;
        let size = file.metadata().await?.len();
        if size < PART_SIZE as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).await?;
            // A conditional create: S3 keeps the object already there (same bytes, same key)
            // and answers 412 after receiving the body, so both cases take the same time.
            match self
                .store
                .put_opts(&key, PutPayload::from(bytes), PutMode::Create.into())
                .await
            {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
                Err(error) => return Err(to_io(error)),
            }
        } else {
            self.put_in_parts(&key, file, size).await?;
        }
        tokio::fs::remove_file(temp).await
    }

    async fn stat(&self, digest: &Sha256Digest) -> io::Result<Option<BlobInfo>> {
        self.head(&self.key(digest)).await
    }

    async fn read(&self, digest: &Sha256Digest, range: Range<u64>) -> io::Result<BlobStream> {
        // S3 refuses an empty range; there is nothing to fetch anyway.
        if range.is_empty() {
            return Ok(futures::stream::empty().boxed());
        }
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(range)));
        let found = self
            .store
            .get_opts(&self.key(digest), options)
            .await
            .map_err(to_io)?;
        Ok(found.into_stream().map_err(to_io).boxed())
    }

    async fn delete(&self, digest: &Sha256Digest) -> io::Result<()> {
        match self.store.delete(&self.key(digest)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(to_io(error)),
        }
    }

    async fn list(&self) -> io::Result<Vec<(Sha256Digest, SystemTime)>> {
        let mut listing = self.store.list(Some(&self.prefix));
        let mut blobs = Vec::new();
        while let Some(meta) = listing.try_next().await.map_err(to_io)? {
            // Anything not named by a digest was not put there by this store.
            if let Some(digest) = meta
                .location
                .filename()
                .and_then(|name| Sha256Digest::parse(name).ok())
            {
                if meta.location == self.key(&digest) {
                    blobs.push((digest, SystemTime::from(meta.last_modified)));
                }
            }
        }
        Ok(blobs)
    }

    async fn free_space(&self) -> io::Result<Option<u64>> {
        Ok(None)
    }

    async fn probe(&self) -> io::Result<()> {
        let listing = self.store.list_with_delimiter(Some(&self.prefix));
        match tokio::time::timeout(PROBE_TIMEOUT, listing).await {
            Ok(listed) => listed.map(drop).map_err(to_io),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
            )),
        }
    }
}

fn to_io(error: object_store::Error) -> io::Error {
    match error {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, error),
        error => io::Error::other(error),
    }
}

/// The error and its causes on one line (the client's errors span several, and some repeat
/// their cause in their own text).
fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_parsed_and_bad_ones_refused() {
        let plain = S3Location::parse("s3://ingest-blobs").unwrap();
        assert_eq!(
            (plain.bucket(), plain.prefix.as_str()),
            ("ingest-blobs", "")
        );
        let nested = S3Location::parse("s3://ingest.blobs/node/one/").unwrap();
        assert_eq!(nested.prefix, "node/one");
        assert_eq!(nested.to_string(), "s3://ingest.blobs/node/one");
        for bad in [
            "ingest-blobs",
            "https://ingest-blobs",
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://key:secret@bucket",
            "s3://bucket:9000",
            "s3://bucket/a//b",
            "s3://bucket/../up",
            "s3://-bucket",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_take_http_or_https_and_no_credentials() {
        assert!(S3Endpoint::parse("http://127.0.0.1:9000")
            .unwrap()
            .is_plain_http());
        assert!(!S3Endpoint::parse("https://s3.example.net/")
            .unwrap()
            .is_plain_http());
        for bad in ["127.0.0.1:9000", "ftp://host", "http://key:secret@host"] {
            let error = S3Endpoint::parse(bad).unwrap_err();
            assert!(!error.contains("secret"), "{bad}: {error}");
        }
    }
}
