//! `/jobs/{id}`: one job, rendered on the server in its current state, live once hydrated (a
//! reload mid-run picks the job up again), with its times, metadata, download and Delete.
use super::{
    job_card::{JobCard, JobTimes},
    CallProblem,
};
use crate::{api::get_job_status, domain::JobId};
use leptos::prelude::*;

#[component]
pub fn JobPage(id: JobId) -> impl IntoView {
    let job = super::loaded::load(move || id, get_job_status);
    view! {
        <section class="card">
            <h1>"Job"</h1>
            <p>
                <a href="/jobs">"← History"</a>
            </p>
            <Suspense fallback=|| view! { <p class="muted">"Loading the job…"</p> }>
                {move || {
                    job.get()
                        .map(|result| match result {
                            Ok(job) => {
                                view! {
                                    <ul class="jobs">
                                        <JobCard id initial=Some(job.clone()) upload=None />
                                    </ul>
                                    <JobTimes job />
                                    <DeleteJob id />
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

/// Delete, with a second press to confirm; the server refuses a job that has not finished.
#[component]
fn DeleteJob(id: JobId) -> impl IntoView {
    let confirming = RwSignal::new(false);
    let outcome = RwSignal::new(None::<Result<(), String>>);
    let delete = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let answer = gloo_net::http::Request::delete(&format!("/api/jobs/{id}"))
                .send()
                .await;
            outcome.set(Some(match answer {
                Ok(response) if response.ok() => Ok(()),
                Ok(response) if response.status() == 409 => {
                    Err("It has not finished yet: cancel it first, or wait.".to_owned())
                }
                Ok(response) => Err(format!("The server refused ({}).", response.status())),
                Err(error) => Err(format!("The server could not be reached ({error}).")),
            }));
            confirming.set(false);
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (id, outcome);
    };
    view! {
        <div class="delete-job">
            {move || match outcome.get() {
                Some(Ok(())) => {
                    view! {
                        <p role="status">
                            "Deleted. " <a href="/jobs">"Back to the history"</a>
                        </p>
                    }
                        .into_any()
                }
                other => {
                    view! {
                        <Show
                            when=move || confirming.get()
                            fallback=move || {
                                view! {
                                    <button class="secondary danger" on:click=move |_| confirming.set(true)>
                                        "Delete…"
                                    </button>
                                }
                            }
                        >
                            <div class="confirm">
                                <p>"Delete this job and its file for good?"</p>
                                <button class="danger" on:click=delete>
                                    "Delete"
                                </button>
                                <button class="secondary" on:click=move |_| confirming.set(false)>
                                    "Keep it"
                                </button>
                            </div>
                        </Show>
                        {other
                            .and_then(Result::err)
                            .map(|text| view! { <p class="error" role="alert">{text}</p> })}
                    }
                        .into_any()
                }
            }}
        </div>
    }
}
