//! API keys: the `ingest_<key id>_<secret>` format, and the `KeyRing`, every usable key in
//! memory so a request costs a hash and a constant-time comparison, never a database read. The
//! ring polls the store's change counter (one cheap read) and reloads when it moved, so a key
//! added or revoked by the CLI in another process counts within `REFRESH_EVERY`. Use is
//! recorded in memory and written at most once per `FLUSH_USE_EVERY` (and at shutdown).
use super::{
    sessions::Sessions,
    store::{now, AccountRecord, AccountStore, KeyRecord},
};
use crate::{
    api::QuotaOverrides,
    domain::{AccountId, AccountName, KeyId, Role, KEY_ID_LEN},
};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc, RwLock,
    },
    time::{Duration, Instant},
};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// What every key starts with, so people and secret scanners can tell what it is.
pub const PREFIX: &str = "ingest_";
/// Random bytes in a key's secret: 256 bits from the OS generator.
const SECRET_BYTES: usize = 32;
/// How often the ring checks the store for added, revoked or removed keys.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// How long the ring may go without a successful refresh before it stops accepting keys: a
/// revocation it cannot see must not leave a key working. The token is unaffected.
pub const STALE_AFTER: Duration = Duration::from_secs(3);
/// What an unknown key id's secret is compared with, so unknown and known ids take the same
/// path (no SHA-256 of anything is all 0x5a).
const DUMMY_HASH: [u8; 32] = [0x5a; 32];
/// How often last-use times are written.
const FLUSH_USE_EVERY: Duration = Duration::from_secs(60);

/// A freshly made key: the whole key (shown once, then dropped) and what is stored of it.
pub struct GeneratedKey {
    pub key_id: KeyId,
    pub key: SecretString,
    pub secret_sha256: [u8; 32],
}

/// Makes a key: 6 random bytes of id and 32 of secret, both hex.
pub fn generate() -> GeneratedKey {
    let mut id = [0u8; KEY_ID_LEN / 2];
    let mut secret = [0u8; SECRET_BYTES];
    let mut rng = rand::rngs::OsRng;
    rand::TryRngCore::try_fill_bytes(&mut rng, &mut id).expect("the OS random generator");
    rand::TryRngCore::try_fill_bytes(&mut rng, &mut secret).expect("the OS random generator");
    let key_id = KeyId::parse(&hex::encode(id)).expect("12 hex digits are a key id");
    let secret = hex::encode(secret);
    GeneratedKey {
        secret_sha256: Sha256::digest(secret.as_bytes()).into(),
        key: SecretString::from(format!("{PREFIX}{key_id}_{secret}")),
        key_id,
    }
}

/// A key as presented: its public id and its secret, not yet checked.
#[derive(PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub key_id: KeyId,
    secret: &'a str,
}

/// The id only: the secret never reaches a log.
impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Splits `ingest_<12 hex>_<64 hex>`; `None` for anything else (such as `INGEST_TOKEN`).
pub fn parse(text: &str) -> Option<PresentedKey<'_>> {
    let rest = text.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_at_checked(KEY_ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let hex_secret = secret.len() == SECRET_BYTES * 2
        && secret
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    hex_secret.then_some(())?;
    Some(PresentedKey {
        key_id: KeyId::parse(id).ok()?,
        secret,
    })
}

/// Whose a key is: what a request made with it acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyOwner {
    pub key_id: KeyId,
    pub account: AccountName,
    pub account_id: AccountId,
    pub role: Role,
    /// The account's own quotas (`None` fields: the server's defaults).
    pub quotas: QuotaOverrides,
}

struct Entry {
    owner: KeyOwner,
    secret_sha256: [u8; 32],
    expires_at: Option<OffsetDateTime>,
    /// Fires when the key stops being usable; open WebSockets of the key watch it.
    ended: CancellationToken,
    /// Unix seconds of the last use seen here (0: none), and of the last one written.
    last_used: AtomicI64,
    flushed: AtomicI64,
}

impl Entry {
    fn usable_at(&self, at: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|expires| expires > at)
    }
}

