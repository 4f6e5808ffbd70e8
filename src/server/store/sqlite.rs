//! SQLite job store: WAL journal, embedded migrations, and one writer task that commits
//! concurrent writes together (group commit), so each fsync durably records many jobs while every
//! caller still waits for its own write to be on disk; the fsync runs beside the writer, which
//! commits the next batch meanwhile.
use super::{
    from_micros, micros, now, staged_parts_json, to_i64, AccountRecord, AccountStore, Admission,
    Admitted, BlobLock, Claimed, Held, JobStore, KeyRecord, Lease, ListFilter, NodeId, Recovery,
    Resumable, SessionStore, StagedState, StoredSession, UploadRecord, CANCELLED_BY_REQUEST,
    INTERRUPTED_BY_NODE_LOSS, INTERRUPTED_BY_RESTART,
};
use crate::{
    api::{QuotaOverrides, Usage},
    domain::{
        AccountId, AccountName, JobId, JobState, JobStatus, KeyId, Role, Scope, Sha256Digest,
    },
};
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use sqlx::{
    query_builder::Separated,
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    Connection, QueryBuilder, Row, Sqlite, SqliteConnection, SqlitePool,
};
use std::{collections::HashMap, path::Path, str::FromStr, time::Duration};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

mod webhooks;

/// The columns a `JobRow` is read from, in the order its `FromRow` reads them. Named rather
/// than `*`, which would also return the bookkeeping columns (`seq`, the lease): sqlx copies
/// every value of every row it reads.
macro_rules! job_columns {
    () => {
        "id, owner_id, owner, state, progress, bytes_done, bytes_total, filename, size, sha256, \
         content_type, metadata, error, created_us, updated_us"
    };
}

/// Most writes committed in one transaction; bounds the latency a batch adds.
const MAX_BATCH: usize = 1024;
/// Writes waiting for the writer; callers beyond this wait (backpressure, bounded memory).
const WRITE_QUEUE: usize = 8192;
/// How often the write-ahead log is copied back into the database, off the writer (see
/// `checkpoint_loop`).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// Committed batches waiting for the log's fsync; the writer waits beyond this.
const BATCHES_AWAITING_SYNC: usize = 64;

pub struct SqliteStore {
    readers: SqlitePool,
    writes: mpsc::Sender<Write>,
}

enum WriteOp {
    /// Inserts are gathered into one multi-row statement per batch.
    Insert(Box<JobStatus>),
    /// So are saves of jobs this node processes (see `save_held`).
    SaveHeld(Box<JobStatus>, NodeId),
    Change(Change),
}

/// Writes that run one statement each.
enum Change {
    Save(Box<JobStatus>),
    InsertSession(StoredSession),
    DeleteSession([u8; 32]),
    DeleteSessionsOf(Vec<KeyId>),
    AddAccount(AccountRecord),
    SetQuotas(AccountName, QuotaOverrides),
    RemoveAccount(AccountName, OffsetDateTime),
    AddKey(Box<KeyRecord>),
    RevokeKey(KeyId, OffsetDateTime),
    RecordKeyUse(Vec<(KeyId, OffsetDateTime)>),
    PruneSessions(OffsetDateTime),
    Cancel(JobId),
    Delete(JobId),
    DeleteFinished(Vec<JobId>),
    Claim(u32, Lease),
    RenewLeases(Lease),
    Recover(NodeId),
    RecoverExpired,
    ClaimPeriodic(String, Lease),
    Admit {
        job: Box<JobStatus>,
        admission: Admission,
        resumable: Option<Resumable>,
        lease: Lease,
    },
    SaveReceived(Box<JobStatus>, Box<StagedState>),
    /// Rewrites the one probe row: a durable write that proves the database takes them.
    Probe(OffsetDateTime),
    Webhook(webhooks::WebhookWrite),
}

enum WriteOutcome {
    Done,
    Saved(bool),
    Claimed(Vec<Claimed>),
    Cancelled(Option<Box<JobStatus>>),
    Pruned(u64),
    Recovered(Recovery),
    Renewed(Vec<JobId>),
    Expired(Vec<JobStatus>),
    Revoked(Option<AccountName>),
    AccountAdded(Option<AccountId>),
    Admitted(Admitted),
    /// Delivery ids a claim took.
    Webhook(Vec<String>),
    /// What a ping asked for got.
    Pinged(super::PingOutcome),
    Retried(super::RetryOutcome),
    /// Deliveries a stopping sender handed back.
    Released(u64),
}

struct Write {
    op: WriteOp,
    reply: oneshot::Sender<anyhow::Result<WriteOutcome>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and migrates it.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // A 2xx promises the job is on disk: every commit reaches stable storage.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        // The writer never checkpoints: by default the commit that takes the log past 1,000
        // pages copies them all back and fsyncs the database file before it answers, stalling
        // every write queued behind it. `checkpoint_loop` does that on its own connection.
        // Nor does it fsync its commits: `sync_loop` does, and answers a batch's callers only
        // once an fsync that began after the batch's commit has returned (see there).
        let writer_options = options
            .clone()
            .pragma("wal_autocheckpoint", "0")
            .synchronous(SqliteSynchronous::Normal);
        let mut writer = SqliteConnection::connect_with(&writer_options)
            .await
            .with_context(|| format!("opening database {}", path.display()))?;
        sqlx::migrate!("./migrations")
            .run(&mut writer)
            .await
            .context("migrating the database")?;
        let readers = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        let checkpointer = SqliteConnection::connect_with(&options).await?;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let (committed, awaiting_sync) = mpsc::channel(BATCHES_AWAITING_SYNC);
        let log = wal_path(path);
        std::thread::Builder::new()
            .name("ingest-log-sync".to_owned())
            .spawn(move || sync_loop(&log, awaiting_sync))
            .context("starting the database log's sync thread")?;
        tokio::spawn(checkpoint_loop(checkpointer, writes.downgrade()));
        tokio::spawn(write_loop(writer, queue, committed));
        Ok(Self { readers, writes })
    }

    async fn write(&self, op: WriteOp) -> anyhow::Result<WriteOutcome> {
        let (reply, outcome) = oneshot::channel();
        self.writes
            .send(Write { op, reply })
            .await
            .map_err(|_| anyhow!("the database writer has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow!("the database writer dropped a write"))?
            .map_err(full_disk_as_io)
    }
}

/// A committed batch's answers, held until the log is on disk.
struct Committed(Vec<(Reply, anyhow::Result<WriteOutcome>)>);

type Reply = oneshot::Sender<anyhow::Result<WriteOutcome>>;

impl Committed {
    fn answer(self) {
        for (reply, outcome) in self.0 {
            let _ = reply.send(outcome);
        }
    }

    fn fail(self, why: &str) {
        for (reply, _) in self.0 {
            let _ = reply.send(Err(anyhow!("{why}")));
        }
    }
}

/// Where SQLite keeps a database's write-ahead log.
fn wal_path(database: &Path) -> std::path::PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    name.into()
}

