//! What the stores keep for webhooks: endpoints, and the outbox: events that triggers on `jobs`
//! record in the same transaction as a job's change of state, fanned out into one delivery per
//! endpoint when a sender claims work (migrations 0012 and postgres/0006), claimed under a lease.
use super::{from_micros, micros, Lease, NodeId};
use crate::domain::{AccountId, JobId, JobStatus};
use anyhow::Context;
use async_trait::async_trait;
use time::OffsetDateTime;

/// Endpoints, their deliveries, and the sender's claims. Writes are durable on return.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Records a new endpoint if its account has fewer than `max_per_account`; false if not.
    async fn add_endpoint(
        &self,
        endpoint: &EndpointRecord,
        max_per_account: u32,
    ) -> anyhow::Result<bool>;
    /// An account's endpoints (every account's with `None`), oldest first.
    async fn endpoints(&self, account: Option<AccountId>) -> anyhow::Result<Vec<EndpointRecord>>;
    async fn endpoint(&self, id: uuid::Uuid) -> anyhow::Result<Option<EndpointRecord>>;
    /// Replaces an endpoint's settings (all but its id, account and creation time) if it was
    /// last changed at `read_at` (its `updated_at` when read); false if there is no such
    /// endpoint or it changed since (a PATCH racing the sender or another PATCH reads again).
    async fn update_endpoint(
        &self,
        endpoint: &EndpointRecord,
        read_at: OffsetDateTime,
    ) -> anyhow::Result<bool>;
    /// Removes an endpoint and its deliveries; false if there was none.
    async fn delete_endpoint(&self, id: uuid::Uuid) -> anyhow::Result<bool>;
    /// An endpoint's deliveries, newest first.
    async fn deliveries(
        &self,
        endpoint: uuid::Uuid,
        limit: u32,
    ) -> anyhow::Result<Vec<DeliveryRecord>>;
    /// Makes a delivery of `endpoint` pending again, due now (same `webhook-id`), unless a
    /// sender holds it this moment (sending it again then would send it twice).
    async fn retry_delivery(
        &self,
        endpoint: uuid::Uuid,
        delivery: &str,
    ) -> anyhow::Result<RetryOutcome>;
    /// Records a `webhook.ping` event and its delivery to `endpoint`, due now, unless the
    /// endpoint already has `max_pending` pings waiting or is gone (removed meanwhile).
    async fn add_ping(&self, endpoint: uuid::Uuid, max_pending: u32)
        -> anyhow::Result<PingOutcome>;
    /// Takes up to `limit` due deliveries of enabled endpoints under `lease`, oldest due first:
    /// pending ones whose next attempt has come and that no live sender holds. No delivery is
    /// held by two senders. First fans out up to `limit` of the oldest recorded events into
    /// deliveries, once each, to the enabled endpoints that want them and existed when they
    /// happened.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: &Lease,
    ) -> anyhow::Result<Vec<OutgoingDelivery>>;
    /// Lets go of the deliveries `node` holds but has not recorded (a sender stopping with
    /// attempts still out), so another node may send them at once rather than when their
    /// lease ends; how many. A receiver that got one meanwhile gets it again, same id.
    async fn release_claims(&self, node: &NodeId) -> anyhow::Result<u64>;
    /// Records an attempt of a delivery `lease.node` holds, and the endpoint's run of failures
    /// (disabling it at `disable_after` in a row). Releases the lease.
    async fn record_attempt(&self, attempt: &Attempt, lease: &Lease) -> anyhow::Result<()>;
    /// Removes deliveries finished (delivered or failed) before `before`, and events left with
    /// no delivery; returns how many deliveries went.
    async fn prune_deliveries(&self, before: OffsetDateTime) -> anyhow::Result<u64>;
}

/// What asking for a delivery again did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    Queued,
    /// A sender is sending it now; its outcome is recorded in a moment.
    InFlight,
    NotFound,
}

/// What asking for a ping did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    /// Queued, as the delivery with this id.
    Queued(String),
    /// The endpoint has as many pings waiting as it may.
    TooMany,
    NotFound,
}

/// An endpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRecord {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    /// Receives every account's jobs' events (admins only).
    pub all_accounts: bool,
    pub url: String,
    pub description: String,
    /// Space-separated event types, or `*`.
    pub events: String,
    /// `whsec_<base64>`.
    pub secret: String,
    /// The secret before the last rotation, which signs too until `previous_until`.
    pub previous_secret: Option<(String, OffsetDateTime)>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: u64,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(match text {
            "pending" => Self::Pending,
            "delivered" => Self::Delivered,
            "failed" => Self::Failed,
            other => anyhow::bail!("unknown delivery state {other:?}"),
        })
    }
}