/// Every usable key, in memory.
pub struct KeyRing {
    store: Arc<dyn AccountStore>,
    entries: RwLock<HashMap<KeyId, Arc<Entry>>>,
    /// The store's change counter at the last load.
    version: AtomicI64,
    /// One change at a time: the poller's refresh, and a change the service makes at once.
    refreshing: tokio::sync::Mutex<()>,
    /// When the ring last matched the store (the start of the last successful refresh).
    refreshed_at: std::sync::Mutex<Instant>,
    /// How old that may get before keys are refused (`STALE_AFTER`; shorter in tests).
    stale_after: Duration,
    /// Whether the ring has given up its keys for being stale (logged once each way).
    failed_closed: std::sync::atomic::AtomicBool,
}

/// The staleness rule: a ring refreshed at `refreshed_at` still vouches for its keys at `now`
/// while no more than `stale_after` has passed.
fn fresh(refreshed_at: Instant, now: Instant, stale_after: Duration) -> bool {
    now.saturating_duration_since(refreshed_at) <= stale_after
}

impl KeyRing {
    pub async fn load(store: Arc<dyn AccountStore>) -> anyhow::Result<Self> {
        Self::load_with(store, STALE_AFTER).await
    }

    /// `load`, refusing keys once the last successful refresh is older than `stale_after`.
    pub async fn load_with(
        store: Arc<dyn AccountStore>,
        stale_after: Duration,
    ) -> anyhow::Result<Self> {
        let ring = Self {
            store,
            entries: RwLock::new(HashMap::new()),
            version: AtomicI64::new(i64::MIN),
            refreshing: tokio::sync::Mutex::new(()),
            refreshed_at: std::sync::Mutex::new(Instant::now()),
            stale_after,
            failed_closed: std::sync::atomic::AtomicBool::new(false),
        };
        ring.refresh().await?;
        Ok(ring)
    }

    /// Whether the ring refreshed recently enough to vouch for its keys.
    pub fn is_fresh(&self) -> bool {
        fresh(self.refreshed_at(), Instant::now(), self.stale_after)
    }

    /// How long ago the ring last matched the store.
    pub fn since_refresh(&self) -> Duration {
        self.refreshed_at().elapsed()
    }

    fn refreshed_at(&self) -> Instant {
        *self.refreshed_at.lock().expect("key ring refresh time")
    }

    /// The owner of a presented key if it is known, unexpired and unrevoked, and the ring is
    /// fresh. The secret's SHA-256 is compared in constant time with the stored one (with a
    /// fixed dummy for an unknown id, so both take the same path).
    pub fn verify(&self, presented: &PresentedKey<'_>) -> Option<KeyOwner> {
        let entry = self.entry(&presented.key_id);
        let hash: [u8; 32] = Sha256::digest(presented.secret.as_bytes()).into();
        let expected = entry
            .as_ref()
            .map_or(&DUMMY_HASH, |entry| &entry.secret_sha256);
        let matches: bool = hash.ct_eq(expected).into();
        let entry = entry?;
        let at = OffsetDateTime::now_utc();
        if !matches || !entry.usable_at(at) || !self.is_fresh() {
            return None;
        }
        entry
            .last_used
            .fetch_max(at.unix_timestamp(), Ordering::Relaxed);
        Some(entry.owner.clone())
    }

    /// The owner of a key known by id (a browser session's), if the key is still usable.
    pub fn owner(&self, key_id: &KeyId) -> Option<KeyOwner> {
        let entry = self.entry(key_id)?;
        let at = OffsetDateTime::now_utc();
        (entry.usable_at(at) && self.is_fresh()).then(|| {
            entry
                .last_used
                .fetch_max(at.unix_timestamp(), Ordering::Relaxed);
            entry.owner.clone()
        })
    }

    /// A signal that fires when the key stops being usable (revoked, removed, expired); `None`
    /// if it already has.
    pub fn ended(&self, key_id: &KeyId) -> Option<CancellationToken> {
        self.entry(key_id).map(|entry| entry.ended.clone())
    }

