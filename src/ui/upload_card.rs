//! One queued file's card: its name as the title (the job id beside it, with a copy button),
//! a bar labelled with the file, what is happening in plain words (percentage, rate and time
//! left while sending, then the server's processing), the metadata it carries, the result, and
//! the buttons that fit the moment: Pause / Resume, Retry, Cancel, Remove.
use super::{
    format::{format_bytes, format_elapsed},
    job_card::{describe, CopyId, JobResult},
    queue::{CardAction, Phase, Queue, QueuedFile},
    transfer::{percent, time_left_ms},
};
use crate::domain::{JobState, Progress};
use leptos::prelude::*;

#[component]
pub fn UploadCard(file: QueuedFile, queue: Queue) -> impl IntoView {
    let key = file.key;
    let act = move |action: CardAction| move |_: leptos::ev::MouseEvent| queue.act(key, action);
    watch_for_endings(queue, &file);
    let heading = NodeRef::<leptos::html::H3>::new();
    Effect::new(move |_| {
        if let Some(heading) = heading.get() {
            if queue.takes_focus(key) {
                let _ = heading.focus();
            }
        }
    });

    let title = file.path.clone().unwrap_or_else(|| file.name.clone());
    let label = format!("Progress of {title}");
    let phase = file.phase;
    let status = file.status;
    let sent = file.sent;
    let problem = file.problem;
    let rate = file.rate;
    let resumed_at = file.resumed_at;
    let size = file.size;
    let job = file.job;
    let connection = file.connection;
    let data_status = {
        let file = file.clone();
        move || match file.shown_state() {
            Some(state) => state.as_str(),
            None => phase.get().as_str(),
        }
    };
    let progress = move || {
        let local = sent
            .get()
            .map_or(0, |(done, _)| Progress::receiving(done, Some(size)));
        status.with(|job| match job {
            // Receiving: the bytes on the wire are the news; the server's figure trails them.
            Some(job) if job.status == JobState::Receiving => job.progress.max(local),
            Some(job) => job.progress,
            None => local,
        })
    };
    let state_text = {
        let file = file.clone();
        move || {
            let bytes = sent.get().map_or(0, |(done, _)| done).min(size);
            match (phase.get(), file.shown_state()) {
                (Phase::Cancelled, _) | (_, Some(JobState::Cancelled)) => "Cancelled".to_owned(),
                (Phase::Cancelling, _) => "Cancelling…".to_owned(),
                (Phase::Waiting, _) => "Waiting for a free slot".to_owned(),
                (Phase::Starting, _) => "Starting…".to_owned(),
                (Phase::Sending, _) => {
                    format!(
                        "Uploading {} of {}",
                        format_bytes(bytes),
                        format_bytes(size)
                    )
                }
                (Phase::Paused, _) => {
                    format!(
                        "Paused at {} of {}",
                        format_bytes(bytes),
                        format_bytes(size)
                    )
                }
                (Phase::Failed, _) => "Upload failed".to_owned(),
                (Phase::Sent, Some(JobState::Processing)) => {
                    format!(
                        "Processing · {}%",
                        status.with(|j| j.as_ref().map_or(0, |j| j.progress))
                    )
                }
                (Phase::Sent, Some(JobState::Receiving) | None) => {
                    "Uploaded; the server is taking it in".to_owned()
                }
                (Phase::Sent, Some(state)) => describe(state).to_owned(),
            }
        }
    };
    // Percentage, rate and time left while the bytes go.
    let speed = move || {
        (phase.get() == Phase::Sending).then(|| {
            let done = sent.get().map_or(0, |(done, _)| done).min(size);
            let mut parts = vec![format!("{}%", percent(done, size))];
            if let Some(rate) = rate.get() {
                parts.push(format!("{}/s", format_bytes(rate)));
                if let Some(ms) = time_left_ms(size - done, rate) {
                    parts.push(format!("{} left", format_elapsed(ms)));
                }
            }
            parts.join(" · ")
        })
    };
    let reason = {
        let file = file.clone();
        move || match file.shown_state() {
            Some(JobState::Cancelled) => problem.get(),
            _ => problem
                .get()
                .or_else(|| status.with(|job| job.as_ref().and_then(|job| job.error.clone()))),
        }
    };
    let can_pause = move || phase.get() == Phase::Sending;
    let can_resume = move || phase.get() == Phase::Paused;
    let can_retry = {
        let file = file.clone();
        move || phase.get() == Phase::Failed || file.shown_state() == Some(JobState::Failed)
    };
    let can_cancel = {
        let file = file.clone();
        move || !file.is_final() && !matches!(phase.get(), Phase::Cancelling | Phase::Failed)
    };
    let can_remove = {
        let file = file.clone();
        move || file.is_final() || matches!(phase.get(), Phase::Waiting | Phase::Failed)
    };
    let metadata = file.metadata.clone();
    // The end-to-end check: the server's digest of what it stored against this browser's.
    let local_digest = file.local_digest;
    let verdict = move || {
        let server = status.with(|job| {
            job.as_ref()
                .filter(|job| job.status == JobState::Completed)
                .and_then(|job| job.sha256.as_ref().map(|digest| digest.to_hex()))
        })?;
        Some(match local_digest.get() {
            Some(Ok((local, ms))) if local == server => (
                "true",
                format!(
                    "Verified: the server's SHA-256 equals this browser's (hashed here in {})",
                    format_elapsed(ms as i64)
                ),
            ),
            Some(Ok(_)) => (
                "false",
                "Not verified: the server's SHA-256 differs from this file's".to_owned(),
            ),
            Some(Err(reason)) => ("false", format!("Not verified: {reason}")),
            None => ("pending", "Checking the digest…".to_owned()),
        })
    };

    view! {
        <li
            class="job upload"
            data-key=key.to_string()
            data-status=data_status
            data-phase=move || phase.get().as_str()
            data-connection=move || connection.get().as_str()
        >
            <div class="job-head">
                <h3 class="filename" tabindex="-1" node_ref=heading>
                    {title}
                </h3>
                <span class="state" role="status">{state_text}</span>
            </div>
            {move || job.get().map(|id| view! { <CopyId id /> })}
            <progress max="100" value=progress aria-label=label aria-valuenow=progress></progress>
            <p class="rate muted">{speed}</p>
            {move || {
                resumed_at
                    .get()
                    .map(|offset| {
                        view! {
                            <p class="resumed muted">
                                {format!("Resumed from the server's {}", format_bytes(offset))}
                            </p>
                        }
                    })
            }}
            {move || reason().map(|text| view! { <p class="error reason">{text}</p> })}
            {(!metadata.is_empty())
                .then(|| {
                    view! {
                        <details class="metadata">
                            <summary>"Metadata"</summary>
                            <pre>{metadata.clone()}</pre>
                        </details>
                    }
                })}
            {move || {
                verdict()
                    .map(|(verified, text)| {
                        view! {
                            <p class="verdict" data-verified=verified>
                                {text}
                            </p>
                        }
                    })
            }}
            {move || {
                status
                    .with(|job| {
                        job.as_ref()
                            .filter(|job| job.status == JobState::Completed)
                            .map(|job| view! { <JobResult job=job.clone() /> })
                    })
            }}
            <div class="job-actions">
                <Show when=can_pause>
                    <button class="secondary pause" on:click=act(CardAction::Pause)>
                        "Pause"
                    </button>
                </Show>
                <Show when=can_resume>
                    <button class="resume" on:click=act(CardAction::Resume)>
                        "Resume"
                    </button>
                </Show>
                <Show when=can_retry.clone()>
                    <button class="retry" on:click=act(CardAction::Retry)>
                        "Retry"
                    </button>
                </Show>
                <Show when=can_cancel.clone()>
                    <button class="cancel" on:click=act(CardAction::Cancel)>
                        "Cancel"
                    </button>
                </Show>
                <Show when=can_remove.clone()>
                    <button class="secondary remove" on:click=act(CardAction::Remove)>
                        "Remove"
                    </button>
                </Show>
            </div>
        </li>
    }
}

/// Tells the queue when the upload stops by itself or the job ends on the server, so the slot
/// is freed and nothing keeps running for a finished card. Browser only.
fn watch_for_endings(queue: Queue, file: &QueuedFile) {
    #[cfg(feature = "hydrate")]
    {
        use super::browser::transfers::{job_ended, upload_ended};
        let ended = file.clone();
        Effect::new(move |_| {
            if ended.finished.get() || ended.problem.with(Option::is_some) {
                upload_ended(queue, &ended);
            }
        });
        let finished = file.clone();
        Effect::new(move |_| {
            if finished
                .status
                .with(|job| job.as_ref().is_some_and(|job| job.is_terminal()))
            {
                job_ended(queue, &finished);
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (queue, file);
}
