//! The SQLite side of `WebhookStore`: writes go through the store's one writer (as
//! `Change::Webhook`), reads through its pool; a claim fans events out into deliveries first.
//! SQLite serves one process, so a delivery held by another node id was held by an earlier,
//! dead process and may be claimed again at once.
use super::{
    super::webhooks::{
        previous_columns, still_signing, Attempt, DeliveryRecord, DeliveryRow, EndpointRecord,
        EndpointRow, OutgoingDelivery, PingOutcome, RetryOutcome, WebhookStore, ENDPOINT_FIELDS,
        PENDING_PINGS_SQL, PRUNE_DELIVERIES_SQL, RELEASE_CLAIMS_SQL,
    },
    from_micros, micros, now, Change, JobRow, SqliteStore, WriteOp, WriteOutcome,
};
use crate::domain::{AccountId, JobStatus};
use anyhow::Context;
use async_trait::async_trait;
use sqlx::{Connection, SqliteConnection};
use uuid::Uuid;

pub(super) enum WebhookWrite {
    AddEndpoint(Box<EndpointRecord>, u32),
    UpdateEndpoint(Box<EndpointRecord>, i64),
    DeleteEndpoint(Uuid),
    Retry(Uuid, String),
    Ping(Uuid, u32),
    Claim(u32, super::Lease),
    Release(super::NodeId),
    Record(Box<Attempt>, super::Lease),
    Prune(i64),
}

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    write: &WebhookWrite,
) -> anyhow::Result<WriteOutcome> {
    match write {
        WebhookWrite::AddEndpoint(endpoint, max) => {
            let (previous, previous_until) = previous_columns(endpoint);
            let added = sqlx::query(
                "INSERT INTO webhook_endpoints (id, account_id, all_accounts, url, description, \
                 events, secret, previous_secret, previous_until_us, enabled, disabled_reason, \
                 consecutive_failures, created_us, updated_us) \
                 SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
                 WHERE (SELECT COUNT(*) FROM webhook_endpoints WHERE account_id = ?) < ?",
            )
            .bind(endpoint.id.to_string())
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
            .bind(super::to_i64(endpoint.consecutive_failures))
            .bind(micros(endpoint.created_at))
            .bind(micros(endpoint.updated_at))
            .bind(endpoint.account_id.get())
            .bind(i64::from(*max))
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Saved(added.rows_affected() == 1))
        }
        WebhookWrite::UpdateEndpoint(endpoint, read_at_us) => {
            let (previous, previous_until) = previous_columns(endpoint);
            let updated = sqlx::query(
                "UPDATE webhook_endpoints SET all_accounts = ?, url = ?, description = ?, \
                 events = ?, secret = ?, previous_secret = ?, previous_until_us = ?, \
                 enabled = ?, disabled_reason = ?, consecutive_failures = ?, updated_us = ? \
                 WHERE id = ? AND updated_us = ?",
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
            .bind(super::to_i64(endpoint.consecutive_failures))
            .bind(micros(endpoint.updated_at))
            .bind(endpoint.id.to_string())
            .bind(read_at_us)
            .execute(&mut *conn)
            .await?;
            Ok(WriteOutcome::Saved(updated.rows_affected() == 1))
        }
        WebhookWrite::DeleteEndpoint(id) => {
            let mut tx = conn.begin().await?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = ?")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Saved(deleted.rows_affected() == 1))
        }
        WebhookWrite::Retry(endpoint, delivery) => {
            let now = micros(now());
            // The lease's own end, not its node: in this one process a live lease is this
            // sender's, mid-attempt.
            let held: Option<bool> = sqlx::query_scalar(
                "SELECT lease_until_us IS NOT NULL AND lease_until_us >= ? \
                 FROM webhook_deliveries WHERE id = ? AND endpoint_id = ?",
            )
            .bind(now)
            .bind(delivery)
            .bind(endpoint.to_string())
            .fetch_optional(&mut *conn)
            .await?;
            let outcome = match held {
                None => RetryOutcome::NotFound,
                Some(true) => RetryOutcome::InFlight,
                Some(false) => {
                    sqlx::query(
                        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_us = ?, \
                         updated_us = ?, lease_node = NULL, lease_until_us = NULL WHERE id = ?",
                    )
                    .bind(now)
                    .bind(now)
                    .bind(delivery)
                    .execute(&mut *conn)
                    .await?;
                    RetryOutcome::Queued
                }
            };
            Ok(WriteOutcome::Retried(outcome))
        }
        WebhookWrite::Ping(endpoint, max_pending) => {
            let now = micros(now());
            let found: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = ?)")
                    .bind(endpoint.to_string())
                    .fetch_one(&mut *conn)
                    .await?;
            if !found {
                return Ok(WriteOutcome::Pinged(PingOutcome::NotFound));
            }
            let pending: i64 = sqlx::query_scalar(PENDING_PINGS_SQL)
                .bind(endpoint.to_string())
                .fetch_one(&mut *conn)
                .await?;
            if pending >= i64::from(*max_pending) {
                return Ok(WriteOutcome::Pinged(PingOutcome::TooMany));
            }
            let mut tx = conn.begin().await?;
            let event: i64 = sqlx::query_scalar(
                "INSERT INTO webhook_events (type, occurred_us) VALUES ('webhook.ping', ?) \
                 RETURNING id",
            )
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            let id: String = sqlx::query_scalar(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, \
                 next_attempt_us, created_us, updated_us) \
                 VALUES ('msg_' || lower(hex(randomblob(16))), ?, ?, 'pending', ?, ?, ?) \
                 RETURNING id",
            )
            .bind(endpoint.to_string())
            .bind(event)
            .bind(now)
            .bind(now)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Pinged(PingOutcome::Queued(id)))
        }
        WebhookWrite::Claim(limit, lease) => {
            let now = micros(now());
            let mut tx = conn.begin().await?;
            // Fan out first, as many events as there is room to send: under a backlog the
            // events wait as they are, one row each, instead of as rows nobody can send yet.
            sqlx::query(FAN_OUT_SQL.as_str())
                .bind(i64::from(*limit))
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE webhook_fanout SET through = COALESCE((SELECT MAX(id) FROM \
                 (SELECT id FROM webhook_events WHERE id > through ORDER BY id LIMIT ?)), \
                 through)",
            )
            .bind(i64::from(*limit))
            .execute(&mut *tx)
            .await?;
            let claimed: Vec<String> = sqlx::query_scalar(
                "UPDATE webhook_deliveries SET lease_node = ?, lease_until_us = ? \
                 WHERE id IN (SELECT d.id FROM webhook_deliveries d \
                   JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                   WHERE d.state = 'pending' AND d.next_attempt_us <= ? AND e.enabled = 1 \
                   AND (d.lease_node IS NULL OR d.lease_node IS NOT ? OR d.lease_until_us < ?) \
                   ORDER BY d.next_attempt_us LIMIT ?) \
                 RETURNING id",
            )
            .bind(lease.node.as_str())
            .bind(now.saturating_add(lease.duration_us()))
            .bind(now)
            .bind(lease.node.as_str())
            .bind(now)
            .bind(i64::from(*limit))
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Webhook(claimed))
        }
        WebhookWrite::Release(node) => {
            let released = sqlx::query(RELEASE_CLAIMS_SQL)
                .bind(node.as_str())
                .execute(&mut *conn)
                .await?;
            Ok(WriteOutcome::Released(released.rows_affected()))
        }
        WebhookWrite::Record(attempt, lease) => {
            let now = micros(now());
            let state = attempt.state();
            let mut tx = conn.begin().await?;
            let recorded = sqlx::query(
                "UPDATE webhook_deliveries SET state = ?, attempts = attempts + 1, \
                 next_attempt_us = COALESCE(?, next_attempt_us), last_status = ?, \
                 last_error = ?, updated_us = ?, lease_node = NULL, lease_until_us = NULL \
                 WHERE id = ? AND lease_node = ?",
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
                     consecutive_failures = CASE WHEN ?1 THEN 0 ELSE consecutive_failures + 1 END, \
                     disabled_reason = CASE WHEN NOT ?1 AND enabled = 1 \
                       AND consecutive_failures + 1 >= ?2 \
                       THEN 'disabled after ' || ?2 || ' failed attempts in a row' \
                       ELSE disabled_reason END, \
                     enabled = CASE WHEN NOT ?1 AND consecutive_failures + 1 >= ?2 THEN 0 \
                       ELSE enabled END, \
                     updated_us = MAX(?3, updated_us + 1) WHERE id = ?4",
                )
                .bind(attempt.delivered)
                .bind(super::to_i64(attempt.disable_after))
                .bind(now)
                .bind(attempt.endpoint_id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(WriteOutcome::Done)
        }
        WebhookWrite::Prune(before_us) => {
            let mut tx = conn.begin().await?;
            let pruned = sqlx::query(PRUNE_DELIVERIES_SQL)
                .bind(before_us)
                .execute(&mut *tx)
                .await?;
            // Events the fan-out has passed that no delivery refers to any more.
            sqlx::query(&format!(
                "DELETE FROM webhook_events WHERE occurred_us < ? AND NOT ({PAST_CURSOR}) \
                 AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d \
                   WHERE d.event_id = webhook_events.id)"
            ))
            .bind(before_us)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(WriteOutcome::Pruned(pruned.rows_affected()))
        }
    }
}

