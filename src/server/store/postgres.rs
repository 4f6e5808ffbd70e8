//! PostgreSQL store, for nodes sharing one database: a `PgPool`, its own migrations
//! (`migrations/postgres/`), and the rules SQLite keeps by having a single writer kept here by
//! PostgreSQL's locks instead: `FOR UPDATE SKIP LOCKED` for claims, a transaction-scoped
//! advisory lock per account (and credential) for admissions and per blob for its references,
//! row locks for the rest. Leases are timed by the database's clock, not the nodes'.
use super::{
    from_micros, micros, now, staged_parts_json, to_i64, AccountRecord, AccountStore, Admission,
    Admitted, BlobLock, Claimed, DatabaseUnavailable, Held, JobStore, KeyRecord, Lease, ListFilter,
    NodeId, Recovery, Resumable, SessionStore, StagedState, StoredSession, UploadRecord,
    CANCELLED_BY_REQUEST, INTERRUPTED_BY_NODE_LOSS,
};
use crate::{
    api::{QuotaOverrides, Usage},
    domain::{
        AccountId, AccountName, JobId, JobState, JobStatus, KeyId, Role, Scope, Sha256Digest,
    },
};
use anyhow::Context;
use async_trait::async_trait;
use sqlx::{
    postgres::{PgArguments, PgConnectOptions, PgPoolOptions},
    query::Query,
    Connection, PgConnection, PgPool, Postgres, QueryBuilder,
};
use std::{fmt, str::FromStr, time::Duration};
use time::OffsetDateTime;
use uuid::Uuid;

mod webhooks;

/// Connections one node keeps open. The workers' claims and saves and the requests in flight
/// share them; each statement holds one only briefly. PostgreSQL's default `max_connections`
/// (100) leaves room for several nodes and the CLI.
const MAX_CONNECTIONS: u32 = 16;
/// How long opening the database, or a statement waiting for a free connection, may take
/// before it fails (an unreachable server fails start-up within this).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed `postgres://` (or `postgresql://`) URL. Its password is only ever handed to the
/// driver: `Display` and `Debug` show `postgres://user@host:port/database`.
#[derive(Clone)]
pub struct DatabaseUrl {
    options: PgConnectOptions,
    shown: String,
}

impl DatabaseUrl {
    /// Accepts a PostgreSQL URL; the reason for a refusal never quotes the text (it may hold a
    /// password).
    pub fn parse(text: &str) -> Result<Self, String> {
        if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
            return Err(
                "must be a postgres:// or postgresql:// URL (leave it unset for SQLite \
                        in the data dir)"
                    .to_owned(),
            );
        }
        let options = PgConnectOptions::from_str(text)
            .map_err(|error| format!("not a valid PostgreSQL URL: {error}"))?;
        let shown = format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username()),
        );
        Ok(Self { options, shown })
    }

    /// For a pool of its own (the cluster's upload locks hold connections for long).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.shown)
    }
}

/// Jobs, sessions and accounts in PostgreSQL. Every write is one committed statement or
/// transaction at PostgreSQL's own `synchronous_commit` (never lowered here), so a write that
/// returned is durable, as the traits promise.
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// The connection pool, for what nodes tell each other over the same database.
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Connects, migrates, and opens the pool. A server that cannot be reached, or refuses
    /// the credentials, is a `DatabaseUnavailable`: the first connection is made directly,
    /// under a timeout, because the pool would retry a refused connection until its own
    /// timeout and then report only that. The migrations run on that connection (sqlx's
    /// migrator holds an advisory lock meanwhile, so nodes starting together migrate once).
    pub async fn open(url: &DatabaseUrl) -> anyhow::Result<Self> {
        let unavailable = |reason: String| DatabaseUnavailable {
            database: url.to_string(),
            reason,
        };
        let mut first =
            tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&url.options))
                .await
                .map_err(|_| unavailable(format!("no answer within {ACQUIRE_TIMEOUT:?}")))?
                .map_err(|error| unavailable(error.to_string()))?;
        sqlx::migrate!("./migrations/postgres")
            .run(&mut first)
            .await
            .with_context(|| format!("migrating the database {url}"))?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(url.options.clone());
        Ok(Self { pool })
    }

    /// Closes the pool's connections (tests drop their database afterwards).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// PostgreSQL's SQLSTATE for "disk full".
const DISK_FULL: &str = "53100";

