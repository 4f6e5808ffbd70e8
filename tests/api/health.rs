//! `/healthz` and `/readyz`, including a broken data dir and a disk below the floor.
use crate::helpers::*;

#[tokio::test]
async fn a_healthy_server_is_alive_and_ready_without_a_token() {
    let app = spawn_app().await;
    assert_eq!(
        app.get_json("/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "ready");
    for check in ["database", "blob_store", "data_dir", "disk", "keys"] {
        assert_eq!(body["checks"][check]["ok"], true, "{body}");
    }
    // Pass or fail only: nothing about the machine (free bytes, paths) is revealed.
    assert!(body["checks"]["disk"].get("free_bytes").is_none(), "{body}");
    assert!(!body
        .to_string()
        .contains(app.data_dir.path().to_str().unwrap()));
}

#[tokio::test]
async fn a_data_dir_that_takes_no_writes_makes_the_server_unready() {
    let app = spawn_app().await;
    // Replace the upload directory by a plain file: nothing can be written there any more.
    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    std::fs::write(app.tmp_dir(), b"not a directory").unwrap();
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unready");
    assert_eq!(body["checks"]["data_dir"]["ok"], false);
    assert_eq!(body["checks"]["database"]["ok"], true);
    // Alive all the same.
    assert_eq!(app.get_json("/healthz").await.0, 200);
}

#[tokio::test]
async fn free_disk_below_the_floor_makes_the_server_unready() {
    let app = spawn_app_with(|settings| settings.min_free_disk_bytes = u64::MAX).await;
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["disk"]["ok"], false);
    assert!(body["checks"]["disk"]["error"]
        .as_str()
        .unwrap()
        .contains("floor"));
}
