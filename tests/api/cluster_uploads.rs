//! Resumable uploads on a cluster: two real nodes on one database and one bucket. Any node
//! takes any request of an upload (the bytes are staged in the bucket, the offset and hash
//! state in PostgreSQL), one request sends an upload's bytes at a time across the nodes, and a
//! node killed mid-request leaves the upload at its durable offset for the other.
use crate::{cluster::Cluster, helpers::*};
use base64::Engine;
use futures::SinkExt;
use ingest::domain::JobId;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// Creates an upload of `file` on `tus`'s node that declares its SHA-256 (checked at the end).
async fn created_with_digest(tus: &Tus<'_>, file: &[u8]) -> JobId {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let created = tus
        .client
        .post(format!("{}/api/uploads", tus.base))
        .bearer_auth(&tus.bearer)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", file.len())
        .header(
            "Upload-Metadata",
            format!(
                "filename {},sha256 {}",
                encode("cluster.bin"),
                encode(&sha256_hex(file))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "creating an upload");
    let location = created.headers()["location"].to_str().unwrap();
    JobId::parse(location.strip_prefix("/api/uploads/").unwrap()).unwrap()
}

/// Keys of the bucket under its staging prefix.
async fn staged_keys(cluster: &Cluster) -> Vec<String> {
    cluster
        .bucket
        .keys()
        .await
        .into_iter()
        .filter(|key| key.contains("/staging/"))
        .collect()
}

#[tokio::test]
async fn a_tus_upload_goes_to_whichever_node_each_request_reaches() {
    let cluster = Cluster::start(2).await;
    let nodes = [cluster.admin(0), cluster.admin(1)];
    let file = random_bytes(20 * MIB + 12_345);
    let id = created_with_digest(&nodes[0].tus(), &file).await;

    // Chunks of varied sizes, some short of a part (whose bytes wait in the tail), some
    // crossing one or two part boundaries; each on the other node than the one before, and
    // each HEAD on the node that did not take the PATCH.
    let sizes = [3 * MIB, MIB + 17, 9 * MIB, 2 * MIB - 17, 5 * MIB + 1];
    let mut offset = 0;
    for (turn, size) in sizes.into_iter().enumerate() {
        let (patching, heading) = (&nodes[(turn + 1) % 2], &nodes[turn % 2]);
        assert_eq!(
            heading.tus().offset(id).await,
            offset as u64,
            "HEAD before PATCH {turn}\n{}",
            cluster.logs()
        );
        let answer = patching
            .tus()
            .patch(id, offset as u64)
            .body(file[offset..offset + size].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(
            answer.status(),
            204,
            "PATCH {turn} at {offset}\n{}",
            cluster.logs()
        );
        offset += size;
        assert_eq!(
            answer.headers()["upload-offset"],
            offset.to_string().as_str()
        );
    }
    let rest = nodes[0]
        .tus()
        .patch(id, offset as u64)
        .body(file[offset..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204, "the last PATCH\n{}", cluster.logs());

    let done = nodes[1].completed(id).await;
    assert_eq!(done["sha256"], sha256_hex(&file));
    assert_eq!(done["size"], file.len());
    let content = nodes[0].content(id).await;
    assert_eq!(content.status(), 200);
    assert!(content.bytes().await.unwrap() == file, "the stored bytes");
    assert_eq!(
        staged_keys(&cluster).await,
        Vec::<String>::new(),
        "nothing is left in staging"
    );
    assert_eq!(nodes[1].tus().offset(id).await, file.len() as u64);
}

#[tokio::test]
async fn a_node_killed_mid_patch_leaves_the_upload_at_its_durable_offset_for_the_other() {
    let mut cluster = Cluster::start(2).await;
    let file = random_bytes(18 * MIB + 5);
    let first = cluster.admin(0);
    let id = created_with_digest(&first.tus(), &file).await;
    // 6 MiB durable: short of a part, so it waits in the bucket as the tail.
    let recorded = 6 * MIB;
    let answer = first
        .tus()
        .patch(id, 0)
        .body(file[..recorded].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "{}", cluster.logs());

    // The second node takes the next PATCH and dies with SIGKILL in its middle, after more
    // than a part's worth went out (a part is in the bucket, but was never recorded).
    let second = cluster.admin(1);
    let tus = second.tus();
    let (mut sender, in_flight) = tus.streaming_patch(id, recorded as u64, None);
    // A MiB at a time, slower than live progress is published (every 50 ms), until the node
    // has more than a part's worth of this PATCH.
    let mut sent = 0;
    for chunk in file[recorded..file.len() - MIB].chunks(MIB) {
        sender.send(Ok(chunk.to_vec())).await.unwrap();
        sent += chunk.len();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tus.status(id).await.bytes_done >= (recorded + 9 * MIB) as u64 {
            break;
        }
    }
    assert!(sent >= 9 * MIB, "{}", cluster.logs());
    cluster.kill_9(1);
    drop((sender, in_flight));

    // The first node reports what was recorded, then takes the rest from there (the killed
    // node's lock went with its connection).
    let durable = first.tus().offset(id).await;
    assert_eq!(durable, recorded as u64, "{}", cluster.logs());
    assert!(durable <= (recorded + sent) as u64);
    let rest = first
        .tus()
        .patch(id, durable)
        .body(file[durable as usize..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204, "{}", cluster.logs());
    let done = first.completed(id).await;
    assert_eq!(done["sha256"], sha256_hex(&file));
    assert!(first.content(id).await.bytes().await.unwrap() == file);
    assert_eq!(staged_keys(&cluster).await, Vec::<String>::new());
}

#[tokio::test]
async fn two_patches_of_one_upload_on_two_nodes_at_once_one_is_refused() {
    let cluster = Cluster::start(2).await;
    let (first, second) = (cluster.admin(0), cluster.admin(1));
    let file = random_bytes(3 * MIB);
    let id = first.tus().created(file.len() as u64, "{}").await;

    let tus = first.tus();
    let (mut sender, in_flight) = tus.streaming_patch(id, 0, None);
    sender.send(Ok(file[..MIB].to_vec())).await.unwrap();
    eventually(
        "the first node is receiving",
        Duration::from_secs(30),
        async || (tus.status(id).await.bytes_done > 0).then_some(()),
    )
    .await;
    // The same upload, same offset, on the other node, while the first sends: refused.
    let refused = second
        .tus()
        .patch(id, 0)
        .body(file.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409, "{}", cluster.logs());
    let body: serde_json::Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another request is sending"),
        "{body}"
    );

    sender.send(Ok(file[MIB..].to_vec())).await.unwrap();
    drop(sender);
    let finished = in_flight.await.unwrap();
    assert_eq!(finished.status(), 204, "{}", cluster.logs());
    let done = second.completed(id).await;
    assert_eq!(done["sha256"], sha256_hex(&file));
    // Once the first let go, the other node takes the upload's requests again.
    assert_eq!(second.tus().offset(id).await, file.len() as u64);
}

#[tokio::test]
async fn a_cancel_on_one_node_stops_a_patch_on_the_other_and_clears_the_bucket() {
    let cluster = Cluster::start(2).await;
    let (first, second) = (cluster.admin(0), cluster.admin(1));
    let file = random_bytes(20 * MIB);
    let id = first.tus().created(file.len() as u64, "{}").await;
    let tus = first.tus();
    let (mut sender, in_flight) = tus.streaming_patch(id, 0, None);
    // More than a part, so a multipart upload is open in the bucket.
    for chunk in file[..10 * MIB].chunks(MIB) {
        sender.send(Ok(chunk.to_vec())).await.unwrap();
    }
    let reached = within(Duration::from_secs(30), async || {
        (tus.status(id).await.bytes_done >= 9 * MIB as u64).then_some(())
    })
    .await;
    assert!(
        reached.is_some(),
        "the first node never had a part's worth: {:?}\n{}",
        tus.status(id).await,
        cluster.logs()
    );

    // When the answer comes, not when the test gets to it: the cancel's own answer waits for
    // the PATCH to let go of the upload and then for its bytes to be removed.
    let answered = tokio::spawn(async move {
        let answer = in_flight.await.unwrap();
        (answer, std::time::Instant::now())
    });
    let at = std::time::Instant::now();
    assert_eq!(second.cancel(id).await.status(), 200, "{}", cluster.logs());
    // The PATCH still being sent on the first node is answered, and stops being read (the
    // upload idle timeout is 60 s: nothing else ends it this soon).
    let (answer, answered_at) = tokio::time::timeout(Duration::from_secs(5), answered)
        .await
        .expect("the PATCH is answered after the cancel")
        .unwrap();
    let stopped = answered_at - at;
    assert_eq!(answer.status(), 409, "{}", cluster.logs());
    assert!(
        stopped <= Duration::from_secs(1),
        "stopped after {stopped:?}"
    );
    drop(sender);
    assert_eq!(first.job(id).await["status"], "cancelled");
    eventually(
        "the staged parts and tail are gone",
        Duration::from_secs(10),
        async || staged_keys(&cluster).await.is_empty().then_some(()),
    )
    .await;
}
