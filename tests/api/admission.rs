//! The admission hook against a real receiver on loopback: it is asked (signed) before a job
//! is accepted, and admits, rewrites the metadata, refuses (403, nothing stored) or times out,
//! which `admission_on_error` turns into a refusal (503) or an admission.
use super::{
    helpers::{accepted_id, assert_error, spawn_app_with, TestApp},
    webhooks_receiver::{verify, Answer, Receiver},
};
use ingest::server::config::{AdmissionSettings, OnError};
use serde_json::{json, Value};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwMfKQ9r8G";

async fn app_with_hook(receiver: &Receiver, timeout_ms: u64, on_error: OnError) -> TestApp {
    let url = reqwest::Url::parse(&receiver.url("/admit")).unwrap();
    spawn_app_with(move |settings| {
        settings.admission = Some(AdmissionSettings {
            url,
            secret: SECRET.to_owned().into(),
            timeout: Duration::from_millis(timeout_ms),
            on_error,
        });
    })
    .await
}

async fn ingest(app: &TestApp, metadata: Value) -> reqwest::Response {
    app.ingest_json(&json!({ "metadata": metadata }).to_string())
        .await
}

async fn job_count(app: &TestApp) -> usize {
    app.list_jobs("").await.jobs.len()
}

#[tokio::test]
async fn the_hook_is_asked_signed_and_a_2xx_admits() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(204));
    let app = app_with_hook(&receiver, 2000, OnError::Reject).await;
    let response = ingest(&app, json!({"kind": "invoice"})).await;
    assert_eq!(response.status(), 202);
    let asked = receiver.received();
    assert_eq!(asked.len(), 1);
    assert!(verify(&asked[0], SECRET), "the hook's request verifies");
    assert_eq!(
        asked[0].json(),
        json!({"account": "admin", "filename": null, "size": null, "content_type": null,
               "metadata": {"kind": "invoice"}})
    );

    // A file: its name, type and (for tus) declared size are asked about too.
    let form = reqwest::multipart::Form::new()
        .text("metadata", r#"{"a":1}"#)
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"hello".to_vec())
                .file_name("hello.txt")
                .mime_str("text/plain")
                .unwrap(),
        );
    assert_eq!(app.ingest_form(form).await.status(), 202);
    let tus = app.tus().created(42, r#"{"b":2}"#).await;
    let asked = receiver.received();
    assert_eq!(asked[1].json()["filename"], "hello.txt");
    assert_eq!(asked[1].json()["content_type"], "text/plain");
    assert_eq!(asked[1].json()["metadata"], json!({"a": 1}));
    assert_eq!(asked[2].json()["size"], 42);
    assert_eq!(asked[2].json()["filename"], "f.bin");
    assert_eq!(app.status_of(tus).await.metadata, json!({"b": 2}));
}

#[tokio::test]
async fn the_hook_may_replace_the_metadata() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::json(
        200,
        json!({"metadata": {"checked": true, "tier": "gold"}}),
    ));
    let app = app_with_hook(&receiver, 2000, OnError::Reject).await;
    let response = ingest(&app, json!({"tier": "free"})).await;
    assert_eq!(response.status(), 202);
    let job = app.status_of(accepted_id(response).await).await;
    assert_eq!(job.metadata, json!({"checked": true, "tier": "gold"}));

    // With a hook, a multipart metadata part after the file would escape the check.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
        )
        .text("metadata", r#"{"late":1}"#);
    assert_error(app.ingest_form(form).await, 400, "invalid_multipart").await;
}

#[tokio::test]
async fn a_4xx_refuses_with_the_hooks_message_and_stores_nothing() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::json(
        422,
        json!({"message": "no invoices on Sundays"}),
    ));
    let app = app_with_hook(&receiver, 2000, OnError::Admit).await;

    let message = assert_error(ingest(&app, json!({})).await, 403, "admission_refused").await;
    assert_eq!(message, "no invoices on Sundays");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![7u8; 100_000]).file_name("big.bin"),
    );
    assert_error(app.ingest_form(form).await, 403, "admission_refused").await;
    let created = app.tus().create(1000, "{}").send().await.unwrap();
    assert_eq!(created.status(), 403);
    let creation_with_upload = app
        .tus()
        .create(5, "{}")
        .header("Content-Type", "application/offset+octet-stream")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(creation_with_upload.status(), 403);

    assert_eq!(receiver.received().len(), 4);
    assert_eq!(job_count(&app).await, 0, "no job of a refused upload");
    assert!(app.temp_files().is_empty(), "no bytes of a refused upload");
    let blobs = app.data_dir.path().join("blobs");
    let stored = walk(&blobs);
    assert!(stored.is_empty(), "{stored:?}");
}

#[tokio::test]
async fn a_hook_that_does_not_answer_in_time_rejects_or_admits_as_configured() {
    let receiver = Receiver::start().await;
    receiver.otherwise(Answer::status(204).after(Duration::from_secs(3)));
    let rejecting = app_with_hook(&receiver, 200, OnError::Reject).await;
    let started = std::time::Instant::now();
    let response = ingest(&rejecting, json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_error(response, 503, "busy").await;
    assert_eq!(job_count(&rejecting).await, 0);

    let admitting = app_with_hook(&receiver, 200, OnError::Admit).await;
    let response = ingest(&admitting, json!({"kept": true})).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        admitting.list_jobs("").await.jobs[0].metadata,
        json!({"kept": true})
    );

    // A hook that errors (5xx) is treated the same way.
    let failing = Receiver::start().await;
    failing.otherwise(Answer::status(500));
    let app = app_with_hook(&failing, 2000, OnError::Reject).await;
    assert_error(ingest(&app, json!({})).await, 503, "busy").await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}
