//! Webhooks: accounts' endpoints (registration, rotation, the delivery log and replay) and the
//! operator's admission hook. The events themselves are recorded by the store in the same
//! transaction as each job's change of state; `sender` delivers them from there, signed as
//! `signing` says, to destinations `guard` lets through.
pub mod admission;
pub mod guard;
pub mod sender;
pub mod signing;

use super::store::{now, DeliveryRecord, EndpointRecord, PingOutcome, RetryOutcome, WebhookStore};
use crate::{
    api::{Delivery, Webhook},
    domain::AccountId,
};
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;

/// The event types an endpoint may subscribe to; `*` means all of them.
pub const EVENT_TYPES: [&str; 4] = [
    "job.created",
    "job.completed",
    "job.failed",
    "job.cancelled",
];
/// Every event, as an endpoint's subscription.
pub const ALL_EVENTS: &str = "*";
/// Endpoints one account may have.
pub const MAX_ENDPOINTS_PER_ACCOUNT: u32 = 20;
/// The longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 500;
/// Most entries in an endpoint's event list.
pub const MAX_EVENTS: usize = 8;
/// How long the old secret keeps signing after a rotation, so receivers can switch over.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);
/// Most deliveries one page of the log shows.
pub const MAX_DELIVERIES_PAGE: u32 = 200;
/// Pings one endpoint may have waiting at once: a ping is a check, not a flood.
pub const MAX_PENDING_PINGS: u32 = 5;
/// How often a change is tried again when the endpoint changed under it.
const UPDATE_TRIES: usize = 5;

/// Why a request about an endpoint was refused; the message is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no such webhook endpoint")]
    NotFound,
    #[error("no such delivery")]
    NoSuchDelivery,
    #[error("{0}")]
    Invalid(String),
    #[error("only an admin's endpoint may receive every account's events")]
    AdminOnly,
    #[error("an account may have at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints")]
    TooMany,
    #[error("the endpoint is disabled; enable it (PATCH {{\"enabled\": true}}) first")]
    Disabled,
    #[error("the endpoint already has {MAX_PENDING_PINGS} pings waiting to go out")]
    TooManyPings,
    #[error("the delivery is being sent right now; its outcome shows in the log in a moment")]
    InFlight,
    #[error("the endpoint kept changing while this change was applied; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// A registration, as asked for (not yet checked).
#[derive(Debug)]
pub struct NewEndpoint {
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub all_accounts: bool,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct EndpointChange {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
    pub all_accounts: Option<bool>,
    /// `true` re-enables a disabled endpoint (its run of failures starts again from zero).
    pub enabled: Option<bool>,
    /// A new secret; the old one signs too for `ROTATION_OVERLAP`.
    pub rotate_secret: bool,
}

/// Who asks: endpoints belong to one account, and only admins may receive every account's.
#[derive(Clone, Copy, Debug)]
pub struct Requester {
    pub account_id: AccountId,
    pub is_admin: bool,
}

/// The endpoints service, over the store.
pub struct Webhooks {
    store: Arc<dyn WebhookStore>,
    allow_private: bool,
}

impl Webhooks {
    pub fn new(store: Arc<dyn WebhookStore>, allow_private: bool) -> Self {
        Self {
            store,
            allow_private,
        }
    }

    /// Registers an endpoint; the answer carries its secret, which is shown only now.
    #[tracing::instrument(skip_all, fields(account = requester.account_id.get()))]
    pub async fn create(
        &self,
        requester: Requester,
        new: NewEndpoint,
    ) -> Result<EndpointRecord, EndpointError> {
        if new.all_accounts && !requester.is_admin {
            return Err(EndpointError::AdminOnly);
        }
        let url = self.checked_url(&new.url).await?;
        let events = checked_events(&new.events)?;
        let description = checked_description(new.description.unwrap_or_default())?;
        let at = now();
        let endpoint = EndpointRecord {
            id: uuid::Uuid::now_v7(),
            account_id: requester.account_id,
            all_accounts: new.all_accounts,
            url,
            description,
            events,
            secret: signing::generate_secret(),
            previous_secret: None,
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: at,
            updated_at: at,
        };
        if !self
            .store
            .add_endpoint(&endpoint, MAX_ENDPOINTS_PER_ACCOUNT)
            .await?
        {
            return Err(EndpointError::TooMany);
        }
        tracing::info!(endpoint = %endpoint.id, "webhook endpoint registered");
        Ok(endpoint)
    }

