//! The client's side of the HTTP API: the server's URL, the key, one connection pool, and
//! requests retried with backoff while the failure is transient (no answer, 408, 429, 5xx).
use super::{
    args::Connection,
    error::{one_line, ClientError},
};
use crate::{
    api::JobPage,
    domain::{JobId, JobState, JobStatus},
};
use http_client::{header, Client, RequestBuilder, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// The most of an API answer (a status, a page of jobs, an error) read into memory.
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Ordinary requests (not the bytes of an upload or a download) get this long in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A connection attempt that takes longer is no answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Between two reads of an answer (an upload's PATCH is answered once its bytes are on disk).
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait between retries, and the longest `Retry-After` believed.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// One server, one key, one connection pool.
pub struct Api {
    http: Client,
    base: Url,
    token: SecretString,
    retries: u32,
}

/// A request that failed in a way worth trying again, and how long the server asked to wait.
pub struct Transient {
    pub reason: String,
    pub retry_after: Option<Duration>,
}

/// How a request ended: an answer to use, one to try again, or a refusal.
pub enum Attempt {
    Answer(Response),
    Again(Transient),
}

impl Api {
    /// The key comes from `INGEST_TOKEN` or the file `INGEST_TOKEN_FILE` names, never a flag
    /// (it would show in `ps`).
    pub fn new(connection: &Connection) -> Result<Self, ClientError> {
        let token = key_from_environment()?;
        if !matches!(connection.server.scheme(), "http" | "https") {
            return Err(ClientError::Usage(format!(
                "the server's URL starts with http:// or https://, not {}",
                connection.server
            )));
        }
        install_tls_provider();
        let http = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .tcp_keepalive(Duration::from_secs(30))
            .user_agent(concat!("ingest-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Usage(format!("no HTTP client: {error}")))?;
        Ok(Self {
            http,
            base: connection.server.clone(),
            token,
            retries: connection.retries,
        })
    }

    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let prefix = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{prefix}{path}"));
        url
    }

    /// The server's URL as given, for naming what is remembered about it.
    pub fn base(&self) -> &Url {
        &self.base
    }

    pub fn bearer(&self) -> header::HeaderValue {
        let mut value =
            header::HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
                .unwrap_or_else(|_| header::HeaderValue::from_static("Bearer -"));
        value.set_sensitive(true);
        value
    }

    /// A request with the key, for the caller to finish.
    pub fn request(&self, method: http_client::Method, url: Url) -> RequestBuilder {
        self.http
            .request(method, url)
            .header(header::AUTHORIZATION, self.bearer())
    }

    pub fn backoff(&self) -> Backoff {
        Backoff::new(self.retries)
    }

    /// Sends the request `build` makes, again after transient failures, until an answer that
    /// is a success (returned) or a refusal (its error).
    pub async fn send(&self, build: impl Fn() -> RequestBuilder) -> Result<Response, ClientError> {
        let mut backoff = self.backoff();
        loop {
            match attempt(build().timeout(REQUEST_TIMEOUT)).await? {
                Attempt::Answer(response) => return Ok(response),
                Attempt::Again(transient) => backoff.wait(transient).await?,
            }
        }
    }

    pub async fn status(&self, id: JobId) -> Result<JobStatus, ClientError> {
        let url = self.url(&format!("/api/status/{id}"));
        let response = self
            .send(|| self.request(http_client::Method::GET, url.clone()))
            .await?;
        json_answer(response).await
    }

    pub async fn list(&self, status: Option<JobState>, limit: u32) -> Result<JobPage, ClientError> {
        let mut url = self.url("/api/jobs");
        url.query_pairs_mut()
            .append_pair("limit", &limit.to_string());
        if let Some(status) = status {
            url.query_pairs_mut().append_pair("status", status.as_str());
        }
        let response = self
            .send(|| self.request(http_client::Method::GET, url.clone()))
            .await?;
        json_answer(response).await
    }
}

/// Sends once: an answer that is a success or a refusal, or a transient failure to retry.
pub async fn attempt(request: RequestBuilder) -> Result<Attempt, ClientError> {
    match request.send().await {
        Err(error) => Ok(Attempt::Again(Transient {
            reason: no_answer(&error),
            retry_after: None,
        })),
        Ok(response) if response.status().is_success() => Ok(Attempt::Answer(response)),
        Ok(response) => {
            let status = response.status();
            let retry_after = retry_after(&response);
            let body = capped_body(response).await.unwrap_or_default();
            let error = ClientError::from_answer(status.as_u16(), &body);
            if is_transient(status) {
                Ok(Attempt::Again(Transient {
                    reason: error.to_string(),
                    retry_after,
                }))
            } else {
                Err(error)
            }
        }
    }
}

pub fn is_transient(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429) || status.is_server_error()
}

/// Why a request got no answer, in one line (reqwest's chain holds the cause).
pub fn no_answer(error: &http_client::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    one_line(&text)
}

pub fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// An answer's body, at most `MAX_ANSWER_BYTES`.
pub async fn capped_body(mut response: Response) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| ClientError::Unreachable(no_answer(&error)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ClientError::Failed(
                "the server's answer is larger than any the API gives".to_owned(),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub async fn json_answer<T: serde::de::DeserializeOwned>(
    response: Response,
) -> Result<T, ClientError> {
    let body = capped_body(response).await?;
    serde_json::from_slice(&body).map_err(|error| {
        ClientError::Failed(format!(
            "the server's answer is not what the API gives: {error}"
        ))
    })
}

/// Retries with exponential backoff and jitter: 0.25 s doubling up to `MAX_BACKOFF`, or the
/// server's `Retry-After`, at most `retries` times.
pub struct Backoff {
    retries: u32,
    tried: u32,
}

impl Backoff {
    pub fn new(retries: u32) -> Self {
        Self { retries, tried: 0 }
    }

    /// Waits before the next try, or says the retries are used up (exit code 4).
    pub async fn wait(&mut self, transient: Transient) -> Result<(), ClientError> {
        if self.tried >= self.retries {
            return Err(ClientError::Unreachable(format!(
                "gave up after {} retries: {}",
                self.retries, transient.reason
            )));
        }
        let ceiling = Duration::from_millis(250)
            .saturating_mul(1 << self.tried.min(10))
            .min(MAX_BACKOFF);
        // Half fixed, half random: clients cut off together do not come back together.
        let jitter = rand::random_range(0..=ceiling.as_millis() as u64 / 2);
        let delay = transient
            .retry_after
            .unwrap_or(ceiling / 2 + Duration::from_millis(jitter));
        self.tried += 1;
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// A request went through: the next failure starts the backoff again.
    pub fn reset(&mut self) {
        self.tried = 0;
    }
}

fn key_from_environment() -> Result<SecretString, ClientError> {
    if let Some(token) = std::env::var("INGEST_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
    {
        return Ok(SecretString::from(token.trim().to_owned()));
    }
    let Some(path) = std::env::var_os("INGEST_TOKEN_FILE").filter(|p| !p.is_empty()) else {
        return Err(ClientError::Usage(
            "no key: set INGEST_TOKEN, or INGEST_TOKEN_FILE to a file holding it".to_owned(),
        ));
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ClientError::Usage(format!(
            "INGEST_TOKEN_FILE {}: {error}",
            std::path::Path::new(&path).display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Usage(
            "INGEST_TOKEN_FILE names an empty file".to_owned(),
        ));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// reqwest and the WebSocket's rustls are built without a bundled crypto provider: use ring,
/// as the server does. Installing twice is refused harmlessly.
pub fn install_tls_provider() {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
}
