//! The persistent queue, driven by hand: nothing runs inside the request.
use crate::helpers::*;
use ingest::domain::JobState;

#[tokio::test]
async fn accepted_jobs_wait_in_the_queue_until_the_worker_runs() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let first = accepted_id(app.ingest_json("{}").await).await;
    let second = accepted_id(app.ingest_file("a.txt", b"abc".to_vec(), "{}").await).await;
    for id in [first, second] {
        let status = app.status_of(id).await;
        assert_eq!(status.status, JobState::Queued);
    }
    let queued = app
        .state
        .jobs
        .count_in_state(JobState::Queued)
        .await
        .unwrap();
    assert_eq!(queued, 2);

    assert_eq!(app.worker.run_until_idle().await.unwrap(), 2);
    for id in [first, second] {
        let status = app.status_of(id).await;
        assert_eq!(status.status, JobState::Completed);
    }
    assert_eq!(
        app.worker.run_until_idle().await.unwrap(),
        0,
        "nothing left behind"
    );
}

#[tokio::test]
async fn the_job_list_is_newest_first_paginated_and_filterable() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(accepted_id(app.ingest_json("{}").await).await);
    }
    let page = app.list_jobs("limit=2").await;
    assert_eq!(
        page.jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let next = page.next_before.unwrap();
    let rest = app.list_jobs(&format!("limit=10&before={next}")).await;
    assert_eq!(rest.jobs.len(), 3);
    assert_eq!(rest.next_before, None);
    assert!(app.list_jobs("status=completed").await.jobs.is_empty());
    let bad = app
        .client
        .get(app.url("/api/jobs?status=done"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(bad, 400, "invalid_query").await;
    app.worker.run_until_idle().await.unwrap();
}
