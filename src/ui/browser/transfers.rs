//! Moving queued files through their phases in the browser: taking slots, declaring or
//! resuming uploads, pausing (dropping the transfer; the server keeps its bytes), retrying,
//! cancelling so that the card always ends in a final state, and following each job live.
use super::{
    create_upload, fetch_status, remember, resumable, retrying, retrying_if, server_offset,
    FileUpload, Follower, UploadSignals,
};
use crate::{
    api::{cancel_job, CallError},
    domain::JobState,
    ui::queue::{CardAction, Phase, Queue, QueuedFile},
};
use leptos::prelude::*;

/// What runs for one file: its transfer (while sending) and its job's live updates.
#[derive(Default)]
pub struct Running {
    upload: Option<FileUpload>,
    follower: Option<Follower>,
}

fn with_running(file: &QueuedFile, change: impl FnOnce(&mut Running)) {
    file.running
        .update_value(|running| change(running.get_or_insert_with(Running::default)));
}

/// Stops the transfer (if any): the bytes that arrived stay on the server.
fn stop_upload(file: &QueuedFile) {
    with_running(file, |running| running.upload = None);
}

/// Stops following the job (a final state needs no more updates).
fn stop_following(file: &QueuedFile) {
    with_running(file, |running| running.follower = None);
}

/// Starts waiting files, oldest first, while fewer than `parallel` hold a slot.
pub fn pump(queue: Queue) {
    let files = queue.files.get_untracked();
    let parallel = queue.parallel.get_untracked().max(1) as usize;
    let busy = files
        .iter()
        .filter(|f| f.phase.get_untracked().holds_slot())
        .count();
    let free = parallel.saturating_sub(busy);
    for file in files
        .iter()
        .filter(|f| f.phase.get_untracked() == Phase::Waiting)
        .take(free)
    {
        start(queue, file.clone());
    }
}

/// Takes a slot for `file`: resumes its job from the server's offset, or declares a new one.
fn start(queue: Queue, file: QueuedFile) {
    file.phase.set(Phase::Starting);
    file.problem.set(None);
    leptos::task::spawn_local(async move {
        let outcome = job_and_offset(&file).await;
        if file.phase.get_untracked() != Phase::Starting {
            // Cancelled (or removed) while the job was being declared: finish the cancel now.
            let cancelling = file.phase.get_untracked() == Phase::Cancelling;
            match outcome {
                Ok((id, _)) => {
                    file.job.set(Some(id));
                    if cancelling {
                        cancel_on_server(queue, file);
                    }
                }
                Err(_) if cancelling => file.phase.set(Phase::Cancelled),
                Err(_) => {}
            }
            return;
        }
        match outcome {
            Ok((id, offset)) => {
                file.job.set(Some(id));
                follow(&file);
                hash_whole_file(&file);
                if offset >= file.size && file.size > 0 {
                    file.finished.set(true);
                    file.phase.set(Phase::Sent);
                    queue.pump();
                    return;
                }
                file.resumed_at.set((offset > 0).then_some(offset));
                file.meter.update_value(|meter| meter.reset());
                file.phase.set(Phase::Sending);
                let signals = UploadSignals {
                    sent: file.sent,
                    failed: file.problem,
                    finished: file.finished,
                };
                let upload = FileUpload::send(id, &file.file, offset, signals);
                with_running(&file, |running| running.upload = Some(upload));
            }
            Err(error) => {
                file.problem.set(Some(error.message));
                file.phase.set(Phase::Failed);
                queue.pump();
            }
        }
    });
}

/// The job to send `file` as and where to go on from: its own job (after a pause or a
/// failure), this browser's unfinished upload of the same file (after a reload), or a new one.
async fn job_and_offset(file: &QueuedFile) -> Result<(crate::domain::JobId, u64), CallError> {
    if let Some(id) = file.job.get_untracked() {
        let server_failed = file.status.with_untracked(|job| {
            job.as_ref()
                .is_some_and(|job| job.status == JobState::Failed)
        });
        if !server_failed {
            match retrying(|| server_offset(id)).await {
                Ok(offset) => return Ok((id, offset)),
                // The job finished or is gone: a retry starts a new one.
                Err(error) if matches!(error.status, 404 | 409 | 410) => {}
                Err(error) => return Err(error),
            }
        }
        file.job.set(None);
        file.status.set(None);
        stop_following(file);
    }
    if let Some(found) = resumable(&file.file, file.resumes).await {
        return Ok(found);
    }
    // Retried only when refused before anything was created.
    let refused_early = |error: &CallError| matches!(error.status, 429 | 503);
    let id = retrying_if(refused_early, || create_upload(&file.file, &file.metadata)).await?;
    remember(&file.file, Some(id));
    Ok((id, 0))
}

/// Computes the whole file's SHA-256 in the worker, alongside the upload, once per file: the
/// card compares it with the server's when the job completes.
fn hash_whole_file(file: &QueuedFile) {
    if file.local_digest.with_untracked(Option::is_some) {
        return;
    }
    let (local, source) = (file.local_digest, file.file.clone());
    leptos::task::spawn_local(async move {
        let outcome = super::hashing::sha256_of(&source, 0.0, source.size()).await;
        local.set(Some(
            outcome.map(|(digest, ms)| (hex::encode(digest), ms as u64)),
        ));
    });
}

