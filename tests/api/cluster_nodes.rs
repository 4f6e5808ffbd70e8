//! Two real nodes on one database and one bucket: any request may go to either node, and what
//! one node does (a job, a key revoked, a session opened or ended) holds on the other.
use crate::{cluster::Cluster, helpers::*};
use std::time::{Duration, Instant};

#[tokio::test]
async fn requests_alternate_between_nodes() {
    let cluster = Cluster::start(2).await;
    let (first, second) = (cluster.admin(0), cluster.admin(1));

    // A metadata-only job accepted by one node is seen, processed, by the other.
    let meta = accepted_id(
        first
            .ingest_json(serde_json::json!({"metadata": {"n": 1}}))
            .await,
    )
    .await;
    let done = second.completed(meta).await;
    assert_eq!(done["metadata"], serde_json::json!({"n": 1}));

    // A file received by the second node is downloaded, whole and by range, from the first:
    // its bytes are in the bucket, not on either node's disk.
    let bytes = random_bytes(300_000);
    let id = accepted_id(second.ingest_file("a.bin", bytes.clone(), "{}").await).await;
    let stored = first.completed(id).await;
    assert_eq!(stored["sha256"], sha256_hex(&bytes));
    let whole = first.content(id).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.unwrap(), bytes);
    let part = first
        .request(reqwest::Method::GET, &format!("/api/jobs/{id}/content"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), bytes[1000..2000]);

    // Both nodes list the same jobs, newest first.
    let listed = first.job_ids("").await;
    assert_eq!(listed, vec![id.to_string(), meta.to_string()]);
    assert_eq!(second.job_ids("").await, listed);

    // Deleted on one node: gone on both.
    assert_eq!(second.delete(id).await.status(), 204);
    assert_eq!(first.status(id).await.status(), 404);
    assert_eq!(first.content(id).await.status(), 404);
}

#[tokio::test]
async fn a_key_revoked_on_one_node_is_refused_by_the_other_within_a_second() {
    let cluster = Cluster::start(2).await;
    let admin = cluster.admin(0);
    admin.create_account("alice", "member").await;
    let key = admin.issue_key("alice").await;
    let on_second = cluster.admin(1).with_key(key.clone());
    // The key made on the first node works on the second (once it has heard of it).
    let accepted = within(Duration::from_secs(2), async || {
        (on_second.get("/api/me").await.status() == 200).then_some(())
    })
    .await;
    assert!(accepted.is_some(), "{}", cluster.logs());
    // A browser session opened on the second node with that key works on the first.
    let browser = on_second.signed_in().await;
    let browser_on_first = ApiClient {
        address: cluster.node(0).address(),
        ..browser.clone()
    };
    let session_seen = within(Duration::from_secs(2), async || {
        (browser_on_first.get("/api/me").await.status() == 200).then_some(())
    })
    .await;
    assert!(session_seen.is_some(), "{}", cluster.logs());

    let revoked = admin
        .send(
            reqwest::Method::DELETE,
            &format!("/api/keys/{}", key.key_id),
        )
        .await;
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let at = Instant::now();
    let refused = within(Duration::from_secs(5), async || {
        (on_second.get("/api/me").await.status() == 401).then(|| at.elapsed())
    })
    .await
    .expect("the revoked key is refused by the other node");
    assert!(
        refused <= Duration::from_secs(1),
        "refused after {refused:?}"
    );
    // The sessions it opened end with it, on every node.
    let ended = within(Duration::from_secs(2), async || {
        let first = browser_on_first.get("/api/me").await.status();
        let second = browser.get("/api/me").await.status();
        (first == 401 && second == 401).then_some(())
    })
    .await;
    assert!(ended.is_some(), "{}", cluster.logs());
}

#[tokio::test]
async fn signing_out_on_one_node_ends_the_session_on_the_other() {
    let cluster = Cluster::start(2).await;
    let browser = cluster.admin(0).signed_in().await;
    let on_second = ApiClient {
        address: cluster.node(1).address(),
        ..browser.clone()
    };
    let seen = within(Duration::from_secs(2), async || {
        (on_second.get("/api/me").await.status() == 200).then_some(())
    })
    .await;
    assert!(seen.is_some(), "{}", cluster.logs());
    let signed_out = browser.send(reqwest::Method::DELETE, "/api/session").await;
    assert!(signed_out.status().is_success(), "{}", signed_out.status());
    let ended = within(Duration::from_secs(2), async || {
        (on_second.get("/api/me").await.status() == 401).then_some(())
    })
    .await;
    assert!(ended.is_some(), "{}", cluster.logs());
}