async fn write_loop(
    mut conn: SqliteConnection,
    mut queue: mpsc::Receiver<Write>,
    awaiting_sync: mpsc::Sender<Committed>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match apply_batch(&mut conn, &batch).await {
            Ok(outcomes) => {
                let replies = batch.drain(..).map(|write| write.reply).zip(outcomes);
                if let Err(unsynced) = awaiting_sync.send(Committed(replies.collect())).await {
                    // The log could not be made durable: nothing more is acknowledged (the
                    // queue closes with this task, so later writes fail at once).
                    unsynced.0.fail(LOG_SYNC_FAILED);
                    return;
                }
            }
            Err(error) => {
                tracing::error!(error = ?error, writes = batch.len(), "database commit failed");
                let full = is_sqlite_full(&error);
                for write in batch.drain(..) {
                    let failed = anyhow!("database commit failed: {error}");
                    let failed = if full { full_disk(failed) } else { failed };
                    let _ = write.reply.send(Err(failed));
                }
            }
        }
    }
}

const LOG_SYNC_FAILED: &str =
    "the database's log could not be synced to disk; writes stop until a restart";

/// Answers committed batches once the write-ahead log is on disk: one `fdatasync` for every
/// batch committed before it began, while the writer commits the next. Each batch was written
/// to the log in full before it was sent here, and SQLite only appends to the log until a
/// checkpoint has copied it back (and fsynced the database), so the sync makes each of them as
/// durable as `synchronous = FULL` would; a crash before it loses only writes nobody was told
/// of. After a failed fsync the kernel may have dropped the pages, so nothing more is
/// acknowledged: the writer stops and `/readyz` fails until a restart recovers from the log.
fn sync_loop(log: &Path, mut awaiting_sync: mpsc::Receiver<Committed>) {
    let mut batches = Vec::with_capacity(BATCHES_AWAITING_SYNC);
    while awaiting_sync.blocking_recv_many(&mut batches, BATCHES_AWAITING_SYNC) > 0 {
        let synced = std::fs::OpenOptions::new()
            .write(true)
            .open(log)
            .and_then(|file| file.sync_data());
        match synced {
            Ok(()) => batches.drain(..).for_each(Committed::answer),
            Err(error) => {
                tracing::error!(error = %error, log = %log.display(), "{LOG_SYNC_FAILED}");
                awaiting_sync.close();
                batches
                    .drain(..)
                    .for_each(|batch| batch.fail(LOG_SYNC_FAILED));
                while let Some(batch) = awaiting_sync.blocking_recv() {
                    batch.fail(LOG_SYNC_FAILED);
                }
                return;
            }
        }
    }
}

/// Copies the write-ahead log back into the database every `CHECKPOINT_EVERY` while the store
/// is open, beside the writer rather than in its commits. PASSIVE: it never waits for the
/// writer or for readers, and SQLite starts the log over once it is all copied back, so the log
/// stays small under a steady load.
async fn checkpoint_loop(mut conn: SqliteConnection, store: mpsc::WeakSender<Write>) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if store.strong_count() == 0 {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = ?error, "checkpointing the database's log failed");
        }
    }
}

/// SQLite's primary result code for "database or disk is full".
const SQLITE_FULL: i32 = 13;

fn is_sqlite_full(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|database| database.code()?.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_FULL)
    })
}

/// SQLite reports a full disk as SQLITE_FULL; it is passed on as the I/O error it is, so callers
/// tell a full disk from other failures the same way wherever it happened.
fn full_disk_as_io(error: anyhow::Error) -> anyhow::Error {
    if is_sqlite_full(&error) {
        full_disk(error)
    } else {
        error
    }
}

fn full_disk(error: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
        .context(format!("{error:#}"))
}

/// Writes that run as one statement: every insert of a batch (one multi-row INSERT), every
/// save of a job this node processes (one multi-row UPDATE), or a single change; each statement
/// costs a round trip to SQLite's thread, on the path every caller waits behind. Each write
/// keeps its place in the batch, where its outcome goes.
enum Statement<'a> {
    Inserts(Vec<(usize, &'a JobStatus)>),
    SavesHeld(Vec<(usize, &'a JobStatus, &'a NodeId)>),
    Change(usize, &'a Change),
}

impl Statement<'_> {
    /// Whether the statement reads and then writes in a transaction of its own, which must
    /// then be an immediate one (see `apply_batch`).
    fn reads_then_writes(&self) -> bool {
        matches!(
            self,
            Statement::Change(
                _,
                Change::RemoveAccount(..) | Change::Admit { .. } | Change::SaveReceived(..)
            )
        )
    }
}

/// The batch's statements. Inserts and held saves from anywhere in the batch join the first
/// of their kind: every write of a batch was sent before any was answered, so each order of
/// them is one in which they could have arrived (and no write in a batch can depend on
/// another's: its caller would have waited for that one's answer).
fn statements(batch: &[Write]) -> Vec<Statement<'_>> {
    let mut statements: Vec<Statement<'_>> = Vec::new();
    let (mut inserts, mut saves) = (None, None);
    for (index, write) in batch.iter().enumerate() {
        match &write.op {
            WriteOp::Insert(job) => match inserts.and_then(|at| statements.get_mut(at)) {
                Some(Statement::Inserts(jobs)) => jobs.push((index, job)),
                _ => {
                    inserts = Some(statements.len());
                    statements.push(Statement::Inserts(vec![(index, job)]));
                }
            },
            WriteOp::SaveHeld(job, node) => match saves.and_then(|at| statements.get_mut(at)) {
                Some(Statement::SavesHeld(jobs)) => jobs.push((index, job, node)),
                _ => {
                    saves = Some(statements.len());
                    statements.push(Statement::SavesHeld(vec![(index, job, node)]));
                }
            },
            WriteOp::Change(change) => statements.push(Statement::Change(index, change)),
        }
    }
    statements
}

/// Commits the batch at once: a single statement runs on its own (autocommit, one round trip),
/// several run in one transaction. A failing statement is rolled back on its own by SQLite, so
/// it fails only its callers; replies go out after the commit.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[Write],
) -> anyhow::Result<Vec<anyhow::Result<WriteOutcome>>> {
    let statements = statements(batch);
    let mut outcomes: Vec<_> = batch.iter().map(|_| None).collect();
    let in_order = |outcomes: Vec<Option<_>>| {
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Err(anyhow!("a write was not run"))))
            .collect()
    };
    if let [statement] = statements.as_slice() {
        if !statement.reads_then_writes() {
            run(conn, statement, &mut outcomes).await;
            return Ok(in_order(outcomes));
        }
    }
    // IMMEDIATE: the write lock is taken at BEGIN (waiting out another writer, such as the
    // CLI, under busy_timeout), so a read inside cannot be overtaken by another process's
    // commit, which a deferred transaction would only learn at its first write
    // (SQLITE_BUSY_SNAPSHOT, which no timeout helps).
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    for statement in &statements {
        run(&mut tx, statement, &mut outcomes).await;
    }
    tx.commit().await?;
    Ok(in_order(outcomes))
}

