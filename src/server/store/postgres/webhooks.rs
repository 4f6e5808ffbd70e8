//! The PostgreSQL side of `WebhookStore`. Several nodes' senders share the outbox: a claim
//! takes due deliveries with `FOR UPDATE SKIP LOCKED` and leases them by the database's clock,
//! so each is sent by one node at a time, and a node that stops leaves its claims to expire.
use super::{
    super::webhooks::{
        previous_columns, still_signing, Attempt, DeliveryRecord, DeliveryRow, EndpointRecord,
        EndpointRow, OutgoingDelivery, PingOutcome, RetryOutcome, WebhookStore, ENDPOINT_FIELDS,
        PENDING_PINGS_SQL, PRUNE_DELIVERIES_SQL, RELEASE_CLAIMS_SQL,
    },
    count, from_micros, micros, now, to_i64, JobRow, Lease, NodeId, PgStore, DB_NOW_US, LOCK_KEY,
};
use crate::domain::{AccountId, JobStatus};
use async_trait::async_trait;
use uuid::Uuid;

/// Takes the oldest events awaiting fan-out (as many as bound first) that no other node is
/// taking, clears their flag, and makes their deliveries: one per endpoint that wants the
/// event. One statement, so an event is fanned out once, whichever node takes it.
static FAN_OUT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH batch AS ( \
           SELECT id FROM webhook_events WHERE awaiting_fanout ORDER BY id LIMIT $1 \
           FOR UPDATE SKIP LOCKED), \
         taken AS ( \
           UPDATE webhook_events ev SET awaiting_fanout = FALSE FROM batch \
           WHERE ev.id = batch.id RETURNING ev.id, ev.type, ev.owner_id, ev.occurred_us) \
         INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, next_attempt_us, \
           created_us, updated_us) \
         SELECT {DELIVERY_ID}, e.id, ev.id, 'pending', ev.occurred_us, ev.occurred_us, \
           ev.occurred_us \
         FROM taken ev JOIN webhook_endpoints e ON {WANTS_EVENT}"
    )
});

/// Whether endpoint `e` gets event `ev`: enabled, subscribed to its type and account, and
/// registered by the time it happened.
const WANTS_EVENT: &str = "e.enabled \
     AND (e.all_accounts OR e.account_id = ev.owner_id) \
     AND (e.events = '*' OR strpos(' ' || e.events || ' ', ' ' || ev.type || ' ') > 0) \
     AND e.created_us <= ev.occurred_us";

/// The `webhook-id` of event `ev`'s delivery to endpoint `e`, known before the delivery is
/// made (see the SQLite store): the event's number, then the endpoint's.
const DELIVERY_ID: &str = "'msg_' || lpad(to_hex(ev.id), 16, '0') || replace(e.id::text, '-', '')";

#[derive(sqlx::FromRow)]
struct OutgoingRow {
    delivery_id: String,
    endpoint_id: Uuid,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until_us: Option<i64>,
    event_type: String,
    occurred_us: i64,
    attempts: i64,
    delivery_created_us: i64,
    id: Option<Uuid>,
    owner_id: Option<i64>,
    owner: Option<String>,
    state: Option<String>,
    progress: Option<i64>,
    bytes_done: Option<i64>,
    bytes_total: Option<i64>,
    filename: Option<String>,
    size: Option<i64>,
    sha256: Option<Vec<u8>>,
    content_type: Option<String>,
    metadata: Option<String>,
    error: Option<String>,
    created_us: Option<i64>,
    updated_us: Option<i64>,
}

