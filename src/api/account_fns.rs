//! Server functions of the Accounts page and the header's "Signed in as": who the caller is, and,
//! for admins, accounts and API keys. They go through the same `Accounts` service, `Admin` check
//! and error mapping as the REST routes in `server::routes::accounts`, so the page and the API
//! cannot disagree on a rule.
use super::{AccountInfo, CallError, IssuedKey, KeyInfo, SignedIn};
use crate::domain::{AccountName, KeyId, Role};
use leptos::prelude::*;

/// Who this browser's session belongs to, or `None` without a live session (so a visitor's
/// page renders with 200 and the sign-in form, not a 401). Read from memory (the session and
/// the key ring), or on a cluster's node from what the request's middleware read.
#[server(prefix = "/rpc", endpoint = "who_am_i")]
pub async fn who_am_i() -> Result<Option<SignedIn>, CallError> {
    use super::server_fns::support;
    use crate::server::{auth, sessions};
    let state = support::state()?;
    let request = support::request()?;
    let session = sessions::cookie_value(&request.headers)
        .and_then(|cookie| auth::live_session(&state, &request.extensions, cookie));
    Ok(session.map(|owner| {
        let caller = owner.map_or_else(auth::Caller::built_in_admin, auth::Caller::from);
        SignedIn {
            account: caller.account,
            role: caller.role,
            key_id: caller.key_id,
        }
    }))
}

/// Every account, by name (admins only). The built-in `admin` of the token is not one of them.
#[server(prefix = "/rpc", endpoint = "list_accounts")]
pub async fn list_accounts() -> Result<Vec<AccountInfo>, CallError> {
    let state = admin::reading().await?;
    state.accounts.accounts().await.map_err(admin::refused)
}

/// Creates an account (admins only).
#[server(prefix = "/rpc", endpoint = "create_account")]
pub async fn create_account(name: AccountName, role: Role) -> Result<AccountInfo, CallError> {
    let state = admin::changing().await?;
    state
        .accounts
        .add_account(name, role)
        .await
        .map_err(admin::refused)
}

/// Removes an account and revokes its keys (admins only); its jobs are kept.
#[server(prefix = "/rpc", endpoint = "remove_account")]
pub async fn remove_account(name: AccountName) -> Result<(), CallError> {
    let state = admin::changing().await?;
    state
        .accounts
        .remove_account(&name)
        .await
        .map_err(admin::refused)
}

/// An account's keys (the account must exist), or with `None` every account's, never the keys
/// themselves (admins only). The Accounts page asks for all at once: one call, where one per
/// account would be a call after an await, which the server's render cannot make (see
/// `ui::accounts`).
#[server(prefix = "/rpc", endpoint = "list_keys")]
pub async fn list_keys(name: Option<AccountName>) -> Result<Vec<KeyInfo>, CallError> {
    let state = admin::reading().await?;
    state
        .accounts
        .keys(name.as_ref())
        .await
        .map_err(admin::refused)
}

/// Makes a key for an account (admins only), usable for `expires_in_days` days or, without it,
/// until revoked. The answer is the only time the key is ever shown.
#[server(prefix = "/rpc", endpoint = "create_key")]
pub async fn create_key(
    name: AccountName,
    expires_in_days: Option<u32>,
) -> Result<IssuedKey, CallError> {
    use secrecy::ExposeSecret;
    let state = admin::changing().await?;
    let expires_at =
        crate::server::accounts::key_expiry(expires_in_days).map_err(admin::refused)?;
    let created = state
        .accounts
        .add_key(&name, expires_at)
        .await
        .map_err(admin::refused)?;
    Ok(IssuedKey {
        key_id: created.key_id,
        key: created.key.expose_secret().to_owned(),
        expires_at: created.expires_at,
    })
}

/// Revokes a key (admins only): its sessions end and its sockets close at once.
#[server(prefix = "/rpc", endpoint = "revoke_key")]
pub async fn revoke_key(key_id: KeyId) -> Result<(), CallError> {
    let state = admin::changing().await?;
    state
        .accounts
        .revoke_key(&key_id)
        .await
        .map(drop)
        .map_err(admin::refused)
}

/// The admin check of the functions above.
#[cfg(feature = "ssr")]
mod admin {
    use super::super::server_fns::support;
    use crate::{
        api::CallError,
        server::{accounts::AccountError, auth, state::AppState},
    };
    use axum::extract::FromRequestParts;

    /// The state, once the caller is shown to be an admin. A member gets the REST routes' 403
    /// (the `Admin` extractor is the one rule for both).
    pub async fn reading() -> Result<AppState, CallError> {
        let state = support::state()?;
        let mut request = support::request()?;
        auth::Admin::from_request_parts(&mut request, &state)
            .await
            .map_err(support::refuse)?;
        Ok(state)
    }

    /// Like `reading`, for a change: the request must also come from this server's own pages
    /// (as `sign_out` checks), so another site cannot make an admin's browser create a key.
    pub async fn changing() -> Result<AppState, CallError> {
        let state = support::state()?;
        let request = support::request()?;
        auth::check_origin(&request.headers, &request.extensions, &state)
            .map_err(support::refuse)?;
        reading().await
    }

    /// A refused change in the REST routes' words and status (409, 404, or a logged 500).
    pub fn refused(error: AccountError) -> CallError {
        support::refuse(error.into())
    }
}
