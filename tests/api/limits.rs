//! Rate limits (429 + Retry-After), the concurrent-upload cap (503 + Retry-After), the upload
//! idle timeout. (The deadline for ordinary requests is tested beside its middleware.)
use crate::helpers::*;
use ingest::domain::JobState;
use std::time::Duration;

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_but_health_checks_pass() {
    let app = spawn_app_with(|s| {
        s.rate_limit_per_second = 1;
        s.rate_limit_burst = 3;
    })
    .await;
    // The burst goes through; right after it the client is held back. (More requests than
    // the burst are sent so a slow machine, which refills a token per second, still hits it.)
    for _ in 0..3 {
        assert_eq!(app.list_jobs("").await.jobs.len(), 0);
    }
    let mut refused = None;
    for _ in 0..20 {
        let response = app
            .client
            .get(app.url("/api/jobs"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
    }
    let refused = refused.expect("the rate limit never answered 429");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(refused, 429, "too_many_requests").await;
    // Requests with a made-up token are limited too (they share the address's bucket).
    let guessing = app
        .client
        .get(app.url("/api/jobs"))
        .bearer_auth("guess-0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(guessing.status(), 429);
    for _ in 0..10 {
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200);
    }
}

#[tokio::test]
async fn uploads_beyond_the_cap_get_503_with_retry_after() {
    let app = spawn_app_with(|s| s.max_concurrent_uploads = 1).await;
    let holding = start_partial_upload(app.address, 1_000_000, 1024).await;
    let first = app.receiving_job().await;

    let refused = app.ingest_file("second.txt", b"x".to_vec(), "{}").await;
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_error(refused, 503, "busy").await;

    drop(holding);
    app.wait_until_finished(first.job_id).await;
    let id = accepted_id(app.ingest_file("third.txt", b"x".to_vec(), "{}").await).await;
    assert_eq!(
        app.wait_until_finished(id).await.status,
        JobState::Completed
    );
}

#[tokio::test]
async fn an_upload_that_goes_quiet_is_cut_after_the_idle_timeout() {
    let app = spawn_app_with(|s| s.upload_idle_timeout = Duration::from_secs(1)).await;
    // The connection stays open but sends nothing more.
    let _quiet = start_partial_upload(app.address, 1_000_000, 4096).await;
    let job = app.receiving_job().await;
    let failed = app.wait_until_finished(job.job_id).await;
    assert_eq!(failed.status, JobState::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("no data"),
        "{failed:?}"
    );
    assert!(app.temp_files().is_empty());
}