/// Runs one statement and records an outcome for each write it carries, at the write's place.
async fn run(
    conn: &mut SqliteConnection,
    statement: &Statement<'_>,
    outcomes: &mut [Option<anyhow::Result<WriteOutcome>>],
) {
    let results: Vec<(usize, anyhow::Result<WriteOutcome>)> = match statement {
        Statement::Change(place, change) => vec![(*place, apply(conn, change).await)],
        Statement::Inserts(jobs) => match insert_jobs(conn, jobs).await {
            Ok(()) => jobs
                .iter()
                .map(|(place, _)| (*place, Ok(WriteOutcome::Done)))
                .collect(),
            Err(error) => fail_each(
                error,
                "inserting the job",
                jobs.iter().map(|(place, _)| *place),
            ),
        },
        Statement::SavesHeld(jobs) => match save_held(conn, jobs).await {
            Ok(saved) => jobs
                .iter()
                .map(|(place, job, _)| {
                    let outcome = WriteOutcome::Saved(saved.contains(&job.job_id.to_string()));
                    (*place, Ok(outcome))
                })
                .collect(),
            Err(error) => fail_each(
                error,
                "saving the job",
                jobs.iter().map(|(place, ..)| *place),
            ),
        },
    };
    for (place, outcome) in results {
        outcomes[place] = Some(outcome);
    }
}

/// What follows the saved rows in `save_held`'s statement (made once).
static SAVE_HELD_UPDATE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let saved_columns: Vec<String> = MUTABLE_COLUMNS
        .split(", ")
        .map(|column| format!("saved.{column}"))
        .collect();
    format!(
        ") UPDATE jobs SET ({MUTABLE_COLUMNS}) = ({}), \
         lease_node = CASE WHEN saved.keeps_lease THEN jobs.lease_node END, \
         lease_until_us = CASE WHEN saved.keeps_lease THEN jobs.lease_until_us END \
         FROM saved WHERE jobs.id = saved.id AND jobs.state = 'processing' \
         AND jobs.lease_node = saved.node RETURNING id",
        saved_columns.join(", ")
    )
});

/// The failure of a statement, as the outcome of each write it carried.
fn fail_each(
    error: anyhow::Error,
    what: &str,
    places: impl Iterator<Item = usize>,
) -> Vec<(usize, anyhow::Result<WriteOutcome>)> {
    let message = format!("{error:#}");
    let full = is_sqlite_full(&error);
    places
        .map(|place| {
            let failed = anyhow!("{what}: {message}");
            (place, Err(if full { full_disk(failed) } else { failed }))
        })
        .collect()
}

/// Saves jobs this node processes, in one statement: each only while it is still processing
/// under this node's lease, which it keeps while it stays processing and gives up when it
/// finishes. Answers the ids saved. A job is in a batch at most once (its one worker waits for
/// each answer), so every row of the list updates a different job.
async fn save_held(
    conn: &mut SqliteConnection,
    jobs: &[(usize, &JobStatus, &NodeId)],
) -> anyhow::Result<std::collections::HashSet<String>> {
    let mut query = QueryBuilder::<Sqlite>::new(format!(
        "WITH saved (id, node, keeps_lease, {MUTABLE_COLUMNS}) AS ("
    ));
    query.push_values(jobs, |mut row, (_, job, node)| {
        row.push_bind(job.job_id.to_string())
            .push_bind(node.as_str().to_owned())
            .push_bind(job.status == JobState::Processing);
        push_mutable_fields(&mut row, job);
    });
    query.push(&*SAVE_HELD_UPDATE);
    let saved: Vec<String> = query.build_query_scalar().fetch_all(&mut *conn).await?;
    Ok(saved.into_iter().collect())
}

/// One multi-row INSERT; `MAX_BATCH` rows of 15 columns stay under SQLite's 32766 variables.
/// `seq` is the rowid, which SQLite numbers one past the largest in the table, row by row in
/// the statement's order: insertion order, whichever process inserts (a number kept here
/// would collide with another store's on the same file).
async fn insert_jobs(
    conn: &mut SqliteConnection,
    jobs: &[(usize, &JobStatus)],
) -> anyhow::Result<()> {
    let mut query = QueryBuilder::<Sqlite>::new(format!(
        "INSERT INTO jobs (id, created_us, owner_id, owner, {MUTABLE_COLUMNS}) "
    ));
    query.push_values(jobs, |mut row, (_, job)| {
        row.push_bind(job.job_id.to_string())
            .push_bind(micros(job.created_at))
            .push_bind(job.owner_id.get())
            .push_bind(job.owner.as_str().to_owned());
        push_mutable_fields(&mut row, job);
    });
    query.build().execute(&mut *conn).await?;
    Ok(())
}

/// The columns a save rewrites, in the order `push_mutable_fields` binds them.
const MUTABLE_COLUMNS: &str = "state, progress, bytes_done, bytes_total, filename, size, sha256, \
                               content_type, metadata, error, updated_us";

fn push_mutable_fields<'q>(row: &mut Separated<'_, 'q, Sqlite, &'static str>, job: &JobStatus) {
    row.push_bind(job.status.as_str())
        .push_bind(i64::from(job.progress))
        .push_bind(to_i64(job.bytes_done))
        .push_bind(job.bytes_total.map(to_i64))
        .push_bind(job.filename.clone())
        .push_bind(job.size.map(to_i64))
        .push_bind(job.sha256.map(|d| d.to_hex()))
        .push_bind(job.content_type.clone())
        .push_bind(job.metadata.to_string())
        .push_bind(job.error.clone())
        .push_bind(micros(job.updated_at));
}

