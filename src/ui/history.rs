//! `/jobs`: recent jobs, newest first, a page at a time, filtered by state (and, for an admin,
//! who sees every account's jobs, by owner, each shown with its owner); each links to its own
//! page. Rendered on the server; filters and pages are plain links and a GET form.
use super::{
    format::{format_bytes, format_time},
    job_card::describe,
    page::HistoryQuery,
    CallProblem,
};
use crate::{
    api::{list_jobs, SignedIn},
    domain::{JobState, JobStatus, Role},
};
use leptos::prelude::*;

const PAGE_SIZE: u32 = 20;

#[component]
pub fn HistoryPage(query: HistoryQuery) -> impl IntoView {
    let jobs = Resource::new(
        {
            let query = query.clone();
            move || query.clone()
        },
        |query| list_jobs(query.status, query.owner, query.before, Some(PAGE_SIZE)),
    );
    let filter = query.status;
    let admin = use_context::<SignedIn>().is_some_and(|me| me.role == Role::Admin);
    let owner_filter = query
        .owner
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    view! {
        <section class="card">
            <h1>"History"</h1>
            <form
                class="filter"
                method="get"
                action="/jobs"
                on:submit=move |_| leave_out_an_empty_owner()
            >
                <label for="status-filter">"Status"</label>
                <select
                    id="status-filter"
                    name="status"
                    on:change=move |event| submit_form_of(&event)
                >
                    <option value="" selected=filter.is_none()>
                        "All"
                    </option>
                    {JobState::ALL
                        .into_iter()
                        .map(|state| {
                            view! {
                                <option value=state.as_str() selected=filter == Some(state)>
                                    {describe(state)}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
                {admin.then(|| view! {
                    <label for="owner-filter">"Owner"</label>
                    <input
                        id="owner-filter"
                        name="owner"
                        type="text"
                        placeholder="every account"
                        pattern="[A-Za-z0-9_-]{1,64}"
                        value=owner_filter
                    />
                })}
                <button type="submit" class="secondary">
                    "Filter"
                </button>
            </form>
            <Suspense fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                {move || {
                    let query = query.clone();
                    jobs.get()
                        .map(move |page| match page {
                            Ok(page) if page.jobs.is_empty() => {
                                view! { <p class="muted">"No jobs here yet."</p> }.into_any()
                            }
                            Ok(page) => {
                                let older = page
                                    .next_before
                                    .map(|before| HistoryQuery {
                                        before: Some(before),
                                        ..query.clone()
                                    });
                                let newest = query
                                    .before
                                    .map(|_| HistoryQuery {
                                        before: None,
                                        ..query.clone()
                                    });
                                view! {
                                    <ol class="history">
                                        {page.jobs.into_iter().map(|job| view! { <HistoryRow job admin /> }).collect_view()}
                                    </ol>
                                    <nav class="pages" aria-label="Pages">
                                        {newest.map(|q| view! { <a href=q.href()>"← Newest"</a> })}
                                        {older.map(|q| view! { <a href=q.href() rel="next">"Older →"</a> })}
                                    </nav>
                                }
                                    .into_any()
                            }
                            Err(error) => view! { <CallProblem error /> }.into_any(),
                        })
                }}
            </Suspense>
        </section>
    }
}

#[component]
fn HistoryRow(job: JobStatus, admin: bool) -> impl IntoView {
    let what = match (&job.filename, job.size.or(job.bytes_total)) {
        (Some(name), Some(size)) => format!("{name} · {}", format_bytes(size)),
        (Some(name), None) => name.clone(),
        (None, Some(size)) => format!("file · {}", format_bytes(size)),
        (None, None) => "metadata only".to_owned(),
    };
    view! {
        <li class="history-row" data-status=job.status.as_str()>
            <a href=format!("/jobs/{}", job.job_id)>
                <code>{job.job_id.to_string()}</code>
            </a>
            <span class="badge">{describe(job.status)}</span>
            <span class="what">{what}</span>
            {admin.then(|| view! { <span class="owner">{job.owner.to_string()}</span> })}
            <time class="muted">{format_time(&job.created_at)}</time>
        </li>
    }
}

/// Choosing a filter applies it at once; the Filter button does the same without scripts.
fn submit_form_of(event: &leptos::ev::Event) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(form) = event
            .target()
            .and_then(|target| target.dyn_into::<web_sys::HtmlSelectElement>().ok())
            .and_then(|select| select.form())
        {
            // `submit()` fires no submit event, so the form's own handler does not run.
            leave_out_an_empty_owner();
            let _ = form.submit();
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = event;
}

/// An empty owner field is left out of the URL (a disabled field is not sent), so a filter
/// by state alone reads `/jobs?status=failed`, as it does for members.
fn leave_out_an_empty_owner() {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(owner) = web_sys::window()
            .and_then(|window| window.document())
            .and_then(|document| document.get_element_by_id("owner-filter"))
            .and_then(|element| element.dyn_into::<web_sys::HtmlInputElement>().ok())
            .filter(|owner| owner.value().is_empty())
        {
            owner.set_disabled(true);
        }
    }
}
