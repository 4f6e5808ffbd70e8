//! The landing page: the sign-in form for visitors without a session, the app for those with one.
use super::{
    jobs::StartIngestForm,
    sign_in::{SignInForm, SignOutForm},
};
use crate::api::{get_service_info, has_session, GetServiceInfo, SignIn, SignOut};
use leptos::prelude::*;

#[component]
pub fn HomePage() -> impl IntoView {
    let sign_in = ServerAction::<SignIn>::new();
    let sign_out = ServerAction::<SignOut>::new();
    // Asked again after every sign-in or sign-out.
    let session = Resource::new(
        move || (sign_in.version().get(), sign_out.version().get()),
        |_| has_session(),
    );
    let hydrated = RwSignal::new(false);
    // Effects run only in the browser, so this flips once the wasm has taken over the page.
    Effect::new(move |_| hydrated.set(true));

    view! {
        <section class="card" data-hydrated=move || hydrated.get().to_string()>
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
                            Err(error) => view! { <ServerError error /> }.into_any(),
                        })
                }}
            </Suspense>
        </section>
    }
}

/// What a signed-in visitor sees (for now: the server's facts; the job views come next).
#[component]
fn SignedIn(sign_out: ServerAction<SignOut>, hydrated: RwSignal<bool>) -> impl IntoView {
    let info = Resource::new(|| (), |_| get_service_info());
    // A round trip to a server function from the hydrated page, without re-rendering it.
    let check = ServerAction::<GetServiceInfo>::new();

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
                                    <StartIngestForm max_metadata_bytes=info.max_metadata_bytes />
                                }
                                    .into_any()
                            }
                            Err(error) => view! { <ServerError error /> }.into_any(),
                        })
                }}
            </Suspense>
            <button
                id="check-server"
                on:click=move |_| {
                    check.dispatch(GetServiceInfo {});
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

/// A failed server call, in plain words.
#[component]
fn ServerError(error: ServerFnError) -> impl IntoView {
    view! {
        <p class="error" role="alert">
            "The server did not answer: " {error.to_string()}
        </p>
    }
}

/// Binary units, one decimal: what people read on file dialogs.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::format_bytes;

    #[test]
    fn formats_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
    }
}
