//! Starting ingest jobs from the page and following each one live on its own card.
use crate::{
    api::StartIngest,
    domain::{parse_metadata, JobState, JobStatus},
};
use leptos::prelude::*;

/// The metadata field (checked as it is typed, with the server's own rules), the Start button,
/// and a card per job started here.
#[component]
pub fn StartIngestForm(max_metadata_bytes: usize) -> impl IntoView {
    let metadata = RwSignal::new(String::new());
    let problem = Memo::new(move |_| {
        metadata.with(|text| {
            parse_metadata(text, max_metadata_bytes)
                .err()
                .map(|e| e.to_string())
        })
    });
    let start = ServerAction::<StartIngest>::new();
    let started = RwSignal::new(Vec::<JobStatus>::new());
    Effect::new(move |_| {
        if let Some(Ok(job)) = start.value().get() {
            started.update(|jobs| {
                if !jobs.iter().any(|known| known.job_id == job.job_id) {
                    jobs.insert(0, job);
                }
            });
        }
    });
    let error = move || match start.value().get() {
        Some(Err(ServerFnError::ServerError(message))) => Some(message),
        Some(Err(other)) => Some(format!("The server could not be reached ({other}).")),
        _ => None,
    };

    view! {
        <div class="start">
            <label for="metadata">"Metadata (optional JSON object)"</label>
            <textarea
                id="metadata"
                rows="3"
                placeholder="{\"source\": \"browser\"}"
                prop:value=move || metadata.get()
                on:input=move |event| metadata.set(event_target_value(&event))
                aria-invalid=move || problem.get().is_some().to_string()
                aria-describedby="metadata-problem"
            ></textarea>
            <p id="metadata-problem" class="error">{move || problem.get()}</p>
            <button
                id="start"
                disabled=move || problem.get().is_some() || start.pending().get()
                on:click=move |_| {
                    start.dispatch(StartIngest { metadata: metadata.get_untracked() });
                }
            >
                "Start ingest"
            </button>
            {move || error().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </div>
        <ul class="jobs">
            <For each=move || started.get() key=|job| job.job_id let:job>
                <JobCard initial=job />
            </For>
        </ul>
    }
}

/// One job, live: a progress bar and its state, then the result.
#[component]
pub fn JobCard(initial: JobStatus) -> impl IntoView {
    let status = RwSignal::new(initial);
    follow(status);
    let label = move || status.with(|job| describe(job.status));
    view! {
        <li class="job" data-status=move || status.with(|job| job.status.as_str())>
            <div class="job-head">
                <code>{move || status.with(|job| job.job_id.to_string())}</code>
                <span class="state">{label}</span>
            </div>
            <progress
                max="100"
                value=move || status.with(|job| job.progress)
                aria-label="Progress"
            ></progress>
            {move || {
                status
                    .with(|job| job.error.clone())
                    .map(|error| view! { <p class="error">{error}</p> })
            }}
            {move || {
                status
                    .with(|job| job.sha256.map(|digest| digest.to_hex()))
                    .map(|digest| view! { <p class="digest">"SHA-256 " <code>{digest}</code></p> })
            }}
        </li>
    }
}

fn describe(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "Queued",
        JobState::Receiving => "Receiving",
        JobState::Processing => "Processing",
        JobState::Completed => "Completed",
        JobState::Failed => "Failed",
        JobState::Cancelled => "Cancelled",
    }
}

/// Follows the job over its WebSocket (the session cookie goes with it) until the server
/// closes it after the final state; the socket is closed if the card goes away first.
#[cfg(feature = "hydrate")]
fn follow(status: RwSignal<JobStatus>) {
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{MessageEvent, WebSocket};

    let Some(location) = web_sys::window().map(|window| window.location()) else {
        return;
    };
    let scheme = match location.protocol().as_deref() {
        Ok("https:") => "wss",
        _ => "ws",
    };
    let host = location.host().unwrap_or_default();
    let id = status.with_untracked(|job| job.job_id);
    let Ok(socket) = WebSocket::new(&format!("{scheme}://{host}/ws/status/{id}")) else {
        return;
    };
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
        if let Some(text) = event.data().as_string() {
            if let Ok(job) = serde_json::from_str::<JobStatus>(&text) {
                status.set(job);
            }
        }
    });
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The closure must live as long as the socket; it is dropped with the card.
    let on_message = send_wrapper::SendWrapper::new(on_message);
    let socket = send_wrapper::SendWrapper::new(socket);
    on_cleanup(move || {
        socket.set_onmessage(None);
        let _ = socket.close();
        drop(on_message);
    });
}

#[cfg(not(feature = "hydrate"))]
fn follow(_status: RwSignal<JobStatus>) {}
