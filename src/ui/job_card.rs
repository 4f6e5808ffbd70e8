//! One job on the page, live: a progress bar (upload progress while the browser sends, then the
//! server's), its state in words, the metadata it carries, the result once stored, and Cancel /
//! Poll status buttons. (Files queued on the Start page have their own card, `upload_card`.)
use super::format::{format_bytes, format_elapsed, format_time, metadata_text};
use crate::{
    api::cancel_job,
    domain::{JobId, JobState, JobStatus, Progress},
};
use leptos::prelude::*;

/// How the card hears about its job. (Only the browser ever leaves `Connecting`.)
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connection {
    Connecting,
    Live,
    Reconnecting,
    /// The socket keeps failing; `GET /api/status` is asked every second meanwhile.
    Polling,
    /// The job has finished, or the view went away.
    Closed,
}

impl Connection {
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Connecting => "connecting",
            Connection::Live => "live",
            Connection::Reconnecting => "reconnecting",
            Connection::Polling => "polling",
            Connection::Closed => "closed",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Connection::Connecting => "Connecting…",
            Connection::Live => "Live",
            Connection::Reconnecting => "Connection lost; reconnecting…",
            Connection::Polling => "Live updates unavailable; checking every second",
            Connection::Closed => "",
        }
    }
}

/// A file chosen in the browser, to be sent once its job exists.
#[cfg(feature = "hydrate")]
pub type LocalFile = send_wrapper::SendWrapper<web_sys::File>;
/// Files only exist in the browser; the server never renders a card that sends one.
#[cfg(not(feature = "hydrate"))]
pub type LocalFile = std::convert::Infallible;

/// A file to send as a job's bytes, from `offset` (non-zero when an earlier upload of the same
/// file is continued).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Clone)]
pub struct Outgoing {
    pub file: LocalFile,
    pub offset: u64,
}

/// A job's card. `initial` is what the page already knows (the server-rendered state of a job
/// page); `upload` is sent first when the card was started by choosing a file here.
#[component]
pub fn JobCard(id: JobId, initial: Option<JobStatus>, upload: Option<Outgoing>) -> impl IntoView {
    let status = RwSignal::new(initial);
    let connection = RwSignal::new(Connection::Connecting);
    let sent = RwSignal::new(None::<(u64, u64)>);
    let upload_failed = RwSignal::new(None::<String>);
    let notice = RwSignal::new(None::<String>);
    let finished = move || status.with(|job| job.as_ref().is_some_and(JobStatus::is_terminal));
    // Fixed at render: a job's file name and metadata never change.
    let (title, metadata) = status.with_untracked(|job| {
        (
            job.as_ref()
                .and_then(|job| job.filename.clone())
                .unwrap_or_else(|| "Metadata only".to_owned()),
            job.as_ref().map(|job| metadata_text(&job.metadata)),
        )
    });
    start_following(id, status, connection, upload, sent, upload_failed);

    let progress = move || {
        let server = status.with(|job| job.as_ref().map_or(0, |job| job.progress));
        let receiving =
            status.with(|job| job.as_ref().is_none_or(|j| j.status == JobState::Receiving));
        let local = sent
            .get()
            .map_or(0, |(done, total)| Progress::receiving(done, Some(total)));
        if receiving {
            server.max(local)
        } else {
            server
        }
    };
    let state_text = move || {
        status.with(|job| match job {
            None => "Starting…".to_owned(),
            Some(job) => match (job.status, sent.get()) {
                (JobState::Receiving, Some((done, total))) => {
                    format!(
                        "Uploading {} of {}",
                        format_bytes(done),
                        format_bytes(total)
                    )
                }
                (JobState::Processing, _) => format!("Processing · {}%", job.progress),
                (state, _) => describe(state).to_owned(),
            },
        })
    };
    let cancel = move |_| {
        notice.set(None);
        leptos::task::spawn_local(async move {
            match retry(move || cancel_job(id)).await {
                Ok(job) => {
                    status.set(Some(job));
                    connection.set(Connection::Closed);
                }
                // Refused (it had just finished, say): show what the server says it is.
                Err(error) => match poll_once(id).await {
                    Ok(job) => status.set(Some(job)),
                    Err(_) => notice.set(Some(error.message)),
                },
            }
        });
    };
    let poll = move |_| {
        notice.set(None);
        leptos::task::spawn_local(async move {
            match poll_once(id).await {
                Ok(job) => status.set(Some(job)),
                Err(message) => notice.set(Some(message)),
            }
        });
    };
    // An upload refused because the job was cancelled meanwhile is not news.
    let upload_problem = move || {
        upload_failed.get().filter(|_| {
            !matches!(
                status.with(|j| j.as_ref().map(|j| j.status)),
                Some(JobState::Cancelled)
            )
        })
    };

    view! {
        <li
            class="job"
            data-status=move || status.with(|job| job.as_ref().map_or("starting", |job| job.status.as_str()))
            data-connection=move || connection.get().as_str()
        >
            <div class="job-head">
                <h3 class="filename" tabindex="-1">{title.clone()}</h3>
                <span class="state" role="status">{state_text}</span>
            </div>
            <CopyId id />
            <progress
                max="100"
                value=progress
                aria-label=format!("Progress of {title}")
                aria-valuenow=progress
            ></progress>
            <p class="connection muted">
                {move || if finished() { "" } else { connection.get().describe() }}
            </p>
            {move || {
                status
                    .with(|job| job.as_ref().and_then(|job| job.error.clone()))
                    .filter(|_| !matches!(status.with(|j| j.as_ref().map(|j| j.status)), Some(JobState::Cancelled)))
                    .map(|error| view! { <p class="error">{error}</p> })
            }}
            {move || upload_problem().map(|error| view! { <p class="error">{error}</p> })}
            {metadata
                .filter(|text| text != "{}")
                .map(|text| {
                    view! {
                        <details class="metadata" open>
                            <summary>"Metadata"</summary>
                            <pre>{text}</pre>
                        </details>
                    }
                })}
            {move || {
                status.with(|job| {
                    job.as_ref()
                        .filter(|job| job.status == JobState::Completed)
                        .map(|job| view! { <JobResult job=job.clone() /> })
                })
            }}
            <div class="job-actions">
                <Show when=move || !finished()>
                    <button class="cancel" on:click=cancel>
                        "Cancel"
                    </button>
                </Show>
                <button class="secondary poll" on:click=poll>
                    "Poll status"
                </button>
            </div>
            {move || notice.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </li>
    }
}

/// The job id, secondary to the file name: a link to the job's page and a copy button.
#[component]
pub fn CopyId(id: JobId) -> impl IntoView {
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            copied.set(Some(super::browser::copy_text(&id.to_string()).await));
        });
    };
    view! {
        <p class="job-id muted">
            "Job "
            <a href=format!("/jobs/{id}")>
                <code>{id.to_string()}</code>
            </a>
            " "
            <button class="secondary copy" on:click=copy aria-label=format!("Copy id {id}")>
                "Copy id"
            </button>
            <span class="copied" role="status">
                {move || match copied.get() {
                    Some(true) => "copied",
                    Some(false) => "not copied",
                    None => "",
                }}
            </span>
        </p>
    }
}