/// Follows the job live (once per job).
fn follow(file: &QueuedFile) {
    let Some(id) = file.job.get_untracked() else {
        return;
    };
    with_running(file, |running| {
        if running.follower.is_none() {
            running.follower = Some(Follower::start(id, file.status, file.connection));
        }
    });
}

/// The upload stopped by itself: every byte arrived, or it cannot go on.
pub fn upload_ended(queue: Queue, file: &QueuedFile) {
    if file.phase.get_untracked() != Phase::Sending {
        return;
    }
    stop_upload(file);
    file.rate.set(None);
    if file.finished.get_untracked() {
        file.phase.set(Phase::Sent);
    } else if file.problem.with_untracked(Option::is_some) {
        file.phase.set(Phase::Failed);
    }
    queue.pump();
}

/// The job reached a final state on the server: nothing more runs for it.
pub fn job_ended(queue: Queue, file: &QueuedFile) {
    stop_upload(file);
    stop_following(file);
    let state = file
        .status
        .with_untracked(|job| job.as_ref().map(|j| j.status));
    if state == Some(JobState::Cancelled) {
        file.phase.set(Phase::Cancelled);
    } else if file.phase.get_untracked().holds_slot() {
        file.phase.set(Phase::Sent);
    }
    queue.pump();
}

pub fn act(queue: Queue, key: u32, action: CardAction) {
    let Some(file) = queue.get(key) else {
        return;
    };
    let phase = file.phase.get_untracked();
    match action {
        CardAction::Pause if phase == Phase::Sending => {
            stop_upload(&file);
            file.rate.set(None);
            file.phase.set(Phase::Paused);
            queue.pump();
        }
        CardAction::Resume | CardAction::Retry
            if matches!(phase, Phase::Paused | Phase::Failed) || file.is_final_failure() =>
        {
            file.problem.set(None);
            file.finished.set(false);
            file.phase.set(Phase::Waiting);
            queue.pump();
        }
        CardAction::Cancel => cancel(queue, file),
        CardAction::Remove => {
            stop_upload(&file);
            stop_following(&file);
            if phase.holds_slot() || phase == Phase::Paused {
                // Removing a running upload cancels it: nothing is left behind on the server.
                cancel(queue, file.clone());
            }
            queue.files.update(|files| files.retain(|f| f.key != key));
            queue.pump();
        }
        _ => {}
    }
}

impl QueuedFile {
    /// The server failed the job (e.g. the whole file did not match its digest).
    fn is_final_failure(&self) -> bool {
        self.status.with_untracked(|job| {
            job.as_ref()
                .is_some_and(|job| job.status == JobState::Failed)
        })
    }
}

/// Cancel, whatever the timing: the transfer stops at once, the card says "Cancelling…", and it
/// ends "Cancelled" once the server agrees, or in the state the server reports if the job had
/// already finished. A file whose job does not exist yet is simply cancelled here.
fn cancel(queue: Queue, file: QueuedFile) {
    let phase = file.phase.get_untracked();
    if matches!(phase, Phase::Cancelled | Phase::Cancelling) {
        return;
    }
    stop_upload(&file);
    file.rate.set(None);
    file.phase.set(Phase::Cancelling);
    queue.pump();
    if phase == Phase::Starting {
        // `start` cancels it on the server as soon as its job exists.
        return;
    }
    if file.job.get_untracked().is_none() {
        file.phase.set(Phase::Cancelled);
        return;
    }
    cancel_on_server(queue, file);
}

fn cancel_on_server(queue: Queue, file: QueuedFile) {
    let Some(id) = file.job.get_untracked() else {
        file.phase.set(Phase::Cancelled);
        return;
    };
    // The transfer is gone: nothing will resume this upload.
    remember(&file.file, None);
    leptos::task::spawn_local(async move {
        let answer = match retrying(move || cancel_job(id)).await {
            Ok(job) => Ok(job),
            // Refused (e.g. it had just finished): the server's word is what the card shows.
            Err(_) => retrying(move || fetch_status(id)).await,
        };
        match answer {
            Ok(job) if job.status == JobState::Cancelled || !job.is_terminal() => {
                file.status.set(Some(job));
                file.phase.set(Phase::Cancelled);
            }
            Ok(job) => {
                file.status.set(Some(job));
                file.phase.set(Phase::Sent);
            }
            Err(error) => {
                // The server cannot be reached: the transfer is stopped and the upload expires
                // on its own; the card says so instead of waiting forever.
                file.problem.set(Some(format!(
                    "cancelled here; the server could not be told ({})",
                    error.message
                )));
                file.phase.set(Phase::Cancelled);
            }
        }
        stop_following(&file);
        queue.pump();
    });
}

/// `DELETE /api/uploads/{id}`: ends an unfinished upload on the server (tus termination).
pub async fn discard_upload(id: crate::domain::JobId) -> Result<(), CallError> {
    let response = gloo_net::http::Request::delete(&format!("/api/uploads/{id}"))
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .map_err(super::unreachable)?;
    match response.status() {
        // Already gone is as good as discarded.
        200..=299 | 404 | 410 => Ok(()),
        status => Err(CallError {
            status,
            message: format!("the server did not discard it ({status})"),
        }),
    }
}
