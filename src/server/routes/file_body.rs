//! Streams one upload's bytes into its job, for both the one-shot multipart route and the
//! tus-style upload route: the free-disk floor, live progress, cancellation, and marking the
//! job failed (with its temp file gone) when the bytes do not all arrive.
use crate::{
    api::ErrorCode,
    domain::JobStatus,
    server::{
        error::ApiError,
        jobs::AlreadyFinished,
        receive::{receive, ReceiveError, Received},
        state::AppState,
    },
};
use bytes::Bytes;
use futures::Stream;
use std::{
    path::Path,
    time::{Duration, Instant},
};
use tokio::sync::OwnedSemaphorePermit;

/// Live progress is published at most this often per upload.
const PROGRESS_EVERY: Duration = Duration::from_millis(50);

/// Receives `body` (at most `limit` bytes) into `job`'s temp file. On any failure the job is
/// marked failed with the reason (unless it was cancelled, which already finished it) and the
/// error for the client comes back.
pub async fn receive_file<S, E>(
    state: &AppState,
    job: &JobStatus,
    body: S,
    limit: u64,
) -> Result<Received, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let temp = state.jobs.blobs().temp_path(job.job_id);
    let cancelled = state.jobs.cancellation(job.job_id);
    let received = receive(
        body,
        temp,
        limit,
        state.settings.upload_idle_timeout,
        &cancelled,
        progress_reporter(state, job, 0),
    )
    .await;
    let error = match received {
        Ok(received) => return Ok(received),
        Err(ReceiveError::Cancelled) => return Err(cancelled_meanwhile(job)),
        Err(error) => error,
    };
    let problem = match &error {
        ReceiveError::TooLarge { limit } => too_large(*limit),
        ReceiveError::Interrupted { .. }
        | ReceiveError::Cancelled
        | ReceiveError::ChecksumMismatch => {
            ApiError::bad_request(ErrorCode::UploadInterrupted, error.to_string())
        }
        // A one-shot upload cannot resume: its bytes are gone (`receive` removed them).
        ReceiveError::DiskFull(_) => disk_full(),
        ReceiveError::Io(_) => {
            ApiError::Internal(anyhow::anyhow!("receiving job {}: {error}", job.job_id))
        }
    };
    let reason = match &problem {
        ApiError::Internal(_) => "storing the upload failed".to_owned(),
        ApiError::InsufficientStorage(_) => {
            "storing the upload failed: the disk is full".to_owned()
        }
        _ => error.to_string(),
    };
    fail_quietly(state, job.clone(), reason).await;
    Err(problem)
}

/// Stores a one-shot upload's file and queues its job. If that fails the job fails too and its
/// bytes go (nobody can resume it), unless it was cancelled meanwhile (then it is over already).
pub async fn finish_one_shot(
    state: &AppState,
    job: JobStatus,
    received: Received,
) -> Result<JobStatus, ApiError> {
    let id = job.job_id;
    let temp = received.temp.clone();
    match state.jobs.finish_upload(job.clone(), received).await {
        Ok(job) => Ok(job),
        Err(error) if error.is::<AlreadyFinished>() => {
            discard_quietly(state, &temp);
            Err(finish_failed(error, id))
        }
        Err(error) => {
            let problem = finish_failed(error, id);
            let reason = match &problem {
                ApiError::InsufficientStorage(_) => "storing the upload failed: the disk is full",
                _ => "storing the upload failed",
            };
            abandon_upload(state, job, &temp, reason.to_owned()).await;
            Err(problem)
        }
    }
}

/// Storing a fully received file failed: 409 if the job was cancelled meanwhile, 507 if the disk
/// is full, else 500.
pub fn finish_failed(error: anyhow::Error, id: crate::domain::JobId) -> ApiError {
    if error.is::<AlreadyFinished>() {
        ApiError::Conflict(format!("job {id} was cancelled during the upload"))
    } else {
        ApiError::from(error)
    }
}

/// Refuses a new upload, or more bytes, while free disk is below `min_free_disk_bytes`: past
/// the floor an upload would likely fill the disk part-way (and leave nothing for the
/// database). Jobs without a file still go through.
pub fn check_free_disk(state: &AppState) -> Result<(), ApiError> {
    match state.jobs.blobs().free_space() {
        Ok(free) if free < state.settings.min_free_disk_bytes => Err(ApiError::InsufficientStorage(
            "free disk space on the server is below its floor; uploads are refused until space \
             is freed"
                .to_owned(),
        )),
        Ok(_) => Ok(()),
        // Unknown is not full: the write itself will tell.
        Err(error) => {
            tracing::warn!(%error, "cannot read free disk space");
            Ok(())
        }
    }
}

pub fn disk_full() -> ApiError {
    ApiError::InsufficientStorage("the server's disk is full; retry once space is freed".to_owned())
}

/// Publishes an upload's live byte count (`base` bytes were already there): the first chunk at
/// once, later ones at most every `PROGRESS_EVERY`.
pub fn progress_reporter<'a>(
    state: &'a AppState,
    job: &'a JobStatus,
    base: u64,
) -> impl FnMut(u64) + 'a {
    let mut last_report: Option<Instant> = None;
    move |bytes| {
        if last_report.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY) {
            last_report = Some(Instant::now());
            state.jobs.report_received(job, base + bytes);
        }
    }
}

/// Records a job as failed, logging (not returning) a failure to do so: the client's answer is
/// already decided.
pub async fn fail_quietly(state: &AppState, job: JobStatus, reason: String) {
    if let Err(error) = state.jobs.fail(job, reason).await {
        tracing::error!(error = ?error, "recording a failed upload failed");
    }
}

/// Removes an upload's temp file, logging (not returning) a failure to.
pub fn discard_quietly(state: &AppState, temp: &Path) {
    if let Err(error) = state.jobs.blobs().discard_temp(temp) {
        tracing::warn!(%error, path = %temp.display(), "removing an upload's bytes failed");
    }
}

/// An upload that cannot go on: its bytes are removed and its job recorded as failed.
pub async fn abandon_upload(state: &AppState, job: JobStatus, temp: &Path, reason: String) {
    discard_quietly(state, temp);
    fail_quietly(state, job, reason).await;
}

/// One of the server's upload slots, or 503 with Retry-After when all are taken.
pub fn upload_slot(state: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    state
        .upload_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy {
            message: "the server is receiving as many uploads as it takes; retry shortly"
                .to_owned(),
            retry_after: 1,
        })
}

pub fn cancelled_meanwhile(job: &JobStatus) -> ApiError {
    ApiError::Conflict(format!(
        "job {} was cancelled during the upload",
        job.job_id
    ))
}

pub fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!("the upload exceeds the limit of {limit} bytes"))
}