    /// The requester's endpoints, oldest first.
    pub async fn list(&self, requester: Requester) -> Result<Vec<EndpointRecord>, EndpointError> {
        Ok(self.store.endpoints(Some(requester.account_id)).await?)
    }

    /// One of the requester's endpoints; another account's is `NotFound`, as if it did not
    /// exist.
    pub async fn get(
        &self,
        requester: Requester,
        id: uuid::Uuid,
    ) -> Result<EndpointRecord, EndpointError> {
        match self.store.endpoint(id).await? {
            Some(endpoint) if endpoint.account_id == requester.account_id => Ok(endpoint),
            _ => Err(EndpointError::NotFound),
        }
    }

    /// Applies a change; the answer carries the new secret when it was rotated. The stored
    /// row is replaced only if nothing changed it since it was read (the sender counts
    /// failures and disables endpoints meanwhile), else the change is applied again to a
    /// fresh read.
    #[tracing::instrument(skip_all, fields(endpoint = %id))]
    pub async fn update(
        &self,
        requester: Requester,
        id: uuid::Uuid,
        change: EndpointChange,
    ) -> Result<EndpointRecord, EndpointError> {
        if change.all_accounts == Some(true) && !requester.is_admin {
            return Err(EndpointError::AdminOnly);
        }
        // Checked once: a URL's check resolves its name, which is slow.
        let url = match &change.url {
            Some(url) => Some(self.checked_url(url).await?),
            None => None,
        };
        let events = change.events.as_deref().map(checked_events).transpose()?;
        let description = change.description.map(checked_description).transpose()?;
        for _ in 0..UPDATE_TRIES {
            let mut endpoint = self.get(requester, id).await?;
            let read_at = endpoint.updated_at;
            if let Some(url) = &url {
                endpoint.url = url.clone();
            }
            if let Some(events) = &events {
                endpoint.events = events.clone();
            }
            if let Some(description) = &description {
                endpoint.description = description.clone();
            }
            if let Some(all) = change.all_accounts {
                endpoint.all_accounts = all;
            }
            match change.enabled {
                Some(true) => {
                    endpoint.enabled = true;
                    endpoint.disabled_reason = None;
                    endpoint.consecutive_failures = 0;
                }
                Some(false) => {
                    endpoint.enabled = false;
                    endpoint.disabled_reason = Some("disabled by request".to_owned());
                }
                None => {}
            }
            // Strictly later than the read, so the next change can tell this one happened.
            let at = now().max(read_at + Duration::from_micros(1));
            if change.rotate_secret {
                let old = std::mem::replace(&mut endpoint.secret, signing::generate_secret());
                endpoint.previous_secret = Some((old, at + ROTATION_OVERLAP));
            }
            endpoint.updated_at = at;
            if self.store.update_endpoint(&endpoint, read_at).await? {
                if change.rotate_secret {
                    tracing::info!("webhook secret rotated");
                }
                return Ok(endpoint);
            }
        }
        Err(EndpointError::Contended)
    }

    pub async fn delete(&self, requester: Requester, id: uuid::Uuid) -> Result<(), EndpointError> {
        self.get(requester, id).await?;
        if self.store.delete_endpoint(id).await? {
            Ok(())
        } else {
            Err(EndpointError::NotFound)
        }
    }

