//! `/accounts`: for admins, the accounts and their API keys, with forms to create and remove
//! accounts and to create and revoke keys. A new key is shown once, in the page's memory only:
//! it is gone after a reload or the next change. Members are told the page is not for them
//! (the server refuses their calls with 403 anyway).
use super::{format::format_time, CallProblem};
use crate::{
    api::{
        create_account, create_key, list_accounts, list_keys, remove_account, revoke_key,
        AccountInfo, CallError, IssuedKey, KeyInfo, SignedIn,
    },
    domain::{AccountName, KeyId, Role},
};
use leptos::{ev::SubmitEvent, html, prelude::*};
use std::future::Future;

/// Shown inside `RequireSession`, which provides the caller.
#[component]
pub fn AccountsPage() -> impl IntoView {
    let admin = use_context::<SignedIn>().map(|me| me.role == Role::Admin);
    let body = match admin {
        Some(true) => view! { <ManageAccounts /> }.into_any(),
        Some(false) => view! {
            <p class="notice" role="status">
                "Only admins manage accounts. Ask an admin for a new key or account."
            </p>
        }
        .into_any(),
        None => ().into_any(),
    };
    view! {
        <section class="card accounts">
            <h1>"Accounts"</h1>
            {body}
        </section>
    }
}

/// What the changes on this page (and the Webhooks page) share: the list to reload after each, the key just created,
/// and the outcome of the last change. Every change starts by clearing what the previous one
/// showed, so a new key never outlives the next action.
#[derive(Clone, Copy)]
pub(super) struct Changes {
    pub(super) done: RwSignal<u32>,
    issued: RwSignal<Option<(AccountName, IssuedKey)>>,
    pub(super) notice: RwSignal<Option<String>>,
    pub(super) problem: RwSignal<Option<CallError>>,
    pub(super) busy: RwSignal<bool>,
}

impl Changes {
    pub(super) fn new() -> Self {
        Self {
            done: RwSignal::new(0),
            issued: RwSignal::new(None),
            notice: RwSignal::new(None),
            problem: RwSignal::new(None),
            busy: RwSignal::new(false),
        }
    }

    fn clear(self) {
        self.issued.set(None);
        self.notice.set(None);
        self.problem.set(None);
    }

    /// Runs `call`; on success `then` says what happened, and the list is reloaded.
    pub(super) fn run<T: 'static>(
        self,
        call: impl Future<Output = Result<T, CallError>> + 'static,
        then: impl FnOnce(T) -> String + 'static,
    ) {
        self.clear();
        self.busy.set(true);
        leptos::task::spawn_local(async move {
            match call.await {
                Ok(value) => {
                    self.notice.set(Some(then(value)));
                    self.done.update(|count| *count += 1);
                }
                Err(error) => self.problem.set(Some(error)),
            }
            self.busy.set(false);
        });
    }

    /// A change refused before it reached the server (an unreadable field).
    fn refuse(self, message: String) {
        self.clear();
        self.problem.set(Some(CallError {
            status: 400,
            message,
        }));
    }
}

#[component]
fn ManageAccounts() -> impl IntoView {
    let changes = Changes::new();
    // Two calls side by side rather than one per account: on the server a Suspense may render
    // its children more than once, so a resource's future can outlive the rendering that made
    // it, and a second call after an await then finds no request context; resources nested in
    // each card, for their part, were not matched when the browser hydrated the page.
    let accounts = super::loaded::load(move || changes.done.get(), |_| list_accounts());
    let keys = super::loaded::load(move || changes.done.get(), |_| list_keys(None));
    view! {
        <div class="outcome" aria-live="polite">
            {move || changes.notice.get().map(|text| view! { <p class="notice">{text}</p> })}
            {move || changes.problem.get().map(|error| view! { <CallProblem error /> })}
        </div>
        <NewAccountForm changes />
        // A transition keeps the list on screen while it reloads after a change.
        <Transition fallback=|| view! { <p class="muted">"Loading accounts…"</p> }>
            {move || {
                // Both read every time, so the transition waits for both.
                let (accounts, keys) = (accounts.get(), keys.get());
                let listed = match (accounts?, keys?) {
                    (Ok(accounts), Ok(keys)) => Ok((accounts, keys)),
                    (Err(error), _) | (_, Err(error)) => Err(error),
                };
                Some(match listed {
                    Ok((accounts, _)) if accounts.is_empty() => {
                        view! {
                            <p class="muted">
                                "No accounts yet. (The token's built-in admin account is not listed.)"
                            </p>
                        }
                            .into_any()
                    }
                    Ok((accounts, keys)) => {
                        accounts
                            .into_iter()
                            .map(|account| {
                                let keys = keys
                                    .iter()
                                    .filter(|key| key.account == account.name)
                                    .cloned()
                                    .collect();
                                view! { <AccountCard account keys changes /> }
                            })
                            .collect_view()
                            .into_any()
                    }
                    Err(error) => view! { <CallProblem error /> }.into_any(),
                })
            }}
        </Transition>
    }
}

