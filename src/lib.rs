//! Ingest: push files or metadata in as jobs and watch each one live until it is stored.
//!
//! Crate map: `domain` and `api` are shared by the server and the browser; `ui` and `app` are the
//! Leptos pages; `server` (ssr only) is the HTTP service, storage, queue and worker; `client`
//! (ssr only: it runs in the same binary) is the command-line client of the HTTP API.
// Leptos views are deeply nested types; the job card inside the start form needs more room.
#![recursion_limit = "256"]

pub mod api;
pub mod app;
pub mod domain;
pub mod ui;

#[cfg(feature = "ssr")]
pub mod client;
#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: fetches the page's own wasm part, if it has one (`ui::split`), then
/// hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    wasm_bindgen_futures::spawn_local(async {
        match ui::split::load(&ui::Page::current()).await {
            Ok(()) => leptos::mount::hydrate_body(app::App),
            Err(_) => ui::split::say_not_loaded(),
        }
    });
}
