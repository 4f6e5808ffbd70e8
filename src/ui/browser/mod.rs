//! Browser-only plumbing (hydrate builds): timers, the page's own HTTP requests, following a job
//! over its WebSocket, sending files (the queue's transfers), finding dropped files, and the
//! clipboard. Components reach it through the few
//! functions here.
mod clipboard;
pub mod files;
mod follow;
pub mod hashing;
pub mod transfers;
mod upload;

pub use clipboard::copy_text;
pub use follow::Follower;
pub use transfers::Running;
pub use upload::{
    create_upload, remember, resumable, same_file, server_offset, FileUpload, UploadSignals,
};

use crate::{
    api::{CallError, ErrorBody},
    domain::{JobId, JobStatus},
    ui::backoff::Backoff,
};
use serde::de::DeserializeOwned;
use std::future::Future;

/// Retries a call while it fails transiently, waiting with capped exponential backoff and full
/// jitter between attempts; a permanent failure (a 4xx) comes back at once.
pub async fn retrying<T, F, Fut>(call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    retrying_if(CallError::is_transient, call).await
}

/// Like `retrying`, for the failures `worth_retrying` picks.
pub async fn retrying_if<T, F, Fut>(
    worth_retrying: impl Fn(&CallError) -> bool,
    mut call: F,
) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    loop {
        match call().await {
            Err(error) if worth_retrying(&error) && attempt + 1 < ATTEMPTS => {
                sleep_ms(Backoff::CALL.delay_ms(attempt, js_sys::Math::random())).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// `GET /api/status/{id}` with the session cookie: the polling fallback and "Poll status".
pub async fn fetch_status(id: JobId) -> Result<JobStatus, CallError> {
    let response = gloo_net::http::Request::get(&format!("/api/status/{id}"))
        .send()
        .await
        .map_err(unreachable)?;
    json_or_error(response).await
}

/// The body as `T` on 2xx, else the server's `{"error": …}` message with the status.
async fn json_or_error<T: DeserializeOwned>(
    response: gloo_net::http::Response,
) -> Result<T, CallError> {
    let status = response.status();
    // Read as bytes, not with gloo-net's `json()`: its `from_str` would be a second JSON reader
    // in the wasm (see `ui::loaded`).
    let body = response.binary().await.unwrap_or_default();
    if response.ok() {
        return serde_json::from_slice(&body).map_err(|error| CallError {
            status: 0,
            message: format!("the server's answer was unreadable: {error}"),
        });
    }
    let message = match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(body) => body.error.message,
        Err(_) => format!("the server answered {status}"),
    };
    Err(CallError { status, message })
}

fn unreachable(error: gloo_net::Error) -> CallError {
    CallError {
        status: 0,
        message: format!("the server could not be reached ({error})"),
    }
}

/// Resolves after `ms` milliseconds.
pub async fn sleep_ms(ms: u32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ =
                window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms as i32);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// `ws://host` or `wss://host` for this page.
fn socket_origin() -> String {
    let location = web_sys::window().map(|window| window.location());
    let secure = location
        .as_ref()
        .and_then(|l| l.protocol().ok())
        .is_some_and(|p| p == "https:");
    let host = location.and_then(|l| l.host().ok()).unwrap_or_default();
    format!("{}://{host}", if secure { "wss" } else { "ws" })
}