async fn apply(conn: &mut SqliteConnection, change: &Change) -> anyhow::Result<WriteOutcome> {
    match change {
        Change::Save(job) => {
            let mut query =
                QueryBuilder::<Sqlite>::new(format!("UPDATE jobs SET ({MUTABLE_COLUMNS}) = ("));
            push_mutable_fields(&mut query.separated(", "), job);
            // A finished job is final: a late writer (a worker finishing a job that was just
            // cancelled) must not bring it back.
            query
                .push(") WHERE id = ")
                .push_bind(job.job_id.to_string())
                .push(" AND state NOT IN ('completed', 'failed', 'cancelled')");
            let result = query.build().execute(&mut *conn).await?;
            Ok(WriteOutcome::Saved(result.rows_affected() == 1))
        }
        Change::InsertSession(session) => {
            sqlx::query(
                "INSERT INTO sessions (id_hash, created_us, expires_us, key_id) VALUES (?, ?, ?, ?)",
            )
            .bind(hex::encode(session.id_hash))
            .bind(micros(session.created))
            .bind(micros(session.expires))
            .bind(session.key_id.as_ref().map(KeyId::as_str))
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Done)
        }
        Change::DeleteSessionsOf(keys) => {
            for key in keys {
                sqlx::query("DELETE FROM sessions WHERE key_id = ?")
                    .bind(key.as_str())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok(WriteOutcome::Done)
        }
        Change::AddAccount(account) => {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO accounts (name, role, created_us, max_stored_bytes, max_uploads, \
                 max_requests_per_second) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (name) DO NOTHING RETURNING id",
            )
            .bind(account.name.as_str())
            .bind(account.role.as_str())
            .bind(micros(account.created_at))
            .bind(account.quotas.max_stored_bytes.map(to_i64))
            .bind(account.quotas.max_uploads.map(to_i64))
            .bind(account.quotas.max_requests_per_second.map(to_i64))
            .fetch_optional(&mut *conn)
            .await?;
            Ok(WriteOutcome::AccountAdded(id.map(AccountId::new)))
        }
        Change::SetQuotas(name, quotas) => {
            let set = sqlx::query(
                "UPDATE accounts SET max_stored_bytes = ?, max_uploads = ?, \
                 max_requests_per_second = ? WHERE name = ?",
            )
            .bind(quotas.max_stored_bytes.map(to_i64))
            .bind(quotas.max_uploads.map(to_i64))
            .bind(quotas.max_requests_per_second.map(to_i64))
            .bind(name.as_str())
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Saved(set.rows_affected() == 1))
        }
        Change::RemoveAccount(name, at) => {
            let mut tx = conn.begin().await?;
            sqlx::query(
                "UPDATE api_keys SET revoked_us = ? WHERE revoked_us IS NULL \
                 AND account_id = (SELECT id FROM accounts WHERE name = ?)",
            )
            .bind(micros(*at))
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
            // Its webhook endpoints go with it: an admin's may receive every account's events.
            sqlx::query(
                "DELETE FROM webhook_deliveries WHERE endpoint_id IN (SELECT e.id \
                 FROM webhook_endpoints e JOIN accounts a ON a.id = e.account_id \
                 WHERE a.name = ?)",
            )
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM webhook_endpoints \
                 WHERE account_id = (SELECT id FROM accounts WHERE name = ?)",
            )
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
            let removed = sqlx::query("DELETE FROM accounts WHERE name = ?")
                .bind(name.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Saved(removed.rows_affected() == 1))
        }
        Change::AddKey(key) => {
            let added = sqlx::query(
                "INSERT INTO api_keys \
                 (key_id, account_id, account, secret_sha256, created_us, expires_us) \
                 SELECT ?, id, name, ?, ?, ? FROM accounts WHERE id = ?",
            )
            .bind(key.key_id.as_str())
            .bind(hex::encode(key.secret_sha256))
            .bind(micros(key.created_at))
            .bind(key.expires_at.map(micros))
            .bind(key.account_id.map(AccountId::get))
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Saved(added.rows_affected() == 1))
        }
        Change::RevokeKey(key_id, at) => {
            let account: Option<String> = sqlx::query_scalar(
                "UPDATE api_keys SET revoked_us = COALESCE(revoked_us, ?) WHERE key_id = ? \
                 RETURNING account",
            )
            .bind(micros(*at))
            .bind(key_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            Ok(WriteOutcome::Revoked(
                account
                    .map(|name| AccountName::parse(&name))
                    .transpose()
                    .context("stored account name")?,
            ))
        }
        Change::RecordKeyUse(uses) => {
            for (key_id, at) in uses {
                sqlx::query(
                    "UPDATE api_keys SET last_used_us = MAX(COALESCE(last_used_us, 0), ?) \
                     WHERE key_id = ?",
                )
                .bind(micros(*at))
                .bind(key_id.as_str())
                .execute(&mut *conn)
                .await?;
            }
            Ok(WriteOutcome::Done)
        }
        Change::DeleteSession(id_hash) => {
            sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
                .bind(hex::encode(id_hash))
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Done)
        }
        Change::PruneSessions(now) => {
            let pruned = sqlx::query("DELETE FROM sessions WHERE expires_us <= ?")
                .bind(micros(*now))
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Pruned(pruned.rows_affected()))
        }
        Change::Cancel(id) => {
            let row: Option<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET state = 'cancelled', error = ?, updated_us = ? \
                 WHERE id = ? AND state IN ('queued', 'receiving', 'processing') RETURNING ",
                job_columns!()
            ))
            .bind(CANCELLED_BY_REQUEST)
            .bind(micros(now()))
            .bind(id.to_string())
            .fetch_optional(&mut *conn)
            .await?;
            Ok(WriteOutcome::Cancelled(
                row.map(JobStatus::try_from).transpose()?.map(Box::new),
            ))
        }
        Change::Delete(id) => {
            sqlx::query("DELETE FROM uploads WHERE job_id = ?")
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            let result = sqlx::query("DELETE FROM jobs WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Saved(result.rows_affected() == 1))
        }
        Change::DeleteFinished(ids) => {
            let mut uploads = QueryBuilder::<Sqlite>::new("DELETE FROM uploads WHERE job_id IN (");
            let mut list = uploads.separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            // Each row's job looked up by its id: a list of finished jobs here would be built
            // through `jobs_by_state` from every finished job (1.3 s at 1,100,000 jobs).
            uploads.push(
                ") AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = uploads.job_id \
                 AND jobs.state IN ('completed', 'failed', 'cancelled'))",
            );
            uploads.build().execute(&mut *conn).await?;
            let mut jobs = QueryBuilder::<Sqlite>::new("DELETE FROM jobs WHERE id IN (");
            let mut list = jobs.separated(", ");
            for id in ids {
                list.push_bind(id.to_string());
            }
            // `+state`: found by id, the state only checked; left to itself SQLite walks
            // `jobs_by_state` over every finished job (0.3 s at 1,100,000 jobs, 1.4 ms this way).
            jobs.push(") AND +state IN ('completed', 'failed', 'cancelled')");
            let result = jobs.build().execute(&mut *conn).await?;
            Ok(WriteOutcome::Pruned(result.rows_affected()))
        }
        Change::Claim(limit, lease) => {
            // Read when each job was queued before the update overwrites it. The writer is
            // the only one changing jobs, so nothing moves between the statements. Jobs whose
            // lease ran out come first (few: a stopped process's), then the oldest queued.
            // Two statements whatever the count: each is a round trip to SQLite's thread, on
            // the writer's path that every ingest waits behind.
            let now = micros(now());
            let next: Vec<(String, i64)> = sqlx::query_as(
                "SELECT id, updated_us FROM (\
                   SELECT * FROM (SELECT id, updated_us, 0 AS pass, seq FROM jobs \
                     WHERE state = 'processing' AND COALESCE(lease_until_us, 0) < ?1 \
                     ORDER BY seq LIMIT ?2) \
                   UNION ALL \
                   SELECT * FROM (SELECT id, updated_us, 1 AS pass, seq FROM jobs \
                     WHERE state = 'queued' ORDER BY seq LIMIT ?2)) \
                 ORDER BY pass, seq LIMIT ?2",
            )
            .bind(now)
            .bind(i64::from(*limit))
            .fetch_all(&mut *conn)
            .await?;
            if next.is_empty() {
                return Ok(WriteOutcome::Claimed(Vec::new()));
            }
            let mut update =
                QueryBuilder::<Sqlite>::new("UPDATE jobs SET state = 'processing', updated_us = ");
            update
                .push_bind(now)
                .push(", lease_node = ")
                .push_bind(lease.node.as_str().to_owned())
                .push(", lease_until_us = ")
                .push_bind(now.saturating_add(lease.duration_us()))
                .push(" WHERE id IN (");
            let mut ids = update.separated(", ");
            for (id, _) in &next {
                ids.push_bind(id.clone());
            }
            update.push(concat!(") RETURNING ", job_columns!()));
            let mut rows: HashMap<String, JobRow> = update
                .build_query_as::<JobRow>()
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|row| (row.id.clone(), row))
                .collect();
            let mut claimed = Vec::with_capacity(next.len());
            for (id, queued_us) in next {
                let row = rows
                    .remove(&id)
                    .with_context(|| format!("claimed job {id} was not updated"))?;
                claimed.push(Claimed {
                    job: JobStatus::try_from(row)?,
                    queued_at: from_micros(queued_us)?,
                });
            }
            Ok(WriteOutcome::Claimed(claimed))
        }
        Change::RenewLeases(lease) => {
            let held: Vec<String> = sqlx::query_scalar(
                "UPDATE jobs SET lease_until_us = ? \
                 WHERE lease_node = ? AND state IN ('receiving', 'processing') RETURNING id",
            )
            .bind(micros(now()).saturating_add(lease.duration_us()))
            .bind(lease.node.as_str())
            .fetch_all(&mut *conn)
            .await?;
            Ok(WriteOutcome::Renewed(
                held.iter()
                    .map(|id| JobId::parse(id).map_err(anyhow::Error::from))
                    .collect::<anyhow::Result<_>>()?,
            ))
        }
        Change::Recover(node) => {
            let now = micros(now());
            let failed = sqlx::query(
                "UPDATE jobs SET state = 'failed', error = ?, updated_us = ?, lease_node = NULL, \
                 lease_until_us = NULL WHERE state = 'receiving' \
                 AND id NOT IN (SELECT job_id FROM uploads) AND lease_node IS NOT ?",
            )
            .bind(INTERRUPTED_BY_RESTART)
            .bind(now)
            .bind(node.as_str())
            .execute(&mut *conn)
            .await?;
            let requeued = sqlx::query(
                "UPDATE jobs SET state = 'queued', updated_us = ?, lease_node = NULL, \
                 lease_until_us = NULL WHERE state = 'processing' AND lease_node IS NOT ?",
            )
            .bind(now)
            .bind(node.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query("DELETE FROM periodic_tasks WHERE holder IS NOT ?")
                .bind(node.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Recovered(Recovery {
                failed_uploads: failed.rows_affected(),
                requeued: requeued.rows_affected(),
            }))
        }
        Change::RecoverExpired => {
            let now = micros(now());
            let mut rows: Vec<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET state = 'failed', error = ?, updated_us = ?, lease_node = NULL, \
                 lease_until_us = NULL WHERE state = 'receiving' AND lease_until_us < ? \
                 AND id NOT IN (SELECT job_id FROM uploads) RETURNING ",
                job_columns!()
            ))
            .bind(INTERRUPTED_BY_NODE_LOSS)
            .bind(now)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            let requeued: Vec<JobRow> = sqlx::query_as(concat!(
                "UPDATE jobs SET state = 'queued', updated_us = ?, lease_node = NULL, \
                 lease_until_us = NULL WHERE state = 'processing' \
                 AND COALESCE(lease_until_us, 0) < ? RETURNING ",
                job_columns!()
            ))
            .bind(now)
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            rows.extend(requeued);
            Ok(WriteOutcome::Expired(
                rows.into_iter()
                    .map(JobStatus::try_from)
                    .collect::<anyhow::Result<_>>()?,
            ))
        }
        Change::ClaimPeriodic(task, lease) => {
            let now = micros(now());
            let claimed = sqlx::query(
                "INSERT INTO periodic_tasks (task, holder, until_us) VALUES (?, ?, ?) \
                 ON CONFLICT (task) DO UPDATE SET holder = excluded.holder, \
                 until_us = excluded.until_us \
                 WHERE periodic_tasks.until_us <= ? OR periodic_tasks.holder = excluded.holder",
            )
            .bind(task)
            .bind(lease.node.as_str())
            .bind(now.saturating_add(lease.duration_us()))
            .bind(now)
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Saved(claimed.rows_affected() == 1))
        }
        Change::Admit {
            job,
            admission,
            resumable,
            lease,
        } => {
            // A savepoint inside the batch's immediate transaction (an admission always runs in
            // one, even alone: it reads, then writes): the counts, the job and its upload record
            // are read and written together or not at all.
            let mut tx = conn.begin().await?;
            let admitted = admit(&mut tx, job, *admission, resumable.as_ref()).await?;
            if resumable.is_none() && matches!(admitted, Admitted::Yes { .. }) {
                // A one-shot upload is its request's: held under the lease of this process.
                sqlx::query("UPDATE jobs SET lease_node = ?, lease_until_us = ? WHERE id = ?")
                    .bind(lease.node.as_str())
                    .bind(micros(now()).saturating_add(lease.duration_us()))
                    .bind(job.job_id.to_string())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(WriteOutcome::Admitted(admitted))
        }
        Change::SaveReceived(job, staged) => {
            let mut tx = conn.begin().await?;
            // Only while receiving: bytes that arrive for a job cancelled meanwhile do not count.
            let saved = sqlx::query(
                "UPDATE jobs SET bytes_done = ?, progress = ?, updated_us = ? \
                 WHERE id = ? AND state = 'receiving'",
            )
            .bind(to_i64(job.bytes_done))
            .bind(i64::from(job.progress))
            .bind(micros(job.updated_at))
            .bind(job.job_id.to_string())
            .execute(&mut *tx)
            .await?;
            if saved.rows_affected() != 1 {
                return Ok(WriteOutcome::Saved(false));
            }
            sqlx::query(
                "UPDATE uploads SET durable_offset = ?, hash_state = ?, staged_parts = ? \
                 WHERE job_id = ?",
            )
            .bind(to_i64(job.bytes_done))
            .bind(staged.hash_state.as_deref())
            .bind(staged_parts_json(staged)?)
            .bind(job.job_id.to_string())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Saved(true))
        }
        Change::Probe(at) => {
            sqlx::query(
                "INSERT INTO write_probe (id, at_us) VALUES (1, ?) \
                 ON CONFLICT (id) DO UPDATE SET at_us = excluded.at_us",
            )
            .bind(micros(*at))
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Done)
        }
        Change::Webhook(write) => webhooks::apply(conn, write).await,
    }
}

