//! Who is signed in, known once per page: the app shell provides a `Session` (the sign-in and
//! sign-out actions and the caller they lead to) that the header, the home page and the pages
//! that need a caller all read, so signing in anywhere updates all of them at once.
use super::{
    page::Page,
    sign_in::{SignInForm, SignOutForm},
    CallProblem,
};
use crate::{
    api::{sign_in, sign_out, who_am_i, CallError, SignedIn},
    domain::Role,
};
use leptos::prelude::*;

#[derive(Clone, Copy)]
pub struct Session {
    pub sign_in: Action<String, Result<(), CallError>>,
    pub sign_out: Action<(), Result<(), CallError>>,
    /// The caller, `None` for a visitor without a session; asked again after every sign-in or
    /// sign-out.
    pub me: super::loaded::Loaded<Result<Option<SignedIn>, CallError>>,
}

impl Session {
    /// Creates the page's session and provides it to every component below.
    pub fn provide() -> Self {
        // Plain actions calling the server functions: `ServerAction` would also decode errors a
        // router puts in the URL after a scriptless post, and this app has no router (~4 KB wasm).
        let sign_in = Action::new(|token: &String| sign_in(token.clone()));
        let sign_out = Action::new(|_: &()| sign_out());
        let me = super::loaded::load(
            move || (sign_in.version().get(), sign_out.version().get()),
            |_| who_am_i(),
        );
        // The home page turns into the sign-in form by itself; any other page would go on
        // showing what only the session could see, so it is left for the home page.
        Effect::new(move |_| {
            if matches!(sign_out.value().get(), Some(Ok(()))) && Page::current() != Page::Home {
                go_home();
            }
        });
        let session = Self {
            sign_in,
            sign_out,
            me,
        };
        provide_context(session);
        session
    }

    pub fn expect() -> Self {
        expect_context::<Self>()
    }
}

/// "Signed in as alice (member)" and the sign-out button, for the header; nothing without a
/// session.
#[component]
pub fn SignedInAs() -> impl IntoView {
    let session = Session::expect();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                session
                    .me
                    .get()
                    .and_then(Result::ok)
                    .flatten()
                    .map(|me| {
                        view! {
                            <div class="whoami">
                                <span id="signed-in-as">
                                    {format!("Signed in as {} ({})", me.account, me.role)}
                                </span>
                                <SignOutForm action=session.sign_out />
                            </div>
                        }
                    })
            }}
        </Suspense>
    }
}

/// The header's link to the Accounts page, shown to admins only (the page and the server
/// refuse members anyway).
#[component]
pub fn AdminLinks() -> impl IntoView {
    let session = Session::expect();
    view! {
        <Suspense fallback=|| ()>
            {move || {
                let admin = session
                    .me
                    .get()
                    .and_then(Result::ok)
                    .flatten()
                    .is_some_and(|me| me.role == Role::Admin);
                admin.then(|| view! { <a href="/accounts">"Accounts"</a> })
            }}
        </Suspense>
    }
}

/// Renders `children` for a caller with a session, the sign-in form for anyone else: a page
/// opened after the session ended (it expired, or its key was revoked) asks to sign in again
/// instead of showing a refusal. The children find the caller as a `SignedIn` in their context.
#[component]
pub fn RequireSession(children: ChildrenFn) -> impl IntoView {
    let session = Session::expect();
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Checking your session…"</p> }>
            {move || {
                session
                    .me
                    .get()
                    .map(|me| match me {
                        Ok(Some(me)) => {
                            // A page reads the caller from here rather than from the resource:
                            // a second Suspense on the same resource nested in this one made the
                            // server create the page's resources more often than the browser
                            // does, and hydration then missed them (and panicked).
                            provide_context(me);
                            children().into_any()
                        }
                        Ok(None) => {
                            view! {
                                <section class="card">
                                    <h1>"Sign in"</h1>
                                    <p>"Sign in to see this page."</p>
                                    <SignInForm action=session.sign_in />
                                </section>
                            }
                                .into_any()
                        }
                        Err(error) => {
                            view! {
                                <section class="card">
                                    <CallProblem error />
                                </section>
                            }
                                .into_any()
                        }
                    })
            }}
        </Suspense>
    }
}

/// A full page load of the home page.
fn go_home() {
    #[cfg(feature = "hydrate")]
    if let Some(window) = web_sys::window() {
        let _ = window.location().assign("/");
    }
}
