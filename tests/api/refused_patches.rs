//! A PATCH refused after its bytes arrived (a checksum mismatch, 460; bytes beyond
//! Upload-Length, 413) discards them, so everything that reports the upload says the durable
//! offset again: HEAD, `GET /api/status` and a WebSocket follower.
use crate::helpers::*;
use futures::{SinkExt, StreamExt};
use ingest::domain::{JobId, JobStatus};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Waits until the status reports `bytes` received (the bytes in flight are counted).
async fn wait_for_bytes(tus: &Tus<'_>, id: JobId, bytes: u64) {
    let what = format!("the status showed {bytes} bytes");
    eventually(&what, Duration::from_secs(10), async || {
        (tus.status(id).await.bytes_done == bytes).then_some(())
    })
    .await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Reads the follower's messages until one reports `bytes` received.
async fn followed_until(socket: &mut Socket, bytes: u64) -> JobStatus {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let status: JobStatus = serde_json::from_str(&text).unwrap();
                    seen.push(status.bytes_done);
                    if status.bytes_done == bytes {
                        return status;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended: {other:?}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("the follower saw {seen:?}, never {bytes}"))
}

async fn assert_reports(tus: &Tus<'_>, id: JobId, offset: u64, progress: u8) {
    assert_eq!(tus.offset(id).await, offset, "HEAD");
    let status = tus.status(id).await;
    assert_eq!(
        (status.bytes_done, status.progress),
        (offset, progress),
        "GET /api/status: {status:?}"
    );
}

#[tokio::test]
async fn a_patch_refused_for_its_checksum_or_length_leaves_every_report_at_the_durable_offset() {
    use base64::Engine;
    let app = spawn_app().await;
    let tus = app.tus();
    let id = tus.created(1000, "{}").await;
    let first = tus.patch(id, 0).body(vec![1u8; 100]).send().await.unwrap();
    assert_eq!(first.status(), 204);

    // 460: the bytes arrive (and are counted live) before the checksum can be checked.
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 20]);
    let (mut sender, patch) = tus.streaming_patch(id, 100, Some(&format!("sha1 {wrong}")));
    sender.send(Ok(vec![2u8; 50])).await.unwrap();
    wait_for_bytes(&tus, id, 150).await;
    drop(sender);
    assert_error(patch.await.unwrap(), 460, "checksum_mismatch").await;
    assert_reports(&tus, id, 100, 9).await;

    // 413, with a follower: the job stays live between requests, and the follower too ends up
    // with the durable offset.
    let url = app.ws_url(&format!("/ws/status/{id}?token={TOKEN}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    followed_until(&mut socket, 100).await;
    let (mut sender, patch) = tus.streaming_patch(id, 100, None);
    sender.send(Ok(vec![3u8; 400])).await.unwrap();
    assert_eq!(followed_until(&mut socket, 500).await.progress, 45);
    sender.send(Ok(vec![3u8; 600])).await.unwrap();
    assert_error(patch.await.unwrap(), 413, "payload_too_large").await;
    drop(sender);
    assert_reports(&tus, id, 100, 9).await;
    assert_eq!(followed_until(&mut socket, 100).await.progress, 9);

    // The upload goes on from there.
    let rest = tus
        .patch(id, 100)
        .body(vec![4u8; 900])
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let mut file = vec![1u8; 100];
    file.extend(vec![4u8; 900]);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}