/// A full disk on the database server is passed on as the I/O error it is, as SQLite's is, so
/// callers answer it the same way (507) wherever it happened.
fn full_disk_as_io(error: anyhow::Error) -> anyhow::Error {
    let full = error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(|database| database.code())
            .is_some_and(|code| code == DISK_FULL)
    });
    if full {
        anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context(format!("{error:#}"))
    } else {
        error
    }
}

/// Runs a write, passing a full disk on as such.
async fn write<T>(work: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    work.await.map_err(full_disk_as_io)
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

/// The columns a save rewrites, in the order `bind_mutable` binds them ($1 to $11 after
/// `first` others).
const MUTABLE_COLUMNS: &str = "state, progress, bytes_done, bytes_total, filename, size, sha256, \
                               content_type, metadata, error, updated_us";

fn bind_mutable<'q>(query: PgQuery<'q>, job: &JobStatus) -> PgQuery<'q> {
    query
        .bind(job.status.as_str())
        .bind(i64::from(job.progress))
        .bind(to_i64(job.bytes_done))
        .bind(job.bytes_total.map(to_i64))
        .bind(job.filename.clone())
        .bind(job.size.map(to_i64))
        .bind(job.sha256.map(|digest| digest.as_bytes().to_vec()))
        .bind(job.content_type.clone())
        .bind(job.metadata.to_string())
        .bind(job.error.clone())
        .bind(micros(job.updated_at))
}

async fn insert_job(conn: &mut PgConnection, job: &JobStatus) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO jobs (id, created_us, owner_id, owner, {MUTABLE_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    );
    let query = sqlx::query(&sql)
        .bind(job.job_id.as_uuid())
        .bind(micros(job.created_at))
        .bind(job.owner_id.get())
        .bind(job.owner.as_str());
    bind_mutable(query, job).execute(&mut *conn).await?;
    Ok(())
}

/// The database's clock in microseconds since the Unix epoch: leases are taken and judged by
/// it alone, so the nodes' clocks need not agree.
const DB_NOW_US: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT";

/// A 64-bit advisory-lock key for `what`, namespaced so it does not meet another
/// application's locks on the same database; a hash collision only makes two admissions wait
/// for each other.
const LOCK_KEY: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

/// `JobStore::admit` inside its transaction. The owner's advisory lock (and the credential's,
/// always taken second, so two admissions never wait on each other in a circle) is held until
/// the commit, and READ COMMITTED gives each statement after it a fresh snapshot: every count
/// below includes every admission committed before, on any node.
async fn admit(
    conn: &mut PgConnection,
    job: &JobStatus,
    admission: Admission,
    resumable: Option<&Resumable>,
) -> anyhow::Result<Admitted> {
    sqlx::query(LOCK_KEY)
        .bind(format!("ingest admit owner {}", job.owner_id.get()))
        .execute(&mut *conn)
        .await?;
    if let Some(resumable) = resumable {
        sqlx::query(LOCK_KEY)
            .bind(format!("ingest admit credential {}", resumable.credential))
            .execute(&mut *conn)
            .await?;
    }
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
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM jobs JOIN uploads ON uploads.job_id = jobs.id \
             WHERE jobs.state = 'receiving' AND uploads.owner = $1",
        )
        .bind(&resumable.credential)
        .fetch_one(&mut *conn)
        .await?;
        if count(pending) >= resumable.max_pending {
            return Ok(Admitted::TooManyPending);
        }
    }
    insert_job(&mut *conn, job).await?;
    if let Some(resumable) = resumable {
        sqlx::query(
            "INSERT INTO uploads (job_id, durable_offset, expected_sha256, owner) \
             VALUES ($1, 0, $2, $3)",
        )
        .bind(job.job_id.as_uuid())
        .bind(
            resumable
                .expected_sha256
                .map(|digest| digest.as_bytes().to_vec()),
        )
        .bind(&resumable.credential)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Admitted::Yes { bytes_left })
}

/// What an account uses: the sizes of its jobs' files, and its uploads in progress with what
/// they declared (or, undeclared, have received so far). `SUM` of BIGINT is NUMERIC in
/// PostgreSQL, hence the casts back.
async fn usage(conn: &mut PgConnection, owner: AccountId) -> anyhow::Result<Usage> {
    let (stored, uploads, reserved): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(SUM(size), 0)::BIGINT FROM jobs \
                 WHERE owner_id = $1 AND sha256 IS NOT NULL), \
                COUNT(*), \
                COALESCE(SUM(GREATEST(COALESCE(bytes_total, 0), bytes_done)), 0)::BIGINT \
         FROM jobs WHERE state = 'receiving' AND owner_id = $1",
    )
    .bind(owner.get())
    .fetch_one(&mut *conn)
    .await?;
    Ok(Usage {
        stored_bytes: count(stored).saturating_add(count(reserved)),
        uploads: count(uploads),
    })
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