/// Makes the deliveries of the oldest events past the fan-out cursor (as many events as bound
/// first): one per endpoint that wants the event. The caller moves the cursor past the same
/// events in the same transaction (the one writer sees the same events in both statements),
/// so an event is fanned out once.
static FAN_OUT_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, state, \
         next_attempt_us, created_us, updated_us) \
         SELECT {DELIVERY_ID}, e.id, ev.id, 'pending', ev.occurred_us, ev.occurred_us, \
         ev.occurred_us \
         FROM (SELECT id, type, job_id, owner_id, occurred_us FROM webhook_events \
               WHERE {PAST_CURSOR} ORDER BY id LIMIT ?) ev \
         JOIN webhook_endpoints e ON {WANTS_EVENT}"
    )
});

/// The events not fanned out yet (a ping's among them: it was made with its delivery, which
/// `WANTS_EVENT` leaves alone).
const PAST_CURSOR: &str = "id > (SELECT through FROM webhook_fanout)";

/// Whether endpoint `e` gets event `ev`: a job's event (a ping is made with its delivery),
/// the endpoint enabled, subscribed to its type and account, and registered by the time it
/// happened.
const WANTS_EVENT: &str = "ev.job_id IS NOT NULL AND e.enabled = 1 \
     AND (e.all_accounts = 1 OR e.account_id = ev.owner_id) \
     AND (e.events = '*' OR instr(' ' || e.events || ' ', ' ' || ev.type || ' ') > 0) \
     AND e.created_us <= ev.occurred_us";

