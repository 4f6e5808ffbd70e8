//! Managing accounts and API keys: the rules both the admin routes and the `ingest accounts` /
//! `ingest keys` commands follow (the built-in `admin` name is reserved, removing an account
//! revokes its keys, a key is shown once, quotas), and the audit log of every change (tracing
//! target `audit`, with account name and key id, never a key). Jobs are not touched: a removed
//! account's jobs stay as they are, owned by its number, which no new account gets. In a server, a change takes effect here
//! at once: the service applies it to the key ring itself (and ends a revoked key's sessions)
//! once the store has it, so nothing after the commit can fail the change.
use super::{
    commands::MAX_EXPIRES_IN_DAYS,
    keys::{self, KeyRing},
    sessions::Sessions,
    store::{now, AccountRecord, AccountStore, KeyRecord},
};
use crate::{
    api::{AccountInfo, KeyInfo, QuotaOverrides},
    domain::{AccountId, AccountName, KeyId, Role},
};
use secrecy::SecretString;
use std::sync::Arc;
use time::OffsetDateTime;

/// Why a change to accounts or keys was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account named {0} already exists")]
    Duplicate(AccountName),
    #[error("{0} is the built-in account of INGEST_TOKEN; choose another name")]
    Reserved(AccountName),
    #[error("no account named {0}")]
    UnknownAccount(AccountName),
    #[error("the built-in admin's quotas are the server's defaults (the quota_* settings)")]
    BuiltInQuotas,
    #[error("a key expires in 1 to {MAX_EXPIRES_IN_DAYS} days, or never")]
    InvalidExpiry,
    #[error("no key with id {0}")]
    UnknownKey(KeyId),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// When a key made now with `days` to live expires: never for `None`; 1 to
/// `MAX_EXPIRES_IN_DAYS` days (the one rule for the admin routes, the page and the CLI).
pub fn key_expiry(days: Option<u32>) -> Result<Option<OffsetDateTime>, AccountError> {
    match days {
        None => Ok(None),
        Some(days @ 1..=MAX_EXPIRES_IN_DAYS) => {
            Ok(Some(now() + time::Duration::days(i64::from(days))))
        }
        Some(_) => Err(AccountError::InvalidExpiry),
    }
}

/// A key just made: the only time its secret is at hand.
pub struct CreatedKey {
    pub key_id: KeyId,
    pub account: AccountName,
    /// The whole key, `ingest_<key id>_<secret>`.
    pub key: SecretString,
    pub expires_at: Option<OffsetDateTime>,
}

pub struct Accounts {
    store: Arc<dyn AccountStore>,
    /// The server's key ring and sessions, which changes reach at once (`None` in the CLI:
    /// servers see its changes when they poll).
    live: Option<(Arc<KeyRing>, Arc<Sessions>)>,
}