impl OutgoingRow {
    fn into_delivery(self, now_us: i64) -> anyhow::Result<OutgoingDelivery> {
        let job = match (
            self.id,
            self.owner_id,
            self.owner,
            self.state,
            self.metadata,
            self.created_us,
            self.updated_us,
        ) {
            (
                Some(id),
                Some(owner_id),
                Some(owner),
                Some(state),
                Some(metadata),
                Some(created_us),
                Some(updated_us),
            ) => Some(JobStatus::try_from(JobRow {
                seq: 0,
                id,
                owner_id,
                owner,
                state,
                progress: self.progress.unwrap_or(0),
                bytes_done: self.bytes_done.unwrap_or(0),
                bytes_total: self.bytes_total,
                filename: self.filename,
                size: self.size,
                sha256: self.sha256,
                content_type: self.content_type,
                metadata,
                error: self.error,
                created_us,
                updated_us,
            })?),
            _ => None,
        };
        Ok(OutgoingDelivery {
            id: self.delivery_id,
            endpoint_id: self.endpoint_id,
            url: self.url,
            secret: self.secret,
            previous_secret: still_signing(self.previous_secret, self.previous_until_us, now_us),
            event_type: self.event_type,
            occurred_at: from_micros(self.occurred_us)?,
            job,
            attempts: count(self.attempts),
            created_at: from_micros(self.delivery_created_us)?,
        })
    }
}

#[async_trait]
impl WebhookStore for PgStore {
    async fn add_endpoint(
        &self,
        endpoint: &EndpointRecord,
        max_per_account: u32,
    ) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        // Counted and inserted under the account's lock: two registrations cannot both pass.
        sqlx::query(LOCK_KEY)
            .bind(format!("ingest webhooks {}", endpoint.account_id.get()))
            .execute(&mut *tx)
            .await?;
        let existing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE account_id = $1")
                .bind(endpoint.account_id.get())
                .fetch_one(&mut *tx)
                .await?;
        if count(existing) >= u64::from(max_per_account) {
            return Ok(false);
        }
        let (previous, previous_until) = previous_columns(endpoint);
        sqlx::query(&format!(
            "INSERT INTO webhook_endpoints (id, {ENDPOINT_FIELDS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        ))
        .bind(endpoint.id)
        .bind(endpoint.account_id.get())
        .bind(endpoint.all_accounts)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(&endpoint.events)
        .bind(&endpoint.secret)
        .bind(previous)
        .bind(previous_until)
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(to_i64(endpoint.consecutive_failures))
        .bind(micros(endpoint.created_at))
        .bind(micros(endpoint.updated_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn endpoints(&self, account: Option<AccountId>) -> anyhow::Result<Vec<EndpointRecord>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT id::text AS id, {ENDPOINT_FIELDS} FROM webhook_endpoints \
             WHERE $1::BIGINT IS NULL OR account_id = $1 ORDER BY created_us, id"
        ))
        .bind(account.map(AccountId::get))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(EndpointRecord::try_from).collect()
    }

    async fn endpoint(&self, id: Uuid) -> anyhow::Result<Option<EndpointRecord>> {
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "SELECT id::text AS id, {ENDPOINT_FIELDS} FROM webhook_endpoints WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(EndpointRecord::try_from).transpose()
    }

    async fn update_endpoint(
        &self,
        endpoint: &EndpointRecord,
        read_at: time::OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let (previous, previous_until) = previous_columns(endpoint);
        let updated = sqlx::query(
            "UPDATE webhook_endpoints SET all_accounts = $1, url = $2, description = $3, \
             events = $4, secret = $5, previous_secret = $6, previous_until_us = $7, \
             enabled = $8, disabled_reason = $9, consecutive_failures = $10, updated_us = $11 \
             WHERE id = $12 AND updated_us = $13",
        )
        .bind(endpoint.all_accounts)
        .bind(&endpoint.url)
        .bind(&endpoint.description)
        .bind(&endpoint.events)
        .bind(&endpoint.secret)
        .bind(previous)
        .bind(previous_until)
        .bind(endpoint.enabled)
        .bind(&endpoint.disabled_reason)
        .bind(to_i64(endpoint.consecutive_failures))
        .bind(micros(endpoint.updated_at))
        .bind(endpoint.id)
        .bind(micros(read_at))
        .execute(&self.pool)
        .await?;
        Ok(updated.rows_affected() == 1)
    }

    async fn delete_endpoint(&self, id: Uuid) -> anyhow::Result<bool> {
        let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn deliveries(&self, endpoint: Uuid, limit: u32) -> anyhow::Result<Vec<DeliveryRecord>> {
        // With the deliveries made so far, the newest events still waiting to be fanned out
        // to this endpoint, as the pending deliveries they will be.
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "(SELECT d.id, ev.type AS event_type, ev.job_id::text AS job_id, d.state, \
               d.attempts, d.next_attempt_us, d.last_status, d.last_error, d.created_us, \
               d.updated_us \
               FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id \
               WHERE d.endpoint_id = $1 ORDER BY d.created_us DESC, d.id DESC LIMIT $2) \
             UNION ALL \
             (SELECT {DELIVERY_ID}, ev.type, ev.job_id::text, 'pending', 0, ev.occurred_us, \
               NULL, NULL, ev.occurred_us, ev.occurred_us \
               FROM webhook_events ev JOIN webhook_endpoints e ON e.id = $1 AND {WANTS_EVENT} \
               WHERE ev.awaiting_fanout ORDER BY ev.id DESC LIMIT $2) \
             ORDER BY created_us DESC, id DESC LIMIT $2"
        ))
        .bind(endpoint)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(DeliveryRecord::try_from).collect()
    }