#[component]
fn NewAccountForm(changes: Changes) -> impl IntoView {
    let name = NodeRef::<html::Input>::new();
    let role = NodeRef::<html::Select>::new();
    let on_submit = move |event: SubmitEvent| {
        event.prevent_default();
        let (Some(name_input), Some(role_select)) = (name.get(), role.get()) else {
            return;
        };
        let account = match AccountName::parse(name_input.value().trim()) {
            Ok(account) => account,
            Err(error) => return changes.refuse(error.to_string()),
        };
        let chosen = match role_select.value().parse::<Role>() {
            Ok(chosen) => chosen,
            Err(error) => return changes.refuse(error.to_string()),
        };
        let created = account.clone();
        changes.run(create_account(account, chosen), move |info| {
            // Cleared only once created: a refused name stays there to be corrected.
            if let Some(input) = name.get_untracked() {
                input.set_value("");
            }
            format!("Created account {created} ({}).", info.role)
        });
    };
    view! {
        <form class="new-account" on:submit=on_submit>
            <h2>"New account"</h2>
            <div class="fields">
                <label for="account-name">"Account name"</label>
                <input
                    id="account-name"
                    name="name"
                    required
                    maxlength="64"
                    autocomplete="off"
                    spellcheck="false"
                    placeholder="letters, digits, - and _"
                    node_ref=name
                />
                <label for="account-role">"Role"</label>
                <select id="account-role" name="role" node_ref=role>
                    <option value="member" selected>
                        "Member"
                    </option>
                    <option value="admin">"Admin"</option>
                </select>
            </div>
            <button type="submit" disabled=move || changes.busy.get()>
                "Create account"
            </button>
        </form>
    }
}

#[component]
fn AccountCard(account: AccountInfo, keys: Vec<KeyInfo>, changes: Changes) -> impl IntoView {
    let name = account.name;
    let heading = format!("account-{name}");
    let labelled_by = heading.clone();
    let expires_id = format!("expires-{name}");
    let expires = NodeRef::<html::Input>::new();
    let create = {
        let name = name.clone();
        move |_| {
            let days = expires.get().map(|input| input.value()).unwrap_or_default();
            let days = match days.trim() {
                "" => None,
                text => match text.parse::<u32>() {
                    Ok(days) => Some(days),
                    Err(_) => {
                        return changes.refuse(
                            "the expiry is a whole number of days; leave it empty for a key that does not expire"
                                .to_owned(),
                        )
                    }
                },
            };
            let account = name.clone();
            changes.run(create_key(name.clone(), days), move |issued| {
                let id = issued.key_id.clone();
                changes.issued.set(Some((account.clone(), issued)));
                format!("Created key {id} for {account}.")
            });
        }
    };
    let issued_here = {
        let name = name.clone();
        move || {
            changes
                .issued
                .get()
                .filter(|(account, _)| *account == name)
                .map(|(account, issued)| view! { <IssuedKeyBox account issued /> })
        }
    };
    view! {
        <section class="account" aria-labelledby=labelled_by>
            <div class="account-head">
                <h2 id=heading>{name.to_string()}</h2>
                <span class="badge" data-role=account.role.as_str()>
                    {account.role.to_string()}
                </span>
                <span class="muted">"created " {format_time(&account.created_at)}</span>
            </div>
            <KeyTable keys changes />
            {issued_here}
            <div class="key-actions">
                <label for=expires_id.clone()>"Expires in days (optional)"</label>
                <input
                    id=expires_id
                    type="number"
                    min="1"
                    max="36500"
                    inputmode="numeric"
                    placeholder="never"
                    node_ref=expires
                />
                <button type="button" on:click=create disabled=move || changes.busy.get()>
                    "Create key"
                </button>
            </div>
            <RemoveAccount name changes />
        </section>
    }
}

