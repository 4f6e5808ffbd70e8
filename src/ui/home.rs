//! The landing page: the sign-in form for visitors without a session, the app for those with one.
use super::{
    format::format_bytes, session::Session, sign_in::SignInForm, start::StartIngestForm,
    CallProblem,
};
use crate::api::get_service_info;
use leptos::prelude::*;

#[component]
pub fn HomePage() -> impl IntoView {
    // The page's session: the header's sign-out and this sign-in form share it.
    let session = Session::expect();
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
                        .me
                        .get()
                        .map(|me| match me {
                            Ok(Some(_)) => view! { <SignedIn hydrated /> }.into_any(),
                            Ok(None) => view! { <SignInForm action=session.sign_in /> }.into_any(),
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

/// What a signed-in visitor sees: the form to start ingests, then a quiet line with the
/// server's facts (its "Check server" asks again, a round trip tests also use).
#[component]
fn SignedIn(hydrated: RwSignal<bool>) -> impl IntoView {
    let info = super::loaded::load(|| (), |_| get_service_info());
    // A round trip to a server function from the hydrated page, without re-rendering it.
    let check = Action::new(|_: &()| get_service_info());
    focus_after_sign_in();

    view! {
        <div class="signed-in">
            <h2 id="start-title" tabindex="-1">"Start an ingest"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Asking the server…"</p> }>
                {move || {
                    info.get()
                        .map(|result| match result {
                            Ok(info) => {
                                view! {
                                    <StartIngestForm
                                        max_metadata_bytes=info.max_metadata_bytes
                                        max_upload_bytes=info.max_upload_bytes
                                    />
                                    <p id="service-info" class="server-status muted">
                                        "Server " {info.version} ", uploads up to "
                                        {format_bytes(info.max_upload_bytes)} ". "
                                    </p>
                                }
                                    .into_any()
                            }
                            Err(error) => view! { <CallProblem error /> }.into_any(),
                        })
                }}
            </Suspense>
            <p class="server-status muted">
                <button
                    id="check-server"
                    class="quiet"
                    on:click=move |_| {
                        check.dispatch(());
                    }
                    disabled=move || !hydrated.get()
                >
                    "Check server"
                </button>
                " "
                <span id="check-count" role="status">
                    {move || match (check.version().get(), check.value().get()) {
                        (0, _) | (_, None) => String::new(),
                        (n, Some(Ok(_))) => format!("checked {n}×"),
                        (_, Some(Err(error))) => format!("check failed: {error}"),
                    }}
                </span>
            </p>
        </div>
    }
}

/// After signing in here, focus goes to the app (not left on a form that is gone).
fn focus_after_sign_in() {
    #[cfg(feature = "hydrate")]
    {
        let session = super::session::Session::expect();
        if session.sign_in.version().get_untracked() > 0 {
            Effect::new(move |_| {
                use wasm_bindgen::JsCast;
                if let Some(title) = web_sys::window()
                    .and_then(|window| window.document())
                    .and_then(|document| document.get_element_by_id("start-title"))
                    .and_then(|element| element.dyn_into::<web_sys::HtmlElement>().ok())
                {
                    let _ = title.focus();
                }
            });
        }
    }
}
