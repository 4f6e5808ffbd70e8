//! `/jobs`: recent jobs, newest first, a page at a time, searched by file name and metadata
//! text and filtered by state (and, for an admin, who sees every account's jobs, by owner,
//! each shown with its owner); each links to its own page. Rendered on the server from the
//! URL; once hydrated, filters apply in place (the URL follows with `replaceState`, nothing
//! navigates) and the list refreshes itself every few seconds while the tab is visible.
use super::{
    format::{format_bytes, format_time, metadata_text},
    job_card::describe,
    page::HistoryQuery,
    CallProblem,
};
use crate::{
    api::{list_jobs, SignedIn},
    domain::{AccountName, JobState, JobStatus, Role},
};
use leptos::prelude::*;

const PAGE_SIZE: u32 = 20;

/// How often the list asks again while visible: polling, because a list has no socket of its
/// own and one request every few seconds costs the server little.
#[cfg(feature = "hydrate")]
const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

#[component]
pub fn HistoryPage(query: HistoryQuery) -> impl IntoView {
    let status = RwSignal::new(query.status);
    let owner = RwSignal::new(query.owner.clone());
    let q = RwSignal::new(query.q.clone().unwrap_or_default());
    let before = RwSignal::new(query.before);
    let refreshed = RwSignal::new(0u32);
    let current = move || HistoryQuery {
        status: status.get(),
        owner: owner.get(),
        before: before.get(),
        q: Some(q.get()).filter(|q| !q.is_empty()),
    };
    let jobs = super::loaded::load(
        move || (current(), refreshed.get()),
        |(query, _)| {
            list_jobs(
                query.status,
                query.owner,
                query.before,
                Some(PAGE_SIZE),
                query.q,
            )
        },
    );
    keep_fresh(refreshed, current);
    let admin = use_context::<SignedIn>().is_some_and(|me| me.role == Role::Admin);
    let filter = query.status;
    let owner_filter = query
        .owner
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let search_text = query.q.clone().unwrap_or_default();
    // Typing waits for a pause before asking.
    let typed = StoredValue::new(0u32);
    let on_search = move |event: leptos::ev::Event| {
        let text = event_target_value(&event);
        let turn = typed.get_value() + 1;
        typed.set_value(turn);
        let apply = move || {
            if typed.get_value() == turn {
                before.set(None);
                q.set(text.trim().to_owned());
            }
        };
        #[cfg(feature = "hydrate")]
        leptos::leptos_dom::helpers::set_timeout(apply, std::time::Duration::from_millis(250));
        #[cfg(not(feature = "hydrate"))]
        apply();
    };

    view! {
        <section class="card">
            <h1>"History"</h1>
            <form
                class="filter"
                method="get"
                action="/jobs"
                role="search"
                on:submit=move |event| {
                    // Hydrated, filters already apply as they change; without scripts, Enter
                    // in the search field sends the form's GET.
                    event.prevent_default();
                }
            >
                <label for="search">"Search"</label>
                <input
                    id="search"
                    class="search"
                    name="q"
                    type="search"
                    placeholder="file name or metadata"
                    value=search_text
                    on:input=on_search
                />
                <label for="status-filter">"Status"</label>
                <select
                    id="status-filter"
                    name="status"
                    on:change=move |event| {
                        before.set(None);
                        status.set(event_target_value(&event).parse().ok());
                    }
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
                        on:input=move |event| {
                            // Applied once it is a name (or empty: every account).
                            let text = event_target_value(&event);
                            let text = text.trim();
                            let parsed = AccountName::parse(text).ok();
                            if parsed.is_some() || text.is_empty() {
                                before.set(None);
                                owner.set(parsed);
                            }
                        }
                    />
                })}
            </form>
            <Transition fallback=|| view! { <p class="muted">"Loading jobs…"</p> }>
                {move || {
                    jobs.get()
                        .map(move |page| match page {
                            Ok(page) if page.jobs.is_empty() => {
                                view! { <p class="muted" role="status">"No jobs here yet."</p> }.into_any()
                            }
                            Ok(page) => {
                                let query = current();
                                let older = page
                                    .next_before
                                    .map(|next| HistoryQuery {
                                        before: Some(next),
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
            </Transition>
        </section>
    }
}

#[component]
fn HistoryRow(job: JobStatus, admin: bool) -> impl IntoView {
    let name = job.filename.clone();
    let what = match (&job.filename, job.size.or(job.bytes_total)) {
        (Some(name), Some(size)) => format!("{name} · {}", format_bytes(size)),
        (Some(name), None) => name.clone(),
        (None, _) => "Metadata only".to_owned(),
    };
    let metadata = Some(metadata_text(&job.metadata)).filter(|text| text != "{}");
    let running = !job.is_terminal();
    let label = format!(
        "Progress of {}",
        name.clone().unwrap_or_else(|| job.job_id.to_string())
    );
    view! {
        <li class="history-row" data-status=job.status.as_str()>
            <a href=format!("/jobs/{}", job.job_id) class="title">
                {what}
            </a>
            <span class="badge">{describe(job.status)}</span>
            {running
                .then(|| {
                    view! {
                        <progress max="100" value=job.progress aria-label=label></progress>
                    }
                })}
            {metadata.map(|text| view! { <code class="metadata">{text}</code> })}
            <span class="muted job-id">
                <code>{job.job_id.to_string()}</code>
            </span>
            {admin.then(|| view! { <span class="owner">{job.owner.to_string()}</span> })}
            <time class="muted">{format_time(&job.created_at)}</time>
        </li>
    }
}

/// In the browser: asks the server again every few seconds while the tab is visible (and the
/// keyboard focus is not on a row), and keeps
/// the address bar on the filters shown (so a reload or a shared link shows the same).
fn keep_fresh(
    refreshed: RwSignal<u32>,
    current: impl Fn() -> HistoryQuery + Send + Sync + 'static,
) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::leptos_dom::helpers::set_interval_with_handle;
        let ticker = set_interval_with_handle(
            move || {
                let document = web_sys::window().and_then(|window| window.document());
                let visible = document.as_ref().is_none_or(|document| !document.hidden());
                // Re-rendering the rows would take the focus from a row someone is on.
                let reading_a_row = document
                    .and_then(|document| document.active_element())
                    .and_then(|element| element.closest(".history").ok().flatten())
                    .is_some();
                if visible && !reading_a_row {
                    refreshed.update(|n| *n += 1);
                }
            },
            REFRESH_EVERY,
        )
        .ok();
        on_cleanup(move || {
            if let Some(ticker) = ticker {
                ticker.clear();
            }
        });
        Effect::new(move |_| {
            let href = current().href();
            if let Some(history) = web_sys::window().and_then(|window| window.history().ok()) {
                let _ =
                    history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&href));
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = (refreshed, current);
}
