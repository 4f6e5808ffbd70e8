//! Storage behind the `JobStore`, `SessionStore` and `AccountStore` traits: SQLite in the data
//! dir by default, PostgreSQL (shared by a cluster of nodes) when a database URL is set;
//! `Stores::open` picks one, and the time representation both keep lives here.
mod postgres;
mod sqlite;
mod webhooks;

pub use postgres::{DatabaseUrl, PgStore};
pub use sqlite::SqliteStore;
pub use webhooks::{
    Attempt, DeliveryRecord, DeliveryState, EndpointRecord, OutgoingDelivery, PingOutcome,
    RetryOutcome, WebhookStore,
};

use crate::{
    api::{QuotaOverrides, Usage},
    domain::{
        AccountId, AccountName, JobId, JobState, JobStatus, KeyId, Role, Scope, Sha256Digest,
    },
};
use async_trait::async_trait;
use std::{path::Path, sync::Arc};
use time::OffsetDateTime;

/// The three stores, over one database.
#[derive(Clone)]
pub struct Stores {
    pub jobs: Arc<dyn JobStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub accounts: Arc<dyn AccountStore>,
    /// Webhook endpoints and the outbox of their deliveries.
    pub webhooks: Arc<dyn WebhookStore>,
    /// The PostgreSQL database when it is one: other nodes may share it, and it carries what
    /// they tell each other (`LISTEN`/`NOTIFY`). `None` for SQLite: one process only.
    pub shared: Option<sqlx::PgPool>,
}

impl Stores {
    /// Opens (and migrates) the configured database: PostgreSQL at `url` when one is set,
    /// else the SQLite file at `sqlite`. A PostgreSQL server that cannot be reached is a
    /// `DatabaseUnavailable` in the error's chain.
    pub async fn open(url: Option<&DatabaseUrl>, sqlite: &Path) -> anyhow::Result<Self> {
        Ok(match url {
            Some(url) => {
                let store = PgStore::open(url).await?;
                let pool = store.pool();
                Self::over(store, Some(pool))
            }
            None => Self::over(SqliteStore::open(sqlite).await?, None),
        })
    }

    fn over<S: JobStore + SessionStore + AccountStore + WebhookStore>(
        store: S,
        shared: Option<sqlx::PgPool>,
    ) -> Self {
        let store = Arc::new(store);
        Self {
            jobs: store.clone(),
            sessions: store.clone(),
            accounts: store.clone(),
            webhooks: store,
            shared,
        }
    }
}

/// The configured database server did not answer (or refused the connection) at start-up: a
/// setting to fix, so the server refuses to start (exit 2) instead of failing as it would
/// while running. Names the database without its password.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the database {database}: {reason}")]
pub struct DatabaseUnavailable {
    pub database: String,
    pub reason: String,
}

