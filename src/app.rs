//! The HTML shell and the app: a header, and the page the URL names (see `ui::Page`).
use crate::ui::{split, AdminLinks, HomePage, Hydrated, Page, RequireSession, Session, SignedInAs};
use leptos::prelude::*;

/// The document the server renders around the app. On the server it also sets the page's
/// Content-Security-Policy, with the nonce Leptos gives this render's inline scripts.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        let reload_port = std::env::var_os("LEPTOS_WATCH").map(|_| options.reload_port);
        let policy = crate::server::security_headers::page_policy(&nonce.to_string(), reload_port);
        if let Ok(policy) = axum::http::HeaderValue::from_str(&policy) {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, policy);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <title>"Ingest"</title>
                <link id="leptos" rel="stylesheet" href="/pkg/ingest.css" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    let hydrated = RwSignal::new(false);
    // Effects run only in the browser, so this flips once the wasm has taken over the page.
    Effect::new(move |_| hydrated.set(true));
    provide_context(Hydrated(hydrated));
    // Who is signed in, for the header and every page.
    Session::provide();
    let page = match Page::current() {
        Page::Home => view! { <HomePage /> }.into_any(),
        // The other pages show nothing without a session but the sign-in form.
        Page::History(query) => view! {
            <RequireSession>
                {split::history(query.clone())}
            </RequireSession>
        }
        .into_any(),
        Page::Job(id) => view! {
            <RequireSession>
                {split::job(id)}
            </RequireSession>
        }
        .into_any(),
        Page::Accounts => view! {
            <RequireSession>
                {split::accounts()}
            </RequireSession>
        }
        .into_any(),
        Page::Webhooks => view! {
            <RequireSession>
                {split::webhooks()}
            </RequireSession>
        }
        .into_any(),
        Page::NotFound => {
            #[cfg(feature = "ssr")]
            if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
                response.set_status(axum::http::StatusCode::NOT_FOUND);
            }
            view! {
                <section class="card">
                    <h1>"Page not found"</h1>
                    <p>
                        <a href="/">"Start an ingest"</a> " or see the " <a href="/jobs">"history"</a> "."
                    </p>
                </section>
            }
                .into_any()
        }
    };
    view! {
        <header class="top">
            <a class="brand" href="/">
                "Ingest"
            </a>
            <nav aria-label="Main">
                <a href="/">"Start"</a>
                <a href="/jobs">"History"</a>
                <a href="/webhooks">"Webhooks"</a>
                <AdminLinks />
                <a href="/docs">"API docs"</a>
            </nav>
            <SignedInAs />
        </header>
        <main data-hydrated=move || hydrated.get().to_string()>{page}</main>
    }
}