/// Created, last changed, and how long it has taken: the job page's times.
#[component]
pub fn JobTimes(job: JobStatus) -> impl IntoView {
    view! {
        <dl class="result times">
            <dt>"Created"</dt>
            <dd class="created">{format_time(&job.created_at)}</dd>
            <dt>"Updated"</dt>
            <dd class="updated">{format_time(&job.updated_at)}</dd>
        </dl>
    }
}

/// What a completed job stored.
#[component]
pub fn JobResult(job: JobStatus) -> impl IntoView {
    let id = job.job_id;
    let elapsed = job.elapsed_ms();
    view! {
        <dl class="result">
            {job
                .sha256
                .map(|digest| {
                    view! {
                        <dt>"SHA-256"</dt>
                        <dd>
                            <code class="digest">{digest.to_hex()}</code>
                        </dd>
                    }
                })}
            {job
                .size
                .map(|size| {
                    view! {
                        <dt>"Size"</dt>
                        <dd class="size">{format!("{} ({size} bytes)", format_bytes(size))}</dd>
                    }
                })}
            {job
                .content_type
                .map(|kind| {
                    view! {
                        <dt>"Content type"</dt>
                        <dd class="content-type">{kind}</dd>
                    }
                })}
            {elapsed
                .map(|ms| {
                    view! {
                        <dt>"Elapsed"</dt>
                        <dd class="elapsed">{format_elapsed(ms)}</dd>
                    }
                })}
        </dl>
        {job
            .sha256
            .map(|_| {
                view! {
                    <a class="download" href=format!("/api/jobs/{id}/content")>
                        "Download"
                    </a>
                }
            })}
    }
}

pub fn describe(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "Queued",
        JobState::Receiving => "Receiving",
        JobState::Processing => "Processing",
        JobState::Completed => "Completed",
        JobState::Failed => "Failed",
        JobState::Cancelled => "Cancelled",
    }
}

/// Sends the file (if any) and follows the job until it finishes or the card goes away. Only
/// the browser does either; the server renders the card as it is.
fn start_following(
    id: JobId,
    status: RwSignal<Option<JobStatus>>,
    connection: RwSignal<Connection>,
    upload: Option<Outgoing>,
    sent: RwSignal<Option<(u64, u64)>>,
    upload_failed: RwSignal<Option<String>>,
) {
    #[cfg(feature = "hydrate")]
    {
        use super::browser::{FileUpload, Follower, UploadSignals};
        let follower = Follower::start(id, status, connection);
        let upload = upload.map(|Outgoing { file, offset }| {
            let signals = UploadSignals {
                sent,
                failed: upload_failed,
                finished: RwSignal::new(false),
            };
            FileUpload::send(id, &file, offset, signals)
        });
        let running = send_wrapper::SendWrapper::new((follower, upload));
        on_cleanup(move || drop(running));
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (id, status, connection, upload, sent, upload_failed);
}

#[cfg(feature = "hydrate")]
use super::browser::retrying as retry;

/// On the server the buttons never run; calls are made once.
#[cfg(not(feature = "hydrate"))]
async fn retry<T, F, Fut>(mut call: F) -> Result<T, crate::api::CallError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::api::CallError>>,
{
    call().await
}

async fn poll_once(id: JobId) -> Result<JobStatus, String> {
    #[cfg(feature = "hydrate")]
    {
        super::browser::fetch_status(id)
            .await
            .map_err(|error| error.message)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = id;
        Err("polling runs in the browser".to_owned())
    }
}
