//! The pages other than Start (History, a job, Accounts, Webhooks) and the Start page's uploads,
//! each in a wasm part of its own when the build is split (`cargo leptos build --release
//! --split`, which sets `cfg(wasm_split)`): a first visit loads the app and the Start form only.
//! A page's part is fetched when that page is opened: `load` fetches it before hydration starts,
//! so the view functions here are ready at once (every link is a full page load). The uploads'
//! part is fetched when the first upload or job starts on the Start page, or an interrupted
//! upload is resumed or discarded. Without `--split` the same code stays in the one wasm.
use super::{
    page::HistoryQuery, queue::Queue, uploads::Uploads, AccountsPage, HistoryPage, JobPage,
    WebhooksPage,
};
#[cfg(feature = "hydrate")]
use super::{
    queue::FileHandle,
    transfer::{Mismatch, UploadRecord},
};
#[cfg(feature = "hydrate")]
use crate::api::CallError;
use crate::domain::{JobId, JobStatus};
use leptos::{prelude::*, wasm_split::SplitLoaderError};
#[cfg(any(wasm_split, feature = "hydrate"))]
use std::future::Future;
#[cfg(wasm_split)]
use std::{
    pin::pin,
    task::{Context, Poll, Waker},
};

/// Declares `$view`, the entry of the wasm part `$part` in a split build (with `$preload`, which
/// fetches the part), a plain function otherwise. Fallible: a part that cannot be fetched (no
/// network, or the visitor leaving mid-fetch) is an `Err`, where it would abort the whole app.
macro_rules! part {
    ($part:ident, $preload:ident, fn $view:ident($($arg:ident: $type:ty),*) $body:block) => {
        #[cfg_attr(
            wasm_split,
            leptos::wasm_split::wasm_split(
                $part,
                wasm_split_path = ::leptos::wasm_split,
                preload($preload),
                fallible
            )
        )]
        fn $view($($arg: $type),*) -> Result<AnyView, SplitLoaderError> {
            Ok($body.into_any())
        }
    };
}

/// The view a part's entry gives once the part is here (a split build's call is a future,
/// ready at its first poll then); `None` were it missing after all.
macro_rules! now {
    ($call:expr) => {{
        #[cfg(wasm_split)]
        let view = at_once($call).and_then(Result::ok);
        #[cfg(not(wasm_split))]
        let view = $call.ok();
        view
    }};
}

part!(
    history,
    preload_history,
    fn history_view(query: HistoryQuery) {
        view! { <HistoryPage query /> }
    }
);

part!(
    job,
    preload_job,
    fn job_view(id: JobId) {
        view! { <JobPage id /> }
    }
);

part!(
    accounts,
    preload_accounts,
    fn accounts_view() {
        view! { <AccountsPage /> }
    }
);

part!(
    webhooks,
    preload_webhooks,
    fn webhooks_view() {
        view! { <WebhooksPage /> }
    }
);

// Unlike a page's part, this one is fetched mid-visit: a failed fetch is shown, with a way to
// try again.
part!(
    uploads,
    preload_uploads,
    fn uploads_view(queue: Queue, started: RwSignal<Vec<JobStatus>>) {
        view! { <Uploads queue started /> }
    }
);

/// A future run in the browser's one thread.
#[cfg(feature = "hydrate")]
type LocalFuture<T> = std::pin::Pin<Box<dyn Future<Output = T>>>;

/// Declares `$entry`, a function of the uploads' part that starts `$work` (an async block using
/// the arguments), and `$call`, which fetches the part if need be and awaits the work; a part
/// that cannot be fetched answers `$unloaded`. The interrupted uploads' Resume check and
/// Discard are such entries, so the Start form carries neither the hashing nor the HTTP code
/// they reach.
macro_rules! uploads_entry {
    (
        $entry:ident,
        pub async fn $call:ident($($arg:ident: $type:ty),*) -> $output:ty
        $work:block
        else $unloaded:expr
    ) => {
        #[cfg(feature = "hydrate")]
        #[cfg_attr(
            wasm_split,
            leptos::wasm_split::wasm_split(uploads, wasm_split_path = ::leptos::wasm_split, fallible)
        )]
        fn $entry($($arg: $type),*) -> Result<LocalFuture<$output>, SplitLoaderError> {
            Ok(Box::pin(async move $work))
        }

        #[cfg(feature = "hydrate")]
        pub async fn $call($($arg: $type),*) -> $output {
            #[cfg(wasm_split)]
            let work = $entry($($arg),*).await;
            #[cfg(not(wasm_split))]
            let work = $entry($($arg),*);
            match work {
                Ok(work) => work.await,
                Err(_) => $unloaded,
            }
        }
    };
}