/// A delivery as the log shows it.
#[derive(Clone, Debug)]
pub struct DeliveryRecord {
    /// Also the message's `webhook-id`.
    pub id: String,
    pub event_type: String,
    pub job_id: Option<JobId>,
    pub state: DeliveryState,
    pub attempts: u64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// `None` once delivered or failed.
    pub next_attempt_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A claimed delivery, with what sending it needs.
#[derive(Clone, Debug)]
pub struct OutgoingDelivery {
    pub id: String,
    pub endpoint_id: uuid::Uuid,
    pub url: String,
    pub secret: String,
    /// The previous secret while it still signs.
    pub previous_secret: Option<String>,
    pub event_type: String,
    pub occurred_at: OffsetDateTime,
    /// The job as it was when the event happened; `None` for a ping.
    pub job: Option<JobStatus>,
    /// Attempts made before this one.
    pub attempts: u64,
    pub created_at: OffsetDateTime,
}

/// The outcome of one attempt.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub delivery_id: String,
    pub endpoint_id: uuid::Uuid,
    /// The receiver's status code, if it answered.
    pub status: Option<u16>,
    /// Why it failed (bounded, no secrets); `None` when delivered.
    pub error: Option<String>,
    pub delivered: bool,
    /// When to try again; `None` with `delivered` false: failed for good.
    pub next_attempt: Option<OffsetDateTime>,
    /// Failed attempts in a row after which the endpoint is disabled.
    pub disable_after: u64,
}

impl Attempt {
    /// Where the delivery stands after this attempt.
    pub fn state(&self) -> DeliveryState {
        match (self.delivered, self.next_attempt) {
            (true, _) => DeliveryState::Delivered,
            (false, Some(_)) => DeliveryState::Pending,
            (false, None) => DeliveryState::Failed,
        }
    }
}

/// An endpoint's columns after its id, as both stores select and insert them.
pub(super) const ENDPOINT_FIELDS: &str = "account_id, all_accounts, url, description, events, \
     secret, previous_secret, previous_until_us, enabled, disabled_reason, consecutive_failures, \
     created_us, updated_us";

/// The previous secret and its end, as stored.
pub(super) fn previous_columns(endpoint: &EndpointRecord) -> (Option<String>, Option<i64>) {
    match &endpoint.previous_secret {
        Some((secret, until)) => (Some(secret.clone()), Some(micros(*until))),
        None => (None, None),
    }
}

/// The previous secret if it still signs at `now_us`.
pub(super) fn still_signing(
    secret: Option<String>,
    until_us: Option<i64>,
    now_us: i64,
) -> Option<String> {
    secret.filter(|_| until_us.is_some_and(|until| until > now_us))
}

/// An endpoint as both stores read it (PostgreSQL's UUID id selected as text).
#[derive(sqlx::FromRow)]
pub(super) struct EndpointRow {
    id: String,
    account_id: i64,
    all_accounts: bool,
    url: String,
    description: String,
    events: String,
    secret: String,
    previous_secret: Option<String>,
    previous_until_us: Option<i64>,
    enabled: bool,
    disabled_reason: Option<String>,
    consecutive_failures: i64,
    created_us: i64,
    updated_us: i64,
}

impl TryFrom<EndpointRow> for EndpointRecord {
    type Error = anyhow::Error;

    fn try_from(row: EndpointRow) -> anyhow::Result<Self> {
        Ok(EndpointRecord {
            id: uuid::Uuid::parse_str(&row.id).context("stored endpoint id")?,
            account_id: AccountId::new(row.account_id),
            all_accounts: row.all_accounts,
            url: row.url,
            description: row.description,
            events: row.events,
            secret: row.secret,
            previous_secret: match (row.previous_secret, row.previous_until_us) {
                (Some(secret), Some(until)) => Some((secret, from_micros(until)?)),
                _ => None,
            },
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            consecutive_failures: row.consecutive_failures.max(0) as u64,
            created_at: from_micros(row.created_us)?,
            updated_at: from_micros(row.updated_us)?,
        })
    }
}

/// A delivery with its event's type and job, as both stores read it (job ids as text).
#[derive(sqlx::FromRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_type: String,
    job_id: Option<String>,
    state: String,
    attempts: i64,
    next_attempt_us: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_us: i64,
    updated_us: i64,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = anyhow::Error;

    fn try_from(row: DeliveryRow) -> anyhow::Result<Self> {
        let state = DeliveryState::parse(&row.state)?;
        Ok(DeliveryRecord {
            id: row.id,
            event_type: row.event_type,
            job_id: row.job_id.as_deref().map(JobId::parse).transpose()?,
            state,
            attempts: row.attempts.max(0) as u64,
            last_status: row.last_status.and_then(|code| u16::try_from(code).ok()),
            last_error: row.last_error,
            next_attempt_at: (state == DeliveryState::Pending)
                .then(|| from_micros(row.next_attempt_us))
                .transpose()?,
            created_at: from_micros(row.created_us)?,
            updated_at: from_micros(row.updated_us)?,
        })
    }
}

/// Counts an endpoint's pings still waiting to go out (endpoint id bound first).
pub(super) const PENDING_PINGS_SQL: &str = "SELECT COUNT(*) FROM webhook_deliveries d \
     JOIN webhook_events ev ON ev.id = d.event_id \
     WHERE d.endpoint_id = $1 AND d.state = 'pending' AND ev.type = 'webhook.ping'";

/// Clears the leases of a node's unrecorded claims (node bound first).
pub(super) const RELEASE_CLAIMS_SQL: &str = "UPDATE webhook_deliveries \
     SET lease_node = NULL, lease_until_us = NULL WHERE lease_node = $1 AND state = 'pending'";

/// Deletes the deliveries finished before the cutoff (bound first).
pub(super) const PRUNE_DELIVERIES_SQL: &str = "DELETE FROM webhook_deliveries \
     WHERE state IN ('delivered', 'failed') AND updated_us < $1";
