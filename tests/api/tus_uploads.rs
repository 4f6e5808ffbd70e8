//! `/api/uploads`: declare an upload (tus creation), send its bytes with PATCH, read the offset
//! with HEAD; every protocol error answers as tus says, and no failure leaves bytes behind.
use crate::helpers::*;
use futures::SinkExt;
use ingest::domain::{JobId, JobState};
use std::time::Duration;

const TUS: (&str, &str) = ("Tus-Resumable", "1.0.0");
const OCTETS: (&str, &str) = ("Content-Type", "application/offset+octet-stream");

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `POST /api/uploads` with the token and the tus version: a creation, to be completed.
fn tus_post(app: &TestApp) -> reqwest::RequestBuilder {
    app.client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header(TUS.0, TUS.1)
}

/// The job id in a creation's `Location`.
fn location_id(response: &reqwest::Response) -> JobId {
    let location = response.headers()["location"].to_str().unwrap();
    JobId::parse(location.strip_prefix("/api/uploads/").unwrap()).unwrap()
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
    let id = location_id(&response);
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

/// A PATCH of `body` at `offset`, answered.
async fn send_chunk(
    app: &TestApp,
    id: JobId,
    offset: u64,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    patch(app, id, offset).body(body).send().await.unwrap()
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

/// Waits until the upload's status counts some bytes (30 s at most).
async fn bytes_arrived(app: &TestApp, id: JobId) {
    eventually(
        "the upload's first bytes arrived",
        Duration::from_secs(30),
        async || (app.status_of(id).await.bytes_done > 0).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_declared_upload_sent_in_one_patch_is_stored_and_processed() {
    let app = spawn_app().await;
    let file = random_bytes(3 * 1024 * 1024 + 17);
    let id = created(&app, file.len() as u64).await;
    let declared = app.status_of(id).await;
    assert_eq!(declared.status, JobState::Receiving);
    assert_eq!(declared.bytes_total, Some(file.len() as u64));
    assert_eq!(declared.filename.as_deref(), Some("notes.txt"));
    assert_eq!(declared.metadata["via"], "tus");
    assert_eq!(head(&app, id).await.headers()["upload-offset"], "0");

    let response = send_chunk(&app, id, 0, file.clone()).await;
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
    // The bytes are all there: another PATCH at the old offset is refused, and a one-shot
    // upload is no resumable upload.
    let one_shot = accepted_id(app.ingest_file("x.bin", vec![1, 2, 3], "{}").await).await;
    assert_eq!(head(&app, one_shot).await.status(), 404);
    assert_error(send_chunk(&app, id, 0, "x").await, 409, "conflict").await;
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
    assert_eq!(
        response.headers()["tus-extension"],
        "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum"
    );
    assert_eq!(response.headers()["tus-checksum-algorithm"], "sha1,sha256");
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
    let without_length = tus_post(&app).send().await.unwrap();
    assert_error(without_length, 400, "invalid_upload_length").await;
    assert_error(create(&app, 5001, "{}").await, 413, "payload_too_large").await;
    assert_error(create(&app, 10, "[1]").await, 400, "invalid_metadata").await;
    let bad_base64 = tus_post(&app)
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
        send_chunk(&app, id, 50, vec![0u8; 50]).await,
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
        send_chunk(&app, JobId::new(), 0, "x").await,
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
    let response = send_chunk(&app, id, 0, file.clone()).await;
    assert_eq!(response.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn bytes_beyond_the_declared_length_are_refused_and_discarded() {
    let app = spawn_app().await;
    let file = random_bytes(100);
    let id = created(&app, 100).await;
    let response = send_chunk(&app, id, 0, vec![1u8; 101]).await;
    assert_error(response, 413, "payload_too_large").await;
    assert_eq!(app.status_of(id).await.status, JobState::Receiving);
    assert_eq!(head(&app, id).await.headers()["upload-offset"], "0");
    // The refused bytes left nothing behind: the right ones still make the right file.
    assert_eq!(send_chunk(&app, id, 0, file.clone()).await.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn an_upload_may_arrive_in_several_patches() {
    let app = spawn_app().await;
    let file = random_bytes(1000);
    let id = created(&app, 1000).await;
    for (from, to) in [(0, 400), (400, 401), (401, 1000)] {
        let response = send_chunk(&app, id, from as u64, file[from..to].to_vec()).await;
        assert_eq!(response.status(), 204);
        assert_eq!(response.headers()["upload-offset"], to.to_string().as_str());
        if to < 1000 {
            assert_eq!(
                head(&app, id).await.headers()["upload-offset"],
                to.to_string().as_str()
            );
            let live = app.status_of(id).await;
            assert_eq!(
                (live.status, live.bytes_done),
                (JobState::Receiving, to as u64)
            );
        }
    }
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn a_patch_cut_mid_way_keeps_what_arrived_and_the_upload_resumes_from_there() {
    let app = spawn_app().await;
    let file = random_bytes(200_000);
    let id = created(&app, file.len() as u64).await;
    let (mut sender, request) = app.tus().streaming_patch(id, 0, None);
    sender.send(Ok(file[..70_000].to_vec())).await.unwrap();
    // (Live progress is throttled, so the count may stop short of 70,000 until the PATCH ends.)
    bytes_arrived(&app, id).await;
    // The connection breaks mid-body.
    sender
        .send(Err(std::io::Error::other("network gone")))
        .await
        .unwrap();
    let _ = request.await;
    let offset = eventually(
        "HEAD reported an offset",
        Duration::from_secs(30),
        async || {
            let offset: u64 = head(&app, id).await.headers()["upload-offset"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (offset > 0).then_some(offset)
        },
    )
    .await;
    assert_eq!(offset, 70_000, "every byte that arrived is durable");
    assert_eq!(app.status_of(id).await.status, JobState::Receiving);

    let rest = send_chunk(&app, id, offset, file[offset as usize..].to_vec()).await;
    assert_eq!(rest.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn cancelling_between_patches_removes_the_stored_bytes() {
    let app = spawn_app().await;
    let id = created(&app, 1000).await;
    assert_eq!(send_chunk(&app, id, 0, vec![5u8; 300]).await.status(), 204);
    assert_eq!(app.temp_files().len(), 1);
    let cancel = app.cancel(id).await;
    assert_eq!(cancel.status(), 200);
    assert!(app.temp_files().is_empty());
    assert_eq!(head(&app, id).await.status(), 410);
    assert_error(send_chunk(&app, id, 300, "x").await, 410, "gone").await;
}

#[tokio::test]
async fn a_second_patch_while_one_is_sending_gets_409_and_bytes_never_interleave() {
    let app = spawn_app().await;
    let file = random_bytes(256 * 1024);
    let id = created(&app, file.len() as u64).await;
    let (mut sender, first) = app.tus().streaming_patch(id, 0, None);
    sender.send(Ok(file[..1024].to_vec())).await.unwrap();
    app.wait_for_state(id, |_| true).await;
    // Wait until the first request holds the upload (its bytes are being counted).
    bytes_arrived(&app, id).await;
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
    let (mut sender, upload) = app.tus().streaming_patch(id, 0, None);
    sender.send(Ok(vec![7u8; 64 * 1024])).await.unwrap();
    bytes_arrived(&app, id).await;
    let cancel = app.cancel(id).await;
    assert_eq!(cancel.status(), 200);
    let answer = tokio::time::timeout(Duration::from_secs(10), upload)
        .await
        .expect("the PATCH is answered at once")
        .unwrap();
    assert_error(answer, 409, "conflict").await;
    assert!(app.temp_files().is_empty());
    assert_eq!(app.status_of(id).await.status, JobState::Cancelled);
    assert_eq!(head(&app, id).await.status(), 410);
}

#[tokio::test]
async fn an_upload_that_sends_nothing_for_the_expiry_time_expires() {
    use ingest::server::retention::{sweep, Policy};
    let app = spawn_app_with(|s| s.upload_expiry = Duration::from_secs(2)).await;
    let created_response = create(&app, 100, "{}").await;
    assert_eq!(created_response.status(), 201);
    let expires = created_response.headers()["upload-expires"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(expires.ends_with(" GMT"), "{expires}");
    let id = location_id(&created_response);
    assert_eq!(send_chunk(&app, id, 0, vec![0u8; 10]).await.status(), 204);
    let policy = |upload_expiry| Policy {
        keep: None,
        upload_expiry,
        leftover_age: Duration::from_secs(3600),
    };
    assert_eq!(
        sweep(
            &app.state.jobs,
            &app.state.uploads,
            policy(Duration::from_secs(3600))
        )
        .await
        .unwrap()
        .expired_uploads,
        0
    );
    assert!(head(&app, id)
        .await
        .headers()
        .contains_key("upload-expires"));

    // Past its expiry a PATCH finds it gone even before a sweep, and the sweep's reason holds.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_error(send_chunk(&app, id, 10, "x").await, 410, "gone").await;
    let expired = app.status_of(id).await;
    assert_eq!(expired.status, JobState::Failed);
    assert!(expired.error.unwrap().starts_with("expired"));
    assert!(app.temp_files().is_empty());
    assert_eq!(head(&app, id).await.status(), 410);

    let idle = created(&app, 100).await;
    let swept = sweep(&app.state.jobs, &app.state.uploads, policy(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(swept.expired_uploads, 1);
    assert_eq!(app.status_of(idle).await.status, JobState::Failed);
}

/// Creates an upload of `file` that declares `sha256` as its digest.
async fn created_with_digest(app: &TestApp, file: &[u8], sha256: &str) -> JobId {
    let response = tus_post(app)
        .header("Upload-Length", file.len())
        .header("Upload-Metadata", format!("sha256 {}", b64(sha256)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: serde_json::Value = response.json().await.unwrap();
    JobId::parse(body["job_id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn a_declared_digest_is_checked_when_the_file_is_complete() {
    let app = spawn_app().await;
    let file = random_bytes(5000);
    let right = created_with_digest(&app, &file, &sha256_hex(&file)).await;
    assert_eq!(send_chunk(&app, right, 0, file.clone()).await.status(), 204);
    assert_eq!(
        app.wait_until_finished(right).await.status,
        JobState::Completed
    );

    let wrong = created_with_digest(&app, &file, &sha256_hex(b"something else")).await;
    let response = send_chunk(&app, wrong, 0, file.clone()).await;
    let message = assert_error(response, 460, "checksum_mismatch").await;
    assert!(message.contains(&sha256_hex(&file)), "{message}");
    let failed = app.status_of(wrong).await;
    assert_eq!(failed.status, JobState::Failed);
    assert!(failed.error.unwrap().contains("but the upload declared"));
    assert!(app.temp_files().is_empty());

    let malformed = tus_post(&app)
        .header("Upload-Length", 10)
        .header("Upload-Metadata", format!("sha256 {}", b64("ABC")))
        .send()
        .await
        .unwrap();
    assert_error(malformed, 400, "invalid_upload_metadata").await;
}

#[tokio::test]
async fn termination_cancels_an_unfinished_upload_and_removes_its_bytes() {
    let app = spawn_app().await;
    let id = created(&app, 1000).await;
    assert_eq!(send_chunk(&app, id, 0, vec![1u8; 10]).await.status(), 204);
    let delete = |id: JobId| {
        app.client
            .delete(app.url(&format!("/api/uploads/{id}")))
            .bearer_auth(TOKEN)
            .header(TUS.0, TUS.1)
            .send()
    };
    let terminated = delete(id).await.unwrap();
    assert_eq!(terminated.status(), 204);
    assert_eq!(terminated.headers()["tus-resumable"], "1.0.0");
    assert_eq!(app.status_of(id).await.status, JobState::Cancelled);
    assert!(app.temp_files().is_empty());
    assert_eq!(head(&app, id).await.status(), 410);
    assert_error(delete(id).await.unwrap(), 410, "gone").await;

    let complete = created(&app, 3).await;
    assert_eq!(send_chunk(&app, complete, 0, "abc").await.status(), 204);
    assert_error(delete(complete).await.unwrap(), 409, "conflict").await;
}

#[tokio::test]
async fn a_patch_whose_bytes_miss_their_checksum_gets_460_and_is_discarded() {
    use base64::Engine;
    use sha2::Digest;
    let app = spawn_app().await;
    let file = random_bytes(3000);
    let id = created(&app, 3000).await;
    let encode = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    let sha1_of = |bytes: &[u8]| encode(&sha1::Sha1::digest(bytes));
    let sha256_of = |bytes: &[u8]| encode(&sha2::Sha256::digest(bytes));

    let good = patch(&app, id, 0)
        .header(
            "Upload-Checksum",
            format!("sha1 {}", sha1_of(&file[..1000])),
        )
        .body(file[..1000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 204);
    let bad = patch(&app, id, 1000)
        .header(
            "Upload-Checksum",
            format!("sha256 {}", sha256_of(b"other bytes")),
        )
        .body(file[1000..2000].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(bad, 460, "checksum_mismatch").await;
    assert_eq!(head(&app, id).await.headers()["upload-offset"], "1000");
    assert_eq!(app.status_of(id).await.status, JobState::Receiving);
    let unknown = patch(&app, id, 1000)
        .header("Upload-Checksum", format!("md5 {}", sha1_of(b"x")))
        .body(file[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_error(unknown, 400, "invalid_upload_checksum").await;

    let rest = patch(&app, id, 1000)
        .header(
            "Upload-Checksum",
            format!("sha256 {}", sha256_of(&file[1000..])),
        )
        .body(file[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
}

#[tokio::test]
async fn the_first_bytes_may_come_with_the_creation() {
    let app = spawn_app().await;
    let file = random_bytes(4000);
    let response = tus_post(&app)
        .header("Upload-Length", 4000)
        .header(OCTETS.0, OCTETS.1)
        .body(file[..1500].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["upload-offset"], "1500");
    let id = location_id(&response);
    let rest = send_chunk(&app, id, 1500, file[1500..].to_vec()).await;
    assert_eq!(rest.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));

    let whole = tus_post(&app)
        .header("Upload-Length", 3)
        .header(OCTETS.0, OCTETS.1)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(whole.headers()["upload-offset"], "3");
    let wrong_type = tus_post(&app)
        .header("Upload-Length", 3)
        .header("Content-Type", "text/plain")
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_error(wrong_type, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn a_deferred_length_is_stated_by_a_later_patch() {
    let app = spawn_app().await;
    let file = random_bytes(2500);
    let response = tus_post(&app)
        .header("Upload-Defer-Length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let id = location_id(&response);
    assert_eq!(head(&app, id).await.headers()["upload-defer-length"], "1");
    assert_eq!(
        send_chunk(&app, id, 0, file[..1000].to_vec())
            .await
            .status(),
        204
    );
    assert_eq!(app.status_of(id).await.status, JobState::Receiving);
    let too_short = patch(&app, id, 1000)
        .header("Upload-Length", 999)
        .body(vec![])
        .send()
        .await
        .unwrap();
    assert_error(too_short, 400, "invalid_upload_length").await;
    let last = patch(&app, id, 1000)
        .header("Upload-Length", 2500)
        .body(file[1000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(last.status(), 204);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert_eq!(done.size, Some(2500));

    let both = tus_post(&app)
        .header("Upload-Defer-Length", "1")
        .header("Upload-Length", 5)
        .send()
        .await
        .unwrap();
    assert_error(both, 400, "invalid_upload_length").await;
}

#[tokio::test]
async fn an_empty_file_is_complete_at_creation_and_errors_still_speak_tus() {
    let app = spawn_app().await;
    let response = create(&app, 0, "{}").await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["upload-offset"], "0");
    let id = location_id(&response);
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(b""));

    let unversioned = app
        .client
        .post(app.url("/api/uploads"))
        .bearer_auth(TOKEN)
        .header("Upload-Length", 1)
        .send()
        .await
        .unwrap();
    assert_eq!(unversioned.headers()["tus-version"], "1.0.0");
    assert_eq!(unversioned.headers()["tus-resumable"], "1.0.0");
    assert_error(unversioned, 412, "precondition_failed").await;
    let missing = send_chunk(&app, JobId::new(), 0, "x").await;
    assert_eq!(missing.headers()["tus-resumable"], "1.0.0");
}

#[tokio::test]
async fn bytes_refused_at_creation_still_leave_a_resumable_upload() {
    use base64::Engine;
    let app = spawn_app().await;
    let wrong = base64::engine::general_purpose::STANDARD.encode([0u8; 20]);
    let response = tus_post(&app)
        .header("Upload-Length", 10)
        .header(OCTETS.0, OCTETS.1)
        .header("Upload-Checksum", format!("sha1 {wrong}"))
        .body("0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["upload-offset"], "0");
    let id = location_id(&response);
    assert_eq!(send_chunk(&app, id, 0, "0123456789").await.status(), 204);
    assert_eq!(
        app.wait_until_finished(id).await.status,
        JobState::Completed
    );
}
