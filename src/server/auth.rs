//! Who a request is: the token (the built-in `admin` account), an API key, or a browser session
//! opened with either, demanded by handlers through the `Authenticated` extractor; the
//! failed-sign-in throttle around every credential check; and the origin check that keeps other
//! sites from riding a browser's session cookie.
use super::{
    client,
    config::Settings,
    error::ApiError,
    keys::{self, KeyOwner},
    quotas, sessions,
    state::AppState,
    webhooks::Requester,
};
use crate::{
    api::{QuotaOverrides, Quotas},
    domain::{AccountId, AccountName, KeyId, Owner, Role, Scope},
};
// Kept reachable here: callers name the token where they name authentication.
pub use super::token::ApiToken;
use axum::{
    extract::{FromRequestParts, Request, State},
    http::{request::Parts, Extensions, HeaderMap},
    middleware::Next,
    response::Response,
};
use sha2::{Digest, Sha256};

/// Extractor for handlers that need a caller holding the token or an API key
/// (`Authorization: Bearer`) or a browser session (the session cookie). It says which
/// credential, for per-credential caps, and which account.
pub struct Authenticated {
    pub credential: Credential,
    pub caller: Caller,
}

/// The account a request acts as, and the key it came with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: AccountName,
    pub account_id: AccountId,
    pub role: Role,
    /// `None` for `INGEST_TOKEN` (and sessions opened with it).
    pub key_id: Option<KeyId>,
    /// The account's own quotas (`None` fields: the server's defaults).
    pub quotas: QuotaOverrides,
}

/// The caller as the webhooks service sees it.
impl From<&Caller> for Requester {
    fn from(caller: &Caller) -> Self {
        Requester {
            account_id: caller.account_id,
            is_admin: caller.is_admin(),
        }
    }
}

impl Caller {
    /// The built-in `admin` account that `INGEST_TOKEN` belongs to.
    pub fn built_in_admin() -> Self {
        Self {
            account: AccountName::built_in_admin(),
            account_id: AccountId::BUILT_IN_ADMIN,
            role: Role::Admin,
            key_id: None,
            quotas: QuotaOverrides::default(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whose jobs the caller sees: every job for an admin, its account's for a member.
    pub fn scope(&self) -> Scope {
        if self.is_admin() {
            Scope::Everything
        } else {
            Scope::Account(self.account_id)
        }
    }

    /// The limits in force for the caller's account.
    pub fn quotas(&self, settings: &Settings) -> Quotas {
        quotas::in_force(settings, &self.quotas)
    }

    /// The account the caller's new jobs belong to.
    pub fn owner(&self) -> Owner {
        Owner {
            id: self.account_id,
            name: self.account.clone(),
        }
    }
}

impl From<KeyOwner> for Caller {
    fn from(owner: KeyOwner) -> Self {
        Self {
            account: owner.account,
            account_id: owner.account_id,
            role: owner.role,
            key_id: Some(owner.key_id),
            quotas: owner.quotas,
        }
    }
}

/// Who a caller is, as far as caps and quotas go: the token, one API key, or one browser
/// session (by a short, non-secret label derived from its cookie).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    Token,
    Key(KeyId),
    Session(String),
}

impl Credential {
    /// `token`, `key:` and the key id, or `session:` and 16 hex digits: what is stored beside
    /// what it owns.
    pub fn label(&self) -> String {
        match self {
            Credential::Token => "token".to_owned(),
            Credential::Key(id) => format!("key:{id}"),
            Credential::Session(id) => format!("session:{id}"),
        }
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authenticate(&parts.headers, &parts.extensions, None, state)
    }
}

/// Extractor for the admin routes: an authenticated caller whose account is an admin. A
/// member gets 403.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated { caller, .. } =
            authenticate(&parts.headers, &parts.extensions, None, state)?;
        if !caller.is_admin() {
            return Err(ApiError::Forbidden(format!(
                "account {} is a member; managing accounts and keys takes an admin",
                caller.account
            )));
        }
        Ok(Admin(caller))
    }
}

/// Which valid credential a request carries.
pub enum Identity<'a> {
    Token,
    Key(KeyOwner),
    /// A live browser session, by its cookie value, and the key that opened it (`None`: the
    /// token).
    Session(&'a str, Option<KeyOwner>),
}