/// Durable job records and the work queue. Every write returns only once it is on disk.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a new job.
    async fn insert(&self, job: &JobStatus) -> anyhow::Result<()>;
    /// Records a new receiving job (an upload) if its owner's quotas let it in: counting what
    /// the owner uses and recording the job are one write, so concurrent uploads cannot pass a
    /// quota together. A resumable upload also gets its upload record. Nothing is recorded
    /// when the answer is a refusal.
    /// A one-shot upload (no `resumable`) is held under `lease` while its request sends it.
    async fn admit(
        &self,
        job: &JobStatus,
        admission: Admission,
        resumable: Option<Resumable>,
        lease: &Lease,
    ) -> anyhow::Result<Admitted>;
    /// What the account uses now, counted from its jobs.
    async fn usage(&self, owner: AccountId) -> anyhow::Result<Usage>;
    /// Bytes the account's files and unfinished uploads take, leaving out upload `except`
    /// (whose real size is about to replace what it declared).
    async fn stored_bytes_besides(&self, owner: AccountId, except: JobId) -> anyhow::Result<u64>;
    /// Replaces the mutable fields of an unfinished job; false if there is no such job or it
    /// has already finished (finished is final).
    async fn save(&self, job: &JobStatus) -> anyhow::Result<bool>;
    async fn get(&self, id: JobId) -> anyhow::Result<Option<JobStatus>>;
    /// Newest first, of the jobs `filter.scope` sees; `before` continues after that job.
    async fn list(
        &self,
        filter: &ListFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>>;
    /// Moves up to `limit` jobs to `processing` under `lease` and returns them, oldest first:
    /// jobs in `processing` whose lease has run out (their node stopped; processing steps can
    /// run again), then the oldest queued jobs. No job is claimed by two claimers.
    async fn claim_queued(&self, limit: u32, lease: &Lease) -> anyhow::Result<Vec<Claimed>>;
    /// Extends every lease `lease.node` holds (processing jobs and one-shot uploads) to
    /// `lease.duration` from now, in one statement; returns the jobs it holds.
    async fn renew_leases(&self, lease: &Lease) -> anyhow::Result<Vec<JobId>>;
    /// Saves a change to a job `node` is processing, only while `node` still holds its lease
    /// (and the job has not finished meanwhile); a job that leaves `processing` leaves its
    /// lease too. False if nothing was saved: no job is processed by two nodes at once.
    async fn save_held(&self, job: &JobStatus, node: &NodeId) -> anyhow::Result<bool>;
    /// At start-up of node `node`: the jobs of earlier processes this store knows to be dead.
    /// SQLite serves one process per data dir, so every lease another node id holds is an
    /// earlier process's: its one-shot uploads fail (`INTERRUPTED_BY_RESTART`), its
    /// processing goes back to the queue, and its periodic-task claims end. PostgreSQL
    /// cannot tell a stopped node from a live one, so there leases only run out
    /// (`recover_expired`).
    async fn recover_interrupted(&self, node: &NodeId) -> anyhow::Result<Recovery>;
    /// Jobs whose lease has run out: one-shot uploads fail (`INTERRUPTED_BY_NODE_LOSS`),
    /// processing goes back to the queue. Returns the changed jobs.
    async fn recover_expired(&self) -> anyhow::Result<Vec<JobStatus>>;
    /// Claims periodic task `task` for `lease.node` until `lease.duration` from now, if its
    /// last claim has run out or is `lease.node`'s own: true if this node runs it now.
    async fn claim_periodic(&self, task: &str, lease: &Lease) -> anyhow::Result<bool>;
    /// Held while the references to the blob `digest` change (a job gains or loses it, the
    /// blob is stored or removed) and, with `owner`, while that account's stored bytes are
    /// checked against its quota, so that across every process on this database a blob goes
    /// only when no job references it and uploads finishing together cannot pass a quota
    /// together. The owner's lock is taken first; released when the guard is.
    async fn lock_blob(
        &self,
        digest: Sha256Digest,
        owner: Option<AccountId>,
    ) -> anyhow::Result<BlobLock>;
    async fn count_in_state(&self, state: JobState) -> anyhow::Result<u64>;
    /// Finished jobs (completed, failed, cancelled) last changed before `cutoff`, oldest first.
    async fn list_finished_before(
        &self,
        cutoff: time::OffsetDateTime,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>>;
    /// Moves an unfinished job to `cancelled` and returns it; `None` if there is no such job or
    /// it has already finished.
    async fn cancel(&self, id: JobId) -> anyhow::Result<Option<JobStatus>>;
    /// Removes a job's record; false if there was none.
    async fn delete(&self, id: JobId) -> anyhow::Result<bool>;
    /// Removes the records of these jobs in one write, of those that are finished, with their
    /// upload records; how many went. Blobs stay: the caller removes those left unreferenced
    /// (and a crash in between leaves only blobs the leftover sweep removes).
    async fn delete_finished(&self, ids: &[JobId]) -> anyhow::Result<u64>;
    /// How many jobs reference the blob with this digest.
    async fn count_referencing(&self, digest: Sha256Digest) -> anyhow::Result<u64>;
    /// Succeeds when the database takes a durable write (a full disk fails it).
    async fn ping(&self) -> anyhow::Result<()>;
    /// Records that the first `job.bytes_done` bytes of a resumable upload are durable: its
    /// offset with `staged` (the hash state, the bucket's parts), and its job's `bytes_done`,
    /// `progress` and `updated_at`, in one write. False if the job is no longer receiving (it
    /// was cancelled, say): nothing is recorded then.
    async fn save_received(&self, job: &JobStatus, staged: &StagedState) -> anyhow::Result<bool>;
    /// A resumable upload's record; `None` if the job is not one.
    async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>>;
    /// Resumable uploads still receiving.
    async fn resumable_uploads(&self) -> anyhow::Result<Vec<JobId>>;
}

/// Which jobs a list holds.
#[derive(Clone, Debug)]
pub struct ListFilter {
    pub scope: Scope,
    /// Only jobs shown with this owner's name (compared without case).
    pub owner: Option<AccountName>,
    pub state: Option<JobState>,
    /// Only jobs whose file name or metadata text contains this (without case, for ASCII).
    pub text: Option<String>,
}

impl ListFilter {
    /// `text` as a LIKE pattern that matches it anywhere: `%`, `_` and `\` in it are escaped
    /// (the queries say `ESCAPE '\'`), so a search is always for the characters typed.
    pub fn text_pattern(&self) -> Option<String> {
        let text = self.text.as_deref()?.trim();
        if text.is_empty() {
            return None;
        }
        let mut pattern = String::from("%");
        for c in text.chars() {
            if matches!(c, '%' | '_' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        Some(pattern)
    }

    /// Every job (in `state`, when given), whoever owns it.
    pub fn every_job(state: Option<JobState>) -> Self {
        Self {
            scope: Scope::Everything,
            owner: None,
            state,
            text: None,
        }
    }
}

/// The quotas an upload is admitted under; `None`: no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// Jobs the owner may have receiving at once, this one included.
    pub max_uploads: Option<u64>,
    /// Bytes the owner's files and unfinished uploads may take, this one's `bytes_total`
    /// (0 when unknown) included.
    pub max_stored_bytes: Option<u64>,
}

/// A resumable upload's record besides its job: declared by `credential` (a credential's
/// label), which may have at most `max_pending` of them unfinished.
#[derive(Clone, Debug)]
pub struct Resumable {
    pub credential: String,
    pub expected_sha256: Option<Sha256Digest>,
    pub max_pending: u64,
}

/// What `admit` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admitted {
    /// Recorded; the owner may store this many more bytes (`None`: no limit), this upload's
    /// declared size already counted.
    Yes { bytes_left: Option<u64> },
    /// The owner already has this many uploads receiving.
    TooManyUploads { in_progress: u64 },
    /// The owner's files and unfinished uploads already take this many bytes.
    OverStorage { used: u64 },
    /// The credential has `max_pending` resumable uploads unfinished.
    TooManyPending,
}

/// What the store keeps about a resumable upload besides its job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadRecord {
    /// Bytes durable in the temp file (or the bucket).
    pub offset: u64,
    /// The digest the client declared for the whole file, checked when it is complete.
    pub expected_sha256: Option<Sha256Digest>,
    /// Written with the offset, so any node continues from it.
    pub staged: StagedState,
}

