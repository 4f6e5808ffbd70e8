//! `GET /ws/status/{job_id}?token=…`: the current status at once, then every change (at most
//! one message per `ws_min_interval`, the final state always), then close 1000. Auth and the
//! job's existence are checked before the upgrade, so failures are ordinary JSON errors. Open
//! sockets are capped (`max_websockets`) and what a client may send is a few KiB at most.
use super::{
    extract::{no_such_job, JobIdPath},
    openapi::CommonErrors,
};
use crate::{
    api::{ErrorBody, ErrorCode},
    domain::{JobStatus, Scope},
    server::{
        auth,
        error::ApiError,
        hub::{Follow, Published, Watch},
        state::AppState,
    },
};
use axum::{
    extract::{
        ws::{
            close_code, rejection::WebSocketUpgradeRejection, CloseFrame, Message, Utf8Bytes,
            WebSocket, WebSocketUpgrade,
        },
        Query, State,
    },
    http::request::Parts,
    response::Response,
};
use futures::{SinkExt, StreamExt};
use std::{collections::HashMap, time::Duration};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A client that cannot take one message in this long is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a finished socket waits for the client's answer to its close frame.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// The server only reads close frames (and pongs), so anything larger is refused and the
/// socket closed: axum's defaults (64 MiB messages) would let a client make it buffer that much.
const MAX_INCOMING_MESSAGE: usize = 4 * 1024;
/// Read buffer per socket: sized for control frames (at most 131 bytes; a larger message is
/// read over several calls), not axum's default 128 KiB, which is most of what an idle socket
/// costs. tungstenite zeroes the buffer's free room before every read, so a smaller one also
/// costs less each time a socket is polled.
const READ_BUFFER: usize = 512;
/// Outgoing bytes gathered before a write; a status message is flushed on its own, a final one
/// together with the close frame.
const WRITE_BUFFER: usize = 8 * 1024;

/// Follow a job live over a WebSocket: its status at once, each change (at most 10 a second),
/// the final state, then close 1000. Send the token as `?token=` (or a Bearer header).
#[utoipa::path(
    get,
    path = "/ws/status/{job_id}",
    tag = "jobs",
    params(("job_id" = String, Path, format = Uuid, description = "The job's id")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; messages are JobStatus JSON", body = JobStatus),
        (status = 400, description = "Malformed job id, or not a WebSocket request", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody),
        CommonErrors,
        (status = 503, description = "As many WebSockets open as the server takes; see Retry-After, or poll GET /api/status", body = ErrorBody),
    ),
    security(("token_query" = []), ("bearer" = [])),
)]
pub async fn status_socket(
    State(state): State<AppState>,
    // Checked after the token, so a caller without one learns nothing about ids.
    job_id: Result<JobIdPath, ApiError>,
    Query(query): Query<HashMap<String, String>>,
    request: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let token = query.get("token").map(String::as_str);
    let auth = auth::authenticate(&request.headers, &request.extensions, token, &state)?;
    // Fires when the caller's key is revoked or expires (never for the token).
    let key_ended = match &auth.caller.key_id {
        Some(key_id) => state
            .keys
            .ended(key_id)
            .ok_or(ApiError::Unauthorized("invalid token"))?,
        None => CancellationToken::new(),
    };
    let JobIdPath(id) = job_id?;
    let source = state
        .jobs
        .follow(id, auth.caller.scope())
        .await?
        .ok_or_else(|| no_such_job(id))?;
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::bad_request(ErrorCode::WebsocketRequired, rejection.body_text())
    })?;
    let slot = state
        .socket_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy {
            message: "the server has as many WebSockets open as it takes; retry shortly, or poll \
                      GET /api/status"
                .to_owned(),
            retry_after: 5,
        })?;
    Ok(upgrade
        .max_message_size(MAX_INCOMING_MESSAGE)
        .max_frame_size(MAX_INCOMING_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade({
            // Counted from here, not from the upgrade, so shutdown also waits for a socket
            // whose handshake is still in flight.
            let tracked = state.tasks.token();
            move |socket| async move {
                follow(socket, source, state, key_ended).await;
                drop(slot);
                drop(tracked);
            }
        }))
}