/// Checks, in order, a token from the query string (WebSocket clients such as wscat), the
/// `Authorization: Bearer` header, and the session cookie (from our own pages only).
pub fn authenticate(
    headers: &HeaderMap,
    extensions: &Extensions,
    query_token: Option<&str>,
    state: &AppState,
) -> Result<Authenticated, ApiError> {
    // A wrong token anywhere counts as a failed sign-in, so guessing through the API is as
    // slow as through the sign-in form. Cookie-only requests skip the throttle (and the
    // address lookup) altogether.
    let carries_token =
        query_token.is_some() || headers.contains_key(axum::http::header::AUTHORIZATION);
    let identity = if carries_token {
        let presented = query_token.or_else(|| {
            headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|header| bearer_token(header.as_bytes()))
        });
        throttled(state, headers, extensions, presented, || {
            identify(headers, extensions, query_token, state)
        })?
    } else {
        identify(headers, extensions, None, state)?
    };
    let authenticated = match identity {
        Identity::Token => Authenticated {
            credential: Credential::Token,
            caller: Caller::built_in_admin(),
        },
        Identity::Key(owner) => Authenticated {
            credential: Credential::Key(owner.key_id.clone()),
            caller: owner.into(),
        },
        // A session opened with a key counts as that key (its caps are the key's, however
        // often it signs in).
        Identity::Session(_, Some(owner)) => Authenticated {
            credential: Credential::Key(owner.key_id.clone()),
            caller: owner.into(),
        },
        Identity::Session(cookie, None) => {
            // A label, not the secret: the first 8 bytes of the cookie's SHA-256.
            let hash = Sha256::digest(cookie.as_bytes());
            Authenticated {
                credential: Credential::Session(hex::encode(&hash[..8])),
                caller: Caller::built_in_admin(),
            }
        }
    };
    // Names, never secrets, on the request's span (a no-op inside a span without the fields).
    let span = tracing::Span::current();
    span.record("account", authenticated.caller.account.as_str());
    if let Some(key_id) = &authenticated.caller.key_id {
        span.record("key_id", key_id.as_str());
    }
    Ok(authenticated)
}

/// The one place that decides who a request is; the rate limiter keys by the same answer.
pub fn identify<'a>(
    headers: &'a HeaderMap,
    extensions: &Extensions,
    query_token: Option<&str>,
    state: &AppState,
) -> Result<Identity<'a>, ApiError> {
    let identity = |owner: Option<KeyOwner>| owner.map_or(Identity::Token, Identity::Key);
    if let Some(token) = query_token {
        return check(state, token).map(identity);
    }
    if let Some(header) = headers.get(axum::http::header::AUTHORIZATION) {
        let token = bearer_token(header.as_bytes()).ok_or(ApiError::Unauthorized(
            "the Authorization header must be Bearer <token>",
        ))?;
        return check(state, token).map(identity);
    }
    match sessions::cookie_value(headers) {
        Some(cookie) => {
            let owner = live_session(state, extensions, cookie).ok_or(ApiError::Unauthorized(
                "the session has expired or ended; sign in again",
            ))?;
            check_origin(headers, extensions, state)?;
            Ok(Identity::Session(cookie, owner))
        }
        None => Err(ApiError::Unauthorized(
            "missing Authorization: Bearer <token> header",
        )),
    }
}

/// The live session a cookie names: `Some(None)` for one opened with the token, `Some(owner)`
/// for one opened with a key that is still usable, `None` otherwise. On a node of a cluster it
/// is what the store said when the request came in (`read_shared_session`), else memory's.
pub fn live_session(
    state: &AppState,
    extensions: &Extensions,
    cookie: &str,
) -> Option<Option<KeyOwner>> {
    let session = match extensions.get::<SharedSession>() {
        Some(SharedSession(stored)) => stored.clone(),
        None => state.sessions.find(cookie),
    };
    match session?.key_id {
        None => Some(None),
        Some(key_id) => state.keys.owner(&key_id).map(Some),
    }
}

/// The session a request's cookie names, as the store shared by the nodes had it.
#[derive(Clone)]
struct SharedSession(Option<sessions::SessionInfo>);

/// On a node of a cluster, reads the session a request's cookie names from the store before
/// anything checks it: another node may have opened it a moment ago (a browser behind a load
/// balancer signs in on one node and loads the page from another) or ended it. One primary-key
/// read per request that carries the cookie; static files skip it. A store that fails the read
/// leaves the request without a session (it fails closed).
pub async fn read_shared_session(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let wanted = state.sessions.shared() && !request.uri().path().starts_with("/pkg/");
    if let Some(cookie) = sessions::cookie_value(request.headers()).filter(|_| wanted) {
        let stored = state
            .sessions
            .find_stored(cookie)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = ?error, "reading a session from the store failed");
                None
            });
        request.extensions_mut().insert(SharedSession(stored));
    }
    next.run(request).await
}