/// `JobStore::admit`, inside the writer's transaction.
async fn admit(
    conn: &mut SqliteConnection,
    job: &JobStatus,
    admission: Admission,
    resumable: Option<&Resumable>,
) -> anyhow::Result<Admitted> {
    let usage = usage(&mut *conn, job.owner_id).await?;
    if admission
        .max_uploads
        .is_some_and(|limit| usage.uploads >= limit)
    {
        return Ok(Admitted::TooManyUploads {
            in_progress: usage.uploads,
        });
    }
    let needed = job.bytes_total.unwrap_or(0);
    let bytes_left = match admission.max_stored_bytes {
        None => None,
        Some(limit) => match limit.checked_sub(usage.stored_bytes.saturating_add(needed)) {
            Some(left) => Some(left),
            None => {
                return Ok(Admitted::OverStorage {
                    used: usage.stored_bytes,
                })
            }
        },
    };
    if let Some(resumable) = resumable {
        // Receiving jobs are few (each is an upload in progress), so they lead the join.
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs CROSS JOIN uploads ON uploads.job_id = jobs.id \
             WHERE jobs.state = 'receiving' AND uploads.owner = ?",
        )
        .bind(&resumable.credential)
        .fetch_one(&mut *conn)
        .await?;
        if u64::try_from(pending).unwrap_or(0) >= resumable.max_pending {
            return Ok(Admitted::TooManyPending);
        }
    }
    insert_jobs(&mut *conn, &[(0, job)]).await?;
    if let Some(resumable) = resumable {
        sqlx::query(
            "INSERT INTO uploads (job_id, durable_offset, expected_sha256, owner) \
             VALUES (?, 0, ?, ?)",
        )
        .bind(job.job_id.to_string())
        .bind(resumable.expected_sha256.map(|digest| digest.to_hex()))
        .bind(&resumable.credential)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Admitted::Yes { bytes_left })
}

