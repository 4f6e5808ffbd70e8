//! The streaming pipeline under load, cut connections and duplicate content.
use crate::helpers::*;
use ingest::domain::JobState;
use std::collections::HashSet;

#[tokio::test]
async fn two_hundred_concurrent_uploads_all_complete_with_correct_digests() {
    let app = spawn_app().await;
    let uploads = (0..200).map(|i| {
        let bytes = random_bytes(16 * 1024 + i * 97);
        let expected = sha256_hex(&bytes);
        let app = &app;
        async move {
            let id = accepted_id(app.ingest_file(&format!("f{i}.bin"), bytes, "{}").await).await;
            (id, expected)
        }
    });
    let accepted = futures::future::join_all(uploads).await;
    let ids: HashSet<_> = accepted.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 200, "every upload got its own job");
    for (id, expected) in accepted {
        let done = app.wait_until_finished(id).await;
        assert_eq!(done.status, JobState::Completed, "{done:?}");
        assert_eq!(done.sha256.unwrap().to_hex(), expected);
    }
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn upload_cut_mid_stream_marks_the_job_failed_and_removes_its_temp_file() {
    let app = spawn_app().await;
    let connection = start_partial_upload(app.address, 10_000_000, 256 * 1024).await;
    let receiving = app.receiving_job().await;
    assert_eq!(receiving.status, JobState::Receiving);
    assert_eq!(
        app.temp_files().len(),
        1,
        "bytes land in a temp file while they arrive"
    );
    drop(connection);

    let failed = app.wait_until_finished(receiving.job_id).await;
    assert_eq!(failed.status, JobState::Failed);
    let error = failed.error.unwrap();
    assert!(error.contains("interrupted"), "{error}");
    assert_eq!(failed.sha256, None, "never a digest of a truncated file");
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn identical_content_is_stored_once() {
    let app = spawn_app().await;
    let bytes = random_bytes(4096);
    let first = accepted_id(app.ingest_file("a.bin", bytes.clone(), "{}").await).await;
    let second = accepted_id(app.ingest_file("b.bin", bytes.clone(), "{}").await).await;
    let a = app.wait_until_finished(first).await;
    let b = app.wait_until_finished(second).await;
    assert_eq!(a.sha256, b.sha256);
    let blobs: Vec<_> = walk(&app.data_dir.path().join("blobs"));
    assert_eq!(blobs.len(), 1, "{blobs:?}");
}

#[tokio::test]
async fn content_type_is_detected_from_the_bytes_not_the_name() {
    let app = spawn_app().await;
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0".to_vec();
    let id = accepted_id(app.ingest_file("looks-like.txt", png, "{}").await).await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.content_type.as_deref(), Some("image/png"));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