    fn entry(&self, key_id: &KeyId) -> Option<Arc<Entry>> {
        self.entries
            .read()
            .expect("key ring lock")
            .get(key_id)
            .cloned()
    }

    /// Reloads the keys if the store's change counter moved, and drops expired ones. Returns
    /// the keys that stopped being usable (their signals have fired).
    pub async fn refresh(&self) -> anyhow::Result<Vec<KeyId>> {
        let _one_at_a_time = self.refreshing.lock().await;
        let started = Instant::now();
        let version = self.store.accounts_version().await?;
        let at = now();
        let reloaded = if version != self.version.load(Ordering::Acquire) {
            Some(self.store.usable_keys().await?)
        } else {
            None
        };
        let first_load = self.version.load(Ordering::Acquire) == i64::MIN;
        *self.refreshed_at.lock().expect("key ring refresh time") = started;
        if self.failed_closed.swap(false, Ordering::AcqRel) {
            tracing::info!("the API keys could be refreshed again; keys are accepted");
        }
        let mut entries = self.entries.write().expect("key ring lock");
        let mut next: HashMap<KeyId, Arc<Entry>> = match reloaded {
            Some(records) => records
                .into_iter()
                .map(|(record, account)| {
                    let previous = entries.get(&record.key_id).cloned();
                    let entry = fresh_entry(record, &account, previous.as_ref());
                    (entry.owner.key_id.clone(), Arc::new(entry))
                })
                .collect(),
            // Nothing changed in the store: only an expiry can end a key.
            None if entries.values().all(|entry| entry.usable_at(at)) => return Ok(Vec::new()),
            None => entries.clone(),
        };
        next.retain(|_, entry| entry.usable_at(at));
        if !first_load {
            // Keys added here or by another process (the CLI): on the record where they count.
            for (key_id, entry) in &next {
                if !entries.contains_key(key_id) {
                    let account = &entry.owner.account;
                    tracing::info!(account = %account, key_id = %key_id, "key now accepted");
                }
            }
        }
        let ended: Vec<KeyId> = entries
            .iter()
            .filter(|(key_id, _)| !next.contains_key(*key_id))
            .map(|(key_id, entry)| {
                entry.ended.cancel();
                key_id.clone()
            })
            .collect();
        *entries = next;
        self.version.store(version, Ordering::Release);
        Ok(ended)
    }

    /// When the ring is stale: drops every key and fires every key's signal (open sockets
    /// close; sessions opened with a key are refused while the ring is stale), and makes the
    /// next successful refresh reload everything. Returns whether the ring was stale.
    pub fn fail_closed_if_stale(&self) -> bool {
        if self.is_fresh() {
            return false;
        }
        if !self.failed_closed.swap(true, Ordering::AcqRel) {
            tracing::error!(
                since_refresh = ?self.since_refresh(),
                "the API keys could not be refreshed; every key is refused until they can be"
            );
        }
        let dropped = std::mem::take(&mut *self.entries.write().expect("key ring lock"));
        for entry in dropped.values() {
            entry.ended.cancel();
        }
        self.version.store(i64::MIN, Ordering::Release);
        true
    }

    /// Starts accepting a key just added to the store, at once (the service's change).
    pub async fn insert(&self, record: KeyRecord, account: &AccountRecord) {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut entries = self.entries.write().expect("key ring lock");
        let previous = entries.get(&record.key_id).cloned();
        let entry = fresh_entry(record, account, previous.as_ref());
        entries.insert(entry.owner.key_id.clone(), Arc::new(entry));
    }

    /// Stops accepting the keys that `ends` picks, at once: their signals fire. Returns them.
    pub async fn remove(&self, ends: impl Fn(&KeyOwner) -> bool) -> Vec<KeyId> {
        let _one_at_a_time = self.refreshing.lock().await;
        let mut entries = self.entries.write().expect("key ring lock");
        let mut removed = Vec::new();
        entries.retain(|key_id, entry| {
            let keep = !ends(&entry.owner);
            if !keep {
                entry.ended.cancel();
                removed.push(key_id.clone());
            }
            keep
        });
        removed
    }

