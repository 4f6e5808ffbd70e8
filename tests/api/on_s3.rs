//! The server with its blobs in a real S3-compatible bucket (moto): one-shot and tus uploads
//! end up as objects under the prefix, download whole and by `Range`, and go with their job;
//! `/readyz` follows the store; a bad or unreachable store refuses to start.
use crate::{
    helpers::*,
    s3::{Moto, TestBucket, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY},
};
use ingest::domain::{JobId, JobState};
use std::{process::Command, time::Duration};

async fn download(app: &TestApp, id: JobId, range: Option<&str>) -> reqwest::Response {
    let request = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/content")))
        .bearer_auth(TOKEN);
    let request = match range {
        Some(range) => request.header("range", range),
        None => request,
    };
    request.send().await.unwrap()
}

async fn delete(app: &TestApp, id: JobId) {
    let answer = app
        .client
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204, "deleting {id}");
}

/// The job completed with the file's digest, which is stored in the bucket (and not on disk),
/// and downloads whole and by ranges (one across the 8 MiB part boundary, the last byte).
async fn assert_stored_in_bucket(app: &TestApp, bucket: &TestBucket, id: JobId, bytes: &[u8]) {
    let job = app.wait_until_finished(id).await;
    assert_eq!(job.status, JobState::Completed, "{job:?}");
    let digest = sha256_hex(bytes);
    assert_eq!(job.sha256.map(|d| d.to_hex()), Some(digest.clone()));
    let key = format!("node/{}/{digest}", &digest[..2]);
    assert!(bucket.keys().await.contains(&key), "{key} in the bucket");
    assert!(!app.blob_file(&digest).exists(), "no local copy");

    let whole = download(app, id, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(sha256_hex(&whole.bytes().await.unwrap()), digest);
    let boundary = 8 * 1024 * 1024;
    let (from, to) = (boundary - 100, (boundary + 100).min(bytes.len() - 1));
    let part = download(app, id, Some(&format!("bytes={from}-{to}"))).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.unwrap(), bytes[from..=to]);
    let last = download(app, id, Some("bytes=-1")).await;
    assert_eq!(last.status(), 206);
    assert_eq!(last.bytes().await.unwrap(), bytes[bytes.len() - 1..]);
}

#[tokio::test]
async fn one_shot_and_tus_uploads_are_stored_in_the_bucket_and_go_with_their_jobs() {
    let bucket = TestBucket::create().await;
    let settings = bucket.settings("node");
    let app = spawn_app_with(|s| s.blob_store = Some(settings)).await;

    let one_shot = random_bytes(12 * 1024 * 1024 + 7);
    let id = accepted_id(app.ingest_file("big.bin", one_shot.clone(), "{}").await).await;
    assert_stored_in_bucket(&app, &bucket, id, &one_shot).await;

    // tus, in two PATCHes: 9 MiB + 3 bytes.
    let resumable = random_bytes(9 * 1024 * 1024 + 3);
    let tus = app.tus();
    let upload = tus.created(resumable.len() as u64, "{}").await;
    let split = 5 * 1024 * 1024;
    for (offset, chunk) in [(0, &resumable[..split]), (split, &resumable[split..])] {
        let answer = tus
            .patch(upload, offset as u64)
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 204, "PATCH at {offset}");
    }
    assert_stored_in_bucket(&app, &bucket, upload, &resumable).await;
    assert_eq!(bucket.keys().await.len(), 2);

    delete(&app, id).await;
    delete(&app, upload).await;
    assert!(
        bucket.keys().await.is_empty(),
        "deleting the jobs removed the objects"
    );
}