/// What an account uses: the sizes of its jobs' files (summed from an index alone), and its
/// uploads in progress with what they declared (or, undeclared, have received so far).
async fn usage(conn: &mut SqliteConnection, owner: AccountId) -> anyhow::Result<Usage> {
    // One statement, so a job finishing meanwhile is counted once, either way. Receiving jobs
    // are few, so the state index leads there (`+` keeps SQLite off the owner's index).
    let (stored, uploads, reserved): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM jobs \
                 WHERE owner_id = ?1 AND sha256 IS NOT NULL), \
                COUNT(*), COALESCE(SUM(MAX(COALESCE(bytes_total, 0), bytes_done)), 0) \
         FROM jobs WHERE state = 'receiving' AND +owner_id = ?1",
    )
    .bind(owner.get())
    .fetch_one(&mut *conn)
    .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Usage {
        stored_bytes: count(stored).saturating_add(count(reserved)),
        uploads: count(uploads),
    })
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn admit(
        &self,
        job: &JobStatus,
        admission: Admission,
        resumable: Option<Resumable>,
        lease: &Lease,
    ) -> anyhow::Result<Admitted> {
        let admit = Change::Admit {
            job: Box::new(job.clone()),
            admission,
            resumable,
            lease: lease.clone(),
        };
        match self.write(WriteOp::Change(admit)).await? {
            WriteOutcome::Admitted(admitted) => Ok(admitted),
            _ => unreachable!("an admission answers Admitted"),
        }
    }

    async fn usage(&self, owner: AccountId) -> anyhow::Result<Usage> {
        let mut reader = self.readers.acquire().await?;
        usage(&mut reader, owner).await
    }

    async fn stored_bytes_besides(&self, owner: AccountId, except: JobId) -> anyhow::Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(SUM(size), 0) FROM jobs \
                     WHERE owner_id = ?1 AND sha256 IS NOT NULL) \
                  + (SELECT COALESCE(SUM(MAX(COALESCE(bytes_total, 0), bytes_done)), 0) FROM jobs \
                     WHERE state = 'receiving' AND +owner_id = ?1 AND id != ?2)",
        )
        .bind(owner.get())
        .bind(except.to_string())
        .fetch_one(&self.readers)
        .await?;
        Ok(u64::try_from(bytes).unwrap_or(0))
    }

    async fn save_received(&self, job: &JobStatus, staged: &StagedState) -> anyhow::Result<bool> {
        let save = Change::SaveReceived(Box::new(job.clone()), Box::new(staged.clone()));
        match self.write(WriteOp::Change(save)).await? {
            WriteOutcome::Saved(saved) => Ok(saved),
            _ => unreachable!("a save answers Saved"),
        }
    }

    async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>> {
        let row: Option<(i64, Option<String>, Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
            "SELECT durable_offset, expected_sha256, hash_state, staged_parts \
             FROM uploads WHERE job_id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.readers)
        .await?;
        row.map(|(offset, expected, hash_state, parts)| {
            Ok(UploadRecord {
                offset: u64::try_from(offset)?,
                expected_sha256: expected.as_deref().map(Sha256Digest::parse).transpose()?,
                staged: StagedState {
                    hash_state,
                    parts: parts.as_deref().map(serde_json::from_str).transpose()?,
                },
            })
        })
        .transpose()
    }

    async fn resumable_uploads(&self) -> anyhow::Result<Vec<JobId>> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE state = 'receiving' \
             AND id IN (SELECT job_id FROM uploads)",
        )
        .fetch_all(&self.readers)
        .await?;
        ids.iter()
            .map(|id| JobId::parse(id).map_err(anyhow::Error::from))
            .collect()
    }

    async fn insert(&self, job: &JobStatus) -> anyhow::Result<()> {
        self.write(WriteOp::Insert(Box::new(job.clone())))
            .await
            .map(|_| ())
    }

    async fn save(&self, job: &JobStatus) -> anyhow::Result<bool> {
        match self
            .write(WriteOp::Change(Change::Save(Box::new(job.clone()))))
            .await?
        {
            WriteOutcome::Saved(found) => Ok(found),
            _ => unreachable!("a save answers Saved"),
        }
    }

    async fn get(&self, id: JobId) -> anyhow::Result<Option<JobStatus>> {
        let row: Option<JobRow> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.readers)
        .await?;
        row.map(JobStatus::try_from).transpose()
    }

    async fn list(
        &self,
        filter: &ListFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        // Only the conditions that apply are written, so SQLite can walk the index that fits
        // (an account's jobs by `owner_id, seq`) instead of filtering the whole table.
        let account = match filter.scope {
            Scope::Everything => None,
            Scope::Account(account) => Some(account.get()),
        };
        let mut query =
            QueryBuilder::<Sqlite>::new(concat!("SELECT ", job_columns!(), " FROM jobs WHERE 1"));
        if let Some(account) = account {
            query.push(" AND owner_id = ").push_bind(account);
        }
        if let Some(owner) = &filter.owner {
            query
                .push(" AND owner = ")
                .push_bind(owner.as_str().to_owned())
                .push(" COLLATE NOCASE");
        }
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        // SQLite's LIKE ignores ASCII case.
        if let Some(pattern) = filter.text_pattern() {
            query
                .push(" AND (filename LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR metadata LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        if let Some(before) = before {
            // A job the scope does not see continues nothing: its page is empty, as for an
            // unknown id, so `before` tells no one whether another account's job exists.
            query
                .push(" AND seq < (SELECT seq FROM jobs WHERE id = ")
                .push_bind(before.to_string());
            if let Some(account) = account {
                query.push(" AND owner_id = ").push_bind(account);
            }
            query.push(")");
        }
        query
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<JobRow> = query.build_query_as().fetch_all(&self.readers).await?;
        rows.into_iter().map(JobStatus::try_from).collect()
    }

    async fn claim_queued(&self, limit: u32, lease: &Lease) -> anyhow::Result<Vec<Claimed>> {
        let claim = Change::Claim(limit, lease.clone());
        match self.write(WriteOp::Change(claim)).await? {
            WriteOutcome::Claimed(jobs) => Ok(jobs),
            _ => unreachable!("a claim answers Claimed"),
        }
    }

    async fn renew_leases(&self, lease: &Lease) -> anyhow::Result<Vec<JobId>> {
        let renew = Change::RenewLeases(lease.clone());
        match self.write(WriteOp::Change(renew)).await? {
            WriteOutcome::Renewed(held) => Ok(held),
            _ => unreachable!("a renewal answers Renewed"),
        }
    }

    async fn save_held(&self, job: &JobStatus, node: &NodeId) -> anyhow::Result<bool> {
        let save = WriteOp::SaveHeld(Box::new(job.clone()), node.clone());
        saved(self.write(save).await?)
    }

    async fn recover_interrupted(&self, node: &NodeId) -> anyhow::Result<Recovery> {
        match self
            .write(WriteOp::Change(Change::Recover(node.clone())))
            .await?
        {
            WriteOutcome::Recovered(recovery) => Ok(recovery),
            _ => unreachable!("a recovery answers Recovered"),
        }
    }

    async fn recover_expired(&self) -> anyhow::Result<Vec<JobStatus>> {
        match self.write(WriteOp::Change(Change::RecoverExpired)).await? {
            WriteOutcome::Expired(jobs) => Ok(jobs),
            _ => unreachable!("a recovery answers Expired"),
        }
    }

    async fn claim_periodic(&self, task: &str, lease: &Lease) -> anyhow::Result<bool> {
        let claim = Change::ClaimPeriodic(task.to_owned(), lease.clone());
        saved(self.write(WriteOp::Change(claim)).await?)
    }

    /// One process: the in-process lock `Jobs` takes first is the whole lock.
    async fn lock_blob(
        &self,
        _digest: Sha256Digest,
        _owner: Option<AccountId>,
    ) -> anyhow::Result<BlobLock> {
        Ok(BlobLock(Held::InProcess))
    }

    async fn count_in_state(&self, state: JobState) -> anyhow::Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = ?")
            .bind(state.as_str())
            .fetch_one(&self.readers)
            .await?;
        Ok(count as u64)
    }

    async fn list_finished_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        // Named: without statistics SQLite prefers `jobs_by_state` (every finished job) and
        // sorts them all, 0.3 s at 1,100,000 jobs where this index reads just the page.
        let rows: Vec<JobRow> = sqlx::query_as(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs INDEXED BY jobs_finished_by_updated \
             WHERE state IN ('completed', 'failed', 'cancelled') \
             AND updated_us < ? ORDER BY updated_us LIMIT ?",
        ))
        .bind(micros(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(JobStatus::try_from).collect()
    }

    async fn cancel(&self, id: JobId) -> anyhow::Result<Option<JobStatus>> {
        match self.write(WriteOp::Change(Change::Cancel(id))).await? {
            WriteOutcome::Cancelled(job) => Ok(job.map(|job| *job)),
            _ => unreachable!("a cancel answers Cancelled"),
        }
    }

    async fn delete(&self, id: JobId) -> anyhow::Result<bool> {
        match self.write(WriteOp::Change(Change::Delete(id))).await? {
            WriteOutcome::Saved(found) => Ok(found),
            _ => unreachable!("a delete answers Saved"),
        }
    }

    async fn delete_finished(&self, ids: &[JobId]) -> anyhow::Result<u64> {
        if ids.is_empty() {
            return Ok(0);
        }
        let delete = Change::DeleteFinished(ids.to_vec());
        match self.write(WriteOp::Change(delete)).await? {
            WriteOutcome::Pruned(deleted) => Ok(deleted),
            _ => unreachable!("a delete of many answers Pruned"),
        }
    }

    async fn count_referencing(&self, digest: Sha256Digest) -> anyhow::Result<u64> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE sha256 = ?")
            .bind(digest.to_hex())
            .fetch_one(&self.readers)
            .await?;
        Ok(count as u64)
    }

    async fn ping(&self) -> anyhow::Result<()> {
        self.write(WriteOp::Change(Change::Probe(now()))).await?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn insert_session(&self, session: &StoredSession) -> anyhow::Result<()> {
        self.write(WriteOp::Change(Change::InsertSession(session.clone())))
            .await
            .map(|_| ())
    }

    async fn delete_sessions_of(&self, keys: &[KeyId]) -> anyhow::Result<()> {
        self.write(WriteOp::Change(Change::DeleteSessionsOf(keys.to_vec())))
            .await
            .map(|_| ())
    }

    async fn delete_session(&self, id_hash: [u8; 32]) -> anyhow::Result<()> {
        self.write(WriteOp::Change(Change::DeleteSession(id_hash)))
            .await
            .map(|_| ())
    }

    async fn live_sessions(&self, now: OffsetDateTime) -> anyhow::Result<Vec<StoredSession>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id_hash, created_us, expires_us, key_id FROM sessions WHERE expires_us > ?",
        )
        .bind(micros(now))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(stored_session).collect()
    }

    async fn live_session(
        &self,
        id_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> anyhow::Result<Option<StoredSession>> {
        let row: Option<SessionRow> = sqlx::query_as(
            "SELECT id_hash, created_us, expires_us, key_id FROM sessions \
             WHERE id_hash = ? AND expires_us > ?",
        )
        .bind(hex::encode(id_hash))
        .bind(micros(now))
        .fetch_optional(&self.readers)
        .await?;
        row.map(stored_session).transpose()
    }

    async fn prune_sessions(&self, now: OffsetDateTime) -> anyhow::Result<u64> {
        match self
            .write(WriteOp::Change(Change::PruneSessions(now)))
            .await?
        {
            WriteOutcome::Pruned(count) => Ok(count),
            _ => unreachable!("a prune answers Pruned"),
        }
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn add_account(&self, account: &AccountRecord) -> anyhow::Result<Option<AccountId>> {
        match self
            .write(WriteOp::Change(Change::AddAccount(account.clone())))
            .await?
        {
            WriteOutcome::AccountAdded(id) => Ok(id),
            _ => unreachable!("adding an account answers AccountAdded"),
        }
    }

    async fn set_quotas(&self, name: &AccountName, quotas: QuotaOverrides) -> anyhow::Result<bool> {
        saved(
            self.write(WriteOp::Change(Change::SetQuotas(name.clone(), quotas)))
                .await?,
        )
    }

    async fn accounts(&self) -> anyhow::Result<Vec<AccountRecord>> {
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY name"
        ))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(AccountRecord::try_from).collect()
    }

    async fn account(&self, name: &AccountName) -> anyhow::Result<Option<AccountRecord>> {
        let row: Option<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE name = ?"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.readers)
        .await?;
        row.map(AccountRecord::try_from).transpose()
    }

    async fn remove_account(&self, name: &AccountName, at: OffsetDateTime) -> anyhow::Result<bool> {
        saved(
            self.write(WriteOp::Change(Change::RemoveAccount(name.clone(), at)))
                .await?,
        )
    }

    async fn add_key(&self, key: &KeyRecord) -> anyhow::Result<bool> {
        saved(
            self.write(WriteOp::Change(Change::AddKey(Box::new(key.clone()))))
                .await?,
        )
    }

    async fn keys(&self, account: Option<AccountId>) -> anyhow::Result<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(
            "SELECT key_id, account_id, account, secret_sha256, created_us, expires_us, \
             revoked_us, last_used_us FROM api_keys WHERE ?1 IS NULL OR account_id = ?1 \
             ORDER BY created_us, key_id",
        )
        .bind(account.map(AccountId::get))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(KeyRecord::try_from).collect()
    }

    async fn usable_keys(&self) -> anyhow::Result<Vec<(KeyRecord, AccountRecord)>> {
        let rows: Vec<KeyRowWithAccount> = sqlx::query_as(
            "SELECT accounts.id, accounts.name, accounts.role, \
             accounts.created_us AS account_created_us, accounts.max_stored_bytes, \
             accounts.max_uploads, accounts.max_requests_per_second, \
             key_id, account_id, account, secret_sha256, api_keys.created_us, \
             expires_us, revoked_us, last_used_us FROM api_keys \
             JOIN accounts ON accounts.id = api_keys.account_id WHERE revoked_us IS NULL",
        )
        .fetch_all(&self.readers)
        .await?;
        // A row that does not read back is skipped (and logged), not every key refused.
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (key_id, account) = (row.key.key_id.clone(), row.key.account.clone());
                let parsed = AccountRecord::try_from(row.account)
                    .and_then(|account| Ok((KeyRecord::try_from(row.key)?, account)));
                parsed
                    .inspect_err(|error| {
                        tracing::error!(
                            key_id = %key_id,
                            account = %account,
                            error = ?error,
                            "a stored API key does not read back; it is not accepted"
                        );
                    })
                    .ok()
            })
            .collect())
    }

    async fn revoke_key(
        &self,
        key_id: &KeyId,
        at: OffsetDateTime,
    ) -> anyhow::Result<Option<AccountName>> {
        match self
            .write(WriteOp::Change(Change::RevokeKey(key_id.clone(), at)))
            .await?
        {
            WriteOutcome::Revoked(account) => Ok(account),
            _ => unreachable!("a revocation answers Revoked"),
        }
    }

    async fn accounts_version(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM accounts_version WHERE only = 1")
                .fetch_one(&self.readers)
                .await?,
        )
    }

    async fn record_key_use(&self, uses: &[(KeyId, OffsetDateTime)]) -> anyhow::Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        self.write(WriteOp::Change(Change::RecordKeyUse(uses.to_vec())))
            .await
            .map(|_| ())
    }
}