    /// Writes the last-use times seen since the previous flush.
    pub async fn flush_use(&self) -> anyhow::Result<()> {
        let uses: Vec<(KeyId, OffsetDateTime)> = {
            let entries = self.entries.read().expect("key ring lock");
            entries
                .values()
                .filter_map(|entry| {
                    let used = entry.last_used.load(Ordering::Relaxed);
                    let flushed = entry.flushed.swap(used, Ordering::Relaxed);
                    (used > flushed)
                        .then(|| OffsetDateTime::from_unix_timestamp(used).ok())
                        .flatten()
                        .map(|at| (entry.owner.key_id.clone(), at))
                })
                .collect()
        };
        self.store.record_key_use(&uses).await
    }
}

/// An entry for a loaded key, keeping the signal and use times of the one it replaces.
fn fresh_entry(record: KeyRecord, account: &AccountRecord, previous: Option<&Arc<Entry>>) -> Entry {
    let stored_use = record
        .last_used_at
        .map_or(0, OffsetDateTime::unix_timestamp);
    let (ended, last_used, flushed) = match previous {
        Some(entry) => (
            entry.ended.clone(),
            entry.last_used.load(Ordering::Relaxed).max(stored_use),
            entry.flushed.load(Ordering::Relaxed).max(stored_use),
        ),
        None => (CancellationToken::new(), stored_use, stored_use),
    };
    Entry {
        owner: KeyOwner {
            key_id: record.key_id,
            account: account.name.clone(),
            account_id: account.id,
            role: account.role,
            quotas: account.quotas,
        },
        secret_sha256: record.secret_sha256,
        expires_at: record.expires_at,
        ended,
        last_used: AtomicI64::new(last_used),
        flushed: AtomicI64::new(flushed),
    }
}

/// Refreshes the ring and ends the browser sessions of keys that stopped being usable.
pub async fn sync(ring: &KeyRing, sessions: &Sessions) -> anyhow::Result<()> {
    let ended = ring.refresh().await?;
    if !ended.is_empty() {
        for key_id in &ended {
            tracing::info!(key_id = %key_id, "key no longer usable; its sessions and sockets end");
        }
        sessions.end_for_keys(&ended).await?;
    }
    Ok(())
}

