//! What the stores keep for webhooks: endpoints, and the outbox of deliveries that triggers on
//! `jobs` fill in the same transaction as a job's change of state (migrations 0010 and
//! postgres/0004), claimed by senders under a lease.
use super::Lease;
use crate::domain::{AccountId, JobStatus};
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
    /// Replaces an endpoint's settings (all but its id, account and creation time); false if
    /// there is no such endpoint.
    async fn update_endpoint(&self, endpoint: &EndpointRecord) -> anyhow::Result<bool>;
    /// Removes an endpoint and its deliveries; false if there was none.
    async fn delete_endpoint(&self, id: uuid::Uuid) -> anyhow::Result<bool>;
    /// An endpoint's deliveries, newest first.
    async fn deliveries(
        &self,
        endpoint: uuid::Uuid,
        limit: u32,
    ) -> anyhow::Result<Vec<DeliveryRecord>>;
    /// Makes a delivery of `endpoint` pending again, due now (same `webhook-id`); false if
    /// there is no such delivery.
    async fn retry_delivery(&self, endpoint: uuid::Uuid, delivery: &str) -> anyhow::Result<bool>;
    /// Records a `webhook.ping` event and its delivery to `endpoint`, due now; its id.
    async fn add_ping(&self, endpoint: uuid::Uuid) -> anyhow::Result<String>;
    /// Takes up to `limit` due deliveries of enabled endpoints under `lease`, oldest due first:
    /// pending ones whose next attempt has come and that no live sender holds. No delivery is
    /// held by two senders.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease: &Lease,
    ) -> anyhow::Result<Vec<OutgoingDelivery>>;
    /// Records an attempt of a delivery `lease.node` holds, and the endpoint's run of failures
    /// (disabling it at `disable_after` in a row). Releases the lease.
    async fn record_attempt(&self, attempt: &Attempt, lease: &Lease) -> anyhow::Result<()>;
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
    pub job_id: Option<crate::domain::JobId>,
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