#[tracing::instrument(skip_all)]
async fn follow(socket: WebSocket, source: Follow, state: AppState, key_ended: CancellationToken) {
    let (mut sink, mut incoming) = socket.split();
    // The reading half only notices the client leaving; pongs are answered by the protocol.
    let client_gone = CancellationToken::new();
    let reader = state.tasks.spawn({
        let client_gone = client_gone.clone();
        async move {
            while let Some(Ok(message)) = incoming.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
            client_gone.cancel();
        }
    });

    let outcome = match source {
        Follow::Finished(status) => send_status(&mut sink, &status)
            .await
            .map(|()| Ending::Finished),
        Follow::Live(live) => {
            stream_changes(&mut sink, live, &state, &client_gone, &key_ended).await
        }
    };
    match outcome {
        // The final state was only queued: it leaves with the close frame, in one write.
        Ok(Ending::Finished) => {
            close(&mut sink, close_code::NORMAL, "job finished").await;
            // The closing handshake: the client answers the close frame, then the connection
            // is torn down. Waiting for it (briefly) also keeps 10,000 teardowns out of the
            // moment a job's final state goes to 10,000 followers.
            tokio::select! {
                _ = client_gone.cancelled() => {}
                _ = tokio::time::sleep(CLOSE_HANDSHAKE) => {}
                _ = state.shutdown.cancelled() => {}
            }
        }
        Ok(Ending::ShuttingDown) => {
            close(&mut sink, close_code::AWAY, "server shutting down").await
        }
        // One neutral reason, whether the key was revoked, expired or could not be checked.
        Ok(Ending::KeyEnded) => {
            close(&mut sink, close_code::POLICY, "credential no longer valid").await
        }
        Ok(Ending::ClientGone) | Err(_) => {}
    }
    reader.abort();
}

enum Ending {
    Finished,
    ShuttingDown,
    /// The caller's key was revoked or expired.
    KeyEnded,
    ClientGone,
}

type Sink = futures::stream::SplitSink<WebSocket, Message>;

async fn stream_changes(
    sink: &mut Sink,
    mut live: Watch,
    state: &AppState,
    client_gone: &CancellationToken,
    key_ended: &CancellationToken,
) -> Result<Ending, axum::Error> {
    let settings = &state.settings;
    let first = live.borrow_and_update().clone();
    send_published(sink, &first).await?;
    if first.is_terminal() {
        return Ok(Ending::Finished);
    }
    let mut last_sent = Instant::now();
    let mut ping = tokio::time::interval_at(
        Instant::now() + settings.ws_ping_interval,
        settings.ws_ping_interval,
    );
    loop {
        tokio::select! {
            changed = live.changed() => {
                if changed.is_err() {
                    // The live entry went away without a final state (never expected): report
                    // what the store holds.
                    let stored = state
                        .jobs
                        .stored(first.job_id, Scope::Everything)
                        .await
                        .ok()
                        .flatten();
                    if let Some(stored) = stored {
                        send_status(sink, &stored).await?;
                    }
                    return Ok(Ending::Finished);
                }
                // Coalesce: changes that arrive faster than the minimum interval are folded
                // into the latest snapshot. (No timer when none is needed: a change reaching
                // 10,000 sockets at once should not make 10,000 timer entries.)
                let due = last_sent + settings.ws_min_interval;
                if due > Instant::now() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = client_gone.cancelled() => return Ok(Ending::ClientGone),
                        _ = state.shutdown.cancelled() => return Ok(Ending::ShuttingDown),
                        _ = key_ended.cancelled() => return Ok(Ending::KeyEnded),
                    }
                }
                let status = live.borrow_and_update().clone();
                send_published(sink, &status).await?;
                last_sent = Instant::now();
                if status.is_terminal() {
                    return Ok(Ending::Finished);
                }
            }
            _ = ping.tick() => send(sink, Message::Ping(Default::default())).await?,
            _ = client_gone.cancelled() => return Ok(Ending::ClientGone),
            _ = state.shutdown.cancelled() => return Ok(Ending::ShuttingDown),
            _ = key_ended.cancelled() => return Ok(Ending::KeyEnded),
        }
    }
}

/// Queues a stored final status; the close frame that always follows sends both.
async fn send_status(sink: &mut Sink, status: &JobStatus) -> Result<(), axum::Error> {
    let text = serde_json::to_string(status).map_err(axum::Error::new)?;
    queue(sink, Message::Text(text.into())).await
}

/// Sends a live snapshot's JSON, made once for every socket that follows the job. A final
/// state is only queued: the close frame that follows flushes both in one write, so a change
/// reaching 10,000 followers costs each socket one system call, not two.
async fn send_published(sink: &mut Sink, published: &Published) -> Result<(), axum::Error> {
    let json = published.json().map_err(axum::Error::new)?;
    let text = Message::Text(Utf8Bytes::try_from(json).map_err(axum::Error::new)?);
    if published.is_terminal() {
        queue(sink, text).await
    } else {
        send(sink, text).await
    }
}

async fn send(sink: &mut Sink, message: Message) -> Result<(), axum::Error> {
    within_send_timeout(sink.send(message)).await
}

/// Adds a message to the socket's buffer without flushing it (a full buffer is written).
async fn queue(sink: &mut Sink, message: Message) -> Result<(), axum::Error> {
    within_send_timeout(sink.feed(message)).await
}

async fn within_send_timeout(
    sending: impl std::future::Future<Output = Result<(), axum::Error>>,
) -> Result<(), axum::Error> {
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(sent) => sent,
        Err(_) => Err(axum::Error::new("the client stopped reading")),
    }
}

async fn close(sink: &mut Sink, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = send(sink, Message::Close(Some(frame))).await;
}