fn saved(outcome: WriteOutcome) -> anyhow::Result<bool> {
    match outcome {
        WriteOutcome::Saved(saved) => Ok(saved),
        _ => Err(anyhow!("the writer answered an unexpected outcome")),
    }
}

fn decode_hash(text: &str) -> anyhow::Result<[u8; 32]> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)?;
    Ok(hash)
}

/// The columns `AccountRow` reads.
const ACCOUNT_COLUMNS: &str = "id, name, role, created_us AS account_created_us, \
                               max_stored_bytes, max_uploads, max_requests_per_second";

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: i64,
    name: String,
    role: String,
    account_created_us: i64,
    max_stored_bytes: Option<i64>,
    max_uploads: Option<i64>,
    max_requests_per_second: Option<i64>,
}

impl TryFrom<AccountRow> for AccountRecord {
    type Error = anyhow::Error;

    fn try_from(row: AccountRow) -> anyhow::Result<Self> {
        let quota = |n: Option<i64>| n.map(|n| u64::try_from(n).unwrap_or(0));
        Ok(AccountRecord {
            id: AccountId::new(row.id),
            name: AccountName::parse(&row.name).context("stored account name")?,
            role: Role::from_str(&row.role)?,
            created_at: from_micros(row.account_created_us)?,
            quotas: QuotaOverrides {
                max_stored_bytes: quota(row.max_stored_bytes),
                max_uploads: quota(row.max_uploads),
                max_requests_per_second: quota(row.max_requests_per_second),
            },
        })
    }
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    key_id: String,
    account_id: Option<i64>,
    account: String,
    secret_sha256: String,
    created_us: i64,
    expires_us: Option<i64>,
    revoked_us: Option<i64>,
    last_used_us: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct KeyRowWithAccount {
    #[sqlx(flatten)]
    account: AccountRow,
    #[sqlx(flatten)]
    key: KeyRow,
}

impl TryFrom<KeyRow> for KeyRecord {
    type Error = anyhow::Error;