/// How far a resumable upload's staging got, beside its durable offset: recorded in the same
/// write, so the two always agree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StagedState {
    /// The running SHA-256's state after exactly the durable bytes; `None` before the first
    /// byte (and for uploads recorded before states were kept: their bytes are re-hashed).
    pub hash_state: Option<Vec<u8>>,
    /// The bytes' multipart upload in the bucket, when uploads are staged there.
    pub parts: Option<StagedParts>,
}

/// A resumable upload staged in object storage: its multipart upload and the parts sent so far
/// (in order). The durable bytes past the parts are the tail, an object of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedParts {
    /// The multipart upload's id; `None` until the first whole part.
    pub upload_id: Option<String>,
    pub parts: Vec<StagedPart>,
}

impl StagedParts {
    /// Bytes in the parts; the tail starts here.
    pub fn in_parts(&self) -> u64 {
        self.parts.iter().map(|part| part.size).sum()
    }
}

/// The parts as the stores keep them: JSON text.
fn staged_parts_json(staged: &StagedState) -> anyhow::Result<Option<String>> {
    Ok(staged
        .parts
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?)
}

/// One uploaded part: the id the bucket gave it (its ETag) and its size.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StagedPart {
    pub etag: String,
    pub size: u64,
}

/// Browser sessions, by the SHA-256 of their cookie value, with the key that opened each
/// (`None`: `INGEST_TOKEN`). Writes are durable on return.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    async fn insert_session(&self, session: &StoredSession) -> anyhow::Result<()>;
    async fn delete_session(&self, id_hash: [u8; 32]) -> anyhow::Result<()>;
    /// Ends every session opened with one of these keys.
    async fn delete_sessions_of(&self, keys: &[KeyId]) -> anyhow::Result<()>;
    /// Sessions that have not expired at `now`.
    async fn live_sessions(&self, now: time::OffsetDateTime) -> anyhow::Result<Vec<StoredSession>>;
    /// The session with this hash, if it has not expired at `now`: for nodes that share the
    /// store, where another node may have opened or ended it.
    async fn live_session(
        &self,
        id_hash: [u8; 32],
        now: time::OffsetDateTime,
    ) -> anyhow::Result<Option<StoredSession>>;
    /// Deletes sessions expired at `now`; returns how many.
    async fn prune_sessions(&self, now: time::OffsetDateTime) -> anyhow::Result<u64>;
}

