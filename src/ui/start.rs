//! Starting ingests: a file picker with a drop zone, the metadata field (checked as it is typed
//! with the server's own rules), the Start button, and a card per job started here.
use super::{
    format::format_bytes,
    job_card::{JobCard, LocalFile, Outgoing},
};
use crate::{
    api::{start_ingest, CallError},
    domain::{metadata_problem, JobId, JobStatus},
};
use leptos::prelude::*;

/// A file the person chose, before it is sent.
#[derive(Clone)]
struct ChosenFile {
    name: String,
    size: u64,
    file: LocalFile,
}

/// A job started from this page.
#[derive(Clone)]
struct Started {
    id: JobId,
    initial: Option<JobStatus>,
    upload: Option<Outgoing>,
}

#[component]
pub fn StartIngestForm(max_metadata_bytes: usize, max_upload_bytes: u64) -> impl IntoView {
    let metadata = RwSignal::new(String::new());
    let chosen = RwSignal::new(None::<ChosenFile>);
    let dragging = RwSignal::new(false);
    let pending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let started = RwSignal::new(Vec::<Started>::new());
    let problem = Memo::new(move |_| {
        metadata.with(|text| metadata_problem(text, max_metadata_bytes).map(|e| e.to_string()))
    });
    let too_large = move || {
        chosen.with(|file| {
            file.as_ref()
                .filter(|file| file.size > max_upload_bytes)
                .map(|_| {
                    format!(
                        "The file is larger than the server takes ({}).",
                        format_bytes(max_upload_bytes)
                    )
                })
        })
    };

    let start = move |_| {
        error.set(None);
        pending.set(true);
        let text = metadata.get_untracked();
        let file = chosen.get_untracked();
        leptos::task::spawn_local(async move {
            match begin(text, file).await {
                Ok(job) => {
                    chosen.set(None);
                    clear_file_input();
                    started.update(|jobs| jobs.insert(0, job));
                }
                Err(problem) => error.set(Some(problem.message)),
            }
            pending.set(false);
        });
    };

    view! {
        <div class="start">
            <label
                for="file"
                class="drop-zone"
                class:dragging=move || dragging.get()
                on:dragover=move |event| {
                    event.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=move |event| {
                    event.prevent_default();
                    dragging.set(false);
                    if let Some(file) = dropped_file(&event) {
                        chosen.set(Some(file));
                    }
                }
            >
                <span class="drop-hint">"Drop a file here, or choose one (optional)"</span>
                <input
                    id="file"
                    type="file"
                    on:change=move |event| chosen.set(picked_file(&event))
                />
            </label>
            <p id="chosen-file" class="muted">
                {move || {
                    chosen
                        .with(|file| {
                            file.as_ref()
                                .map(|file| format!("{} — {}", file.name, format_bytes(file.size)))
                        })
                        .unwrap_or_else(|| "No file: the job carries metadata only.".to_owned())
                }}
            </p>
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
            <p id="metadata-problem" class="error">{move || problem.get().or_else(too_large)}</p>
            <button
                id="start"
                disabled=move || problem.get().is_some() || too_large().is_some() || pending.get()
                on:click=start
            >
                "Start ingest"
            </button>
            {move || error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </div>
        <ul class="jobs">
            <For each=move || started.get() key=|job| job.id let:job>
                <JobCard id=job.id initial=job.initial upload=job.upload />
            </For>
        </ul>
    }
}

/// Creates the job: a declared upload when a file was chosen, else a metadata-only ingest.
async fn begin(metadata: String, file: Option<ChosenFile>) -> Result<Started, CallError> {
    match file {
        #[cfg(feature = "hydrate")]
        Some(chosen) => {
            use super::browser::{create_upload, remember, resumable, retrying_if};
            let file = chosen.file;
            // The same file again after a reload or a lost connection: continue that upload.
            let (id, offset) = match resumable(&file).await {
                Some(found) => found,
                None => {
                    // Retried only when refused before anything was created.
                    let refused_early = |error: &CallError| matches!(error.status, 429 | 503);
                    let id = retrying_if(refused_early, || create_upload(&file, &metadata)).await?;
                    remember(&file, Some(id));
                    (id, 0)
                }
            };
            Ok(Started {
                id,
                initial: None,
                upload: Some(Outgoing { file, offset }),
            })
        }
        #[cfg(not(feature = "hydrate"))]
        Some(chosen) => match chosen.file {},
        None => {
            let job = start_metadata_only(metadata).await?;
            Ok(Started {
                id: job.job_id,
                initial: Some(job),
                upload: None,
            })
        }
    }
}

/// Retried only when the request never reached the server, so a job is not created twice.
async fn start_metadata_only(metadata: String) -> Result<JobStatus, CallError> {
    #[cfg(feature = "hydrate")]
    {
        super::browser::retrying_if(|error| error.status == 0, || start_ingest(metadata.clone()))
            .await
    }
    #[cfg(not(feature = "hydrate"))]
    start_ingest(metadata).await
}

#[cfg(feature = "hydrate")]
fn chosen(file: web_sys::File) -> ChosenFile {
    ChosenFile {
        name: file.name(),
        size: file.size() as u64,
        file: send_wrapper::SendWrapper::new(file),
    }
}

#[cfg(feature = "hydrate")]
fn picked_file(event: &leptos::ev::Event) -> Option<ChosenFile> {
    use wasm_bindgen::JsCast;
    let input = event
        .target()?
        .dyn_into::<web_sys::HtmlInputElement>()
        .ok()?;
    input.files()?.get(0).map(chosen)
}

#[cfg(feature = "hydrate")]
fn dropped_file(event: &leptos::ev::DragEvent) -> Option<ChosenFile> {
    event.data_transfer()?.files()?.get(0).map(chosen)
}

#[cfg(feature = "hydrate")]
fn clear_file_input() {
    use wasm_bindgen::JsCast;
    if let Some(input) = web_sys::window()
        .and_then(|window| window.document())
        .and_then(|document| document.get_element_by_id("file"))
        .and_then(|element| element.dyn_into::<web_sys::HtmlInputElement>().ok())
    {
        input.set_value("");
    }
}

#[cfg(not(feature = "hydrate"))]
fn picked_file(_event: &leptos::ev::Event) -> Option<ChosenFile> {
    None
}

#[cfg(not(feature = "hydrate"))]
fn dropped_file(_event: &leptos::ev::DragEvent) -> Option<ChosenFile> {
    None
}

#[cfg(not(feature = "hydrate"))]
fn clear_file_input() {}
