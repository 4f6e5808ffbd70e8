//! Following a job until it is finished: over its WebSocket (`/ws/status/{id}`), falling back
//! to polling `GET /api/status/{id}` when the socket cannot be opened or keeps dropping.
use super::{
    api::{install_tls_provider, Api},
    error::ClientError,
    progress::Item,
};
use crate::domain::{JobId, JobStatus};
use futures::StreamExt;
use std::{sync::Arc, time::Duration};
use tokio_tungstenite::{
    tungstenite::{
        client::IntoClientRequest, protocol::WebSocketConfig, Error as WsError, Message,
    },
    Connector,
};

/// After this many sockets lost before the job finished, only polling is used.
const MAX_SOCKET_FAILURES: u32 = 3;
const POLL_EVERY: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The server pings idle sockets well within this; silence this long is a lost socket.
const SILENCE: Duration = Duration::from_secs(90);
/// A status message is a few KiB; anything much larger is not one.
const MAX_MESSAGE: usize = 1 << 20;

/// Waits until the job is completed, failed or cancelled, showing its progress on `item`.
pub async fn until_finished(api: &Api, id: JobId, item: &Item) -> Result<JobStatus, ClientError> {
    let mut socket_failures = 0;
    loop {
        if socket_failures < MAX_SOCKET_FAILURES {
            match over_socket(api, id, item).await {
                Ok(Some(job)) if job.is_terminal() => return Ok(job),
                Err(Lost::Refused(error)) => return Err(error),
                Ok(_) | Err(Lost::Socket) => socket_failures += 1,
            }
        }
        let job = api.status(id).await?;
        item.job(&job);
        if job.is_terminal() {
            return Ok(job);
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

enum Lost {
    /// The server refused before the upgrade (a wrong key, an unknown job): polling would too.
    Refused(ClientError),
    /// No socket, or it ended early; polling may still work.
    Socket,
}

/// Follows the job over one socket; the last status it gave.
async fn over_socket(api: &Api, id: JobId, item: &Item) -> Result<Option<JobStatus>, Lost> {
    let mut url = api.url(&format!("/ws/status/{id}"));
    let secure = url.scheme() == "https";
    // Both are valid schemes for the same URL.
    let _ = url.set_scheme(if secure { "wss" } else { "ws" });
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|_| Lost::Socket)?;
    // The key in a header, not in the URL (`?token=` would end up in logs).
    request
        .headers_mut()
        .insert(http_client::header::AUTHORIZATION, api.bearer());
    let connector = if secure {
        install_tls_provider();
        use rustls_platform_verifier::ConfigVerifierExt;
        let config = tokio_rustls::rustls::ClientConfig::with_platform_verifier()
            .map_err(|_| Lost::Socket)?;
        Some(Connector::Rustls(Arc::new(config)))
    } else {
        None
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector),
    )
    .await
    .map_err(|_| Lost::Socket)?;
    let (mut socket, _) = match connected {
        Ok(opened) => opened,
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            return Err(match status {
                401 | 403 | 404 => Lost::Refused(ClientError::from_answer(status, &body)),
                _ => Lost::Socket,
            });
        }
        Err(_) => return Err(Lost::Socket),
    };
    let mut last = None;
    loop {
        let message = match tokio::time::timeout(SILENCE, socket.next()).await {
            Err(_) => return Err(Lost::Socket),
            Ok(None) => return Ok(last),
            Ok(Some(Err(_))) => return Err(Lost::Socket),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let job: JobStatus =
                    serde_json::from_str(text.as_str()).map_err(|_| Lost::Socket)?;
                item.job(&job);
                let finished = job.is_terminal();
                last = Some(job);
                if finished {
                    let _ = socket.close(None).await;
                    return Ok(last);
                }
            }
            Message::Close(_) => return Ok(last),
            // Pings are answered by the library as it reads.
            _ => {}
        }
    }
}