/// A browser session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSession {
    /// SHA-256 of the cookie value (keyed; see `sessions`).
    pub id_hash: [u8; 32],
    /// The key it was opened with; `None` for `INGEST_TOKEN`.
    pub key_id: Option<KeyId>,
    pub created: time::OffsetDateTime,
    pub expires: time::OffsetDateTime,
}

/// Accounts and their API keys. Writes are durable on return; several processes (the server
/// and the CLI) may write at once.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Records a new account (its `id` is given by the store); `None` if the name is taken.
    async fn add_account(&self, account: &AccountRecord) -> anyhow::Result<Option<AccountId>>;
    /// Sets an account's own quotas; false if there is no such account.
    async fn set_quotas(&self, name: &AccountName, quotas: QuotaOverrides) -> anyhow::Result<bool>;
    /// Every account, by name.
    async fn accounts(&self) -> anyhow::Result<Vec<AccountRecord>>;
    async fn account(&self, name: &AccountName) -> anyhow::Result<Option<AccountRecord>>;
    /// Removes the account and revokes its keys at `at` (their rows stay, for the record);
    /// false if there was no such account.
    async fn remove_account(
        &self,
        name: &AccountName,
        at: time::OffsetDateTime,
    ) -> anyhow::Result<bool>;
    /// Records a new key for account `key.account_id`; false if it does not exist.
    async fn add_key(&self, key: &KeyRecord) -> anyhow::Result<bool>;
    /// Keys, of one account or all, oldest first.
    async fn keys(&self, account: Option<AccountId>) -> anyhow::Result<Vec<KeyRecord>>;
    /// The unrevoked keys of existing accounts, each with its account: what a server checks
    /// requests against.
    async fn usable_keys(&self) -> anyhow::Result<Vec<(KeyRecord, AccountRecord)>>;
    /// Revokes a key at `at`; `None` if there is no such key, else its account (a key
    /// already revoked keeps its first revocation time).
    async fn revoke_key(
        &self,
        key_id: &KeyId,
        at: time::OffsetDateTime,
    ) -> anyhow::Result<Option<AccountName>>;
    /// A number that moves whenever an account or key is added, removed or revoked, by any
    /// process; one cheap read.
    async fn accounts_version(&self) -> anyhow::Result<i64>;
    /// Records when keys were last used (coarse; does not move `accounts_version`).
    async fn record_key_use(&self, uses: &[(KeyId, time::OffsetDateTime)]) -> anyhow::Result<()>;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    pub id: AccountId,
    pub name: AccountName,
    pub role: Role,
    pub created_at: time::OffsetDateTime,
    pub quotas: QuotaOverrides,
}