#[async_trait]
impl JobStore for PgStore {
    async fn insert(&self, job: &JobStatus) -> anyhow::Result<()> {
        write(async {
            let mut conn = self.pool.acquire().await?;
            insert_job(&mut conn, job).await
        })
        .await
    }

    async fn admit(
        &self,
        job: &JobStatus,
        admission: Admission,
        resumable: Option<Resumable>,
        lease: &Lease,
    ) -> anyhow::Result<Admitted> {
        write(async {
            let mut tx = self.pool.begin().await?;
            let admitted = admit(&mut tx, job, admission, resumable.as_ref()).await?;
            if matches!(admitted, Admitted::Yes { .. }) {
                if resumable.is_none() {
                    // A one-shot upload is its request's: held under this node's lease.
                    sqlx::query(&format!(
                        "UPDATE jobs SET lease_node = $1, lease_until_us = {DB_NOW_US} + $2 \
                         WHERE id = $3"
                    ))
                    .bind(lease.node.as_str())
                    .bind(lease.duration_us())
                    .bind(job.job_id.as_uuid())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            } else {
                // Nothing is recorded for a refusal; the rollback also releases the locks.
                tx.rollback().await?;
            }
            Ok(admitted)
        })
        .await
    }

    async fn usage(&self, owner: AccountId) -> anyhow::Result<Usage> {
        let mut conn = self.pool.acquire().await?;
        usage(&mut conn, owner).await
    }

    async fn stored_bytes_besides(&self, owner: AccountId, except: JobId) -> anyhow::Result<u64> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT (SELECT COALESCE(SUM(size), 0)::BIGINT FROM jobs \
                     WHERE owner_id = $1 AND sha256 IS NOT NULL) \
                  + (SELECT COALESCE(SUM(GREATEST(COALESCE(bytes_total, 0), bytes_done)), 0) \
                     ::BIGINT FROM jobs \
                     WHERE state = 'receiving' AND owner_id = $1 AND id <> $2)",
        )
        .bind(owner.get())
        .bind(except.as_uuid())
        .fetch_one(&self.pool)
        .await?;
        Ok(count(bytes))
    }

    async fn save(&self, job: &JobStatus) -> anyhow::Result<bool> {
        write(async {
            // A finished job is final: a late writer (a worker finishing a job that was just
            // cancelled) must not bring it back. A concurrent cancel holds the row; this
            // update then re-reads it and finds it finished.
            let sql = format!(
                "UPDATE jobs SET ({MUTABLE_COLUMNS}) = \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 WHERE id = $12 AND state NOT IN ('completed', 'failed', 'cancelled')"
            );
            let saved = bind_mutable(sqlx::query(&sql), job)
                .bind(job.job_id.as_uuid())
                .execute(&self.pool)
                .await?;
            Ok(saved.rows_affected() == 1)
        })
        .await
    }

    async fn get(&self, id: JobId) -> anyhow::Result<Option<JobStatus>> {
        let row: Option<JobRow> = sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        row.map(JobStatus::try_from).transpose()
    }

    async fn list(
        &self,
        filter: &ListFilter,
        before: Option<JobId>,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        // Only the conditions that apply are written, so the planner can walk the index that
        // fits (an account's jobs by `owner_id, seq`).
        let account = match filter.scope {
            Scope::Everything => None,
            Scope::Account(account) => Some(account.get()),
        };
        let mut query = QueryBuilder::<Postgres>::new("SELECT * FROM jobs WHERE TRUE");
        if let Some(account) = account {
            query.push(" AND owner_id = ").push_bind(account);
        }
        if let Some(owner) = &filter.owner {
            query
                .push(" AND lower(owner) = lower(")
                .push_bind(owner.as_str().to_owned())
                .push(")");
        }
        if let Some(state) = filter.state {
            query.push(" AND state = ").push_bind(state.as_str());
        }
        if let Some(pattern) = filter.text_pattern() {
            query
                .push(" AND (filename ILIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR metadata ILIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
        if let Some(before) = before {
            // A job the scope does not see continues nothing: its page is empty (`seq < NULL`
            // holds for no row), as for an unknown id, so `before` tells no one whether
            // another account's job exists.
            query
                .push(" AND seq < (SELECT seq FROM jobs WHERE id = ")
                .push_bind(before.as_uuid());
            if let Some(account) = account {
                query.push(" AND owner_id = ").push_bind(account);
            }
            query.push(")");
        }
        query
            .push(" ORDER BY seq DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows: Vec<JobRow> = query.build_query_as().fetch_all(&self.pool).await?;
        rows.into_iter().map(JobStatus::try_from).collect()
    }

    async fn claim_queued(&self, limit: u32, lease: &Lease) -> anyhow::Result<Vec<Claimed>> {
        write(async {
            // Jobs whose lease ran out first (few: a stopped node's), then the oldest queued:
            // two statements, each served by the state index in order, where one with an OR
            // would sort every queued job. SKIP LOCKED: nodes claiming at once each take
            // different rows instead of waiting on (and then losing) the same ones. A row
            // another claim changed after this statement's snapshot is re-read under its lock
            // and dropped if no longer claimable, so no job is claimed twice. `queued_us` is
            // read before the update overwrites it.
            let claim = |which: &str| {
                format!(
                    "WITH next AS ( \
                         SELECT seq, updated_us AS queued_us FROM jobs WHERE {which} \
                         ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED \
                     ) \
                     UPDATE jobs SET state = 'processing', updated_us = $2, lease_node = $3, \
                     lease_until_us = {DB_NOW_US} + $4 FROM next \
                     WHERE jobs.seq = next.seq AND {which} \
                     RETURNING jobs.*, next.queued_us"
                )
            };
            let expired = claim(&format!(
                "jobs.state = 'processing' AND COALESCE(jobs.lease_until_us, 0) < {DB_NOW_US}"
            ));
            let queued = claim("jobs.state = 'queued'");
            let mut claimed = Vec::new();
            for sql in [expired, queued] {
                let room = i64::from(limit) - claimed.len() as i64;
                if room <= 0 {
                    break;
                }
                let mut rows: Vec<ClaimedRow> = sqlx::query_as(&sql)
                    .bind(room)
                    .bind(micros(now()))
                    .bind(lease.node.as_str())
                    .bind(lease.duration_us())
                    .fetch_all(&self.pool)
                    .await?;
                // RETURNING keeps no order.
                rows.sort_by_key(|row| row.job.seq);
                for row in rows {
                    claimed.push(Claimed {
                        queued_at: from_micros(row.queued_us)?,
                        job: JobStatus::try_from(row.job)?,
                    });
                }
            }
            Ok(claimed)
        })
        .await
    }

    async fn renew_leases(&self, lease: &Lease) -> anyhow::Result<Vec<JobId>> {
        write(async {
            let held: Vec<Uuid> = sqlx::query_scalar(&format!(
                "UPDATE jobs SET lease_until_us = {DB_NOW_US} + $1 \
                 WHERE lease_node = $2 AND state IN ('receiving', 'processing') RETURNING id"
            ))
            .bind(lease.duration_us())
            .bind(lease.node.as_str())
            .fetch_all(&self.pool)
            .await?;
            Ok(held.into_iter().map(JobId::from_uuid).collect())
        })
        .await
    }

    async fn save_held(&self, job: &JobStatus, node: &NodeId) -> anyhow::Result<bool> {
        write(async {
            // Conditioned on the lease: a node whose lease passed to another (it stalled
            // longer than the lease) writes nothing. A concurrent claim holds the row; this
            // update then re-reads it and finds another holder.
            let sql = format!(
                "UPDATE jobs SET ({MUTABLE_COLUMNS}) = \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), \
                 lease_node = CASE WHEN $1 = 'processing' THEN lease_node END, \
                 lease_until_us = CASE WHEN $1 = 'processing' THEN lease_until_us END \
                 WHERE id = $12 AND state = 'processing' AND lease_node = $13"
            );
            let saved = bind_mutable(sqlx::query(&sql), job)
                .bind(job.job_id.as_uuid())
                .bind(node.as_str())
                .execute(&self.pool)
                .await?;
            Ok(saved.rows_affected() == 1)
        })
        .await
    }

    /// Nothing: PostgreSQL cannot tell a stopped node from a live one (a node's own earlier
    /// process included), so a lease only runs out (`recover_expired`).
    async fn recover_interrupted(&self, _node: &NodeId) -> anyhow::Result<Recovery> {
        Ok(Recovery::default())
    }

    async fn recover_expired(&self) -> anyhow::Result<Vec<JobStatus>> {
        write(async {
            let rows: Vec<JobRow> = sqlx::query_as(&format!(
                "WITH failed AS ( \
                     UPDATE jobs SET state = 'failed', error = $1, updated_us = $2, \
                     lease_node = NULL, lease_until_us = NULL \
                     WHERE state = 'receiving' AND lease_until_us < {DB_NOW_US} \
                     AND NOT EXISTS (SELECT 1 FROM uploads WHERE uploads.job_id = jobs.id) \
                     RETURNING * \
                 ), requeued AS ( \
                     UPDATE jobs SET state = 'queued', updated_us = $2, \
                     lease_node = NULL, lease_until_us = NULL \
                     WHERE state = 'processing' \
                     AND COALESCE(lease_until_us, 0) < {DB_NOW_US} \
                     RETURNING * \
                 ) \
                 SELECT * FROM failed UNION ALL SELECT * FROM requeued"
            ))
            .bind(INTERRUPTED_BY_NODE_LOSS)
            .bind(micros(now()))
            .fetch_all(&self.pool)
            .await?;
            rows.into_iter().map(JobStatus::try_from).collect()
        })
        .await
    }

    async fn claim_periodic(&self, task: &str, lease: &Lease) -> anyhow::Result<bool> {
        write(async {
            // One conditional upsert: claimed if the last claim ran out or is this node's.
            // Two nodes claiming at once meet on the row's lock; the second re-reads it and
            // finds a live claim that is not its own.
            let claimed = sqlx::query(&format!(
                "INSERT INTO periodic_tasks (task, holder, until_us) \
                 VALUES ($1, $2, {DB_NOW_US} + $3) \
                 ON CONFLICT (task) DO UPDATE SET holder = excluded.holder, \
                 until_us = excluded.until_us \
                 WHERE periodic_tasks.until_us <= {DB_NOW_US} \
                 OR periodic_tasks.holder = excluded.holder"
            ))
            .bind(task)
            .bind(lease.node.as_str())
            .bind(lease.duration_us())
            .execute(&self.pool)
            .await?;
            Ok(claimed.rows_affected() == 1)
        })
        .await
    }

    /// Transaction-scoped advisory locks on a transaction of its own, held until the guard
    /// ends it: a session-level lock would outlive a guard dropped without its unlock, on a
    /// connection back in the pool.
    async fn lock_blob(
        &self,
        digest: Sha256Digest,
        owner: Option<AccountId>,
    ) -> anyhow::Result<BlobLock> {
        let mut tx = self.pool.begin().await?;
        if let Some(owner) = owner {
            // The same key as an admission's, so a final quota check also waits for (and
            // then counts) uploads being admitted on any node.
            sqlx::query(LOCK_KEY)
                .bind(format!("ingest admit owner {}", owner.get()))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(LOCK_KEY)
            .bind(format!("ingest blob {}", digest.to_hex()))
            .execute(&mut *tx)
            .await?;
        Ok(BlobLock(Held::Postgres(tx)))
    }

    async fn count_in_state(&self, state: JobState) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE state = $1")
            .bind(state.as_str())
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn list_finished_before(
        &self,
        cutoff: OffsetDateTime,
        limit: u32,
    ) -> anyhow::Result<Vec<JobStatus>> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT * FROM jobs WHERE state IN ('completed', 'failed', 'cancelled') \
             AND updated_us < $1 ORDER BY updated_us LIMIT $2",
        )
        .bind(micros(cutoff))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(JobStatus::try_from).collect()
    }

    async fn cancel(&self, id: JobId) -> anyhow::Result<Option<JobStatus>> {
        write(async {
            let row: Option<JobRow> = sqlx::query_as(
                "UPDATE jobs SET state = 'cancelled', error = $1, updated_us = $2 \
                 WHERE id = $3 AND state IN ('queued', 'receiving', 'processing') RETURNING *",
            )
            .bind(CANCELLED_BY_REQUEST)
            .bind(micros(now()))
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
            row.map(JobStatus::try_from).transpose()
        })
        .await
    }

    async fn delete(&self, id: JobId) -> anyhow::Result<bool> {
        write(async {
            // The upload record goes with it (ON DELETE CASCADE).
            let deleted = sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&self.pool)
                .await?;
            Ok(deleted.rows_affected() == 1)
        })
        .await
    }

    async fn delete_finished(&self, ids: &[JobId]) -> anyhow::Result<u64> {
        let ids: Vec<uuid::Uuid> = ids.iter().map(JobId::as_uuid).collect();
        write(async {
            // Upload records go with their jobs (ON DELETE CASCADE).
            let deleted = sqlx::query(
                "DELETE FROM jobs WHERE id = ANY($1) \
                 AND state IN ('completed', 'failed', 'cancelled')",
            )
            .bind(&ids)
            .execute(&self.pool)
            .await?;
            Ok(deleted.rows_affected())
        })
        .await
    }

    async fn count_referencing(&self, digest: Sha256Digest) -> anyhow::Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE sha256 = $1")
            .bind(digest.as_bytes().to_vec())
            .fetch_one(&self.pool)
            .await?;
        Ok(count(n))
    }

    async fn ping(&self) -> anyhow::Result<()> {
        write(async {
            sqlx::query(
                "INSERT INTO write_probe (id, at_us) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET at_us = excluded.at_us",
            )
            .bind(micros(now()))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn save_received(&self, job: &JobStatus, staged: &StagedState) -> anyhow::Result<bool> {
        let parts = staged_parts_json(staged)?;
        write(async {
            // One statement: the job's progress (only while receiving: bytes that arrive for
            // a job cancelled meanwhile do not count) and, if that matched, its offset.
            let saved: i64 = sqlx::query_scalar(
                "WITH job AS ( \
                     UPDATE jobs SET bytes_done = $1, progress = $2, updated_us = $3 \
                     WHERE id = $4 AND state = 'receiving' RETURNING id \
                 ), upload AS ( \
                     UPDATE uploads SET durable_offset = $1, hash_state = $5, staged_parts = $6 \
                     WHERE job_id IN (SELECT id FROM job) \
                 ) \
                 SELECT COUNT(*) FROM job",
            )
            .bind(to_i64(job.bytes_done))
            .bind(i64::from(job.progress))
            .bind(micros(job.updated_at))
            .bind(job.job_id.as_uuid())
            .bind(staged.hash_state.as_deref())
            .bind(parts.as_deref())
            .fetch_one(&self.pool)
            .await?;
            Ok(saved == 1)
        })
        .await
    }

    async fn upload(&self, id: JobId) -> anyhow::Result<Option<UploadRecord>> {
        let row: Option<(i64, Option<Vec<u8>>, Option<Vec<u8>>, Option<String>)> = sqlx::query_as(
            "SELECT durable_offset, expected_sha256, hash_state, staged_parts \
             FROM uploads WHERE job_id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(offset, expected, hash_state, parts)| {
            Ok(UploadRecord {
                offset: u64::try_from(offset)?,
                expected_sha256: expected.as_deref().map(digest).transpose()?,
                staged: StagedState {
                    hash_state,
                    parts: parts.as_deref().map(serde_json::from_str).transpose()?,
                },
            })
        })
        .transpose()
    }

    async fn resumable_uploads(&self) -> anyhow::Result<Vec<JobId>> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT jobs.id FROM jobs JOIN uploads ON uploads.job_id = jobs.id \
             WHERE jobs.state = 'receiving'",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(JobId::from_uuid).collect())
    }
}

