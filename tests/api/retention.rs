//! Retention: expired jobs go with their blobs (unless another job still uses the content);
//! stale temp files and unreferenced blobs are cleaned; the periodic sweep runs by itself.
use crate::helpers::*;
use ingest::{
    domain::JobState,
    server::retention::{sweep, Policy, Sweep},
};
use std::time::{Duration, SystemTime};

/// Makes a file look as if it was last written an hour and a bit ago.
fn age(path: &std::path::Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(4000))
        .unwrap();
}

#[tokio::test]
async fn expired_jobs_go_but_content_still_in_use_stays() {
    let app = spawn_app_with(|s| s.run_worker = false).await;
    let shared = random_bytes(4096);
    let alone = random_bytes(4096);
    let old_shared = accepted_id(app.ingest_file("a.bin", shared.clone(), "{}").await).await;
    let old_alone = accepted_id(app.ingest_file("b.bin", alone.clone(), "{}").await).await;
    // Jobs without a file go a page in one write.
    let mut metadata_only = Vec::new();
    for n in 0..3 {
        let body = format!(r#"{{"metadata": {{"n": {n}}}}}"#);
        metadata_only.push(accepted_id(app.ingest_json(&body).await).await);
    }
    app.worker.run_until_idle().await.unwrap();
    // A newer upload of the same content, still waiting in the queue.
    let newer = accepted_id(app.ingest_file("c.bin", shared.clone(), "{}").await).await;

    let swept = sweep(
        &app.state.jobs,
        &app.state.uploads,
        Policy {
            keep: Some(Duration::ZERO),
            upload_expiry: Duration::from_secs(3600),
            leftover_age: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        swept,
        Sweep {
            jobs: 5,
            temp_files: 0,
            blobs: 0,
            expired_uploads: 0,
        }
    );
    for id in [old_shared, old_alone].into_iter().chain(metadata_only) {
        assert_error(app.status(&id.to_string()).await, 404, "not_found").await;
    }
    assert!(
        app.blob_file(&sha256_hex(&shared)).exists(),
        "the queued job still needs it"
    );
    assert!(!app.blob_file(&sha256_hex(&alone)).exists());
    app.worker.run_until_idle().await.unwrap();
    let status = app.status_of(newer).await;
    assert_eq!(status.status, JobState::Completed);

    // Jobs younger than the retention period stay.
    let kept = sweep(
        &app.state.jobs,
        &app.state.uploads,
        Policy {
            keep: Some(Duration::from_secs(3600)),
            upload_expiry: Duration::from_secs(3600),
            leftover_age: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(kept.jobs, 0);
}

#[tokio::test]
async fn stale_leftovers_are_removed_and_fresh_ones_left_alone() {
    let app = spawn_app().await;
    let stale_temp = app
        .tmp_dir()
        .join(format!("{}.part", ingest::domain::JobId::new()));
    let fresh_temp = app
        .tmp_dir()
        .join(format!("{}.part", ingest::domain::JobId::new()));
    std::fs::write(&stale_temp, b"left by a crash").unwrap();
    std::fs::write(&fresh_temp, b"maybe in progress").unwrap();
    age(&stale_temp);
    let orphan = sha256_hex(b"stored but never recorded");
    std::fs::create_dir_all(app.blob_file(&orphan).parent().unwrap()).unwrap();
    std::fs::write(app.blob_file(&orphan), b"stored but never recorded").unwrap();
    age(&app.blob_file(&orphan));
    // A completed job's blob is referenced, however old the file is.
    let used = random_bytes(100);
    let id = accepted_id(app.ingest_file("u.bin", used.clone(), "{}").await).await;
    app.wait_until_finished(id).await;
    age(&app.blob_file(&sha256_hex(&used)));

    let swept = sweep(
        &app.state.jobs,
        &app.state.uploads,
        Policy {
            keep: Some(Duration::from_secs(3600)),
            upload_expiry: Duration::from_secs(3600),
            leftover_age: Duration::from_secs(3600),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        swept,
        Sweep {
            jobs: 0,
            temp_files: 1,
            blobs: 1,
            expired_uploads: 0,
        }
    );
    assert!(!stale_temp.exists());
    assert!(fresh_temp.exists());
    assert!(!app.blob_file(&orphan).exists());
    assert!(app.blob_file(&sha256_hex(&used)).exists());
}

#[tokio::test]
async fn the_periodic_sweep_runs_on_its_own() {
    let app = spawn_app_with(|s| {
        s.retention = Some(Duration::from_millis(1));
        s.retention_sweep_every = Duration::from_millis(50);
    })
    .await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    // Not waiting for `completed` first: a sweep every 50 ms may delete the finished job
    // between two polls. Only a deletion makes an accepted job answer 404.
    eventually("the job was swept", Duration::from_secs(30), async || {
        (app.status(&id.to_string()).await.status() == 404).then_some(())
    })
    .await;
}
