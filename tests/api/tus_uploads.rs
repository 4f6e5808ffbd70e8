//! `/api/uploads`: declare an upload (tus creation), send its bytes with PATCH, read the offset
//! with HEAD; every protocol error answers as tus says, and no failure leaves bytes behind.
use crate::helpers::*;
use futures::{channel::mpsc, SinkExt};
use ingest::domain::{JobId, JobState, JobStatus};
use std::time::Duration;

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

async fn create(app: &TestApp, length: u64, metadata: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .header("Upload-Length", length)
        .header(
            "Upload-Metadata",
            format!("filename {},metadata {}", b64("notes.txt"), b64(metadata)),
        )
        .send()
        .await
        .unwrap()
}

/// Creates an upload of `length` bytes and returns its job id (from the 201's Location).
async fn created(app: &TestApp, length: u64) -> JobId {
    let response = create(app, length, "{\"via\": \"tus\"}").await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["tus-resumable"], "1.0.0");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = JobId::parse(location.strip_prefix("/api/uploads/").unwrap()).unwrap();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["job_id"], id.to_string());
    assert_eq!(body["status"], "receiving");
    id
}

fn patch(app: &TestApp, id: JobId, offset: u64) -> reqwest::RequestBuilder {
    app.client
        .patch(app.url(&format!("/api/uploads/{id}")))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Offset", offset)
}

async fn head(app: &TestApp, id: JobId) -> reqwest::Response {
    app.client
        .head(app.url(&format!("/api/uploads/{id}")))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap()
}

async fn status_of(app: &TestApp, id: JobId) -> JobStatus {
    app.status(&id.to_string()).await.json().await.unwrap()
}

/// A PATCH whose body is fed by hand: the sender, and the request running in the background.
fn streaming_patch(
    app: &TestApp,
    id: JobId,
) -> (
    mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<reqwest::Response>,
) {
    let (sender, body) = mpsc::channel(4);
    let request = patch(app, id, 0).body(reqwest::Body::wrap_stream(body));
    (
        sender,
        tokio::spawn(async move { request.send().await.unwrap() }),
    )
}