#[component]
fn KeyTable(keys: Vec<KeyInfo>, changes: Changes) -> impl IntoView {
    if keys.is_empty() {
        return view! { <p class="muted">"No keys yet."</p> }.into_any();
    }
    let never = || "never".to_owned();
    view! {
        <div class="keys-wrap">
            <table class="keys">
                <thead>
                    <tr>
                        <th scope="col">"Key"</th>
                        <th scope="col">"Created"</th>
                        <th scope="col">"Expires"</th>
                        <th scope="col">"Revoked"</th>
                        <th scope="col">"Last used"</th>
                        <th scope="col">
                            <span class="visually-hidden">"Actions"</span>
                        </th>
                    </tr>
                </thead>
                <tbody>
                    {keys
                        .into_iter()
                        .map(|key| {
                            let revoked = key.revoked_at.is_some();
                            let id = key.key_id.to_string();
                            let row_id = id.clone();
                            view! {
                                <tr data-key-id=row_id data-revoked=revoked.to_string()>
                                    <td>
                                        <code>{id}</code>
                                    </td>
                                    <td>{format_time(&key.created_at)}</td>
                                    <td>{key.expires_at.as_ref().map_or_else(never, format_time)}</td>
                                    <td>
                                        {key.revoked_at.as_ref().map_or_else(|| "no".to_owned(), format_time)}
                                    </td>
                                    <td>{key.last_used_at.as_ref().map_or_else(never, format_time)}</td>
                                    <td>
                                        {(!revoked).then(|| view! { <RevokeButton key_id=key.key_id changes /> })}
                                    </td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
    .into_any()
}

#[component]
fn RevokeButton(key_id: KeyId, changes: Changes) -> impl IntoView {
    let revoke = move |_| {
        let id = key_id.clone();
        changes.run(revoke_key(key_id.clone()), move |()| {
            format!("Revoked key {id}; its sessions have ended.")
        });
    };
    view! {
        <button
            type="button"
            class="secondary danger"
            on:click=revoke
            disabled=move || changes.busy.get()
        >
            "Revoke"
        </button>
    }
}

/// "Remove", then a second, explicit confirmation: removing revokes every key of the account.
#[component]
fn RemoveAccount(name: AccountName, changes: Changes) -> impl IntoView {
    let confirming = RwSignal::new(false);
    move || {
        let name = name.clone();
        if confirming.get() {
            let remove = {
                let name = name.clone();
                move |_| {
                    let removed = name.clone();
                    changes.run(remove_account(name.clone()), move |()| {
                        format!("Removed account {removed}; its keys are revoked.")
                    });
                }
            };
            view! {
                <div class="confirm" role="group" aria-label=format!("Remove {name}?")>
                    <p>
                        {format!(
                            "Remove {name}? Its keys are revoked and its sessions end at once; its jobs are kept.",
                        )}
                    </p>
                    <button
                        type="button"
                        class="danger"
                        on:click=remove
                        disabled=move || changes.busy.get()
                    >
                        {format!("Yes, remove {name}")}
                    </button>
                    <button type="button" class="secondary" on:click=move |_| confirming.set(false)>
                        "Keep it"
                    </button>
                </div>
            }
                .into_any()
        } else {
            view! {
                <button type="button" class="secondary danger" on:click=move |_| confirming.set(true)>
                    "Remove"
                </button>
            }
                .into_any()
        }
    }
}

/// The key just created, in a read-only field with a Copy button; this page's memory is the
/// only place it exists now.
#[component]
fn IssuedKeyBox(account: AccountName, issued: IssuedKey) -> impl IntoView {
    // `None` until Copy is pressed; then whether the clipboard took the key.
    let copied = RwSignal::new(None::<bool>);
    let key = issued.key.clone();
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            let key = key.clone();
            leptos::task::spawn_local(async move {
                copied.set(Some(super::browser::copy_text(&key).await));
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &key;
    };
    let expires = issued.expires_at.as_ref().map_or_else(
        || "never expires".to_owned(),
        |at| format!("expires {}", format_time(at)),
    );
    view! {
        <div class="issued-key">
            <label for="issued-key">{format!("New key for {account}")}</label>
            <div class="copy-row">
                <input
                    id="issued-key"
                    type="text"
                    readonly
                    spellcheck="false"
                    autocomplete="off"
                    aria-describedby="issued-key-note"
                    value=issued.key
                />
                <button type="button" on:click=copy>
                    {move || if copied.get() == Some(true) { "Copied" } else { "Copy" }}
                </button>
            </div>
            <p id="issued-key-note">
                "Copy this key now: it will not be shown again. Key id "
                <code>{issued.key_id.to_string()}</code> ", " {expires} "."
            </p>
            {move || {
                (copied.get() == Some(false))
                    .then(|| {
                        view! {
                            <p class="error" role="alert">
                                "The browser did not allow copying; select the key and copy it yourself."
                            </p>
                        }
                    })
            }}
        </div>
    }
}
