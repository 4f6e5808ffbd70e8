//! Pages and components. `page` picks the page from the URL; `split` holds the pages that load
//! apart from Start; `session` knows who is signed in;
//! `browser` (hydrate only) holds what needs the browser's APIs; `queue` and `transfer` are the
//! Start page's upload queue and its arithmetic.
mod accounts;
pub mod backoff;
#[cfg(feature = "hydrate")]
mod browser;
mod format;
mod history;
mod home;
mod job_card;
mod job_page;
mod loaded;
mod page;
mod queue;
mod session;
mod sign_in;
pub mod split;
mod start;
mod transfer;
mod upload_card;
mod uploads;
mod webhooks;

pub use accounts::AccountsPage;
pub use history::HistoryPage;
pub use home::{HomePage, Hydrated};
pub use job_page::JobPage;
pub use page::{encode_query_value, Page, PageKind, PAGES};
pub use session::{AdminLinks, RequireSession, Session, SignedInAs};
pub use webhooks::WebhooksPage;

use crate::api::CallError;
use leptos::prelude::*;

/// A failed server call, in plain words, with the way out when it is a missing session.
#[component]
fn CallProblem(error: CallError) -> impl IntoView {
    // A missing session is not an error to explain: the way out is to sign in.
    if error.status == 401 {
        return view! {
            <p class="error" role="alert">
                "You are not signed in. " <a href="/">"Sign in"</a> " to see this."
            </p>
        }
        .into_any();
    }
    view! { <p class="error" role="alert">{sign_in::plain_message(&error)}</p> }.into_any()
}
