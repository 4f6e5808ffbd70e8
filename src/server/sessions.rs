//! Browser sessions: signing in with the token or an API key gives a random cookie value; only
//! a hash of it, keyed by the token, is kept (in memory for the check on every request, in
//! SQLite so sessions survive a restart) with the API key that opened it, and it expires.
//! Rotating the token ends every session: the new key finds none of the old hashes. Revoking an
//! API key ends the sessions it opened. Nodes of a cluster share the store, where any of them
//! may open or end a session, so there a request's session is read from the store instead.
use super::store::{now, SessionStore, StoredSession};
use crate::domain::KeyId;
use axum::http::{header, HeaderMap, HeaderValue};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};
use time::OffsetDateTime;

/// The cookie's name.
pub const COOKIE: &str = "ingest_session";

pub struct Sessions {
    store: Arc<dyn SessionStore>,
    /// Derived from the accepted token (never the token itself): every stored hash is keyed
    /// by it, so sessions live exactly as long as the credential they were opened with.
    key: [u8; 32],
    live: RwLock<HashMap<[u8; 32], Live>>,
    ttl: Duration,
    /// Other nodes share the store: memory knows only the sessions this node opened.
    shared: bool,
}

/// What is kept in memory of a live session.
struct Live {
    expires: OffsetDateTime,
    key_id: Option<KeyId>,
}

/// A live session, as a request's cookie found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The API key that opened it; `None` for `INGEST_TOKEN`.
    pub key_id: Option<KeyId>,
}

/// A new session: the cookie value (shown to the browser once) and when it expires.
pub struct NewSession {
    pub cookie_value: String,
    pub expires: OffsetDateTime,
}

impl Sessions {
    /// Loads the sessions that have not expired. `key` comes from the accepted token; sessions
    /// opened with another token stay unreachable until they expire and are pruned.
    pub async fn load(
        store: Arc<dyn SessionStore>,
        ttl: Duration,
        key: [u8; 32],
        shared: bool,
    ) -> anyhow::Result<Self> {
        let live = store
            .live_sessions(now())
            .await?
            .into_iter()
            .map(|session| {
                let live = Live {
                    expires: session.expires,
                    key_id: session.key_id,
                };
                (session.id_hash, live)
            })
            .collect();
        Ok(Self {
            store,
            key,
            live: RwLock::new(live),
            ttl,
            shared,
        })
    }

    /// Starts a session opened with `key_id` (`None`: the token); durable when this returns.
    pub async fn create(&self, key_id: Option<KeyId>) -> anyhow::Result<NewSession> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let cookie_value = hex::encode(secret);
        let created = now();
        let expires = created + self.ttl;
        let id_hash = self.fingerprint(&cookie_value);
        let stored = StoredSession {
            id_hash,
            key_id: key_id.clone(),
            created,
            expires,
        };
        self.store.insert_session(&stored).await?;
        self.live
            .write()
            .expect("sessions lock")
            .insert(id_hash, Live { expires, key_id });
        Ok(NewSession {
            cookie_value,
            expires,
        })
    }

    /// The live session the cookie value names, if any. The lookup is by a hash of a random
    /// 256-bit value, so its timing tells nothing useful.
    pub fn find(&self, cookie_value: &str) -> Option<SessionInfo> {
        let live = self.live.read().expect("sessions lock");
        live.get(&self.fingerprint(cookie_value))
            .filter(|session| session.expires > now())
            .map(|session| SessionInfo {
                key_id: session.key_id.clone(),
            })
    }

    /// Whether other nodes open and end sessions in the same store (so `find` is not enough).
    pub fn shared(&self) -> bool {
        self.shared
    }

    /// The live session the cookie value names, as the store has it now (whichever node
    /// opened it, and unless any node ended it).
    pub async fn find_stored(&self, cookie_value: &str) -> anyhow::Result<Option<SessionInfo>> {
        let stored = self
            .store
            .live_session(self.fingerprint(cookie_value), now())
            .await?;
        Ok(stored.map(|session| SessionInfo {
            key_id: session.key_id,
        }))
    }

    /// Ends every session opened with one of these keys (they were revoked or expired).
    pub async fn end_for_keys(&self, keys: &[KeyId]) -> anyhow::Result<()> {
        self.live
            .write()
            .expect("sessions lock")
            .retain(|_, session| {
                session
                    .key_id
                    .as_ref()
                    .is_none_or(|key| !keys.contains(key))
            });
        self.store.delete_sessions_of(keys).await
    }

    /// Ends a session (sign-out).
    pub async fn end(&self, cookie_value: &str) -> anyhow::Result<()> {
        let id_hash = self.fingerprint(cookie_value);
        self.live.write().expect("sessions lock").remove(&id_hash);
        self.store.delete_session(id_hash).await
    }

    /// Forgets expired sessions, here and in the store.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let now = now();
        self.live
            .write()
            .expect("sessions lock")
            .retain(|_, session| session.expires > now);
        self.store.prune_sessions(now).await
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// What is stored for a cookie: SHA-256 of the token's key and the cookie value.
    fn fingerprint(&self, cookie_value: &str) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.key);
        hash.update(cookie_value.as_bytes());
        hash.finalize().into()
    }
}

/// The session cookie's value in a request, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Strict, expiring, Secure over https.
pub fn set_cookie(session: &NewSession, ttl: Duration, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        session.cookie_value,
        ttl.as_secs()
    ))
    .expect("a hex cookie value is a valid header")
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"
    ))
    .expect("a constant cookie is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_cookie_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; ingest_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers), Some("abc"));
        headers.insert(header::COOKIE, "ingest_sessionx=1".parse().unwrap());
        assert_eq!(cookie_value(&headers), None);
    }
}
