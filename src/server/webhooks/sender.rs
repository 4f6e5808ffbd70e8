//! The sender: takes due deliveries from the outbox under a lease (so across nodes each is
//! sent by one at a time), posts each signed message with a 10 s timeout, and records the
//! outcome: delivered on 2xx; on no answer, 408, 429 or 5xx another attempt after an
//! exponential, jittered delay (the first `retry_base`, doubling up to an hour) until about a
//! day has passed; failed for good on any other answer. Runs on its own tasks with bounded
//! concurrency, so a slow receiver never holds up a request. On shutdown it waits briefly for
//! attempts in flight, then hands the rest back.
use super::{guard, signing};
use crate::server::store::{Attempt, Lease, NodeId, OutgoingDelivery, WebhookStore};
use http_client::{header, redirect, Client, StatusCode};
use std::{sync::Arc, time::Duration};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// How long one attempt may take, connection and answer included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(3600);
/// A delivery whose next attempt would start later than this after it was recorded is failed.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// A backstop on attempts, whatever the delays (with the default base a day takes ~33).
pub const MAX_ATTEMPTS: u64 = 60;
/// Deliveries this node sends at once.
pub const MAX_IN_FLIGHT: usize = 32;
/// The most of a receiver's answer that is read (then the connection is dropped).
const MAX_ANSWER_BYTES: usize = 4 * 1024;
/// How often an idle sender looks for due deliveries.
const POLL_EVERY: Duration = Duration::from_millis(100);
/// How long finished deliveries stay in the log.
pub const DELIVERY_LOG_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often finished deliveries older than that are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// A claim's lease: past one attempt's timeout, so a live sender is never overtaken; a node
/// that stops leaves its claims to others after this.
const CLAIM_LEASE: Duration = Duration::from_secs(60);

/// What the sender runs on.
#[derive(Clone, Debug)]
pub struct SenderSettings {
    pub retry_base: Duration,
    pub allow_private: bool,
    /// Failed attempts in a row after which an endpoint is disabled.
    pub disable_after: u64,
}

/// The HTTP client deliveries (and the admission hook) go out through: no redirects, no
/// proxies, a whole-attempt timeout, and names resolved through the destination guard.
pub fn client(allow_private: bool, timeout: Duration) -> anyhow::Result<Client> {
    // reqwest is built without a bundled TLS provider; the same ring provider the listener and
    // the object store use serves https:// receivers.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    Ok(Client::builder()
        .redirect(redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .user_agent(concat!("Ingest-Webhooks/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(guard::GuardedResolver { allow_private })
        .build()?)
}

/// Sends due deliveries until `shutdown`; attempts in flight then finish or are left to
/// their lease.
pub async fn run(
    store: Arc<dyn WebhookStore>,
    settings: SenderSettings,
    node: NodeId,
    shutdown: CancellationToken,
) {
    let client = match client(settings.allow_private, ATTEMPT_TIMEOUT) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(error = ?error, "the webhook sender could not start");
            return;
        }
    };
    let lease = Lease {
        node,
        duration: CLAIM_LEASE,
    };
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let in_flight = TaskTracker::new();
    let mut next_prune = tokio::time::Instant::now();
    while !shutdown.is_cancelled() {
        if tokio::time::Instant::now() >= next_prune {
            next_prune += PRUNE_EVERY;
            match store
                .prune_deliveries(OffsetDateTime::now_utc() - DELIVERY_LOG_KEEP)
                .await
            {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "old webhook deliveries pruned"),
                Err(error) => tracing::warn!(error = ?error, "pruning webhook deliveries failed"),
            }
        }
        let free = slots.available_permits();
        let claimed = if free == 0 {
            Vec::new()
        } else {
            match store.claim_deliveries(free as u32, &lease).await {
                Ok(claimed) => claimed,
                Err(error) => {
                    tracing::warn!(error = ?error, "claiming webhook deliveries failed");
                    Vec::new()
                }
            }
        };
        let full = !claimed.is_empty() && claimed.len() == free;
        for delivery in claimed {
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                break;
            };
            let (store, client, settings, lease) = (
                store.clone(),
                client.clone(),
                settings.clone(),
                lease.clone(),
            );
            in_flight.spawn(async move {
                let attempt = attempt(&client, &delivery, &settings).await;
                if let Err(error) = store.record_attempt(&attempt, &lease).await {
                    tracing::warn!(error = ?error, delivery = %delivery.id,
                        "recording a webhook attempt failed; it will be sent again");
                }
                drop(slot);
            });
        }
        if !full {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }
    in_flight.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), in_flight.wait()).await;
    // Attempts still out are left unrecorded: hand their deliveries back now, so another node
    // (or this one, restarted) sends them without waiting out the lease.
    match store.release_claims(&lease.node).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "unfinished webhook deliveries handed back"),
        Err(error) => tracing::warn!(error = ?error, "handing back webhook deliveries failed"),
    }
}