    /// The endpoint's deliveries, newest first.
    pub async fn deliveries(
        &self,
        requester: Requester,
        id: uuid::Uuid,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, EndpointError> {
        self.get(requester, id).await?;
        Ok(self
            .store
            .deliveries(id, limit.clamp(1, MAX_DELIVERIES_PAGE))
            .await?)
    }

    /// Sends a delivery again now, with its original `webhook-id`.
    pub async fn retry(
        &self,
        requester: Requester,
        id: uuid::Uuid,
        delivery: &str,
    ) -> Result<(), EndpointError> {
        self.get(requester, id).await?;
        match self.store.retry_delivery(id, delivery).await? {
            RetryOutcome::Queued => Ok(()),
            RetryOutcome::InFlight => Err(EndpointError::InFlight),
            RetryOutcome::NotFound => Err(EndpointError::NoSuchDelivery),
        }
    }

    /// Queues a `webhook.ping` for the endpoint; the delivery's id. A disabled endpoint is
    /// sent nothing, so its ping would only wait; it is refused instead.
    pub async fn ping(
        &self,
        requester: Requester,
        id: uuid::Uuid,
    ) -> Result<String, EndpointError> {
        if !self.get(requester, id).await?.enabled {
            return Err(EndpointError::Disabled);
        }
        match self.store.add_ping(id, MAX_PENDING_PINGS).await? {
            PingOutcome::Queued(delivery) => Ok(delivery),
            PingOutcome::TooMany => Err(EndpointError::TooManyPings),
            // Removed since it was read above.
            PingOutcome::NotFound => Err(EndpointError::NotFound),
        }
    }

    async fn checked_url(&self, text: &str) -> Result<String, EndpointError> {
        let url = guard::parse_url(text.trim())
            .map_err(|refused| EndpointError::Invalid(refused.to_string()))?;
        guard::check_destination(&url, self.allow_private)
            .await
            .map_err(|refused| EndpointError::Invalid(refused.to_string()))?;
        Ok(url.to_string())
    }
}

/// `["*"]` or known event types, at most `MAX_EVENTS`, stored space-separated (`*` alone
/// when it is among them).
fn checked_events(events: &[String]) -> Result<String, EndpointError> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(EndpointError::Invalid(format!(
            "events must list 1 to {MAX_EVENTS} of {}, or \"*\"",
            EVENT_TYPES.join(", ")
        )));
    }
    let mut chosen: Vec<&str> = Vec::new();
    for event in events {
        if event == ALL_EVENTS {
            return Ok(ALL_EVENTS.to_owned());
        }
        let Some(&known) = EVENT_TYPES.iter().find(|known| **known == event.as_str()) else {
            return Err(EndpointError::Invalid(format!(
                "unknown event type {:?}; known: {}, or \"*\"",
                event.chars().take(64).collect::<String>(),
                EVENT_TYPES.join(", ")
            )));
        };
        if !chosen.contains(&known) {
            chosen.push(known);
        }
    }
    Ok(chosen.join(" "))
}

fn checked_description(description: String) -> Result<String, EndpointError> {
    if description.len() > MAX_DESCRIPTION_BYTES || description.chars().any(char::is_control) {
        return Err(EndpointError::Invalid(format!(
            "description must be at most {MAX_DESCRIPTION_BYTES} bytes of text without control characters"
        )));
    }
    Ok(description)
}

/// The API's view of a stored endpoint (the REST routes' and the page's); its secret only
/// when it was just made.
pub fn endpoint_view(endpoint: EndpointRecord, show_secret: bool) -> Webhook {
    let now = OffsetDateTime::now_utc();
    Webhook {
        id: endpoint.id.to_string(),
        previous_secret_until: previous_signs(&endpoint, now)
            .then(|| endpoint.previous_secret.as_ref().map(|(_, until)| *until))
            .flatten(),
        url: endpoint.url,
        description: endpoint.description,
        events: event_list(&endpoint.events),
        all_accounts: endpoint.all_accounts,
        enabled: endpoint.enabled,
        disabled_reason: endpoint.disabled_reason,
        consecutive_failures: endpoint.consecutive_failures,
        secret: show_secret.then_some(endpoint.secret),
        created_at: endpoint.created_at,
        updated_at: endpoint.updated_at,
    }
}

impl From<DeliveryRecord> for Delivery {
    fn from(delivery: DeliveryRecord) -> Self {
        Delivery {
            id: delivery.id,
            event_type: delivery.event_type,
            job_id: delivery.job_id.map(|id| id.to_string()),
            status: delivery.state.as_str().to_owned(),
            attempts: delivery.attempts,
            last_response_code: delivery.last_status,
            last_error: delivery.last_error,
            next_attempt_at: delivery.next_attempt_at,
            created_at: delivery.created_at,
            updated_at: delivery.updated_at,
        }
    }
}

/// The stored event list as the API shows it.
pub fn event_list(events: &str) -> Vec<String> {
    events.split(' ').map(str::to_owned).collect()
}

/// Whether the previous secret still signs at `at`.
pub fn previous_signs(endpoint: &EndpointRecord, at: OffsetDateTime) -> bool {
    endpoint
        .previous_secret
        .as_ref()
        .is_some_and(|(_, until)| *until > at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_are_checked_and_normalised() {
        let list = |events: &[&str]| {
            checked_events(&events.iter().map(|e| e.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            list(&["job.completed", "job.completed"]).unwrap(),
            "job.completed"
        );
        assert_eq!(list(&["job.failed", "*"]).unwrap(), "*");
        assert!(list(&[]).is_err());
        assert!(list(&["job.exploded"]).is_err());
        assert!(list(&["job.created"; 9]).is_err());
    }
}
