//! Two real nodes on one database and one bucket: any request may go to either node, and what
//! one node does (a job, a key revoked, a session opened or ended) holds on the other.
use crate::{cluster::Cluster, helpers::*};
use std::time::{Duration, Instant};

#[tokio::test]
async fn requests_alternate_between_nodes() {
    let cluster = Cluster::start(2).await;
    let (first, second) = (cluster.admin(0), cluster.admin(1));

    // A metadata-only job accepted by one node is seen, processed, by the other.
    let meta = accepted_id(first.ingest_json(serde_json::json!({"n": 1})).await).await;
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