/// One attempt, and what it means for the delivery.
async fn attempt(
    client: &Client,
    delivery: &OutgoingDelivery,
    settings: &SenderSettings,
) -> Attempt {
    let outcome = post(client, delivery, settings.allow_private).await;
    let now = OffsetDateTime::now_utc();
    let attempts = delivery.attempts + 1;
    let (delivered, retry) = match &outcome {
        Outcome::Answered(status) if status.is_success() => (true, false),
        Outcome::Answered(status) => (false, retryable(*status)),
        Outcome::NoAnswer(_) => (false, true),
    };
    let next_attempt = (retry && attempts < MAX_ATTEMPTS)
        .then(|| now + retry_delay(settings.retry_base, attempts, rand::random()))
        .filter(|next| *next <= delivery.created_at + GIVE_UP_AFTER);
    let (status, error) = match outcome {
        Outcome::Answered(status) if status.is_success() => (Some(status.as_u16()), None),
        Outcome::Answered(status) => (Some(status.as_u16()), Some(format!("HTTP {status}"))),
        Outcome::NoAnswer(why) => (None, Some(why)),
    };
    if !delivered {
        tracing::info!(delivery = %delivery.id, endpoint = %delivery.endpoint_id, attempts,
            status, retry = next_attempt.is_some(), "webhook attempt failed");
    }
    Attempt {
        delivery_id: delivery.id.clone(),
        endpoint_id: delivery.endpoint_id,
        status,
        error,
        delivered,
        next_attempt,
        disable_after: settings.disable_after,
    }
}

/// 408, 429 and 5xx may pass; any other answer will not change by asking again.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// The wait after the `attempts`-th attempt failed: `base` doubled per earlier failure, capped
/// at `MAX_RETRY_DELAY`, times a jitter between 0.8 and 1.2 (`unit` in [0, 1)) so that
/// receivers coming back up are not met by every sender at once.
pub fn retry_delay(base: Duration, attempts: u64, unit: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(32) as u32;
    let delay = base
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(MAX_RETRY_DELAY);
    delay.mul_f64(0.8 + 0.4 * unit.clamp(0.0, 1.0))
}

enum Outcome {
    Answered(StatusCode),
    /// Why there was no answer (bounded; never the URL, which may carry a token).
    NoAnswer(String),
}

async fn post(client: &Client, delivery: &OutgoingDelivery, allow_private: bool) -> Outcome {
    let url = match guard::parse_url(&delivery.url) {
        Ok(url) => url,
        Err(refused) => return Outcome::NoAnswer(refused.to_string()),
    };
    if let Err(refused) = guard::check_literal(&url, allow_private) {
        return Outcome::NoAnswer(refused.to_string());
    }
    let body = message_body(delivery);
    let timestamp = OffsetDateTime::now_utc().unix_timestamp();
    let mut secrets = vec![delivery.secret.as_str()];
    secrets.extend(delivery.previous_secret.as_deref());
    let signature = signing::signature_header(&secrets, &delivery.id, timestamp, &body);
    let sent = client
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &delivery.id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(mut answer) => {
            let status = answer.status();
            // Read a little of the answer so a keep-alive connection can be reused; no more.
            let mut read = 0;
            while read < MAX_ANSWER_BYTES {
                match answer.chunk().await {
                    Ok(Some(chunk)) => read += chunk.len(),
                    _ => break,
                }
            }
            Outcome::Answered(status)
        }
        Err(error) if error.is_timeout() => {
            Outcome::NoAnswer(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()))
        }
        Err(error) if error.is_connect() => {
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
            let mut refused = false;
            while let Some(current) = cause {
                refused |= current.is::<guard::Refused>();
                cause = current.source();
            }
            Outcome::NoAnswer(if refused {
                guard::Refused::Private.to_string()
            } else {
                "could not connect".to_owned()
            })
        }
        Err(_) => Outcome::NoAnswer("the request failed".to_owned()),
    }
}

/// `{"type", "timestamp", "data"}`: the job as `GET /api/status` shows it when the event
/// happened, or for a ping the endpoint's id.
pub fn message_body(delivery: &OutgoingDelivery) -> Vec<u8> {
    let data = match &delivery.job {
        Some(job) => serde_json::to_value(job).unwrap_or_default(),
        None => serde_json::json!({ "endpoint_id": delivery.endpoint_id }),
    };
    let timestamp = delivery
        .occurred_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({
        "type": delivery.event_type,
        "timestamp": timestamp,
        "data": data,
    }))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_an_hour() {
        let base = Duration::from_secs(5);
        assert_eq!(retry_delay(base, 1, 0.5), base);
        assert_eq!(retry_delay(base, 2, 0.5), base * 2);
        assert_eq!(retry_delay(base, 3, 0.5), base * 4);
        assert_eq!(retry_delay(base, 30, 0.5), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(base, u64::MAX, 0.5), MAX_RETRY_DELAY);
        assert!(retry_delay(base, 1, 0.0) >= base.mul_f64(0.8));
        assert!(retry_delay(base, 1, 0.999) <= base.mul_f64(1.2));
    }

    #[test]
    fn only_timeouts_throttling_and_server_errors_are_retried() {
        for code in [408, 429, 500, 502, 503] {
            assert!(retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [301, 400, 401, 404, 410, 422] {
            assert!(!retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }
}