    fn try_from(row: KeyRow) -> anyhow::Result<Self> {
        Ok(KeyRecord {
            key_id: KeyId::parse(&row.key_id).context("stored key id")?,
            account_id: row.account_id.map(AccountId::new),
            account: AccountName::parse(&row.account).context("stored account name")?,
            secret_sha256: decode_hash(&row.secret_sha256).context("stored key hash")?,
            created_at: from_micros(row.created_us)?,
            expires_at: row.expires_us.map(from_micros).transpose()?,
            revoked_at: row.revoked_us.map(from_micros).transpose()?,
            last_used_at: row.last_used_us.map(from_micros).transpose()?,
        })
    }
}

/// A job as stored; converted into `JobStatus` with every field parsed.
struct JobRow {
    id: String,
    owner_id: i64,
    owner: String,
    state: String,
    progress: i64,
    bytes_done: i64,
    bytes_total: Option<i64>,
    filename: Option<String>,
    size: Option<i64>,
    sha256: Option<String>,
    content_type: Option<String>,
    metadata: String,
    error: Option<String>,
    created_us: i64,
    updated_us: i64,
}

/// Read by position, in `job_columns!`'s order: a lookup by name for every value of every row
/// was 4% of the instructions of a page of `GET /api/jobs`.
impl sqlx::FromRow<'_, SqliteRow> for JobRow {
    fn from_row(row: &SqliteRow) -> sqlx::Result<Self> {
        Ok(Self {
            id: row.try_get(0)?,
            owner_id: row.try_get(1)?,
            owner: row.try_get(2)?,
            state: row.try_get(3)?,
            progress: row.try_get(4)?,
            bytes_done: row.try_get(5)?,
            bytes_total: row.try_get(6)?,
            filename: row.try_get(7)?,
            size: row.try_get(8)?,
            sha256: row.try_get(9)?,
            content_type: row.try_get(10)?,
            metadata: row.try_get(11)?,
            error: row.try_get(12)?,
            created_us: row.try_get(13)?,
            updated_us: row.try_get(14)?,
        })
    }
}

impl TryFrom<JobRow> for JobStatus {
    type Error = anyhow::Error;

    fn try_from(row: JobRow) -> anyhow::Result<Self> {
        Ok(JobStatus {
            job_id: JobId::parse(&row.id).with_context(|| format!("stored job id {:?}", row.id))?,
            owner: AccountName::parse(&row.owner).context("stored owner")?,
            owner_id: AccountId::new(row.owner_id),
            status: JobState::from_str(&row.state)?,
            progress: u8::try_from(row.progress.clamp(0, 100))?,
            bytes_done: row.bytes_done.max(0) as u64,
            bytes_total: row.bytes_total.map(|n| n.max(0) as u64),
            filename: row.filename,
            size: row.size.map(|n| n.max(0) as u64),
            sha256: row.sha256.as_deref().map(Sha256Digest::parse).transpose()?,
            content_type: row.content_type,
            metadata: serde_json::from_str(&row.metadata).context("stored metadata")?,
            error: row.error,
            created_at: from_micros(row.created_us)?,
            updated_at: from_micros(row.updated_us)?,
        })
    }
}

/// A `sessions` row: `id_hash`, `created_us`, `expires_us`, `key_id`.
type SessionRow = (String, i64, i64, Option<String>);

fn stored_session((hash, created, expires, key_id): SessionRow) -> anyhow::Result<StoredSession> {
    Ok(StoredSession {
        id_hash: decode_hash(&hash).context("stored session hash")?,
        key_id: key_id
            .as_deref()
            .map(KeyId::parse)
            .transpose()
            .context("stored key id")?,
        created: from_micros(created)?,
        expires: from_micros(expires)?,
    })
}