#[tokio::test]
async fn a_declared_upload_sent_in_one_patch_is_stored_and_processed() {
    let app = spawn_app().await;
    let file = random_bytes(3 * 1024 * 1024 + 17);
    let id = created(&app, file.len() as u64).await;
    let declared = status_of(&app, id).await;
    assert_eq!(declared.status, JobState::Receiving);
    assert_eq!(declared.bytes_total, Some(file.len() as u64));
    assert_eq!(declared.filename.as_deref(), Some("notes.txt"));
    assert_eq!(declared.metadata["via"], "tus");
    assert_eq!(head(&app, id).await.headers()["upload-offset"], "0");

    let response = patch(&app, id, 0).body(file.clone()).send().await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        response.headers()["upload-offset"],
        file.len().to_string().as_str()
    );
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert_eq!(done.size, Some(file.len() as u64));
    let offset = head(&app, id).await;
    assert_eq!(offset.status(), 200);
    assert_eq!(
        offset.headers()["upload-offset"],
        file.len().to_string().as_str()
    );
    assert_eq!(
        offset.headers()["upload-length"],
        file.len().to_string().as_str()
    );
    assert_eq!(offset.headers()["cache-control"], "no-store");
    // The bytes are all there: another PATCH at the old offset is refused.
    assert_error(
        patch(&app, id, 0).body("x").send().await.unwrap(),
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn options_tells_clients_what_the_server_speaks() {
    let app = spawn_app_with(|s| s.max_upload_bytes = 5000).await;
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/api/uploads"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(response.headers()["tus-version"], "1.0.0");
    assert_eq!(response.headers()["tus-extension"], "creation");
    assert_eq!(response.headers()["tus-max-size"], "5000");
}

#[tokio::test]
async fn creation_refuses_what_it_cannot_take() {
    let app = spawn_app_with(|s| s.max_upload_bytes = 5000).await;
    let without_version = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header("Upload-Length", 10)
        .send()
        .await
        .unwrap();
    assert_error(without_version, 412, "precondition_failed").await;
    let without_length = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .send()
        .await
        .unwrap();
    assert_error(without_length, 400, "invalid_upload_length").await;
    assert_error(create(&app, 5001, "{}").await, 413, "payload_too_large").await;
    assert_error(create(&app, 10, "[1]").await, 400, "invalid_metadata").await;
    let bad_base64 = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .header("Upload-Length", 10)
        .header("Upload-Metadata", "filename ***")
        .send()
        .await
        .unwrap();
    assert_error(bad_base64, 400, "invalid_upload_metadata").await;
    let anonymous = app
        .client
        .post(app.url("/api/uploads"))
        .header(TUS.0, TUS.1)
        .header("Upload-Length", 10)
        .send()
        .await
        .unwrap();
    assert_error(anonymous, 401, "unauthorized").await;
    assert!(
        app.list_jobs("").await.jobs.is_empty(),
        "a refused creation leaves no job"
    );
}

#[tokio::test]
async fn patch_errors_answer_as_tus_says_and_keep_the_upload_intact() {
    let app = spawn_app().await;
    let id = created(&app, 100).await;
    let wrong_type = app
        .client
        .patch(app.url(&format!("/api/uploads/{id}")))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .header("Upload-Offset", 0)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, 415, "unsupported_media_type").await;
    assert_error(
        patch(&app, id, 50)
            .body(vec![0u8; 50])
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    let no_offset = app
        .client
        .patch(app.url(&format!("/api/uploads/{id}")))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
        .header(OCTETS.0, OCTETS.1)
        .body(vec![0u8; 100])
        .send()
        .await
        .unwrap();
    assert_error(no_offset, 400, "invalid_upload_offset").await;
    assert_error(
        patch(&app, JobId::new(), 0).body("x").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    let bad_id = app
        .client
        .head(app.url("/api/uploads/nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);
    // None of that touched the upload: the whole file still goes in.
    let file = random_bytes(100);
    let response = patch(&app, id, 0).body(file.clone()).send().await.unwrap();
    assert_eq!(response.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn bytes_beyond_the_declared_length_fail_the_upload_and_leave_nothing() {
    let app = spawn_app().await;
    let id = created(&app, 100).await;
    let response = patch(&app, id, 0)
        .body(vec![1u8; 101])
        .send()
        .await
        .unwrap();
    assert_error(response, 413, "payload_too_large").await;
    let failed = status_of(&app, id).await;
    assert_eq!(failed.status, JobState::Failed);
    assert!(app.temp_files().is_empty());
    assert_eq!(head(&app, id).await.status(), 410);
    assert_error(
        patch(&app, id, 0).body("x").send().await.unwrap(),
        410,
        "gone",
    )
    .await;
}

#[tokio::test]
async fn a_patch_that_stops_short_fails_the_upload_with_the_reason() {
    let app = spawn_app().await;
    let id = created(&app, 1000).await;
    let response = patch(&app, id, 0)
        .body(vec![1u8; 400])
        .send()
        .await
        .unwrap();
    let message = assert_error(response, 400, "upload_incomplete").await;
    assert!(message.contains("400 of 1000"), "{message}");
    let failed = status_of(&app, id).await;
    assert_eq!(failed.status, JobState::Failed);
    assert!(failed.error.unwrap().contains("400 of 1000"));
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn a_second_patch_while_one_is_sending_gets_409_and_bytes_never_interleave() {
    let app = spawn_app().await;
    let file = random_bytes(256 * 1024);
    let id = created(&app, file.len() as u64).await;
    let (mut sender, first) = streaming_patch(&app, id);
    sender.send(Ok(file[..1024].to_vec())).await.unwrap();
    wait_for_state(&app.client, &app.url(""), id, |_| true).await;
    // Wait until the first request holds the upload (its bytes are being counted).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status_of(&app, id).await.bytes_done == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no bytes arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = tokio::time::timeout(
        Duration::from_secs(20),
        patch(&app, id, 0).body(file.clone()).send(),
    )
    .await
    .expect("the second PATCH is answered")
    .unwrap();
    assert_error(second, 409, "conflict").await;

    sender.send(Ok(file[1024..].to_vec())).await.unwrap();
    drop(sender);
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .expect("the first PATCH is answered");
    assert_eq!(first.unwrap().status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn cancelling_mid_patch_stops_it_and_removes_its_bytes() {
    let app = spawn_app().await;
    let id = created(&app, 10_000_000).await;
    let (mut sender, upload) = streaming_patch(&app, id);
    sender.send(Ok(vec![7u8; 64 * 1024])).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status_of(&app, id).await.bytes_done == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no bytes arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancel = app
        .client
        .post(app.url(&format!("/api/jobs/{id}/cancel")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 200);
    let answer = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the PATCH is answered at once")
        .unwrap();
    assert_error(answer, 409, "conflict").await;
    assert!(app.temp_files().is_empty());
    assert_eq!(status_of(&app, id).await.status, JobState::Cancelled);
    assert_eq!(head(&app, id).await.status(), 410);
}

#[tokio::test]
async fn an_upload_that_never_sends_expires_in_the_sweep() {
    let app = spawn_app().await;
    let id = created(&app, 100).await;
    let kept = ingest::server::retention::sweep(
        &app.state.jobs,
        Some(Duration::from_secs(3600)),
        Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(kept.expired_uploads, 0);
    let swept = ingest::server::retention::sweep(
        &app.state.jobs,
        Some(Duration::from_secs(3600)),
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(swept.expired_uploads, 1);
    let expired = status_of(&app, id).await;
    assert_eq!(expired.status, JobState::Failed);
    assert!(expired.error.unwrap().starts_with("expired"));
    assert_eq!(head(&app, id).await.status(), 410);
}
