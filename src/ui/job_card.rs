//! One job on the page, live: a progress bar (upload progress while the browser sends, then the
//! server's), its state in words, the result once stored, and Cancel / Poll status buttons.
use super::format::{format_bytes, format_elapsed};
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
    fn as_str(self) -> &'static str {
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
                (JobState::Completed, _) => match job.elapsed_ms() {
                    Some(ms) => format!("Completed in {}", format_elapsed(ms)),
                    None => "Completed".to_owned(),
                },
                (state, _) => describe(state).to_owned(),
            },
        })
    };
    let cancel = move |_| {
        notice.set(None);
        leptos::task::spawn_local(async move {
            match retry(move || cancel_job(id)).await {
                Ok(job) => status.set(Some(job)),
                Err(error) => notice.set(Some(error.message)),
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
                <a class="job-id" href=format!("/jobs/{id}")>
                    <code>{id.to_string()}</code>
                </a>
                <span class="state" role="status">{state_text}</span>
            </div>
            {move || {
                status
                    .with(|job| job.as_ref().and_then(|job| job.filename.clone()))
                    .map(|name| view! { <p class="filename">{name}</p> })
            }}
            <progress
                max="100"
                value=progress
                aria-label="Progress"
                aria-valuenow=progress
            ></progress>
            <p class="connection muted">{move || connection.get().describe()}</p>
            {move || {
                status
                    .with(|job| job.as_ref().and_then(|job| job.error.clone()))
                    .filter(|_| !matches!(status.with(|j| j.as_ref().map(|j| j.status)), Some(JobState::Cancelled)))
                    .map(|error| view! { <p class="error">{error}</p> })
            }}
            {move || upload_problem().map(|error| view! { <p class="error">{error}</p> })}
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

/// What a completed job stored.
#[component]
fn JobResult(job: JobStatus) -> impl IntoView {
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
        use super::browser::{FileUpload, Follower};
        let follower = Follower::start(id, status, connection);
        let upload = upload.map(|Outgoing { file, offset }| {
            FileUpload::send(id, &file, offset, sent, upload_failed)
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