/// A key as stored: the SHA-256 of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    pub key_id: KeyId,
    /// `None` only for keys of accounts removed before accounts had numbers (all revoked).
    pub account_id: Option<AccountId>,
    /// The account's name when the key was made.
    pub account: AccountName,
    pub secret_sha256: [u8; 32],
    pub created_at: time::OffsetDateTime,
    pub expires_at: Option<time::OffsetDateTime>,
    pub revoked_at: Option<time::OffsetDateTime>,
    pub last_used_at: Option<time::OffsetDateTime>,
}

/// A job the worker has just taken from the queue.
#[derive(Debug)]
pub struct Claimed {
    pub job: JobStatus,
    /// When it entered the queue, for the queue-wait metric.
    pub queued_at: time::OffsetDateTime,
}

/// What `recover_interrupted` changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    pub failed_uploads: u64,
    pub requeued: u64,
}

/// The error recorded on jobs cancelled through the API.
pub const CANCELLED_BY_REQUEST: &str = "cancelled by request";

/// The error recorded on uploads that a restart cut off.
pub const INTERRUPTED_BY_RESTART: &str = "interrupted by server restart";

/// The error recorded on one-shot uploads whose node stopped (its lease ran out) mid-transfer.
pub const INTERRUPTED_BY_NODE_LOSS: &str =
    "interrupted: the server receiving it stopped before the upload was complete";

/// One process's identity in the cluster: random, made at start-up, so a restarted process is
/// a new node and never mistakes an earlier process's leases for its own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A lease as taken or renewed: held by `node` for `duration` from the database's now.
#[derive(Clone, Debug)]
pub struct Lease {
    pub node: NodeId,
    pub duration: std::time::Duration,
}

impl Lease {
    fn duration_us(&self) -> i64 {
        i64::try_from(self.duration.as_micros()).unwrap_or(i64::MAX)
    }
}

/// A store's hold on a blob's references (see `JobStore::lock_blob`). `release` lets go at
/// once; dropping it lets go too, a moment later.
pub struct BlobLock(Held);

enum Held {
    /// SQLite serves one process, whose own lock (in `Jobs`) is enough.
    InProcess,
    /// A transaction holding transaction-scoped advisory locks: ending it (or the connection)
    /// releases them, so a lock never outlives its holder, even one that forgets to release.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl BlobLock {
    pub async fn release(self) {
        match self.0 {
            Held::InProcess => {}
            Held::Postgres(tx) => {
                if let Err(error) = tx.rollback().await {
                    // The connection goes back to the pool (or closes), which ends the
                    // transaction and its locks anyway.
                    tracing::warn!(error = ?error, "releasing a blob lock failed");
                }
            }
        }
    }
}

/// The current time at the precision the stores keep (microseconds), so a status read back
/// equals the one that was written.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1000 * 1000)
        .unwrap_or(now)
}

/// Times are stored as microseconds since the Unix epoch (a 64-bit integer in both databases):
/// they sort correctly and round-trip exactly.
fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1000) as i64
}

fn from_micros(us: i64) -> anyhow::Result<OffsetDateTime> {
    Ok(OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(us) * 1000,
    )?)
}

/// Both databases' integers are signed; sizes beyond i64 cannot occur (uploads are capped far
/// below).
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
