//! Sign-in and sign-out forms. The token goes to the server once, in a form post; the page only
//! ever holds the HttpOnly session cookie the server sets, which scripts cannot read. Plain
//! forms (posting without scripts too) cost less wasm than `ActionForm`.
use crate::api::{CallError, SignIn, SignOut};
use leptos::{ev::SubmitEvent, html, prelude::*};
use server_fn::ServerFn;

/// The sign-in form, with the server's reason when the token or key is refused.
#[component]
pub fn SignInForm(action: Action<String, Result<(), CallError>>) -> impl IntoView {
    let error = move || match action.value().get() {
        Some(Err(error)) => Some(plain_message(&error)),
        _ => None,
    };
    let token = NodeRef::<html::Input>::new();
    let on_submit = move |event: SubmitEvent| {
        if let Some(input) = token.get() {
            event.prevent_default();
            action.dispatch(input.value());
        }
    };
    view! {
        <form class="sign-in" method="post" action=SignIn::PATH on:submit=on_submit>
            <label for="token">"API token"</label>
            <input
                id="token"
                type="password"
                name="token"
                autocomplete="current-password"
                required
                placeholder="The server's token, or an API key (ingest_…)"
                node_ref=token
            />
            <button type="submit" disabled=move || action.pending().get()>
                "Sign in"
            </button>
            {move || error().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </form>
    }
}

#[component]
pub fn SignOutForm(action: Action<(), Result<(), CallError>>) -> impl IntoView {
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        action.dispatch(());
    };
    view! {
        <form class="sign-out" method="post" action=SignOut::PATH on:submit=on_submit>
            <button type="submit" class="secondary">
                "Sign out"
            </button>
        </form>
    }
}

/// The server's message, first letter capitalised. The server's messages are English, so ASCII
/// case mapping suffices (full Unicode case tables would add ~10 KB of wasm).
pub fn plain_message(error: &CallError) -> String {
    if error.message.is_empty() {
        return "Something went wrong.".to_owned();
    }
    let mut message = error.message.clone();
    if let Some(first) = message.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    message
}