/// Keeps the ring fresh until shutdown, then writes the last-use times once more.
pub async fn keep_fresh(ring: Arc<KeyRing>, sessions: Arc<Sessions>, stop: CancellationToken) {
    let mut refresh = tokio::time::interval(REFRESH_EVERY);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush = tokio::time::interval(FLUSH_USE_EVERY);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = refresh.tick() => {
                // A refresh that hangs counts as failed: the ring must go stale, not wait.
                match tokio::time::timeout(STALE_AFTER, sync(&ring, &sessions)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        tracing::warn!(error = ?error, "refreshing the API keys failed");
                    }
                    Err(_) => tracing::warn!("refreshing the API keys timed out"),
                }
                ring.fail_closed_if_stale();
            }
            _ = flush.tick() => {
                if let Err(error) = ring.flush_use().await {
                    tracing::warn!(error = ?error, "recording when keys were last used failed");
                }
            }
        }
    }
    if let Err(error) = ring.flush_use().await {
        tracing::warn!(error = ?error, "recording when keys were last used failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{accounts::Accounts, store::SqliteStore};
    use secrecy::ExposeSecret;

    /// A ring over a fresh database holding one member key; the whole key comes back too.
    async fn ring_with_a_key(stale_after: Duration) -> (tempfile::TempDir, KeyRing, String, KeyId) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("ingest.db"))
                .await
                .unwrap(),
        );
        let accounts = Accounts::new(store.clone());
        let name = AccountName::parse("carol").unwrap();
        accounts
            .add_account(name.clone(), Role::Member)
            .await
            .unwrap();
        let created = accounts.add_key(&name, None).await.unwrap();
        let ring = KeyRing::load_with(store, stale_after).await.unwrap();
        let key = created.key.expose_secret().to_owned();
        (dir, ring, key, created.key_id)
    }

    /// Puts an entry straight into the ring, as if loaded, and returns its whole key.
    fn put_entry(ring: &KeyRing, expires_at: Option<OffsetDateTime>) -> String {
        let new = generate();
        let entry = Entry {
            owner: KeyOwner {
                key_id: new.key_id.clone(),
                account: AccountName::parse("dora").unwrap(),
                account_id: AccountId::new(7),
                role: Role::Member,
                quotas: QuotaOverrides::default(),
            },
            secret_sha256: new.secret_sha256,
            expires_at,
            ended: CancellationToken::new(),
            last_used: AtomicI64::new(0),
            flushed: AtomicI64::new(0),
        };
        ring.entries
            .write()
            .unwrap()
            .insert(new.key_id, Arc::new(entry));
        new.key.expose_secret().to_owned()
    }

    #[test]
    fn a_ring_vouches_for_its_keys_only_within_the_bound_since_its_last_refresh() {
        let bound = Duration::from_secs(3);
        let refreshed = Instant::now();
        assert!(fresh(refreshed, refreshed, bound));
        assert!(fresh(refreshed, refreshed + bound, bound));
        assert!(!fresh(
            refreshed,
            refreshed + bound + Duration::from_millis(1),
            bound
        ));
        // A clock read before the refresh is not "stale".
        assert!(fresh(refreshed + bound, refreshed, bound));
        assert!(
            STALE_AFTER >= REFRESH_EVERY * 5,
            "several missed refreshes, not one"
        );
    }

    #[tokio::test]
    async fn a_stale_ring_refuses_keys_and_ends_them_until_a_refresh_succeeds() {
        let (_dir, ring, key, key_id) = ring_with_a_key(Duration::from_millis(200)).await;
        let presented = parse(&key).unwrap();
        assert!(ring.verify(&presented).is_some());
        let ended = ring.ended(&key_id).unwrap();
        assert!(!ring.fail_closed_if_stale(), "fresh: nothing happens");

        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!ring.is_fresh());
        assert_eq!(ring.verify(&presented), None, "refused once stale");
        assert_eq!(ring.owner(&key_id), None, "its sessions too");
        assert!(ring.fail_closed_if_stale());
        assert!(ended.is_cancelled(), "open sockets of the key close");

        ring.refresh().await.unwrap();
        assert!(ring.is_fresh());
        assert!(ring.verify(&presented).is_some(), "accepted again");
    }

    #[tokio::test]
    async fn an_expired_key_is_refused_at_request_time_without_a_refresh() {
        let (_dir, ring, _, _) = ring_with_a_key(STALE_AFTER).await;
        let now = OffsetDateTime::now_utc();
        let expired = put_entry(&ring, Some(now - time::Duration::seconds(1)));
        let live = put_entry(&ring, Some(now + time::Duration::hours(1)));
        let expired = parse(&expired).unwrap();
        let live = parse(&live).unwrap();
        assert_eq!(ring.verify(&expired), None);
        assert_eq!(ring.owner(&expired.key_id), None, "nor its sessions");
        assert!(
            ring.verify(&live).is_some(),
            "the same path with a later expiry works"
        );
        assert!(ring.owner(&live.key_id).is_some());
    }

    #[tokio::test]
    async fn unknown_ids_and_wrong_secrets_are_refused_alike() {
        let (_dir, ring, key, key_id) = ring_with_a_key(STALE_AFTER).await;
        let secret = &key[key.len() - SECRET_BYTES * 2..];
        let unknown = format!("{PREFIX}000000000000_{secret}");
        let wrong = format!("{PREFIX}{key_id}_{}", "0".repeat(SECRET_BYTES * 2));
        assert_eq!(ring.verify(&parse(&unknown).unwrap()), None);
        assert_eq!(ring.verify(&parse(&wrong).unwrap()), None);
        assert!(ring.verify(&parse(&key).unwrap()).is_some());
    }

    #[tokio::test]
    async fn a_stored_key_that_does_not_read_back_is_skipped_not_fatal() {
        let (dir, _, key, _) = ring_with_a_key(STALE_AFTER).await;
        let path = dir.path().join("ingest.db");
        let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
            "sqlite://{}",
            path.display()
        ))
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO api_keys (key_id, account, secret_sha256, created_us) \
             VALUES ('0123456789ab', 'carol', 'not a hash', 0)",
        )
        .execute(&mut db)
        .await
        .unwrap();
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let ring = KeyRing::load(store)
            .await
            .expect("one bad row does not stop the load");
        assert!(
            ring.verify(&parse(&key).unwrap()).is_some(),
            "the good key still works"
        );
    }

    #[tokio::test]
    async fn the_service_applies_key_changes_to_the_ring_without_a_refresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("ingest.db"))
                .await
                .unwrap(),
        );
        let ring = Arc::new(KeyRing::load(store.clone()).await.unwrap());
        let sessions = Arc::new(
            Sessions::load(store.clone(), Duration::from_secs(3600), [7; 32], false)
                .await
                .unwrap(),
        );
        let accounts = Accounts::serving(store, ring.clone(), sessions.clone());
        let name = AccountName::parse("erin").unwrap();
        accounts
            .add_account(name.clone(), Role::Member)
            .await
            .unwrap();
        // Asked for as `Erin`: the key belongs to the stored `erin`.
        let asked = AccountName::parse("Erin").unwrap();
        let created = accounts.add_key(&asked, None).await.unwrap();
        let key = created.key.expose_secret().to_owned();
        let owner = ring.verify(&parse(&key).unwrap()).expect("usable at once");
        assert_eq!(owner.account, name);
        let session = sessions.create(Some(created.key_id.clone())).await.unwrap();
        let ended = ring.ended(&created.key_id).unwrap();

        accounts.revoke_key(&created.key_id).await.unwrap();
        assert_eq!(ring.verify(&parse(&key).unwrap()), None, "refused at once");
        assert!(ended.is_cancelled(), "its sockets close");
        assert!(
            sessions.find(&session.cookie_value).is_none(),
            "its sessions end"
        );
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let new = generate();
        let text = new.key.expose_secret();
        let secret = &text[text.len() - SECRET_BYTES * 2..];
        let presented = format!("{:?}", parse(text).unwrap());
        assert!(!presented.contains(secret), "{presented}");
        assert!(presented.contains(new.key_id.as_str()), "{presented}");
        let issued = crate::api::IssuedKey {
            key_id: new.key_id.clone(),
            key: text.to_owned(),
            expires_at: None,
        };
        let issued = format!("{issued:?}");
        assert!(!issued.contains(secret), "{issued}");
        assert!(issued.contains(new.key_id.as_str()), "{issued}");
    }

    #[test]
    fn a_generated_key_parses_back_to_its_id_and_hash() {
        let new = generate();
        let text = new.key.expose_secret();
        assert!(text.starts_with("ingest_"));
        assert_eq!(text.len(), PREFIX.len() + KEY_ID_LEN + 1 + SECRET_BYTES * 2);
        let presented = parse(text).expect("a generated key parses");
        assert_eq!(presented.key_id, new.key_id);
        let hash: [u8; 32] = Sha256::digest(presented.secret.as_bytes()).into();
        assert_eq!(hash, new.secret_sha256);
        assert_ne!(generate().key.expose_secret(), text, "keys are random");
    }

    #[test]
    fn anything_but_the_exact_format_is_not_a_key() {
        let secret = "0".repeat(64);
        assert!(parse(&format!("ingest_0123456789ab_{secret}")).is_some());
        for bad in [
            String::new(),
            "test-token-0123456789abcdef".to_owned(),
            format!("ingest_0123456789ab{secret}"),
            format!("ingest_0123456789AB_{secret}"),
            format!("ingest_0123456789a_{secret}0"),
            format!("ingest_0123456789ab_{secret}0"),
            format!("ingest_0123456789ab_{}", &secret[1..]),
            format!("ingest_0123456789ab_{}G", &secret[1..]),
            format!("Ingest_0123456789ab_{secret}"),
            "ingest_".to_owned(),
            "ingest_é".to_owned(),
        ] {
            assert_eq!(parse(&bad), None, "{bad:?}");
        }
    }
}
