//! `GET /api/jobs?q=…`: the history's search, by file name and metadata text.
use crate::helpers::{accepted_id, spawn_app};
use ingest::domain::JobId;

fn ids(page: &ingest::api::JobPage) -> Vec<JobId> {
    page.jobs.iter().map(|job| job.job_id).collect()
}

#[tokio::test]
async fn a_search_finds_jobs_by_file_name_or_metadata_text_without_case() {
    let app = spawn_app().await;
    let report = accepted_id(
        app.ingest_file(
            "Quarterly-Report.pdf",
            b"%PDF-1.4".to_vec(),
            r#"{"team":"north"}"#,
        )
        .await,
    )
    .await;
    let photo = accepted_id(
        app.ingest_file(
            "beach.jpg",
            vec![0xff, 0xd8, 0xff],
            r#"{"album":"Summer 2026"}"#,
        )
        .await,
    )
    .await;
    let plain = accepted_id(
        app.ingest_json(r#"{"metadata":{"note":"100%_done"}}"#)
            .await,
    )
    .await;

    assert_eq!(ids(&app.list_jobs("q=quarterly").await), vec![report]);
    assert_eq!(ids(&app.list_jobs("q=SUMMER").await), vec![photo]);
    assert_eq!(ids(&app.list_jobs("q=north").await), vec![report]);
    // `%` and `_` are searched for as themselves, not as wildcards.
    assert_eq!(ids(&app.list_jobs("q=100%25_").await), vec![plain]);
    assert!(ids(&app.list_jobs("q=%25%25x").await).is_empty());
    assert!(ids(&app.list_jobs("q=nothing-like-it").await).is_empty());
    // An empty search is no search; it combines with the other filters.
    assert_eq!(app.list_jobs("q=").await.jobs.len(), 3);
    assert!(ids(&app.list_jobs("q=beach&status=failed").await).is_empty());
}

#[tokio::test]
async fn a_search_longer_than_200_characters_is_refused() {
    let app = spawn_app().await;
    let long = "x".repeat(201);
    let response = app
        .client
        .get(app.url(&format!("/api/jobs?q={long}")))
        .bearer_auth(crate::helpers::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}