#[async_trait]
impl SessionStore for PgStore {
    async fn insert_session(&self, session: &StoredSession) -> anyhow::Result<()> {
        write(async {
            sqlx::query(
                "INSERT INTO sessions (id_hash, created_us, expires_us, key_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(session.id_hash.to_vec())
            .bind(micros(session.created))
            .bind(micros(session.expires))
            .bind(session.key_id.as_ref().map(KeyId::as_str))
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn delete_session(&self, id_hash: [u8; 32]) -> anyhow::Result<()> {
        write(async {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
                .bind(id_hash.to_vec())
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn delete_sessions_of(&self, keys: &[KeyId]) -> anyhow::Result<()> {
        let keys: Vec<String> = keys.iter().map(|key| key.as_str().to_owned()).collect();
        write(async {
            sqlx::query("DELETE FROM sessions WHERE key_id = ANY($1)")
                .bind(keys)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn live_sessions(&self, now: OffsetDateTime) -> anyhow::Result<Vec<StoredSession>> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT id_hash, created_us, expires_us, key_id FROM sessions WHERE expires_us > $1",
        )
        .bind(micros(now))
        .fetch_all(&self.pool)
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
             WHERE id_hash = $1 AND expires_us > $2",
        )
        .bind(id_hash.to_vec())
        .bind(micros(now))
        .fetch_optional(&self.pool)
        .await?;
        row.map(stored_session).transpose()
    }

    async fn prune_sessions(&self, now: OffsetDateTime) -> anyhow::Result<u64> {
        write(async {
            let pruned = sqlx::query("DELETE FROM sessions WHERE expires_us <= $1")
                .bind(micros(now))
                .execute(&self.pool)
                .await?;
            Ok(pruned.rows_affected())
        })
        .await
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn add_account(&self, account: &AccountRecord) -> anyhow::Result<Option<AccountId>> {
        write(async {
            // A name taken in any case conflicts on the unique `lower(name)` index.
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO accounts (name, role, created_us, max_stored_bytes, max_uploads, \
                 max_requests_per_second) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(account.name.as_str())
            .bind(account.role.as_str())
            .bind(micros(account.created_at))
            .bind(account.quotas.max_stored_bytes.map(to_i64))
            .bind(account.quotas.max_uploads.map(to_i64))
            .bind(account.quotas.max_requests_per_second.map(to_i64))
            .fetch_optional(&self.pool)
            .await?;
            Ok(id.map(AccountId::new))
        })
        .await
    }

    async fn set_quotas(&self, name: &AccountName, quotas: QuotaOverrides) -> anyhow::Result<bool> {
        write(async {
            let set = sqlx::query(
                "UPDATE accounts SET max_stored_bytes = $1, max_uploads = $2, \
                 max_requests_per_second = $3 WHERE lower(name) = lower($4)",
            )
            .bind(quotas.max_stored_bytes.map(to_i64))
            .bind(quotas.max_uploads.map(to_i64))
            .bind(quotas.max_requests_per_second.map(to_i64))
            .bind(name.as_str())
            .execute(&self.pool)
            .await?;
            Ok(set.rows_affected() == 1)
        })
        .await
    }

    async fn accounts(&self) -> anyhow::Result<Vec<AccountRecord>> {
        let rows: Vec<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY lower(name)"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(AccountRecord::try_from).collect()
    }

    async fn account(&self, name: &AccountName) -> anyhow::Result<Option<AccountRecord>> {
        let row: Option<AccountRow> = sqlx::query_as(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE lower(name) = lower($1)"
        ))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(AccountRecord::try_from).transpose()
    }

    async fn remove_account(&self, name: &AccountName, at: OffsetDateTime) -> anyhow::Result<bool> {
        write(async {
            let mut tx = self.pool.begin().await?;
            // The account's row first: a key added to it meanwhile waits for this delete, then
            // finds no account and is not added (so none escapes the revocation below).
            let removed: Option<i64> = sqlx::query_scalar(
                "DELETE FROM accounts WHERE lower(name) = lower($1) RETURNING id",
            )
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(id) = removed else {
                return Ok(false);
            };
            sqlx::query(
                "UPDATE api_keys SET revoked_us = $1 \
                 WHERE revoked_us IS NULL AND account_id = $2",
            )
            .bind(micros(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // Its webhook endpoints (and, by cascade, their deliveries) go with it: an admin's
            // may receive every account's events.
            sqlx::query("DELETE FROM webhook_endpoints WHERE account_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn add_key(&self, key: &KeyRecord) -> anyhow::Result<bool> {
        write(async {
            // FOR SHARE: the account row stays until the key is in (a removal waits for it,
            // then revokes it with the others).
            let added = sqlx::query(
                "INSERT INTO api_keys \
                 (key_id, account_id, account, secret_sha256, created_us, expires_us) \
                 SELECT $1, id, name, $2, $3, $4 FROM accounts WHERE id = $5 FOR SHARE",
            )
            .bind(key.key_id.as_str())
            .bind(key.secret_sha256.to_vec())
            .bind(micros(key.created_at))
            .bind(key.expires_at.map(micros))
            .bind(key.account_id.map(AccountId::get))
            .execute(&self.pool)
            .await?;
            Ok(added.rows_affected() == 1)
        })
        .await
    }

    async fn keys(&self, account: Option<AccountId>) -> anyhow::Result<Vec<KeyRecord>> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys \
             WHERE $1::BIGINT IS NULL OR account_id = $1 ORDER BY created_us, key_id"
        ))
        .bind(account.map(AccountId::get))
        .fetch_all(&self.pool)
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
        .fetch_all(&self.pool)
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
        write(async {
            let account: Option<String> = sqlx::query_scalar(
                "UPDATE api_keys SET revoked_us = COALESCE(revoked_us, $1) WHERE key_id = $2 \
                 RETURNING account",
            )
            .bind(micros(at))
            .bind(key_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
            account
                .map(|name| AccountName::parse(&name))
                .transpose()
                .context("stored account name")
        })
        .await
    }

    async fn accounts_version(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT version FROM accounts_version WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn record_key_use(&self, uses: &[(KeyId, OffsetDateTime)]) -> anyhow::Result<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let (keys, times): (Vec<String>, Vec<i64>) = uses
            .iter()
            .map(|(key, at)| (key.as_str().to_owned(), micros(*at)))
            .unzip();
        write(async {
            // One statement for the batch; a key named twice keeps its latest use.
            sqlx::query(
                "UPDATE api_keys SET last_used_us = GREATEST(COALESCE(last_used_us, 0), used.at) \
                 FROM (SELECT key_id, MAX(at) AS at FROM UNNEST($1::TEXT[], $2::BIGINT[]) \
                       AS used (key_id, at) GROUP BY key_id) AS used \
                 WHERE api_keys.key_id = used.key_id",
            )
            .bind(keys)
            .bind(times)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }
}

fn hash32(bytes: &[u8]) -> anyhow::Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes).map_err(|_| anyhow::anyhow!("{} bytes, not 32", bytes.len()))
}

fn digest(bytes: &[u8]) -> anyhow::Result<Sha256Digest> {
    Ok(Sha256Digest::from_bytes(
        hash32(bytes).context("stored SHA-256")?,
    ))
}

/// The columns `AccountRow` reads.
const ACCOUNT_COLUMNS: &str = "id, name, role, created_us AS account_created_us, \
                               max_stored_bytes, max_uploads, max_requests_per_second";

/// The columns `KeyRow` reads.
const KEY_COLUMNS: &str = "key_id, account_id, account, secret_sha256, created_us, expires_us, \
                           revoked_us, last_used_us";

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
        let quota = |n: Option<i64>| n.map(count);
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
    secret_sha256: Vec<u8>,
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
            secret_sha256: hash32(&row.secret_sha256).context("stored key hash")?,
            created_at: from_micros(row.created_us)?,
            expires_at: row.expires_us.map(from_micros).transpose()?,
            revoked_at: row.revoked_us.map(from_micros).transpose()?,
            last_used_at: row.last_used_us.map(from_micros).transpose()?,
        })
    }
}

/// A job as stored; converted into `JobStatus` with every field parsed.
#[derive(sqlx::FromRow)]
struct JobRow {
    seq: i64,
    id: Uuid,
    owner_id: i64,
    owner: String,
    state: String,
    progress: i64,
    bytes_done: i64,
    bytes_total: Option<i64>,
    filename: Option<String>,
    size: Option<i64>,
    sha256: Option<Vec<u8>>,
    content_type: Option<String>,
    metadata: String,
    error: Option<String>,
    created_us: i64,
    updated_us: i64,
}

/// A job just claimed, with when it had been queued.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    job: JobRow,
    queued_us: i64,
}

impl TryFrom<JobRow> for JobStatus {
    type Error = anyhow::Error;

    fn try_from(row: JobRow) -> anyhow::Result<Self> {
        Ok(JobStatus {
            job_id: JobId::from_uuid(row.id),
            owner: AccountName::parse(&row.owner).context("stored owner")?,
            owner_id: AccountId::new(row.owner_id),
            status: JobState::from_str(&row.state)?,
            progress: u8::try_from(row.progress.clamp(0, 100))?,
            bytes_done: count(row.bytes_done),
            bytes_total: row.bytes_total.map(count),
            filename: row.filename,
            size: row.size.map(count),
            sha256: row.sha256.as_deref().map(digest).transpose()?,
            content_type: row.content_type,
            metadata: serde_json::from_str(&row.metadata).context("stored metadata")?,
            error: row.error,
            created_at: from_micros(row.created_us)?,
            updated_at: from_micros(row.updated_us)?,
        })
    }
}

/// A `sessions` row: `id_hash`, `created_us`, `expires_us`, `key_id`.
type SessionRow = (Vec<u8>, i64, i64, Option<String>);

fn stored_session((hash, created, expires, key_id): SessionRow) -> anyhow::Result<StoredSession> {
    Ok(StoredSession {
        id_hash: hash32(&hash).context("stored session hash")?,
        key_id: key_id
            .as_deref()
            .map(KeyId::parse)
            .transpose()
            .context("stored key id")?,
        created: from_micros(created)?,
        expires: from_micros(expires)?,
    })
}
