//! `POST /api/jobs/{id}/cancel`: queued, mid-upload and mid-processing jobs stop for good.
use crate::helpers::*;
use futures::StreamExt;
use ingest::domain::{JobId, JobState, JobStatus};
use std::time::Duration;

#[tokio::test]
async fn a_cancelled_queued_job_never_runs() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    let response = app.cancel(id).await;
    assert_eq!(response.status(), 200);
    let cancelled: JobStatus = response.json().await.unwrap();
    assert_eq!(cancelled.status, JobState::Cancelled);
    assert_eq!(cancelled.error.as_deref(), Some("cancelled by request"));
    assert_eq!(app.worker.run_until_idle().await.unwrap(), 0);
    assert_eq!(app.status_of(id).await.status, JobState::Cancelled);
    assert_error(app.cancel(id).await, 409, "conflict").await;
    assert_error(app.cancel(JobId::new()).await, 404, "not_found").await;
}

#[tokio::test]
async fn cancelling_mid_upload_stops_it_and_removes_its_bytes() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app().await;
    let mut upload = start_partial_upload(app.address, 10_000_000, 64 * 1024).await;
    let job = app.receiving_job().await;
    assert_eq!(app.temp_files().len(), 1);
    assert_eq!(app.cancel(job.job_id).await.status(), 200);

    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), upload.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer}");
    assert!(answer.contains("cancelled"), "{answer}");
    eventually(
        "the temp file is gone",
        Duration::from_secs(10),
        async || app.temp_files().is_empty().then_some(()),
    )
    .await;
    let cancelled = app.status_of(job.job_id).await;
    assert_eq!(cancelled.status, JobState::Cancelled);
    assert_eq!(cancelled.sha256, None);
}

#[tokio::test]
async fn cancelling_mid_processing_is_final_and_reaches_followers() {
    let app = spawn_app_with(|s| s.processing_delay = Duration::from_secs(10)).await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    app.wait_for_state(id, |s| s == JobState::Processing).await;
    let url = app.ws_url(&format!("/ws/status/{id}?token={TOKEN}"));
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(app.cancel(id).await.status(), 200);

    let mut last = None;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
        {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                last = Some(serde_json::from_str::<JobStatus>(&text).unwrap())
            }
            Some(Ok(tokio_tungstenite::tungstenite::Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(last.unwrap().status, JobState::Cancelled);
    assert_eq!(close.map(|f| u16::from(f.code)), Some(1000));
    // The worker, woken from its pause, does not bring the job back.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.status_of(id).await.status, JobState::Cancelled);
}
