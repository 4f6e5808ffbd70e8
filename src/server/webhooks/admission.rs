//! The operator's admission hook: before a job is accepted, Ingest POSTs what it is about to
//! accept, signed like a webhook with the hook's own secret; a 2xx admits (its answer may
//! replace the metadata), a 4xx refuses with the hook's `message`, and anything else (no
//! answer in time, 5xx, a malformed answer) follows `admission_on_error`.
use super::{sender, signing};
use crate::{
    domain::check_metadata,
    server::config::{AdmissionSettings, OnError},
};
use http_client::{header, Client};
use secrecy::ExposeSecret;
use serde_json::Value;
use time::OffsetDateTime;

/// The longest refusal message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 300;
/// What a refusal says when the hook gave no message.
const DEFAULT_REFUSAL: &str = "the upload was refused by the server's admission policy";

/// What is about to be accepted.
#[derive(Debug, serde::Serialize)]
pub struct Candidate<'a> {
    pub account: &'a str,
    pub filename: Option<&'a str>,
    pub size: Option<u64>,
    pub content_type: Option<&'a str>,
    pub metadata: &'a Value,
}

/// The hook's decision.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Accept, with this metadata instead when the hook gave one.
    Admit(Option<Value>),
    /// Refuse (403) with the hook's message.
    Refuse(String),
    /// The hook did not answer usably and `on_error` is `reject` (503).
    Unavailable,
}

pub struct AdmissionHook {
    settings: AdmissionSettings,
    client: Client,
    max_metadata_bytes: usize,
}

impl AdmissionHook {
    pub fn new(settings: AdmissionSettings, max_metadata_bytes: usize) -> anyhow::Result<Self> {
        // The operator chose the URL: a hook beside the server (loopback, a private network)
        // is the usual case, so the destination guard does not apply.
        let client = sender::client(true, settings.timeout)?;
        Ok(Self {
            settings,
            client,
            max_metadata_bytes,
        })
    }

    #[tracing::instrument(skip_all, fields(account = candidate.account))]
    pub async fn decide(&self, candidate: &Candidate<'_>) -> Decision {
        match self.ask(candidate).await {
            Ok(decision) => decision,
            Err(why) => {
                tracing::warn!(reason = %why, on_error = ?self.settings.on_error,
                    "the admission hook gave no usable answer");
                match self.settings.on_error {
                    OnError::Admit => Decision::Admit(None),
                    OnError::Reject => Decision::Unavailable,
                }
            }
        }
    }

    async fn ask(&self, candidate: &Candidate<'_>) -> Result<Decision, String> {
        let body = serde_json::to_vec(candidate).map_err(|error| error.to_string())?;
        let id = format!("adm_{}", uuid::Uuid::new_v4().simple());
        let timestamp = OffsetDateTime::now_utc().unix_timestamp();
        let secret = self.settings.secret.expose_secret();
        let signature = signing::signature_header(&[secret], &id, timestamp, &body);
        let answer = self
            .client
            .post(self.settings.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    format!("no answer within {} ms", self.settings.timeout.as_millis())
                } else {
                    "the request failed".to_owned()
                }
            })?;
        let status = answer.status();
        let text = read_capped(answer, self.max_metadata_bytes * 2 + 4096).await?;
        if status.is_success() {
            let replacement = match serde_json::from_slice::<Value>(&text) {
                Ok(Value::Object(mut fields)) => fields.remove("metadata"),
                // An empty or non-JSON 2xx admits as is.
                _ => None,
            };
            return match replacement {
                None | Some(Value::Null) => Ok(Decision::Admit(None)),
                Some(metadata) => check_metadata(metadata, self.max_metadata_bytes)
                    .map(|metadata| Decision::Admit(Some(metadata)))
                    .map_err(|error| format!("the hook's metadata is unusable: {error}")),
            };
        }
        if status.is_client_error() {
            let message = serde_json::from_slice::<Value>(&text)
                .ok()
                .and_then(|value| value.get("message")?.as_str().map(clean_message))
                .filter(|message| !message.is_empty())
                .unwrap_or_else(|| DEFAULT_REFUSAL.to_owned());
            return Ok(Decision::Refuse(message));
        }
        Err(format!("the hook answered {status}"))
    }
}

/// At most `MAX_MESSAGE_CHARS` characters, without control characters.
fn clean_message(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

async fn read_capped(mut answer: http_client::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|_| "reading the answer failed".to_owned())?
    {
        if bytes.len() + chunk.len() > limit {
            return Err(format!("the answer is over {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_messages_are_bounded_and_plain() {
        assert_eq!(clean_message(" no\u{7}pe \n"), "nope");
        assert_eq!(clean_message(&"x".repeat(1000)).len(), MAX_MESSAGE_CHARS);
    }
}
