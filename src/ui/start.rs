//! Starting ingests: a drop zone and pickers for files and folders, the chosen files (each
//! removable), the metadata field (checked as it is typed with the server's own rules), the
//! Start button, the upload queue (its cards are `uploads`, loaded when the first one starts),
//! this browser's interrupted uploads (Resume / Discard), and a warning before leaving
//! mid-upload. Without a file, Start creates a metadata-only job.
use super::{
    format::format_bytes,
    queue::{FileHandle, NewFile, Queue},
    split,
    transfer::{Fingerprint, UploadRecord},
};
use crate::{
    api::{start_ingest, CallError},
    domain::{metadata_problem, JobStatus},
};
use leptos::prelude::*;

/// A file the person chose, before it is queued.
#[derive(Clone)]
struct ChosenFile {
    key: u32,
    name: String,
    size: u64,
    path: Option<String>,
    file: FileHandle,
}

/// An unfinished upload this browser remembers from an earlier visit.
#[derive(Clone, PartialEq)]
struct Interrupted {
    print: Fingerprint,
    record: UploadRecord,
}

#[component]
pub fn StartIngestForm(max_metadata_bytes: usize, max_upload_bytes: u64) -> impl IntoView {
    let metadata = RwSignal::new(String::new());
    let chosen = RwSignal::new(Vec::<ChosenFile>::new());
    let chosen_key = StoredValue::new(0u32);
    let dragging = RwSignal::new(false);
    let pending = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let notices = RwSignal::new(Vec::<String>::new());
    // Metadata-only jobs started here, newest first, as the server answered.
    let started = RwSignal::new(Vec::<JobStatus>::new());
    let interrupted = RwSignal::new(Vec::<Interrupted>::new());
    let queue = Queue::new();
    browser_duties(queue, interrupted);
    // `webkitdirectory` (choose a folder) is not an attribute the view macro knows; set once the
    // input exists.
    let folder_input = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        if let Some(input) = folder_input.get() {
            let _ = input.set_attribute("webkitdirectory", "");
        }
    });

    let problem = Memo::new(move |_| {
        metadata.with(|text| metadata_problem(text, max_metadata_bytes).map(|e| e.to_string()))
    });
    let too_large = move || {
        chosen.with(|files| {
            files
                .iter()
                .find(|file| file.size > max_upload_bytes)
                .map(|file| {
                    format!(
                        "“{}” is larger than the server takes ({}).",
                        file.name,
                        format_bytes(max_upload_bytes)
                    )
                })
        })
    };
    let add_chosen = move |found: Vec<NewFile>, problems: Vec<String>| {
        notices.set(problems);
        chosen.update(|files| {
            for new in found {
                let key = chosen_key.get_value();
                chosen_key.set_value(key + 1);
                files.push(ChosenFile {
                    key,
                    name: new.name,
                    size: new.size,
                    path: new.path,
                    file: new.file,
                });
            }
        });
    };

    let start = move |_| {
        error.set(None);
        let text = metadata.get_untracked();
        let files = chosen.get_untracked();
        if !files.is_empty() {
            chosen.set(Vec::new());
            let keys = queue.add(
                files
                    .into_iter()
                    .map(|file| NewFile {
                        file: file.file,
                        name: file.name,
                        size: file.size,
                        path: file.path,
                        resumes: None,
                    })
                    .collect(),
                &text,
            );
            queue.focus_when_shown(keys.first().copied());
            return;
        }
        pending.set(true);
        leptos::task::spawn_local(async move {
            match start_metadata_only(text).await {
                Ok(job) => started.update(|jobs| jobs.insert(0, job)),
                Err(problem) => error.set(Some(problem.message)),
            }
            pending.set(false);
        });
    };

    view! {
        <div class="start">
            <div
                class="drop-zone"
                class:dragging=move || dragging.get()
                on:dragover=move |event| {
                    event.prevent_default();
                    dragging.set(true);
                }
                on:dragleave=move |_| dragging.set(false)
                on:drop=move |event: leptos::ev::DragEvent| {
                    event.prevent_default();
                    dragging.set(false);
                    take_drop(&event, add_chosen);
                }
            >
                <span class="drop-hint">"Drop files or folders here"</span>
                <div class="pickers">
                    <label for="file" class="picker">"Choose files"</label>
                    <input
                        id="file"
                        class="visually-hidden"
                        type="file"
                        multiple
                        aria-label="Choose files (optional)"
                        on:change=move |event| {
                            let (found, problems) = picked(&event);
                            add_chosen(found, problems);
                        }
                    />
                    <label for="folder" class="picker">"Choose a folder"</label>
                    <input
                        id="folder"
                        class="visually-hidden"
                        type="file"
                        node_ref=folder_input
                        aria-label="Choose a folder (optional)"
                        on:change=move |event| {
                            let (found, problems) = picked(&event);
                            add_chosen(found, problems);
                        }
                    />
                </div>
            </div>
            {move || {
                notices
                    .get()
                    .into_iter()
                    .map(|notice| view! { <p class="error" role="alert">{notice}</p> })
                    .collect_view()
            }}
            <div id="chosen-file" class="chosen">
                {move || {
                    chosen
                        .with(|files| {
                            if files.is_empty() {
                                return view! {
                                    <p class="muted">"No file: the job carries metadata only."</p>
                                }
                                    .into_any();
                            }
                            let total: u64 = files.iter().map(|file| file.size).sum();
                            let summary = format!(
                                "{} {} chosen — {}",
                                files.len(),
                                if files.len() == 1 { "file" } else { "files" },
                                format_bytes(total),
                            );
                            view! {
                                <p>
                                    <span class="chosen-summary">{summary}</span>
                                    " "
                                    <button
                                        class="secondary clear"
                                        on:click=move |_| chosen.set(Vec::new())
                                    >
                                        "Clear"
                                    </button>
                                </p>
                                <ul class="chosen-files">
                                    {files
                                        .iter()
                                        .map(|file| {
                                            let key = file.key;
                                            let name = file
                                                .path
                                                .clone()
                                                .unwrap_or_else(|| file.name.clone());
                                            view! {
                                                <li>
                                                    <span class="chosen-name">
                                                        {format!("{name} — {}", format_bytes(file.size))}
                                                    </span>
                                                    " "
                                                    <button
                                                        class="secondary unchoose"
                                                        aria-label=format!("Remove {name}")
                                                        on:click=move |_| {
                                                            chosen.update(|files| files.retain(|f| f.key != key))
                                                        }
                                                    >
                                                        "×"
                                                    </button>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                                .into_any()
                        })
                }}
            </div>
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
            <div class="start-row">
                <button
                    id="start"
                    disabled=move || problem.get().is_some() || too_large().is_some() || pending.get()
                    on:click=start
                >
                    "Start ingest"
                </button>
                <label for="parallel">"Uploads at a time"</label>
                <input
                    id="parallel"
                    type="number"
                    min="1"
                    max="8"
                    prop:value=move || queue.parallel.get().to_string()
                    on:change=move |event| {
                        if let Ok(n) = event_target_value(&event).parse::<u32>() {
                            queue.parallel.set(n.clamp(1, 8));
                            queue.pump();
                        }
                    }
                />
            </div>
            {move || error.get().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </div>
        <InterruptedUploads interrupted queue />
        {split::uploads(queue, started)}
    }
}

/// This browser's unfinished uploads from earlier visits: Resume asks for the file again and
/// checks it is the same one (name, size and modification time first, then the SHA-256 of
/// every chunk sent), Discard ends the upload on the server.
#[component]
fn InterruptedUploads(interrupted: RwSignal<Vec<Interrupted>>, queue: Queue) -> impl IntoView {
    let resuming = RwSignal::new(None::<Interrupted>);
    let problem = RwSignal::new(None::<String>);
    // The name of the file being compared with what was sent.
    let checking = RwSignal::new(None::<String>);
    // Not the ones the queue is sending now.
    let shown = move || {
        let queued: Vec<String> = queue.files.with(|files| {
            files
                .iter()
                .map(|file| file_fingerprint(&file.file).key())
                .collect()
        });
        interrupted
            .get()
            .into_iter()
            .filter(|upload| !queued.contains(&upload.print.key()))
            .collect::<Vec<_>>()
    };
    let picked_again = move |event: leptos::ev::Event| {
        let Some(target) = resuming.get_untracked() else {
            return;
        };
        let (found, _) = picked(&event);
        let Some(file) = found.into_iter().next() else {
            return;
        };
        let print = file_fingerprint(&file.file);
        if print != target.print {
            problem.set(Some(format!(
                "That is not the same file: expected “{}” ({}), got “{}” ({}).",
                target.print.name,
                format_bytes(target.print.size),
                print.name,
                format_bytes(print.size),
            )));
            return;
        }
        problem.set(None);
        checking.set(Some(print.name));
        resume_if_same(file, target, queue, problem, checking, resuming);
    };
    let discard = move |upload: Interrupted| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match split::discard_upload(upload.record.id).await {
                Ok(()) => {
                    super::browser::files::forget(&upload.print);
                    interrupted.update(|list| list.retain(|u| u != &upload));
                }
                Err(error) => problem.set(Some(error.message)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = upload;
    };
    view! {
        <input
            id="resume-file"
            class="visually-hidden"
            type="file"
            tabindex="-1"
            aria-label="The file to resume"
            on:change=picked_again
        />
        <Show when=move || !shown().is_empty()>
            <section class="interrupted" aria-labelledby="interrupted-title">
                <h2 id="interrupted-title">"Interrupted uploads"</h2>
                <p class="muted">
                    "These uploads from this browser stopped before the end. Resume asks for the same file again and goes on from where the server stopped."
                </p>
                <ul>
                    {move || {
                        shown()
                            .into_iter()
                            .map(|upload| {
                                let name = upload.print.name.clone();
                                let resume_this = upload.clone();
                                let discard_this = upload.clone();
                                view! {
                                    <li class="interrupted-upload">
                                        <span>
                                            {format!("{name} — {}", format_bytes(upload.print.size))}
                                        </span>
                                        " "
                                        <button
                                            class="resume-interrupted"
                                            aria-label=format!("Resume {name}")
                                            on:click=move |_| {
                                                resuming.set(Some(resume_this.clone()));
                                                open_picker("resume-file");
                                            }
                                        >
                                            "Resume"
                                        </button>
                                        " "
                                        <button
                                            class="secondary discard"
                                            aria-label=format!("Discard {name}")
                                            on:click=move |_| discard(discard_this.clone())
                                        >
                                            "Discard"
                                        </button>
                                    </li>
                                }
                            })
                            .collect_view()
                    }}
                </ul>
                <p class="muted" role="status">
                    {move || {
                        checking
                            .get()
                            .map(|name| format!("Checking that “{name}” is the file that was being sent…"))
                    }}
                </p>
                {move || problem.get().map(|text| view! { <p class="error" role="alert">{text}</p> })}
            </section>
        </Show>
    }
}

/// Hashes again the chunks `target` sent, in `file` (the person's new pick): the same bytes
/// resume the upload as a new card, other bytes are refused with where they differ.
fn resume_if_same(
    file: NewFile,
    target: Interrupted,
    queue: Queue,
    problem: RwSignal<Option<String>>,
    checking: RwSignal<Option<String>>,
    resuming: RwSignal<Option<Interrupted>>,
) {
    #[cfg(feature = "hydrate")]
    leptos::task::spawn_local(async move {
        use super::transfer::Mismatch;
        let outcome = split::same_file(file.file.clone(), target.record.clone()).await;
        // Signed out (the form is gone) while the file was being compared.
        if queue.files.is_disposed() {
            return;
        }
        checking.set(None);
        match outcome {
            Err(Mismatch::Differs(difference)) => {
                problem.set(Some(format!(
                    "That is not the same file: {difference}. Choose the file this upload started with."
                )));
                return;
            }
            Err(Mismatch::Unchecked(reason)) => {
                problem.set(Some(format!(
                    "The file could not be compared with what was sent ({reason}). Press Resume to try again."
                )));
                return;
            }
            Ok(()) => {}
        }
        resuming.set(None);
        let file = NewFile {
            resumes: Some(target.record.id),
            ..file
        };
        let keys = queue.add(vec![file], "");
        queue.focus_when_shown(keys.first().copied());
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = (file, target, queue, problem, checking, resuming);
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

/// The browser's part of the form: the warning before leaving while bytes are on their way,
/// and reading the interrupted uploads.
fn browser_duties(queue: Queue, interrupted: RwSignal<Vec<Interrupted>>) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::leptos_dom::helpers::window_event_listener_untyped;
        Effect::new(move |_| {
            interrupted.set(
                super::browser::files::interrupted_uploads()
                    .into_iter()
                    .map(|(print, record)| Interrupted { print, record })
                    .collect(),
            );
        });
        let leaving = window_event_listener_untyped("beforeunload", move |event| {
            if queue.is_sending() {
                // Both spellings: `preventDefault` for today's browsers, `returnValue` for older.
                event.prevent_default();
                let _ = js_sys::Reflect::set(&event, &"returnValue".into(), &"".into());
            }
        });
        let leaving = send_wrapper::SendWrapper::new(leaving);
        on_cleanup(move || leaving.take().remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (queue, interrupted);
}

#[cfg(feature = "hydrate")]
fn file_fingerprint(file: &FileHandle) -> Fingerprint {
    super::browser::files::fingerprint(file)
}

/// The server has no files (its queue is always empty).
#[cfg(not(feature = "hydrate"))]
fn file_fingerprint(_file: &FileHandle) -> Fingerprint {
    Fingerprint {
        size: 0,
        last_modified: 0,
        name: String::new(),
    }
}

/// The files of a picker's change event; the picker is emptied so the same files can be chosen
/// again.
#[cfg(feature = "hydrate")]
fn picked(event: &leptos::ev::Event) -> (Vec<NewFile>, Vec<String>) {
    use wasm_bindgen::JsCast;
    let Some(input) = event
        .target()
        .and_then(|target| target.dyn_into::<web_sys::HtmlInputElement>().ok())
    else {
        return (Vec::new(), Vec::new());
    };
    let found = super::browser::files::picked(&input);
    input.set_value("");
    (found.files, found.problems)
}

#[cfg(not(feature = "hydrate"))]
fn picked(_event: &leptos::ev::Event) -> (Vec<NewFile>, Vec<String>) {
    (Vec::new(), Vec::new())
}

/// Reads a drop: its entries now (they vanish after the event), the folders walked after.
#[cfg(feature = "hydrate")]
fn take_drop(event: &leptos::ev::DragEvent, add: impl Fn(Vec<NewFile>, Vec<String>) + 'static) {
    use super::browser::files::{dropped_entries, walk_dropped};
    use wasm_bindgen::JsCast;
    match dropped_entries(event.unchecked_ref()) {
        Ok(entries) => leptos::task::spawn_local(async move {
            let found = walk_dropped(entries).await;
            add(found.files, found.problems);
        }),
        Err(files) => add(
            files
                .into_iter()
                .map(|file| NewFile {
                    name: file.name(),
                    size: file.size() as u64,
                    path: None,
                    file: send_wrapper::SendWrapper::new(file),
                    resumes: None,
                })
                .collect(),
            Vec::new(),
        ),
    }
}

#[cfg(not(feature = "hydrate"))]
fn take_drop(_event: &leptos::ev::DragEvent, _add: impl Fn(Vec<NewFile>, Vec<String>) + 'static) {}

/// Opens a hidden file picker, as its button's click.
fn open_picker(id: &str) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(input) = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id(id))
            .and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok())
        {
            input.click();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}
