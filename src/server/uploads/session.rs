//! One request's turn at a declared upload: it holds the upload's one-sender lock and its
//! runner registration, appends the request's bytes after the durable offset, records the new
//! offset (or decides what a request cut short keeps), and stores the file once all of it is
//! in and matches its declared digest.
use super::{durable_offset, too_large, StorageQuota, UploadError, Uploads, DISK_FULL};
use crate::{
    domain::{JobState, JobStatus},
    server::{
        jobs::AlreadyFinished,
        quotas::QuotaExceeded,
        receive::{self, Bounds, ChunkChecksum, Partial, ReceiveError, Received, Stopped},
        running::Registration,
        staging::{parts, UploadLock},
        store::UploadRecord,
    },
};
use bytes::Bytes;
use futures::Stream;

pub struct UploadSession<'a> {
    uploads: &'a Uploads,
    // Fields drop in order: the registration ends before the lock is released.
    /// `None` once the file is stored (the worker runs the job from then on).
    registration: Option<Registration>,
    _lock: UploadLock,
    job: JobStatus,
    record: UploadRecord,
    /// The owner's storage quota as it applies to this upload (`None`: no limit).
    quota: Option<StorageQuota>,
}

impl<'a> UploadSession<'a> {
    pub(super) fn new(
        uploads: &'a Uploads,
        lock: UploadLock,
        registration: Registration,
        job: JobStatus,
        record: UploadRecord,
        quota: Option<StorageQuota>,
    ) -> Self {
        Self {
            uploads,
            registration: Some(registration),
            _lock: lock,
            job,
            record,
            quota,
        }
    }

    pub fn job(&self) -> &JobStatus {
        &self.job
    }

    /// Bytes durable on the server.
    pub fn offset(&self) -> u64 {
        durable_offset(&self.job, self.record.offset)
    }

    /// Refuses bytes that would not start at the durable offset, or an upload that is not
    /// receiving any more.
    pub fn expect_offset(&self, sent: u64) -> Result<(), UploadError> {
        let durable = self.offset();
        if sent != durable || self.job.status != JobState::Receiving {
            return Err(UploadError::WrongOffset {
                id: self.job.job_id,
                sent,
                durable,
            });
        }
        Ok(())
    }

    /// States the length of an upload declared without one (it must cover what is stored and
    /// fit the server's limit); a length given again must be the same.
    pub async fn state_length(&mut self, length: u64) -> Result<(), UploadError> {
        match self.job.bytes_total {
            Some(known) if known != length => Err(UploadError::InvalidLength(format!(
                "the upload's length is already {known}"
            ))),
            Some(_) => Ok(()),
            None => {
                let max = self.uploads.limits.max_bytes;
                if length > max {
                    return Err(too_large(max));
                }
                if let Some(quota) = self.quota.as_ref().filter(|q| length > q.allows()) {
                    return Err(quota.exceeded());
                }
                let durable = self.offset();
                if length < durable {
                    return Err(UploadError::InvalidLength(format!(
                        "Upload-Length {length} is less than the {durable} bytes already stored"
                    )));
                }
                self.job.bytes_total = Some(length);
                Ok(self.uploads.jobs.update(&mut self.job).await?)
            }
        }
    }

