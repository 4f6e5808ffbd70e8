//! `/jobs/{id}`: one job, rendered on the server in its current state, live once hydrated (a
//! reload mid-run picks the job up again).
use super::{job_card::JobCard, CallProblem};
use crate::{api::get_job_status, domain::JobId};
use leptos::prelude::*;

#[component]
pub fn JobPage(id: JobId) -> impl IntoView {
    let job = Resource::new(move || id, get_job_status);
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
                                        <JobCard id initial=Some(job) upload=None />
                                    </ul>
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
