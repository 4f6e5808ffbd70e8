//! The landing page: the sign-in form for visitors without a session, the app for those with one.
use super::{
    format::format_bytes,
    sign_in::{SignInForm, SignOutForm},
    start::StartIngestForm,
    CallProblem,
};
use crate::api::{get_service_info, has_session, sign_in, sign_out, CallError};
use leptos::prelude::*;

#[component]
pub fn HomePage() -> impl IntoView {
    // Plain actions calling the server functions: `ServerAction` would also decode errors a
    // router puts in the URL after a scriptless post, and this app has no router (~4 KB wasm).
    let sign_in = Action::new(|token: &String| sign_in(token.clone()));
    let sign_out = Action::new(|_: &()| sign_out());
    // Asked again after every sign-in or sign-out.
    let session = Resource::new(
        move || (sign_in.version().get(), sign_out.version().get()),
        |_| has_session(),
    );
    let hydrated = expect_context::<Hydrated>().0;

    view! {
        <section class="card">
            <h1>"Ingest"</h1>
            <p>
                "Push files or metadata in as ingest jobs and watch each one until it is stored. "
                "Scripts use " <code>"POST /api/ingest"</code> ", " <code>"GET /api/status/{id}"</code>
                " and " <code>"/ws/status/{id}"</code> " with a bearer token."
            </p>
            <Suspense fallback=|| view! { <p class="muted">"Checking your session…"</p> }>
                {move || {
                    session
                        .get()
                        .map(|signed_in| match signed_in {
                            Ok(true) => {
                                view! { <SignedIn sign_out hydrated /> }.into_any()
                            }
                            Ok(false) => view! { <SignInForm action=sign_in /> }.into_any(),
                            Err(error) => view! { <CallProblem error /> }.into_any(),
                        })
                }}
            </Suspense>
        </section>
    }
}

/// Whether the wasm has taken over the page (provided by the app shell).
#[derive(Clone, Copy)]
pub struct Hydrated(pub RwSignal<bool>);

/// What a signed-in visitor sees: the server's facts and the form to start ingests.
#[component]
fn SignedIn(
    sign_out: Action<(), Result<(), CallError>>,
    hydrated: RwSignal<bool>,
) -> impl IntoView {
    let info = Resource::new(|| (), |_| get_service_info());
    // A round trip to a server function from the hydrated page, without re-rendering it.
    let check = Action::new(|_: &()| get_service_info());

    view! {
        <div class="signed-in">
            <Suspense fallback=|| view! { <p class="muted">"Asking the server…"</p> }>
                {move || {
                    info.get()
                        .map(|result| match result {
                            Ok(info) => {
                                view! {
                                    <p id="service-info">
                                        "Server " <strong>{info.version}</strong>
                                        ", uploads up to "
                                        <strong>{format_bytes(info.max_upload_bytes)}</strong> "."
                                    </p>
                                    <StartIngestForm
                                        max_metadata_bytes=info.max_metadata_bytes
                                        max_upload_bytes=info.max_upload_bytes
                                    />
                                }
                                    .into_any()
                            }
                            Err(error) => view! { <CallProblem error /> }.into_any(),
                        })
                }}
            </Suspense>
            <button
                id="check-server"
                on:click=move |_| {
                    check.dispatch(());
                }
                disabled=move || !hydrated.get()
            >
                "Check server"
            </button>
            <span id="check-count" class="muted">
                {move || match (check.version().get(), check.value().get()) {
                    (0, _) | (_, None) => String::new(),
                    (n, Some(Ok(_))) => format!("checked {n}×"),
                    (_, Some(Err(error))) => format!("check failed: {error}"),
                }}
            </span>
            <SignOutForm action=sign_out />
        </div>
    }
}