    async fn retry_delivery(&self, endpoint: Uuid, delivery: &str) -> anyhow::Result<RetryOutcome> {
        // A sender on any node holding a live lease is sending it now.
        let retried = sqlx::query(&format!(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_us = {DB_NOW_US}, \
             updated_us = {DB_NOW_US}, lease_node = NULL, lease_until_us = NULL \
             WHERE id = $1 AND endpoint_id = $2 \
             AND (lease_until_us IS NULL OR lease_until_us < {DB_NOW_US})"
        ))
        .bind(delivery)
        .bind(endpoint)
        .execute(&self.pool)
        .await?;
        if retried.rows_affected() == 1 {
            return Ok(RetryOutcome::Queued);
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2)",
        )
        .bind(delivery)
        .bind(endpoint)
        .fetch_one(&self.pool)
        .await?;
        Ok(if exists {
            RetryOutcome::InFlight
        } else {
            RetryOutcome::NotFound
        })
    }

    async fn add_ping(&self, endpoint: Uuid, max_pending: u32) -> anyhow::Result<PingOutcome> {
        let now = micros(now());
        let mut tx = self.pool.begin().await?;
        // The endpoint's row, locked, so two pings at once cannot both pass the count, nor
        // can the endpoint go between this check and the insert.
        let found = sqlx::query("SELECT 1 FROM webhook_endpoints WHERE id = $1 FOR UPDATE")
            .bind(endpoint)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(PingOutcome::NotFound);
        }
        let pending: i64 = sqlx::query_scalar(PENDING_PINGS_SQL)
            .bind(endpoint)
            .fetch_one(&mut *tx)
            .await?;
        if pending >= i64::from(max_pending) {
            return Ok(PingOutcome::TooMany);
        }
        let event: i64 = sqlx::query_scalar(
            "INSERT INTO webhook_events (type, occurred_us) VALUES ('webhook.ping', $1) \
             RETURNING id",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let id: String = sqlx::query_scalar(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, \
             next_attempt_us, created_us, updated_us) \
             VALUES ('msg_' || replace(gen_random_uuid()::text, '-', ''), $1, $2, 'pending', \
             $3, $3, $3) RETURNING id",
        )
        .bind(endpoint)
        .bind(event)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(PingOutcome::Queued(id))
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: &Lease,
    ) -> anyhow::Result<Vec<OutgoingDelivery>> {
        // Fan out first, as many events as there is room to send (see the SQLite store).
        sqlx::query(FAN_OUT_SQL.as_str())
            .bind(i64::from(limit))
            .execute(&self.pool)
            .await?;
        let lease_us = lease.duration_us();
        let rows: Vec<OutgoingRow> = sqlx::query_as(&format!(
            "WITH due AS ( \
               SELECT d.id FROM webhook_deliveries d \
               JOIN webhook_endpoints e ON e.id = d.endpoint_id \
               WHERE d.state = 'pending' AND d.next_attempt_us <= {DB_NOW_US} AND e.enabled \
               AND (d.lease_until_us IS NULL OR d.lease_until_us < {DB_NOW_US}) \
               ORDER BY d.next_attempt_us LIMIT $1 FOR UPDATE OF d SKIP LOCKED), \
             claimed AS ( \
               UPDATE webhook_deliveries d SET lease_node = $2, \
               lease_until_us = {DB_NOW_US} + $3 FROM due WHERE d.id = due.id \
               RETURNING d.id, d.endpoint_id, d.event_id, d.attempts, d.created_us) \
             SELECT c.id AS delivery_id, c.endpoint_id, e.url, e.secret, e.previous_secret, \
             e.previous_until_us, ev.type AS event_type, ev.occurred_us, c.attempts, \
             c.created_us AS delivery_created_us, ev.job_id AS id, ev.owner_id, ev.owner, \
             ev.state, ev.progress, ev.bytes_done, ev.bytes_total, ev.filename, ev.size, \
             ev.sha256, ev.content_type, ev.metadata, ev.error, ev.created_us, ev.updated_us \
             FROM claimed c JOIN webhook_endpoints e ON e.id = c.endpoint_id \
             JOIN webhook_events ev ON ev.id = c.event_id"
        ))
        .bind(i64::from(limit))
        .bind(lease.node.as_str())
        .bind(lease_us)
        .fetch_all(&self.pool)
        .await?;
        let now_us = micros(now());
        // An unreadable delivery must not hold up the others claimed with it.
        Ok(rows
            .into_iter()
            .filter_map(|row| match row.into_delivery(now_us) {
                Ok(delivery) => Some(delivery),
                Err(error) => {
                    tracing::warn!(error = ?error, "skipping a delivery that cannot be read");
                    None
                }
            })
            .collect())
    }

    async fn prune_deliveries(&self, before: time::OffsetDateTime) -> anyhow::Result<u64> {
        let mut tx = self.pool.begin().await?;
        let pruned = sqlx::query(PRUNE_DELIVERIES_SQL)
            .bind(micros(before))
            .execute(&mut *tx)
            .await?;
        // Events fanned out that no delivery refers to any more.
        sqlx::query(
            "DELETE FROM webhook_events WHERE occurred_us < $1 AND NOT awaiting_fanout \
             AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
               WHERE d.event_id = webhook_events.id)",
        )
        .bind(micros(before))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pruned.rows_affected())
    }

    async fn release_claims(&self, node: &NodeId) -> anyhow::Result<u64> {
        let released = sqlx::query(RELEASE_CLAIMS_SQL)
            .bind(node.as_str())
            .execute(&self.pool)
            .await?;
        Ok(released.rows_affected())
    }

    async fn record_attempt(&self, attempt: &Attempt, lease: &Lease) -> anyhow::Result<()> {
        let state = attempt.state();
        let now = micros(now());
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, \
             next_attempt_us = COALESCE($2, next_attempt_us), last_status = $3, \
             last_error = $4, updated_us = $5, lease_node = NULL, lease_until_us = NULL \
             WHERE id = $6 AND lease_node = $7",
        )
        .bind(state.as_str())
        .bind(attempt.next_attempt.map(micros))
        .bind(attempt.status.map(i64::from))
        .bind(&attempt.error)
        .bind(now)
        .bind(&attempt.delivery_id)
        .bind(lease.node.as_str())
        .execute(&mut *tx)
        .await?;
        if recorded.rows_affected() == 1 {
            // Old values on the right: the run of failures before this attempt.
            sqlx::query(
                "UPDATE webhook_endpoints SET \
                 consecutive_failures = CASE WHEN $1 THEN 0 ELSE consecutive_failures + 1 END, \
                 disabled_reason = CASE WHEN NOT $1 AND enabled \
                   AND consecutive_failures + 1 >= $2 \
                   THEN 'disabled after ' || $2 || ' failed attempts in a row' \
                   ELSE disabled_reason END, \
                 enabled = CASE WHEN NOT $1 AND consecutive_failures + 1 >= $2 THEN FALSE \
                   ELSE enabled END, \
                 updated_us = GREATEST($3, updated_us + 1) WHERE id = $4",
            )
            .bind(attempt.delivered)
            .bind(to_i64(attempt.disable_after))
            .bind(now)
            .bind(attempt.endpoint_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
