//! The curl, PowerShell and wscat examples from the demo's README, unchanged but for host,
//! port and token.
use crate::helpers::*;
use ingest::domain::JobState;
use serde_json::{json, Value};

#[tokio::test]
async fn curl_metadata_only_example_completes_with_parsed_metadata() {
    let app = spawn_app().await;
    // curl -X POST .../api/ingest -H "Authorization: Bearer …" -H "Content-Type: application/json"
    //      -d '{"metadata": "{\"test\":\"data\"}"}'
    let response = app
        .ingest_json(r#"{"metadata": "{\"test\":\"data\"}"}"#)
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    let id = body["job_id"].as_str().unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(body["status_url"], app.url(&format!("/api/status/{id}")));
    assert_eq!(body["ws_url"], app.ws_url(&format!("/ws/status/{id}")));
    assert_eq!(location, body["status_url"].as_str().unwrap());

    let done = app
        .wait_until_finished(ingest::domain::JobId::parse(id).unwrap())
        .await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.progress, 100);
    assert_eq!(done.metadata, json!({"test": "data"}));
    assert_eq!(done.sha256, None);
}

#[tokio::test]
async fn curl_file_example_stores_the_file_under_its_sha256() {
    let app = spawn_app().await;
    let contents = b"hello from test.txt\n".to_vec();
    // curl -X POST .../api/ingest -H "Authorization: Bearer …" -F "file=@test.txt"
    //      -F "metadata={\"source\":\"curl\"}"
    let id = accepted_id(
        app.ingest_file("test.txt", contents.clone(), r#"{"source":"curl"}"#)
            .await,
    )
    .await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    let digest = sha256_hex(&contents);
    assert_eq!(done.sha256.unwrap().to_hex(), digest);
    assert_eq!(done.size, Some(contents.len() as u64));
    assert_eq!(done.filename.as_deref(), Some("test.txt"));
    assert_eq!(done.content_type.as_deref(), Some("text/plain"));
    assert_eq!(done.metadata, json!({"source": "curl"}));
    let blob = app.blob_file(&digest);
    assert_eq!(std::fs::read(blob).unwrap(), contents);
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn curl_status_example_reports_every_field() {
    let app = spawn_app().await;
    let id = accepted_id(app.ingest_json(r#"{"metadata": "{}"}"#).await).await;
    app.wait_until_finished(id).await;
    // curl ".../api/status/JOB_ID" -H "Authorization: Bearer …"
    let response = app.status(&id.to_string()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    for field in [
        "job_id",
        "status",
        "progress",
        "bytes_done",
        "bytes_total",
        "filename",
        "size",
        "sha256",
        "content_type",
        "metadata",
        "error",
        "created_at",
        "updated_at",
    ] {
        assert!(body.get(field).is_some(), "missing {field} in {body}");
    }
    let created = body["created_at"].as_str().unwrap();
    time::OffsetDateTime::parse(created, &time::format_description::well_known::Rfc3339)
        .expect("created_at is RFC 3339");
}

#[tokio::test]
async fn powershell_form_example_is_accepted() {
    let app = spawn_app().await;
    // Invoke-RestMethod -Method Post -Headers @{ Authorization = "Bearer $token" }
    //                   -Body @{ metadata = "{}" }   (sent as a urlencoded form)
    let response = app
        .client
        .post(app.url("/api/ingest"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("metadata=%7B%7D")
        .send()
        .await
        .unwrap();
    let id = accepted_id(response).await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(done.metadata, json!({}));
}

#[tokio::test]
async fn a_bare_post_without_a_body_is_a_job_with_empty_metadata() {
    let app = spawn_app().await;
    let response = app.ingest_body(None, "").await;
    let id = accepted_id(response).await;
    assert_eq!(app.wait_until_finished(id).await.metadata, json!({}));
}

#[tokio::test]
async fn json_metadata_may_be_an_object() {
    let app = spawn_app().await;
    let id = accepted_id(app.ingest_json(r#"{"metadata": {"nested": [1, 2]}}"#).await).await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.metadata, json!({"nested": [1, 2]}));
}