uploads_entry!(
    same_file_entry,
    pub async fn same_file(file: FileHandle, record: UploadRecord) -> Result<(), Mismatch> {
        super::browser::same_file(&file, &record).await
    } else Err(Mismatch::Unchecked(
        "the page could not load what compares it; check the connection".to_owned()
    ))
);

uploads_entry!(
    discard_entry,
    pub async fn discard_upload(id: JobId) -> Result<(), CallError> {
        super::browser::transfers::discard_upload(id).await
    } else Err(CallError {
        status: 0,
        message: "the page could not load what discards it (check the connection)".to_owned(),
    })
);

/// The Start page's uploads: nothing until the first file is queued or the first job started
/// (so the server renders nothing, and hydration finds nothing), then their part is fetched and
/// they appear. Files queued meanwhile wait: the part's code is what sends them.
pub fn uploads(queue: Queue, started: RwSignal<Vec<JobStatus>>) -> impl IntoView {
    let part = RwSignal::new(Part::NotAsked);
    let fetch = move || {
        part.set(Part::Fetching);
        leptos::task::spawn_local(async move {
            #[cfg(wasm_split)]
            let fetched = preload_uploads().await.is_ok();
            #[cfg(not(wasm_split))]
            let fetched = true;
            part.set(if fetched { Part::Here } else { Part::Failed });
        });
    };
    Effect::new(move |_| {
        let wanted =
            queue.files.with(|files| !files.is_empty()) || started.with(|jobs| !jobs.is_empty());
        // After a failure only "try again" fetches again.
        if wanted && part.get_untracked() == Part::NotAsked {
            fetch();
        }
    });
    move || match part.get() {
        Part::Here => now!(uploads_view(queue, started)).unwrap_or_else(|| ().into_any()),
        Part::Failed => view! {
            <p class="error" role="alert">
                "The page could not load what sends your files; check the connection and "
                <button class="secondary" on:click=move |_| fetch()>
                    "try again"
                </button> "."
            </p>
        }
        .into_any(),
        Part::Fetching => view! {
            <p class="muted" role="status">
                "Preparing the uploads…"
            </p>
        }
        .into_any(),
        Part::NotAsked => ().into_any(),
    }
}

/// Where the uploads' part is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    NotAsked,
    Fetching,
    Failed,
    Here,
}

pub fn history(query: HistoryQuery) -> AnyView {
    page("history", now!(history_view(query)))
}

pub fn job(id: JobId) -> AnyView {
    page("job", now!(job_view(id)))
}

pub fn accounts() -> AnyView {
    page("accounts", now!(accounts_view()))
}

pub fn webhooks() -> AnyView {
    page("webhooks", now!(webhooks_view()))
}

/// A page from its part. The server also names the part in the page's head (a preload link), so
/// the browser fetches it beside the app's wasm instead of after it.
fn page(part: &'static str, view: Option<AnyView>) -> AnyView {
    #[cfg(feature = "ssr")]
    leptos::prefetch_lazy_fn_on_server(part);
    #[cfg(not(feature = "ssr"))]
    let _ = part;
    view.unwrap_or_else(|| ().into_any())
}

/// What a call into an already loaded part gives: its future is ready at the first poll.
#[cfg(wasm_split)]
fn at_once<T>(call: impl Future<Output = T>) -> Option<T> {
    match pin!(call).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(value) => Some(value),
        Poll::Pending => None,
    }
}

/// Fetches the wasm part of `page` (nothing for Start, or when the build is not split).
#[cfg(feature = "hydrate")]
pub async fn load(page: &super::Page) -> Result<(), SplitLoaderError> {
    #[cfg(wasm_split)]
    {
        use super::Page;
        match page {
            Page::History(_) => preload_history().await,
            Page::Job(_) => preload_job().await,
            Page::Accounts => preload_accounts().await,
            Page::Webhooks => preload_webhooks().await,
            Page::Home | Page::NotFound => Ok(()),
        }
    }
    #[cfg(not(wasm_split))]
    {
        let _ = page;
        Ok(())
    }
}

/// Says, above the page the server rendered, that its code could not be fetched: it stays
/// readable, and its links work, but nothing on it responds. (When the visitor is leaving,
/// which also ends a fetch, no one sees it.)
#[cfg(feature = "hydrate")]
pub fn say_not_loaded() {
    if let Some(main) = web_sys::window()
        .and_then(|window| window.document())
        .and_then(|document| document.query_selector("main").ok().flatten())
    {
        let _ = main.insert_adjacent_html(
            "afterbegin",
            r#"<p class="error" role="alert">This page could not load its code, so its buttons do nothing. Reload it to try again.</p>"#,
        );
    }
}
