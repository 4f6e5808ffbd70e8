//! Downloads (Range, ETag, conditional requests) and deletion with shared blobs.
use crate::helpers::*;
use ingest::domain::JobId;

async fn download(app: &TestApp, id: JobId, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/content")))
        .bearer_auth(TOKEN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

async fn delete(app: &TestApp, id: JobId) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/api/jobs/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stored_file_downloads_whole_or_by_range_with_its_digest_as_etag() {
    let app = spawn_app().await;
    let bytes = b"0123456789abcdefghij, the stored text".to_vec();
    let id = accepted_id(
        app.ingest_file("résumé \"1\".txt", bytes.clone(), "{}")
            .await,
    )
    .await;
    app.wait_until_finished(id).await;
    let etag = format!("\"{}\"", sha256_hex(&bytes));

    let whole = download(&app, id, &[]).await;
    assert_eq!(whole.status(), 200);
    let headers = whole.headers().clone();
    assert_eq!(headers["etag"], etag.as_str());
    assert_eq!(headers["content-type"], "text/plain");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let disposition = headers["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"r_sum_ _1_.txt\""),
        "{disposition}"
    );
    assert!(disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%221%22.txt"));
    assert_eq!(whole.bytes().await.unwrap(), bytes);

    let part = download(&app, id, &[("range", "bytes=10-19")]).await;
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap(), &bytes[10..20]);

    let tail = download(&app, id, &[("range", "bytes=-4")]).await;
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap(), &bytes[bytes.len() - 4..]);

    let beyond = download(&app, id, &[("range", "bytes=999-")]).await;
    assert_eq!(beyond.status(), 416);

    let cached = download(&app, id, &[("if-none-match", &etag)]).await;
    assert_eq!(cached.status(), 304);
    assert!(cached.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn jobs_without_a_finished_file_have_no_content() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let metadata_only = accepted_id(app.ingest_json("{}").await).await;
    let queued = accepted_id(app.ingest_file("a.txt", b"abc".to_vec(), "{}").await).await;
    assert_error(download(&app, queued, &[]).await, 409, "conflict").await;
    app.worker.run_until_idle().await.unwrap();
    assert_error(download(&app, metadata_only, &[]).await, 404, "not_found").await;
    assert_error(download(&app, JobId::new(), &[]).await, 404, "not_found").await;
}

#[tokio::test]
async fn a_blob_is_deleted_only_with_its_last_job() {
    let app = spawn_app().await;
    let bytes = random_bytes(2048);
    let first = accepted_id(app.ingest_file("1.bin", bytes.clone(), "{}").await).await;
    let second = accepted_id(app.ingest_file("2.bin", bytes.clone(), "{}").await).await;
    app.wait_until_finished(first).await;
    app.wait_until_finished(second).await;
    let digest = sha256_hex(&bytes);
    let blob = app.blob_file(&digest);

    assert_eq!(delete(&app, first).await.status(), 204);
    assert_error(app.status(&first.to_string()).await, 404, "not_found").await;
    assert!(blob.exists(), "still referenced by the second job");
    assert_eq!(
        download(&app, second, &[]).await.bytes().await.unwrap(),
        bytes
    );

    assert_eq!(delete(&app, second).await.status(), 204);
    assert!(!blob.exists(), "the last reference is gone");
    assert_error(delete(&app, second).await, 404, "not_found").await;
}

#[tokio::test]
async fn unfinished_jobs_cannot_be_deleted() {
    let app = spawn_app_with(|settings| settings.run_worker = false).await;
    let id = accepted_id(app.ingest_json("{}").await).await;
    assert_error(delete(&app, id).await, 409, "conflict").await;
    app.worker.run_until_idle().await.unwrap();
    assert_eq!(delete(&app, id).await.status(), 204);
}

/// A finished job holding `bytes`.
async fn stored(app: &TestApp, bytes: &[u8]) -> JobId {
    let id = accepted_id(app.ingest_file("f.bin", bytes.to_vec(), "{}").await).await;
    app.wait_until_finished(id).await;
    id
}

#[tokio::test]
async fn range_headers_this_server_does_not_act_on_get_the_whole_file() {
    let app = spawn_app().await;
    let bytes = random_bytes(100);
    let id = stored(&app, &bytes).await;
    let etag = format!("\"{}\"", sha256_hex(&bytes));
    let ignored = [
        // RFC 9110 §14.2: an unknown unit must be ignored.
        vec![("range", "items=0-5")],
        // Not a valid byte range set: may be ignored.
        vec![("range", "bytes=5-2")],
        vec![("range", "bytes=abc")],
        vec![("range", "bytes=")],
        // Several ranges: served whole rather than as multipart/byteranges.
        vec![("range", "bytes=0-1,5-6")],
        vec![("range", "bytes=0-1, 500-")],
        // A range of another version of the file.
        vec![("range", "bytes=0-1"), ("if-range", "\"another\"")],
    ];
    for headers in ignored {
        let response = download(&app, id, &headers).await;
        assert_eq!(response.status(), 200, "{headers:?}");
        assert!(response.headers().get("content-range").is_none());
        assert_eq!(response.bytes().await.unwrap(), bytes, "{headers:?}");
    }
    let matching = download(&app, id, &[("range", "Bytes=1-2,"), ("if-range", &etag)]).await;
    assert_eq!(matching.status(), 206);
    assert_eq!(matching.headers()["content-range"], "bytes 1-2/100");
    assert_eq!(matching.bytes().await.unwrap(), &bytes[1..3]);
}

#[tokio::test]
async fn ranges_that_miss_the_file_are_a_json_416_with_its_length() {
    let app = spawn_app().await;
    let id = stored(&app, &random_bytes(100)).await;
    for range in [
        "bytes=100-",
        "bytes=-0",
        "bytes=100-200,300-",
        "bytes=99999999999999999999999-",
    ] {
        let response = download(&app, id, &[("range", range)]).await;
        assert_eq!(
            response.headers()["content-range"],
            "bytes */100",
            "{range}"
        );
        assert_error(response, 416, "range_not_satisfiable").await;
    }
}

#[tokio::test]
async fn a_malformed_job_id_in_the_content_path_is_a_json_400() {
    let app = spawn_app().await;
    for id in ["not-a-uuid", "%FF%FE", "3f2a9c1e8d4b4f6a9e2d1b7c5a0e4f3d"] {
        let response = app
            .client
            .get(app.url(&format!("/api/jobs/{id}/content")))
            .bearer_auth(TOKEN)
            .header("range", "bytes=0-1")
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_job_id").await;
    }
}

#[tokio::test]
async fn downloads_carry_last_modified_and_honour_date_conditions_without_an_etag() {
    let app = spawn_app().await;
    let bytes = b"dated content".to_vec();
    let id = accepted_id(app.ingest_file("dated.txt", bytes.clone(), "{}").await).await;
    app.wait_until_finished(id).await;

    let whole = download(&app, id, &[]).await;
    assert_eq!(whole.status(), 200);
    let stored = whole.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(whole.headers()["content-length"], "13");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");

    let unchanged = download(&app, id, &[("if-modified-since", &stored)]).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(unchanged.headers()["last-modified"], stored.as_str());
    // An ETag that does not match outweighs the date: the file comes whole.
    let other_tag = download(
        &app,
        id,
        &[
            ("if-modified-since", &stored),
            ("if-none-match", "\"other\""),
        ],
    )
    .await;
    assert_eq!(other_tag.status(), 200);
    assert_eq!(other_tag.bytes().await.unwrap(), bytes);

    let long_ago = "Mon, 01 Jan 2001 00:00:00 GMT";
    let changed_since = download(&app, id, &[("if-modified-since", long_ago)]).await;
    assert_eq!(changed_since.status(), 200);
    let refused = download(&app, id, &[("if-unmodified-since", long_ago)]).await;
    assert_eq!(refused.status(), 412);
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "precondition_failed");
    let allowed = download(&app, id, &[("if-unmodified-since", &stored)]).await;
    assert_eq!(allowed.status(), 200);
}
