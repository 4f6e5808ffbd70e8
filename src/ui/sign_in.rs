//! Sign-in and sign-out forms. The token goes to the server once, in a form post; the page only
//! ever holds the HttpOnly session cookie the server sets, which scripts cannot read.
use crate::api::{SignIn, SignOut};
use leptos::{form::ActionForm, prelude::*};

/// The sign-in form, with the server's reason when the token is refused.
#[component]
pub fn SignInForm(action: ServerAction<SignIn>) -> impl IntoView {
    let error = move || match action.value().get() {
        Some(Err(error)) => Some(plain_message(&error)),
        _ => None,
    };
    view! {
        <ActionForm action=action attr:class="sign-in">
            <label for="token">"API token"</label>
            <input
                id="token"
                type="password"
                name="token"
                autocomplete="current-password"
                required
                placeholder="The token the server was started with"
            />
            <button type="submit" disabled=move || action.pending().get()>
                "Sign in"
            </button>
            {move || error().map(|message| view! { <p class="error" role="alert">{message}</p> })}
        </ActionForm>
    }
}

#[component]
pub fn SignOutForm(action: ServerAction<SignOut>) -> impl IntoView {
    view! {
        <ActionForm action=action attr:class="sign-out">
            <button type="submit">"Sign out"</button>
        </ActionForm>
    }
}

/// The server's message without the framework's prefix, first letter capitalised.
fn plain_message(error: &ServerFnError) -> String {
    let message = match error {
        ServerFnError::ServerError(message) => message.clone(),
        other => format!("The server could not be reached ({other})."),
    };
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => message,
    }
}