/// Reads a socket's status messages until the server closes it (30 s at most between two).
async fn statuses_until_close(
    mut socket: WebSocket,
) -> (Vec<ingest::domain::JobStatus>, Option<u16>) {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let mut statuses = Vec::new();
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .expect("the server keeps talking or closes");
        match message {
            Some(Ok(Message::Text(text))) => {
                statuses.push(serde_json::from_str(&text).expect("a JobStatus"));
            }
            Some(Ok(Message::Close(frame))) => {
                return (statuses, frame.map(|frame| u16::from(frame.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("socket error: {error}"),
            None => return (statuses, None),
        }
    }
}

#[tokio::test]
async fn a_websocket_on_one_node_follows_an_upload_received_and_processed_elsewhere() {
    let cluster = Cluster::start_with(2, &[("INGEST_PROCESSING_DELAY_MS", "300")]).await;
    follow_an_upload_across_nodes(&cluster).await;
}

#[tokio::test]
async fn nodes_listen_again_after_postgresql_drops_their_listeners() {
    let cluster = Cluster::start_with(2, &[("INGEST_PROCESSING_DELAY_MS", "300")]).await;
    assert_eq!(cluster.listeners().await, 2, "one listener per node");
    assert_eq!(cluster.drop_listeners().await, 2);
    let back = within(Duration::from_secs(5), async || {
        (cluster.listeners().await == 2).then_some(())
    })
    .await;
    assert!(back.is_some(), "{}", cluster.logs());
    follow_an_upload_across_nodes(&cluster).await;
}

/// A WebSocket on node 1 follows a one-shot upload received by node 0: its byte progress,
/// processing (on either node), the final state and a normal close.
async fn follow_an_upload_across_nodes(cluster: &Cluster) {
    use ingest::domain::JobState;
    let (receiver, follower) = (cluster.admin(0), cluster.admin(1));
    let mut upload = receiver.streaming_ingest("live.bin").await;
    let mut sent = random_bytes(64 * 1024);
    assert!(upload.send(sent.clone()).await);
    let job = wait_for_receiving_job(&receiver.client, &cluster.node(0).base).await;
    let socket = follower.ws(job.job_id).await.expect("the socket opens");
    let reader = tokio::spawn(statuses_until_close(socket));
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let more = random_bytes(64 * 1024);
        sent.extend_from_slice(&more);
        assert!(upload.send(more).await);
    }
    assert_eq!(upload.finish().await.status(), 202);
    let (statuses, close) = reader.await.unwrap();

    // The bytes arriving on the first node moved the second node's follower along...
    let received: Vec<u64> = statuses
        .iter()
        .filter(|status| status.status == JobState::Receiving)
        .map(|status| status.bytes_done)
        .collect();
    assert!(
        received.windows(2).filter(|pair| pair[1] > pair[0]).count() >= 2,
        "upload progress from the other node: {received:?}\n{}",
        cluster.logs()
    );
    // ...then processing (on either node), then the final state, then a normal close.
    assert!(
        statuses
            .iter()
            .any(|status| status.status == JobState::Processing),
        "{statuses:#?}"
    );
    let last = statuses.last().expect("statuses");
    assert_eq!(last.status, JobState::Completed, "{statuses:#?}");
    assert_eq!(last.sha256.unwrap().to_hex(), sha256_hex(&sent));
    assert_eq!(last.metadata, serde_json::json!({}));
    assert_eq!(close, Some(1000));
}

#[tokio::test]
async fn a_cancel_on_one_node_stops_an_upload_on_the_other_within_a_second() {
    use tokio::io::AsyncReadExt;
    let cluster = Cluster::start(2).await;
    let node0 = cluster.node(0);
    let mut upload = start_partial_upload(node0.address(), 10_000_000, 64 * 1024).await;
    let job = wait_for_receiving_job(&reqwest::Client::new(), &node0.base).await;
    let at = Instant::now();
    assert_eq!(cluster.admin(1).cancel(job.job_id).await.status(), 200);
    // The receiving node answers the cut upload (and stops reading it) at once.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), upload.read_to_end(&mut answer)).await;
    let stopped = at.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 409"),
        "{answer}\n{}",
        cluster.logs()
    );
    assert!(answer.contains("cancelled"), "{answer}");
    assert!(
        stopped <= Duration::from_secs(1),
        "stopped after {stopped:?}"
    );
    let cancelled = cluster.admin(0).job(job.job_id).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["sha256"], serde_json::Value::Null);
}