#[tokio::test]
async fn a_resumable_upload_waits_in_the_bucket_not_on_disk_and_termination_leaves_nothing() {
    let bucket = TestBucket::create().await;
    let settings = bucket.settings("node");
    let app = spawn_app_with(|s| s.blob_store = Some(settings)).await;
    let tus = app.tus();
    let file = random_bytes(12 * 1024 * 1024);
    let upload = tus.created(file.len() as u64, "{}").await;

    let staged = async || -> Vec<String> {
        let prefix = format!("node/staging/{upload}/");
        let keys = bucket.keys().await;
        keys.into_iter()
            .filter(|k| k.starts_with(&prefix))
            .collect()
    };

    // Short of a part: the bytes wait as the tail, named by the durable offset.
    let first = 3 * 1024 * 1024;
    let answer = tus
        .patch(upload, 0)
        .body(file[..first].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(
        staged().await,
        vec![format!("node/staging/{upload}/tail-{first}")]
    );
    let tmp = app.data_dir.path().join("tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing on disk"
    );

    // A PATCH whose bytes fail their checksum changes nothing: same offset, same tail.
    let refused = tus
        .patch(upload, first as u64)
        .header(
            "Upload-Checksum",
            format!("sha1 {}", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        )
        .body(file[first..first + 1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 460);
    assert_eq!(tus.offset(upload).await, first as u64);
    assert_eq!(
        staged().await,
        vec![format!("node/staging/{upload}/tail-{first}")]
    );

    assert_eq!(multipart_uploads(&bucket).await, 0, "no part yet");

    // More bytes: a whole part goes to a multipart upload, the rest is the new tail (the old
    // one goes once the new offset is recorded).
    let second = 10 * 1024 * 1024;
    let answer = tus
        .patch(upload, first as u64)
        .body(file[first..second].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 204);
    assert_eq!(
        staged().await,
        vec![format!("node/staging/{upload}/tail-{second}")]
    );

    assert_eq!(multipart_uploads(&bucket).await, 1);

    let ended = tus.terminate(upload).send().await.unwrap();
    assert_eq!(ended.status(), 204);
    assert_eq!(
        multipart_uploads(&bucket).await,
        0,
        "termination aborted the parts"
    );
    assert_eq!(
        staged().await,
        Vec::<String>::new(),
        "termination removed it"
    );
    assert_eq!(bucket.keys().await, Vec::<String>::new());
}

/// Multipart uploads in progress in `bucket`, as moto lists them (it answers unsigned requests).
async fn multipart_uploads(bucket: &TestBucket) -> usize {
    let listing = reqwest::get(format!("{}/{}?uploads", bucket.endpoint, bucket.name))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    listing.matches("<UploadId>").count()
}

#[tokio::test]
async fn a_one_shot_upload_streams_into_the_bucket_and_a_cut_one_leaves_nothing() {
    use futures::SinkExt;
    let bucket = TestBucket::create().await;
    let settings = bucket.settings("node");
    let app = spawn_app_with(|s| s.blob_store = Some(settings)).await;
    let (mut sender, body) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let part =
        reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(body)).file_name("stream.bin");
    let form = reqwest::multipart::Form::new().part("file", part);
    let in_flight = tokio::spawn({
        let request = app
            .client
            .post(app.url("/api/ingest"))
            .bearer_auth(TOKEN)
            .multipart(form);
        async move { request.send().await }
    });
    // More than a part: it is in the bucket's multipart upload, and nothing is on disk.
    for _ in 0..10 {
        sender.send(Ok(random_bytes(1024 * 1024))).await.unwrap();
    }
    eventually(
        "a part is in the bucket",
        Duration::from_secs(30),
        async || (multipart_uploads(&bucket).await == 1).then_some(()),
    )
    .await;
    assert!(app.temp_files().is_empty(), "{:?}", app.temp_files());

    // Cut: the job fails and nothing of it stays in the bucket.
    sender
        .send(Err(std::io::Error::other("cut")))
        .await
        .unwrap();
    drop(sender);
    let _ = in_flight.await;
    eventually(
        "the upload is dropped",
        Duration::from_secs(30),
        async || (multipart_uploads(&bucket).await == 0).then_some(()),
    )
    .await;
    assert_eq!(bucket.keys().await, Vec::<String>::new());
    let jobs = app.admin().get_json("/api/jobs").await;
    assert_eq!(jobs["jobs"][0]["status"], "failed", "{jobs}");
}

#[tokio::test]
async fn readyz_fails_while_the_blob_store_is_stopped() {
    let mut moto = Moto::start().await;
    let bucket = TestBucket::create_on(&moto.endpoint).await;
    let settings = bucket.settings("");
    let app = spawn_app_with(|s| s.blob_store = Some(settings)).await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["blob_store"]["ok"], true, "{body}");

    moto.stop();
    let body = eventually("/readyz fails", Duration::from_secs(10), async || {
        let (status, body) = app.get_json("/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["checks"]["blob_store"]["ok"], false, "{body}");
    assert_eq!(body["checks"]["database"]["ok"], true, "{body}");
    // Nothing about the store's address is revealed.
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
}

#[tokio::test]
async fn a_bad_or_unreachable_blob_store_refuses_to_start_in_one_line() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{closed}");
    let cases = [
        ("/var/blobs", None, "blob_store"),
        ("s3://bucket", Some("ftp://127.0.0.1"), "s3_endpoint"),
        ("s3://ingest-blobs", Some(closed.as_str()), "blob store"),
    ];
    for (store, endpoint, named) in cases {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
            .env("INGEST_DATA_DIR", data.path())
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env("INGEST_TOKEN", TOKEN)
            .env_remove("RUST_LOG")
            .env("INGEST_BLOB_STORE", store)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", REGION);
        match endpoint {
            Some(endpoint) => command.env("INGEST_S3_ENDPOINT", endpoint),
            None => command.env_remove("INGEST_S3_ENDPOINT"),
        };
        let started = std::time::Instant::now();
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{store}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains(SECRET_ACCESS_KEY), "{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{store}: refused quickly"
        );
    }
}
