//! The background worker: claims queued jobs from the persistent queue (the jobs table) under
//! this node's lease and processes them, at most `workers` at a time, outside any request. A
//! job whose lease is lost stops without writing: another node has it.
use super::{
    jobs::{Jobs, NotHeld, Running},
    leases::HeldLease,
};
use crate::domain::{JobState, JobStatus, Progress, Sha256Digest};
use futures::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

/// How often the worker looks at the queue even without a wake-up (a safety net only).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Bytes read from the start of a file to recognise its type.
const SNIFF_LEN: usize = 8192;
/// Steps of processing, for the progress bar.
const STEPS: u32 = 2;

#[derive(Clone)]
pub struct Worker {
    jobs: Arc<Jobs>,
    slots: Arc<Semaphore>,
    step_delay: Duration,
    /// Once cancelled, no job is claimed and running jobs stop after their current step.
    shutdown: CancellationToken,
}

/// How processing a job ended, short of an error.
enum Processed {
    Completed,
    /// Shutdown came between two steps; the job goes back to the queue.
    Stopped,
    /// The job was cancelled; it is already recorded as such.
    Cancelled,
    /// The job's lease was lost: another node processes it now.
    LeaseLost,
}

impl Worker {
    pub fn new(
        jobs: Arc<Jobs>,
        concurrency: usize,
        step_delay: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            jobs,
            slots: Arc::new(Semaphore::new(concurrency)),
            step_delay,
            shutdown,
        }
    }

    /// Claims and processes jobs until shutdown, then waits for running jobs to finish their
    /// current step (they are re-queued, not lost).
    pub async fn run(self) {
        let mut running = JoinSet::new();
        loop {
            // Reap finished tasks so the set does not grow.
            while running.try_join_next().is_some() {}
            let free = self.slots.available_permits().max(1) as u32;
            let claimed = tokio::select! {
                claimed = self.jobs.claim(free) => claimed,
                _ = self.shutdown.cancelled() => break,
            };
            match claimed {
                Ok(jobs) if !jobs.is_empty() => {
                    for job in jobs {
                        // Never waits: a claim takes at most as many jobs as there are free slots.
                        let permit = self
                            .slots
                            .clone()
                            .acquire_owned()
                            .await
                            .expect("worker semaphore is never closed");
                        let worker = self.clone();
                        running.spawn(async move {
                            worker.process(job).await;
                            drop(permit);
                        });
                    }
                    // Wait for a free slot before claiming more.
                    tokio::select! {
                        permit = self.slots.acquire() => drop(permit),
                        _ = self.shutdown.cancelled() => break,
                    }
                }
                Ok(_) => {
                    tokio::select! {
                        _ = self.jobs.queued_notification() => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = self.shutdown.cancelled() => break,
                    }
                }
                Err(error) => {
                    tracing::error!(error = ?error, "claiming queued jobs failed");
                    tokio::select! {
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                        _ = self.shutdown.cancelled() => break,
                    }
                }
            }
        }
        while running.join_next().await.is_some() {}
        tracing::info!("worker stopped");
    }

    /// Processes every queued job now, one at a time, and returns how many: for tests that
    /// want no background timing.
    pub async fn run_until_idle(&self) -> anyhow::Result<usize> {
        let mut processed = 0;
        loop {
            let claimed = self.jobs.claim(1).await?;
            if claimed.is_empty() {
                return Ok(processed);
            }
            for job in claimed {
                self.process(job).await;
                processed += 1;
            }
        }
    }

    #[tracing::instrument(skip_all, fields(job_id = %running.job.job_id))]
    async fn process(&self, mut running: Running) {
        tracing::info!("processing started");
        let cancelled = running.registration.cancelled().clone();
        let outcome = self
            .process_steps(&mut running.job, &running.lease, &cancelled)
            .await;
        match outcome {
            Ok(Processed::Completed | Processed::Cancelled) => {}
            Ok(Processed::LeaseLost) => {
                tracing::warn!("stopped without writing: the job's lease passed to another node");
                self.jobs.let_go(running).await;
            }
            Err(error) if error.is::<NotHeld>() => {
                tracing::info!(
                    "the job finished elsewhere (cancelled) or passed to another node while processing"
                );
                self.jobs.let_go(running).await;
            }
            Ok(Processed::Stopped) => {
                if let Err(error) = self.jobs.requeue(running).await {
                    tracing::error!(error = ?error, "re-queueing a stopped job failed");
                }
            }
            Err(error) => {
                tracing::error!(error = ?error, "processing failed");
                let message = format!("processing failed: {error}");
                let Running { job, lease, .. } = running;
                if let Err(error) = self.jobs.fail_processing(job, &lease, message).await {
                    tracing::error!(error = ?error, "recording a processing failure failed");
                }
            }
        }
    }

    /// The steps, each idempotent (reading the stored file; the one write is the last): a job
    /// whose node stopped midway is simply processed again by another.
    async fn process_steps(
        &self,
        job: &mut JobStatus,
        lease: &HeldLease,
        cancelled: &CancellationToken,
    ) -> anyhow::Result<Processed> {
        let has_file = job.has_file();
        job.progress = Progress::processing(0, STEPS, has_file);
        self.jobs.report_progress(job);
        if let Some(stop) = self.pause(lease, cancelled).await {
            return Ok(stop);
        }

        if let Some(digest) = job.sha256 {
            job.content_type = Some(self.sniff(&digest).await?);
        }
        job.progress = Progress::processing(1, STEPS, has_file);
        self.jobs.report_progress(job);
        if let Some(stop) = self.pause(lease, cancelled).await {
            return Ok(stop);
        }

        job.status = JobState::Completed;
        job.progress = Progress::DONE;
        self.jobs.save_processing(job, lease).await?;
        tracing::info!(sha256 = ?job.sha256, size = job.size, "job completed");
        Ok(Processed::Completed)
    }

    /// The content type from the stored file's magic bytes; UTF-8 text without a signature
    /// is `text/plain`, anything else unrecognised `application/octet-stream`.
    async fn sniff(&self, digest: &Sha256Digest) -> anyhow::Result<String> {
        let size = self
            .jobs
            .content_info(digest)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the blob {digest} is missing"))?
            .size;
        let mut stream = self
            .jobs
            .read_content(digest, 0..size.min(SNIFF_LEN as u64))
            .await?;
        let mut head = Vec::with_capacity(SNIFF_LEN);
        while let Some(chunk) = stream.next().await {
            head.extend_from_slice(&chunk?);
        }
        Ok(content_type_of(&head).to_owned())
    }

    /// The pause between steps (if configured), cut short by cancellation, a lost lease or
    /// shutdown; `Some` says processing must stop here.
    async fn pause(&self, lease: &HeldLease, cancelled: &CancellationToken) -> Option<Processed> {
        if !self.step_delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(self.step_delay) => {}
                _ = self.shutdown.cancelled() => {}
                _ = cancelled.cancelled() => {}
                _ = lease.lost().cancelled() => {}
            }
        }
        if lease.lost().is_cancelled() {
            Some(Processed::LeaseLost)
        } else if cancelled.is_cancelled() {
            Some(Processed::Cancelled)
        } else if self.shutdown.is_cancelled() {
            Some(Processed::Stopped)
        } else {
            None
        }
    }
}

fn content_type_of(head: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(head) {
        return kind.mime_type();
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // The sniffed prefix may end inside a multi-byte character.
        Err(error) if error.error_len().is_none() => {
            std::str::from_utf8(&head[..error.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) if !text.contains('\0') => "text/plain",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::content_type_of;

    #[test]
    fn recognises_files_by_their_bytes() {
        assert_eq!(
            content_type_of(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            "image/png"
        );
        assert_eq!(content_type_of(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(
            content_type_of("plain text, ünïcode".as_bytes()),
            "text/plain"
        );
        assert_eq!(
            content_type_of(&[0xff, 0x00, 0x13, 0x37]),
            "application/octet-stream"
        );
        assert_eq!(content_type_of(&"é".as_bytes()[..1]), "text/plain");
    }
}