impl Accounts {
    /// The service over the store alone (the CLI).
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        Self { store, live: None }
    }

    /// The service of a server: changes also reach its key ring and sessions at once.
    pub fn serving(
        store: Arc<dyn AccountStore>,
        ring: Arc<KeyRing>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self {
            store,
            live: Some((ring, sessions)),
        }
    }

    /// Stops accepting the keys `ends` picks in this server now: their sockets close and their
    /// sessions end. The store already has the change, so a failure here is only logged (the
    /// key ring's poll catches up).
    async fn end_keys_now(&self, ends: impl Fn(&keys::KeyOwner) -> bool) {
        let Some((ring, sessions)) = &self.live else {
            return;
        };
        let ended = ring.remove(ends).await;
        if ended.is_empty() {
            return;
        }
        for key_id in &ended {
            tracing::info!(key_id = %key_id, "key no longer usable; its sessions and sockets end");
        }
        if let Err(error) = sessions.end_for_keys(&ended).await {
            tracing::error!(error = ?error, "ending the sessions of revoked keys failed");
        }
    }

    #[tracing::instrument(skip(self))]
    pub async fn add_account(
        &self,
        name: AccountName,
        role: Role,
    ) -> Result<AccountInfo, AccountError> {
        if name.is_reserved() {
            return Err(AccountError::Reserved(name));
        }
        let mut account = AccountRecord {
            id: AccountId::default(),
            name,
            role,
            created_at: now(),
            quotas: QuotaOverrides::default(),
        };
        let Some(id) = self.store.add_account(&account).await? else {
            return Err(AccountError::Duplicate(account.name));
        };
        account.id = id;
        tracing::info!(target: "audit", account = %account.name, role = %account.role, "account created");
        Ok(account_info(account))
    }

    /// Every account in the store, by name (the built-in `admin` is not one of them).
    pub async fn accounts(&self) -> Result<Vec<AccountInfo>, AccountError> {
        Ok(self
            .store
            .accounts()
            .await?
            .into_iter()
            .map(account_info)
            .collect())
    }

    /// Removes the account and revokes its keys; its jobs are kept.
    #[tracing::instrument(skip(self))]
    pub async fn remove_account(&self, name: &AccountName) -> Result<(), AccountError> {
        if name.is_reserved() {
            return Err(AccountError::Reserved(name.clone()));
        }
        if !self.store.remove_account(name, now()).await? {
            return Err(AccountError::UnknownAccount(name.clone()));
        }
        tracing::info!(target: "audit", account = %name, "account removed; its keys are revoked");
        self.end_keys_now(|owner| owner.account.as_str().eq_ignore_ascii_case(name.as_str()))
            .await;
        Ok(())
    }

    /// Makes a key for the account, usable until `expires_at` (for ever when `None`).
    #[tracing::instrument(skip(self))]
    pub async fn add_key(
        &self,
        account: &AccountName,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedKey, AccountError> {
        // The stored spelling of the name (names are compared without case).
        let owner = self.existing(account).await?;
        let account = &owner.name;
        let new = keys::generate();
        let record = KeyRecord {
            key_id: new.key_id.clone(),
            account_id: Some(owner.id),
            account: account.clone(),
            secret_sha256: new.secret_sha256,
            created_at: now(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        if !self.store.add_key(&record).await? {
            return Err(AccountError::UnknownAccount(account.clone()));
        }
        tracing::info!(target: "audit", account = %account, key_id = %new.key_id, expires_at = ?expires_at, "key created");
        if let Some((ring, _)) = &self.live {
            ring.insert(record, &owner).await;
        }
        Ok(CreatedKey {
            key_id: new.key_id,
            account: account.clone(),
            key: new.key,
            expires_at,
        })
    }

    /// Keys, of one account (which must exist) or of all, without their secrets.
    pub async fn keys(&self, account: Option<&AccountName>) -> Result<Vec<KeyInfo>, AccountError> {
        let id = match account {
            Some(name) => Some(self.existing(name).await?.id),
            None => None,
        };
        Ok(self
            .store
            .keys(id)
            .await?
            .into_iter()
            .map(key_info)
            .collect())
    }

    /// An account as stored (its stored spelling), or `UnknownAccount`.
    async fn existing(&self, name: &AccountName) -> Result<AccountRecord, AccountError> {
        self.store
            .account(name)
            .await?
            .ok_or_else(|| AccountError::UnknownAccount(name.clone()))
    }

    /// The account's own quotas (`None` fields: the server's defaults).
    pub async fn quotas(&self, name: &AccountName) -> Result<QuotaOverrides, AccountError> {
        Ok(self.existing(name).await?.quotas)
    }

    /// Sets the account's own quotas (`None` fields: the server's defaults). In a server they
    /// apply from the next request on: the key ring reloads now.
    #[tracing::instrument(skip(self))]
    pub async fn set_quotas(
        &self,
        name: &AccountName,
        quotas: QuotaOverrides,
    ) -> Result<AccountInfo, AccountError> {
        if name.is_reserved() {
            return Err(AccountError::BuiltInQuotas);
        }
        if !self.store.set_quotas(name, quotas).await? {
            return Err(AccountError::UnknownAccount(name.clone()));
        }
        tracing::info!(
            target: "audit",
            account = %name,
            max_stored_bytes = ?quotas.max_stored_bytes,
            max_uploads = ?quotas.max_uploads,
            max_requests_per_second = ?quotas.max_requests_per_second,
            "quotas set"
        );
        if let Some((ring, _)) = &self.live {
            // The store's version moved, so this reloads; on failure the poll catches up.
            if let Err(error) = ring.refresh().await {
                tracing::warn!(error = ?error, "reloading keys after a quota change failed");
            }
        }
        Ok(account_info(self.existing(name).await?))
    }

    /// Revokes a key; returns its account.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_key(&self, key_id: &KeyId) -> Result<AccountName, AccountError> {
        let account = self
            .store
            .revoke_key(key_id, now())
            .await?
            .ok_or_else(|| AccountError::UnknownKey(key_id.clone()))?;
        tracing::info!(target: "audit", account = %account, key_id = %key_id, "key revoked");
        self.end_keys_now(|owner| owner.key_id == *key_id).await;
        Ok(account)
    }
}

fn account_info(account: AccountRecord) -> AccountInfo {
    AccountInfo {
        name: account.name,
        role: account.role,
        created_at: account.created_at,
        quotas: account.quotas,
    }
}

/// What may be shown of a key: everything but its hash.
fn key_info(key: KeyRecord) -> KeyInfo {
    KeyInfo {
        key_id: key.key_id,
        account: key.account,
        created_at: key.created_at,
        expires_at: key.expires_at,
        revoked_at: key.revoked_at,
        last_used_at: key.last_used_at,
    }
}