/// A cookie travels with any request the browser makes to us, whichever page asked for it
/// (SameSite=Strict still treats another port or a sibling subdomain as "same site"). So a
/// request that relies on the cookie must come from our own origin: a foreign `Origin`, or a
/// `Sec-Fetch-Site` other than `same-origin` / `none` (typed by the user), is refused.
/// Requests with neither header come from clients that are not browsers, or old ones, which
/// SameSite=Strict still covers.
pub fn check_origin(
    headers: &HeaderMap,
    extensions: &Extensions,
    state: &AppState,
) -> Result<(), ApiError> {
    let foreign = || {
        ApiError::Forbidden(
            "a request signed in by cookie must come from this server's own pages".to_owned(),
        )
    };
    // Browsers set Sec-Fetch-Site themselves and no page can forge it; it tells same-origin
    // from same-site correctly even behind a proxy that rewrites Host or ends TLS. `Origin` is
    // compared only for browsers that do not send it.
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(foreign()),
        };
    }
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let ours = client::own_origin(headers, extensions, &state.settings);
        let same = origin
            .to_str()
            .ok()
            .zip(ours.as_deref())
            .is_some_and(|(origin, ours)| origin.eq_ignore_ascii_case(ours));
        if !same {
            tracing::info!(
                ours = ours.as_deref().unwrap_or("-"),
                "a cookie request with a foreign Origin was refused; behind a proxy, set public_url"
            );
            return Err(foreign());
        }
    }
    Ok(())
}

/// Trades the token or an API key for a browser session (which records the key, so revoking it
/// ends the session) and answers the `Set-Cookie` for it. A client
/// address that has failed `sign_in_failures_per_minute` times gets 429 until its minute is
/// over, whatever it sends; each failure is logged with the address, never the token.
pub async fn sign_in(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    token: &str,
) -> Result<axum::http::HeaderValue, ApiError> {
    // Another site must not sign a browser in (to a session of its choosing) either.
    check_origin(headers, extensions, state)?;
    let address = client::client_ip(headers, extensions, &state.settings);
    let owner = throttled(state, headers, extensions, Some(token), || {
        check(state, token)
    })?;
    let caller = owner.map_or_else(Caller::built_in_admin, Caller::from);
    let session = state.sessions.create(caller.key_id.clone()).await?;
    let secure = client::is_https(headers, extensions, &state.settings);
    tracing::info!(
        client = %address,
        account = %caller.account,
        key_id = caller.key_id.as_ref().map_or("-", KeyId::as_str),
        "signed in"
    );
    Ok(sessions::set_cookie(&session, state.sessions.ttl(), secure))
}

/// Runs a credential check under the failed-sign-in throttle of the client's address: refused
/// at once (429) while the address is over its limit, and a failure counted and logged (the
/// address, never the credential) when the check fails. Only guesses at the token count: a
/// credential in the key format carries a 256-bit secret, so throttling it protects nothing,
/// and one client with a revoked key must not lock everyone at its address out. Such a key
/// skips the throttle, and its failure is logged with its id.
fn throttled<T>(
    state: &AppState,
    headers: &HeaderMap,
    extensions: &Extensions,
    presented: Option<&str>,
    check: impl FnOnce() -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let address = client::client_ip(headers, extensions, &state.settings);
    if let Some(key) = presented.and_then(keys::parse) {
        return check().inspect_err(|_| {
            tracing::warn!(
                target: "audit",
                client = %address,
                key_id = %key.key_id,
                "sign-in failed: an unknown, revoked or expired key"
            );
        });
    }
    state.sign_in_throttle.check(address).map_err(|retry_after| {
        tracing::warn!(target: "audit", client = %address, "refused: too many failed sign-ins from this address");
        ApiError::TooManyRequests { retry_after }
    })?;
    check().inspect_err(|_| {
        state.sign_in_throttle.failed(address);
        tracing::warn!(target: "audit", client = %address, "sign-in failed: wrong token");
    })
}

/// Checks a token or API key taken from wherever the route allows (header or `?token=`):
/// `None` for the token, the key's owner for a usable key. Both checks are constant-time and
/// in memory.
pub fn check(state: &AppState, token: &str) -> Result<Option<KeyOwner>, ApiError> {
    if state.settings.token.verify(token) {
        return Ok(None);
    }
    keys::parse(token)
        .and_then(|presented| state.keys.verify(&presented))
        .map(Some)
        .ok_or(ApiError::Unauthorized("invalid token"))
}

/// The credentials of `Bearer <credentials>`; the scheme is case-insensitive (RFC 7235).
pub fn bearer_token(header: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(header).ok()?;
    let (scheme, token) = text.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_credentials_case_insensitively() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
    }
}
