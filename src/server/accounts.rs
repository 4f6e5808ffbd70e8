//! Managing accounts and API keys: the rules both the admin routes and the `ingest accounts` /
//! `ingest keys` commands follow (the built-in `admin` name is reserved, removing an account
//! revokes its keys, a key is shown once), and the audit log of every change. Jobs are not
//! touched: a removed account's jobs stay as they are.
use super::{
    keys,
    store::{now, AccountRecord, AccountStore, KeyRecord},
};
use crate::domain::{AccountName, KeyId, Role};
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
    #[error("no key with id {0}")]
    UnknownKey(KeyId),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
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
}

impl Accounts {
    pub fn new(store: Arc<dyn AccountStore>) -> Self {
        Self { store }
    }

    #[tracing::instrument(skip(self))]
    pub async fn add_account(
        &self,
        name: AccountName,
        role: Role,
    ) -> Result<AccountRecord, AccountError> {
        if name.is_reserved() {
            return Err(AccountError::Reserved(name));
        }
        let account = AccountRecord {
            name,
            role,
            created_at: now(),
        };
        if !self.store.add_account(&account).await? {
            return Err(AccountError::Duplicate(account.name));
        }
        tracing::info!(account = %account.name, role = %account.role, "account created");
        Ok(account)
    }

    /// Every account in the store, by name (the built-in `admin` is not one of them).
    pub async fn accounts(&self) -> Result<Vec<AccountRecord>, AccountError> {
        Ok(self.store.accounts().await?)
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
        tracing::info!(account = %name, "account removed; its keys are revoked");
        Ok(())
    }

    /// Makes a key for the account, usable until `expires_at` (for ever when `None`).
    #[tracing::instrument(skip(self))]
    pub async fn add_key(
        &self,
        account: &AccountName,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<CreatedKey, AccountError> {
        let new = keys::generate();
        let record = KeyRecord {
            key_id: new.key_id.clone(),
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
        tracing::info!(account = %account, key_id = %new.key_id, "key created");
        Ok(CreatedKey {
            key_id: new.key_id,
            account: account.clone(),
            key: new.key,
            expires_at,
        })
    }

    /// Keys, of one account (which must exist) or of all, without their secrets.
    pub async fn keys(
        &self,
        account: Option<&AccountName>,
    ) -> Result<Vec<KeyRecord>, AccountError> {
        if let Some(name) = account {
            if self.store.account(name).await?.is_none() {
                return Err(AccountError::UnknownAccount(name.clone()));
            }
        }
        Ok(self.store.keys(account).await?)
    }

    /// Revokes a key; returns its account.
    #[tracing::instrument(skip(self))]
    pub async fn revoke_key(&self, key_id: &KeyId) -> Result<AccountName, AccountError> {
        let account = self
            .store
            .revoke_key(key_id, now())
            .await?
            .ok_or_else(|| AccountError::UnknownKey(key_id.clone()))?;
        tracing::info!(account = %account, key_id = %key_id, "key revoked");
        Ok(account)
    }
}
