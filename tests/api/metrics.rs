//! `/metrics`: Prometheus text behind the token, with counters that move.
use crate::helpers::*;

async fn scrape(app: &TestApp) -> String {
    let response = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

/// The value of the first sample whose line starts with `series` (name plus labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_and_histograms_move_with_the_work_done() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let bytes = random_bytes(10_000);
    let id = accepted_id(app.ingest_file("m.bin", bytes, "{}").await).await;
    app.wait_until_finished(id).await;
    let meta = accepted_id(app.ingest_json("{}").await).await;
    app.wait_until_finished(meta).await;
    let after = scrape(&app).await;

    // Other tests share the process-wide recorder, so counters can only have grown more.
    let grew = |series: &str, by: f64| {
        let (old, new) = (sample(&before, series), sample(&after, series));
        assert!(new >= old + by, "{series}: {old} -> {new}\n{after}");
    };
    grew("ingest_jobs_created_total{kind=\"file\"}", 1.0);
    grew("ingest_jobs_created_total{kind=\"metadata\"}", 1.0);
    grew("ingest_jobs_finished_total{state=\"completed\"}", 2.0);
    grew("ingest_bytes_ingested_total", 10_000.0);
    grew("ingest_upload_size_bytes_count", 1.0);
    grew("ingest_upload_duration_seconds_count", 1.0);
    grew("ingest_queue_wait_seconds_count", 2.0);
    assert!(
        after.contains("http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/ingest\",status=\"202\""),
        "{after}"
    );
    assert!(
        after.contains("route=\"/api/status/{job_id}\""),
        "routes are templates, not ids"
    );
    assert!(!after.contains(&id.to_string()), "no series per job");
    for series in [
        "ingest_jobs{state=\"completed\"}",
        "ingest_queue_depth",
        "ingest_websockets_open",
    ] {
        assert!(after.contains(series), "{series} missing");
    }
}

#[tokio::test]
async fn metrics_need_the_token() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_error(response, 401, "unauthorized").await;
}
