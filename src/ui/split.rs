//! The pages other than Start (History, a job, Accounts, Webhooks), each in a wasm part of its
//! own when the build is split (`cargo leptos build --release --split`, which sets
//! `cfg(wasm_split)`): a first visit loads the app and the Start page only, and a page's part
//! is fetched when that page is opened. `load` fetches it before hydration starts, so the view
//! functions here are ready at once; every link is a full page load, so nothing is fetched later.
//! Without `--split` the same code stays in the one wasm.
use super::{page::HistoryQuery, AccountsPage, HistoryPage, JobPage, WebhooksPage};
use crate::domain::JobId;
use leptos::prelude::*;
use std::{
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
};

#[cfg_attr(wasm_split, leptos::lazy)]
async fn history_view(query: HistoryQuery) -> AnyView {
    view! { <HistoryPage query /> }.into_any()
}

#[cfg_attr(wasm_split, leptos::lazy)]
async fn job_view(id: JobId) -> AnyView {
    view! { <JobPage id /> }.into_any()
}

#[cfg_attr(wasm_split, leptos::lazy)]
async fn accounts_view() -> AnyView {
    view! { <AccountsPage /> }.into_any()
}

#[cfg_attr(wasm_split, leptos::lazy)]
async fn webhooks_view() -> AnyView {
    view! { <WebhooksPage /> }.into_any()
}

pub fn history(query: HistoryQuery) -> AnyView {
    at_once(history_view(query))
}

pub fn job(id: JobId) -> AnyView {
    at_once(job_view(id))
}

pub fn accounts() -> AnyView {
    at_once(accounts_view())
}

pub fn webhooks() -> AnyView {
    at_once(webhooks_view())
}

/// A page's view from its (already loaded) part: the future is ready at its first poll. Were
/// the part missing after all, the page would stay empty rather than wrong.
fn at_once(view: impl Future<Output = AnyView>) -> AnyView {
    match pin!(view).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(view) => view,
        Poll::Pending => ().into_any(),
    }
}

/// Fetches the wasm part of `page` (nothing for Start, or when the build is not split).
#[cfg(feature = "hydrate")]
pub async fn load(page: &super::Page) {
    #[cfg(wasm_split)]
    use super::Page;
    #[cfg(wasm_split)]
    match page {
        Page::History(_) => __preload_history_view().await,
        Page::Job(_) => __preload_job_view().await,
        Page::Accounts => __preload_accounts_view().await,
        Page::Webhooks => __preload_webhooks_view().await,
        Page::Home | Page::NotFound => {}
    }
    #[cfg(not(wasm_split))]
    let _ = page;
}