    /// Appends this request's bytes after the durable offset and returns the new durable
    /// offset. Once all bytes are in, the file is checked against a declared digest, stored
    /// and queued.
    pub async fn append<S, E>(
        &mut self,
        body: S,
        checksum: Option<ChunkChecksum>,
    ) -> Result<u64, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let uploads = self.uploads;
        let jobs = &uploads.jobs;
        let job = self.job.clone();
        let id = job.job_id;
        let durable = self.offset();
        let Some(registration) = self.registration.take() else {
            return Err(UploadError::Complete(id));
        };
        // A deferred length allows up to the server's limit until the client states it.
        let length = job.bytes_total;
        let ceiling = length.unwrap_or(uploads.limits.max_bytes);
        // The storage quota bounds the bytes as they arrive (a deferred length would otherwise
        // let any amount in until the file is complete).
        let quota_binds = self
            .quota
            .as_ref()
            .is_some_and(|quota| quota.allows() < ceiling);
        let ceiling = self
            .quota
            .as_ref()
            .map_or(ceiling, |quota| ceiling.min(quota.allows()));
        let _slot = uploads.slot()?;
        // Its progress is carried live while the bytes arrive, and only then.
        let _live = jobs.watch_live(job.clone()).await?;
        let from = match uploads.partial(id, &self.record).await {
            Ok(from) => from,
            Err(error) => {
                // The stored part cannot be read back (lost or short): it cannot be continued.
                tracing::error!(error = ?error, job_id = %id, "an upload's stored bytes are unreadable");
                uploads
                    .fail_quietly(job, "the stored part of the upload was lost".to_owned())
                    .await;
                return Err(UploadError::Lost(id));
            }
        };
        let cancelled = registration.cancelled();
        let bounds = Bounds {
            limit: ceiling.saturating_sub(durable),
            idle: uploads.limits.idle,
            cancelled,
            checksum,
        };
        let progress = uploads.progress_reporter(&job, durable);
        let appended = match uploads.staging.bucket() {
            Some(bucket) => {
                let end = parts::FileEnd::AtLength(length);
                parts::append(bucket, id, body, from, end, bounds, progress).await
            }
            None => {
                let temp = uploads.staging.temp_path(id);
                receive::append(body, &temp, from, bounds, progress).await
            }
        };
        let partial = match appended {
            Ok(partial) => partial,
            Err(Stopped {
                error: ReceiveError::TooLarge { .. },
                ..
            }) if quota_binds => {
                // This request's bytes are dropped; what was durable stays, for after space
                // is freed.
                uploads.jobs.report_received(&job, durable);
                return Err(self
                    .quota
                    .as_ref()
                    .map_or_else(|| too_large(ceiling), StorageQuota::exceeded));
            }
            Err(Stopped { error, partial }) => {
                return Err(self.stopped(error, partial, durable).await);
            }
        };
        if cancelled.is_cancelled() {
            // Cancelled just as the bytes finished arriving: they do not count.
            return Err(self
                .stopped(ReceiveError::Cancelled, partial, durable)
                .await);
        }
        let new_offset = partial.offset;
        if length != Some(new_offset) {
            self.registration = Some(registration);
            return match uploads.record(&job, partial, durable).await {
                Ok(()) => Ok(new_offset),
                Err(error) => Err(self.not_recorded(error, durable).await),
            };
        }
        let digest = partial.digest();
        if let Some(expected) = self
            .record
            .expected_sha256
            .filter(|expected| *expected != digest)
        {
            let reason = format!(
                "the file's SHA-256 is {} but the upload declared {}",
                digest.to_hex(),
                expected.to_hex()
            );
            uploads.abandon(job, reason.clone()).await;
            return Err(UploadError::FileChecksum(reason));
        }
        let received = Received {
            digest,
            size: new_offset,
            staged: uploads.staging.staged_whole(id),
        };
        match jobs
            .finish_upload(
                job.clone(),
                received,
                registration,
                self.quota.as_ref().map(|quota| quota.limit),
            )
            .await
        {
            Ok(_) => {}
            Err(error) if error.is::<AlreadyFinished>() => return Err(UploadError::Cancelled(id)),
            Err(error) if error.is::<QuotaExceeded>() => {
                // The whole file is in but may not be kept: nothing of it stays.
                let refused = UploadError::from(error);
                uploads.abandon(job, refused.to_string()).await;
                return Err(refused);
            }
            Err(error) => return Err(error.into()),
        }
        uploads.staging.stored(id).await;
        tracing::info!(job_id = %id, "upload stored");
        Ok(new_offset)
    }

    /// Durable bytes that could not be recorded: a cancel came first (they are removed; the
    /// cancel removes them too, once this session lets go), or the store failed (they stay
    /// unrecorded, and the next request trims them). The live progress goes back to what is
    /// recorded.
    async fn not_recorded(&self, error: anyhow::Error, durable: u64) -> UploadError {
        let id = self.job.job_id;
        if error.is::<AlreadyFinished>() {
            self.uploads.staging.discard_quietly(id).await;
            return UploadError::Cancelled(id);
        }
        self.uploads.jobs.report_received(&self.job, durable);
        error.into()
    }

    /// A request that ended early. Bytes that arrived before a cut or a full disk are kept
    /// (and recorded); bytes beyond the length or failing their checksum are dropped (and the
    /// live progress goes back to the durable offset); a cancelled upload's bytes are removed;
    /// another storage failure fails the job.
    async fn stopped(&self, error: ReceiveError, partial: Partial, durable: u64) -> UploadError {
        let uploads = self.uploads;
        let job = &self.job;
        let id = job.job_id;
        match error {
            ReceiveError::Interrupted { .. } => {
                let kept = partial.offset;
                if let Err(error) = uploads.record(job, partial, durable).await {
                    return self.not_recorded(error, durable).await;
                }
                UploadError::Interrupted(format!(
                    "{error}; {kept} bytes are stored, continue from there"
                ))
            }
            ReceiveError::DiskFull(_) => {
                let kept = partial.offset;
                if kept > durable {
                    if let Err(error) = uploads.record(job, partial, durable).await {
                        return match self.not_recorded(error, durable).await {
                            cancelled @ UploadError::Cancelled(_) => cancelled,
                            _ => UploadError::DiskFull(DISK_FULL.to_owned()),
                        };
                    }
                } else {
                    uploads.jobs.report_received(job, durable);
                }
                UploadError::DiskFull(format!(
                    "the server's disk is full; {kept} bytes of upload {id} are stored, continue \
                     from there once space is freed"
                ))
            }
            ReceiveError::ChecksumMismatch => {
                uploads.jobs.report_received(job, durable);
                UploadError::ChunkChecksum(format!(
                    "the PATCH's bytes do not match its Upload-Checksum; they were discarded, \
                     send them again from offset {durable}"
                ))
            }
            ReceiveError::TooLarge { .. } => {
                uploads.jobs.report_received(job, durable);
                UploadError::TooLarge(format!(
                    "the PATCH goes beyond Upload-Length ({} bytes); its bytes were discarded",
                    job.bytes_total.unwrap_or(0)
                ))
            }
            ReceiveError::Cancelled => {
                // The cancel itself removes the bytes once this request lets go of the upload;
                // this second try runs beside the answer, which a slow bucket must not delay.
                let staging = uploads.staging.clone();
                tokio::spawn(async move { staging.discard_quietly(id).await });
                UploadError::Cancelled(id)
            }
            ReceiveError::Io(cause) => {
                uploads
                    .abandon(job.clone(), "storing the upload failed".to_owned())
                    .await;
                UploadError::Failed(anyhow::anyhow!("receiving upload {id}: {cause}"))
            }
        }
    }
}
