//! The one-sender lock across a cluster: a PostgreSQL session-level advisory lock per upload,
//! taken on a connection held for as long as the lock. A node that dies (even with SIGKILL)
//! lets go of its locks when its connections close.
use super::{UploadLock, UploadLocks};
use crate::{domain::JobId, server::store::DatabaseUrl};
use async_trait::async_trait;
use sqlx::{pool::PoolConnection, postgres::PgPoolOptions, PgPool, Postgres};
use std::time::Duration;

/// Connections held by locks at most, per node: one per request sending an upload's bytes.
/// Beyond that a request waits up to `ACQUIRE_TIMEOUT` for one, then fails.
const MAX_HELD: u32 = 32;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `lock` tries again while someone else holds the lock.
const RETRY_EVERY: Duration = Duration::from_millis(100);
/// Advisory lock keys of upload locks have this in their high 16 bits, so they never meet the
/// store's own advisory locks (accounts and credentials, in transactions).
const NAMESPACE: i64 = 0x7475 << 48; // "tu"

pub struct PgUploadLocks {
    /// Its own pool: a lock holds its connection for a whole request, which must not starve
    /// the store's statements.
    pool: PgPool,
}

impl PgUploadLocks {
    /// Connects lazily: no connection is open until the first lock.
    pub fn new(url: &DatabaseUrl) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_HELD)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(url.connect_options());
        Self { pool }
    }
}

/// The advisory lock key of upload `id`: 48 bits of its id (the random half: two uploads
/// share a key about once in 2^48) under `NAMESPACE`.
fn key(id: JobId) -> i64 {
    let uuid = id.as_uuid();
    let bytes = uuid.as_bytes();
    let mut low = [0u8; 8];
    low[2..].copy_from_slice(&bytes[10..16]);
    NAMESPACE | i64::from_be_bytes(low)
}

/// Unlocks explicitly when dropped: a session-level advisory lock outlives the connection's
/// return to the pool.
struct PgRelease {
    connection: Option<PoolConnection<Postgres>>,
    key: i64,
}

impl Drop for PgRelease {
    fn drop(&mut self) {
        let Some(mut connection) = self.connection.take() else {
            return;
        };
        let key = self.key;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to unlock on: closing the connection ends its session and its locks.
            drop(connection.detach());
            return;
        };
        runtime.spawn(async move {
            let unlocked: Result<bool, _> = sqlx::query_scalar("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .fetch_one(&mut *connection)
                .await;
            if !matches!(unlocked, Ok(true)) {
                tracing::warn!(
                    ?unlocked,
                    "unlocking an upload failed; closing its connection"
                );
                drop(connection.detach());
            }
        });
    }
}

/// A lock found held is tried again this often, this many times, before it counts as held:
/// the holder unlocks after it has answered (the unlock is a statement of its own), so a
/// client's next PATCH can arrive while the previous one's unlock is still on its way.
const RELEASE_GRACE: Duration = Duration::from_millis(20);
const RELEASE_TRIES: u32 = 5;

impl PgUploadLocks {
    async fn take(&self, key: i64) -> anyhow::Result<Option<UploadLock>> {
        let mut connection = self.pool.acquire().await?;
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *connection)
            .await?;
        Ok(taken.then(|| {
            UploadLock::new(PgRelease {
                connection: Some(connection),
                key,
            })
        }))
    }
}

#[async_trait]
impl UploadLocks for PgUploadLocks {
    async fn try_lock(&self, id: JobId) -> anyhow::Result<Option<UploadLock>> {
        let key = key(id);
        for _ in 1..RELEASE_TRIES {
            if let Some(lock) = self.take(key).await? {
                return Ok(Some(lock));
            }
            tokio::time::sleep(RELEASE_GRACE).await;
        }
        self.take(key).await
    }

    async fn lock(&self, id: JobId) -> anyhow::Result<UploadLock> {
        loop {
            if let Some(lock) = self.try_lock(id).await? {
                return Ok(lock);
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}
