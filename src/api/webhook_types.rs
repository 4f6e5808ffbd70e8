//! Webhook endpoints and their deliveries as the REST routes answer them and the Webhooks page
//! shows them: one definition for both.
use crate::domain::Timestamp;
use serde::{Deserialize, Serialize};

/// An endpoint.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    #[cfg_attr(feature = "ssr", schema(format = Uuid))]
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: Vec<String>,
    pub all_accounts: bool,
    /// False once disabled (by request, or after many failed attempts in a row: see
    /// `disabled_reason`); a disabled endpoint is sent nothing.
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Failed attempts since the last delivered one.
    pub consecutive_failures: u64,
    /// Until when the secret before the last rotation still signs beside the new one.
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub previous_secret_until: Option<Timestamp>,
    /// `whsec_<base64>`: only in the answer that made it (creation or rotation).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// One delivery of an event to an endpoint.
#[cfg_attr(feature = "ssr", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Also the message's `webhook-id`, the same on every attempt.
    pub id: String,
    /// `job.created`, `job.completed`, `job.failed`, `job.cancelled` or `webhook.ping`.
    pub event_type: String,
    #[cfg_attr(feature = "ssr", schema(format = Uuid))]
    pub job_id: Option<String>,
    /// `pending`, `delivered` or `failed` (for good).
    pub status: String,
    pub attempts: u64,
    /// The receiver's status code at the last attempt; null if it did not answer.
    pub last_response_code: Option<u16>,
    pub last_error: Option<String>,
    /// When the next attempt is due; null unless pending.
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339::option"))]
    #[cfg_attr(feature = "ssr", schema(value_type = Option<String>, format = DateTime))]
    pub next_attempt_at: Option<Timestamp>,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub created_at: Timestamp,
    #[cfg_attr(feature = "ssr", serde(with = "time::serde::rfc3339"))]
    #[cfg_attr(feature = "ssr", schema(value_type = String, format = DateTime))]
    pub updated_at: Timestamp,
}

/// An endpoint with its latest deliveries, as the Webhooks page lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookWithDeliveries {
    pub endpoint: Webhook,
    /// Newest first.
    pub recent: Vec<Delivery>,
}