/// The `webhook-id` of event `ev`'s delivery to endpoint `e`, known before the delivery is
/// made (the log shows deliveries still waiting under the id they will be sent with): the
/// event's number, which grows, so new rows append to the id's index, then the endpoint's.
const DELIVERY_ID: &str = "'msg_' || printf('%016x', ev.id) || replace(e.id, '-', '')";

/// A claimed delivery with its endpoint and event; the job's columns are those of `JobRow`
/// (NULL for a ping).
#[derive(sqlx::FromRow)]
struct OutgoingRow {
    delivery_id: String,
    endpoint_id: String,
    url: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until_us: Option<i64>,
    event_type: String,
    occurred_us: i64,
    attempts: i64,
    delivery_created_us: i64,
    id: Option<String>,
    owner_id: Option<i64>,
    owner: Option<String>,
    state: Option<String>,
    progress: Option<i64>,
    bytes_done: Option<i64>,
    bytes_total: Option<i64>,
    filename: Option<String>,
    size: Option<i64>,
    sha256: Option<String>,
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
            endpoint_id: Uuid::parse_str(&self.endpoint_id).context("stored endpoint id")?,
            url: self.url,
            secret: self.secret,
            previous_secret: still_signing(self.previous_secret, self.previous_until_us, now_us),
            event_type: self.event_type,
            occurred_at: from_micros(self.occurred_us)?,
            job,
            attempts: self.attempts.max(0) as u64,
            created_at: from_micros(self.delivery_created_us)?,
        })
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn add_endpoint(
        &self,
        endpoint: &EndpointRecord,
        max_per_account: u32,
    ) -> anyhow::Result<bool> {
        let write = WebhookWrite::AddEndpoint(Box::new(endpoint.clone()), max_per_account);
        super::saved(self.write(WriteOp::Change(Change::Webhook(write))).await?)
    }

    async fn endpoints(&self, account: Option<AccountId>) -> anyhow::Result<Vec<EndpointRecord>> {
        let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
            "SELECT id, {ENDPOINT_FIELDS} FROM webhook_endpoints \
             WHERE ? IS NULL OR account_id = ? ORDER BY created_us, id"
        ))
        .bind(account.map(AccountId::get))
        .bind(account.map(AccountId::get))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(EndpointRecord::try_from).collect()
    }

    async fn endpoint(&self, id: Uuid) -> anyhow::Result<Option<EndpointRecord>> {
        let row: Option<EndpointRow> = sqlx::query_as(&format!(
            "SELECT id, {ENDPOINT_FIELDS} FROM webhook_endpoints WHERE id = ?"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.readers)
        .await?;
        row.map(EndpointRecord::try_from).transpose()
    }

    async fn update_endpoint(
        &self,
        endpoint: &EndpointRecord,
        read_at: time::OffsetDateTime,
    ) -> anyhow::Result<bool> {
        let write = WebhookWrite::UpdateEndpoint(Box::new(endpoint.clone()), micros(read_at));
        super::saved(self.write(WriteOp::Change(Change::Webhook(write))).await?)
    }

    async fn delete_endpoint(&self, id: Uuid) -> anyhow::Result<bool> {
        let write = WebhookWrite::DeleteEndpoint(id);
        super::saved(self.write(WriteOp::Change(Change::Webhook(write))).await?)
    }

    async fn deliveries(&self, endpoint: Uuid, limit: u32) -> anyhow::Result<Vec<DeliveryRecord>> {
        // With the deliveries made so far, the newest events still waiting to be fanned out
        // to this endpoint, as the pending deliveries they will be.
        let rows: Vec<DeliveryRow> = sqlx::query_as(&format!(
            "SELECT * FROM ( \
               SELECT * FROM (SELECT d.id, ev.type AS event_type, ev.job_id, d.state, \
                 d.attempts, d.next_attempt_us, d.last_status, d.last_error, d.created_us, \
                 d.updated_us \
                 FROM webhook_deliveries d JOIN webhook_events ev ON ev.id = d.event_id \
                 WHERE d.endpoint_id = ?1 ORDER BY d.created_us DESC, d.id DESC LIMIT ?2) \
               UNION ALL \
               SELECT * FROM (SELECT {DELIVERY_ID} AS id, ev.type AS event_type, ev.job_id, \
                 'pending' AS state, 0 AS attempts, ev.occurred_us AS next_attempt_us, \
                 NULL AS last_status, NULL AS last_error, ev.occurred_us AS created_us, \
                 ev.occurred_us AS updated_us \
                 FROM webhook_events ev JOIN webhook_endpoints e ON e.id = ?1 \
                 AND {WANTS_EVENT} \
                 WHERE ev.id > (SELECT through FROM webhook_fanout) \
                 ORDER BY ev.id DESC LIMIT ?2)) \
             ORDER BY created_us DESC, id DESC LIMIT ?2"
        ))
        .bind(endpoint.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(DeliveryRecord::try_from).collect()
    }

    async fn retry_delivery(&self, endpoint: Uuid, delivery: &str) -> anyhow::Result<RetryOutcome> {
        let write = WebhookWrite::Retry(endpoint, delivery.to_owned());
        match self.write(WriteOp::Change(Change::Webhook(write))).await? {
            WriteOutcome::Retried(outcome) => Ok(outcome),
            _ => anyhow::bail!("unexpected write outcome"),
        }
    }

    async fn add_ping(&self, endpoint: Uuid, max_pending: u32) -> anyhow::Result<PingOutcome> {
        let write = WebhookWrite::Ping(endpoint, max_pending);
        match self.write(WriteOp::Change(Change::Webhook(write))).await? {
            WriteOutcome::Pinged(outcome) => Ok(outcome),
            _ => anyhow::bail!("unexpected write outcome"),
        }
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: &super::Lease,
    ) -> anyhow::Result<Vec<OutgoingDelivery>> {
        // A read first: the writer is shared with every job write, so an idle poll must not
        // queue there.
        let now_us = micros(now());
        let due: bool = sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.state = 'pending' AND d.next_attempt_us <= ? AND e.enabled = 1 \
             AND (d.lease_node IS NULL OR d.lease_node IS NOT ? OR d.lease_until_us < ?)) \
             OR EXISTS (SELECT 1 FROM webhook_events WHERE {PAST_CURSOR})",
        ))
        .bind(now_us)
        .bind(lease.node.as_str())
        .bind(now_us)
        .fetch_one(&self.readers)
        .await?;
        if !due {
            return Ok(Vec::new());
        }
        let write = WebhookWrite::Claim(limit, lease.clone());
        let WriteOutcome::Webhook(ids) =
            self.write(WriteOp::Change(Change::Webhook(write))).await?
        else {
            anyhow::bail!("unexpected write outcome");
        };
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let row: Option<OutgoingRow> = sqlx::query_as(
                "SELECT d.id AS delivery_id, d.endpoint_id, e.url, e.secret, e.previous_secret, \
                 e.previous_until_us, ev.type AS event_type, ev.occurred_us, d.attempts, \
                 d.created_us AS delivery_created_us, ev.job_id AS id, ev.owner_id, ev.owner, \
                 ev.state, ev.progress, ev.bytes_done, ev.bytes_total, ev.filename, ev.size, \
                 ev.sha256, ev.content_type, ev.metadata, ev.error, ev.created_us, ev.updated_us \
                 FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id \
                 JOIN webhook_events ev ON ev.id = d.event_id WHERE d.id = ?",
            )
            .bind(&id)
            .fetch_optional(&self.readers)
            .await?;
            // Gone (its endpoint was deleted since the claim) or unreadable: one delivery must
            // not hold up the others claimed with it.
            match row.map(|row| row.into_delivery(now_us)) {
                Some(Ok(delivery)) => claimed.push(delivery),
                Some(Err(error)) => {
                    tracing::warn!(error = ?error, "skipping a delivery that cannot be read");
                }
                None => {}
            }
        }
        Ok(claimed)
    }

    async fn prune_deliveries(&self, before: time::OffsetDateTime) -> anyhow::Result<u64> {
        let write = WebhookWrite::Prune(micros(before));
        match self.write(WriteOp::Change(Change::Webhook(write))).await? {
            WriteOutcome::Pruned(count) => Ok(count),
            _ => anyhow::bail!("unexpected write outcome"),
        }
    }

    async fn release_claims(&self, node: &super::NodeId) -> anyhow::Result<u64> {
        let write = WebhookWrite::Release(node.clone());
        match self.write(WriteOp::Change(Change::Webhook(write))).await? {
            WriteOutcome::Released(count) => Ok(count),
            _ => anyhow::bail!("unexpected write outcome"),
        }
    }

    async fn record_attempt(&self, attempt: &Attempt, lease: &super::Lease) -> anyhow::Result<()> {
        let write = WebhookWrite::Record(Box::new(attempt.clone()), lease.clone());
        self.write(WriteOp::Change(Change::Webhook(write))).await?;
        Ok(())
    }
}
