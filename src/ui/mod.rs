//! Pages and components. `page` picks the page from the URL; `session` knows who is signed in;
//! `browser` (hydrate only) holds what needs the browser's APIs.
mod accounts;
pub mod backoff;
#[cfg(feature = "hydrate")]
mod browser;
mod format;
mod history;
mod home;
mod job_card;
mod job_page;
mod page;
mod session;
mod sign_in;
mod start;
mod webhooks;

pub use accounts::AccountsPage;
pub use history::HistoryPage;
pub use home::{HomePage, Hydrated};
pub use job_page::JobPage;
pub use page::{Page, PageKind, PAGES};
pub use session::{AdminLinks, RequireSession, Session, SignedInAs};
pub use webhooks::WebhooksPage;

use crate::api::CallError;
use leptos::prelude::*;

/// A failed server call, in plain words, with the way out when it is a missing session.
#[component]
fn CallProblem(error: CallError) -> impl IntoView {
    let signed_out = error.status == 401;
    view! {
        <p class="error" role="alert">
            {sign_in::plain_message(&error)}
            {signed_out.then(|| view! { " " <a href="/">"Sign in"</a> })}
        </p>
    }
}
