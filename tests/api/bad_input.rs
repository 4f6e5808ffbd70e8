//! Bad input gets a clear 4xx with a JSON body and leaves nothing half-done behind.
use crate::helpers::*;
use ingest::domain::JobState;

#[tokio::test]
async fn malformed_json_bodies_are_400s_and_create_no_job() {
    let app = spawn_app().await;
    let cases = [
        ("{\"metadata\": ", "invalid_json"),
        ("[]", "invalid_body"),
        ("null", "invalid_body"),
        ("\"text\"", "invalid_body"),
        (r#"{"metadata": "not json"}"#, "invalid_metadata"),
        (r#"{"metadata": "[1, 2]"}"#, "invalid_metadata"),
        (r#"{"metadata": 42}"#, "invalid_metadata"),
    ];
    for (body, code) in cases {
        assert_error(app.ingest_json(body).await, 400, code).await;
    }
    assert!(app.list_jobs("").await.jobs.is_empty());
}

#[tokio::test]
async fn form_metadata_that_is_not_json_is_refused() {
    let app = spawn_app().await;
    let response = app
        .ingest_body(
            Some("application/x-www-form-urlencoded"),
            "metadata=%7Bnope",
        )
        .await;
    assert_error(response, 400, "invalid_metadata").await;
}

#[tokio::test]
async fn unsupported_content_types_are_415() {
    let app = spawn_app().await;
    for content_type in ["text/plain", "application/xml", "not a media type"] {
        let response = app.ingest_body(Some(content_type), "{}").await;
        assert_error(response, 415, "unsupported_media_type").await;
    }
    let untyped = app.ingest_body(None, "some bytes").await;
    assert_error(untyped, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn broken_multipart_is_a_400() {
    let app = spawn_app().await;
    let cases = [
        // No boundary parameter at all.
        ("multipart/form-data", "--x\r\n".to_owned()),
        // Garbage where the first boundary should be.
        (
            "multipart/form-data; boundary=XYZ",
            "this is not multipart".to_owned(),
        ),
        // A part without its Content-Disposition.
        (
            "multipart/form-data; boundary=XYZ",
            "--XYZ\r\nContent-Type: text/plain\r\n\r\nabc\r\n--XYZ--\r\n".to_owned(),
        ),
    ];
    for (content_type, body) in cases {
        let response = app.ingest_body(Some(content_type), body).await;
        let status = response.status().as_u16();
        assert_eq!(status, 400, "{content_type}");
        assert_error(response, 400, "invalid_multipart").await;
    }
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn a_file_cut_short_inside_the_multipart_body_fails_its_job() {
    let app = spawn_app().await;
    let body = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n\
                partial data without a closing boundary";
    let response = app
        .ingest_body(Some("multipart/form-data; boundary=XYZ"), body)
        .await;
    let message = assert_error(response, 400, "upload_interrupted").await;
    assert!(message.contains("interrupted"), "{message}");
    let jobs = app.jobs_in(JobState::Failed).await;
    assert_eq!(jobs.len(), 1);
    assert!(jobs[0].error.as_deref().unwrap().contains("interrupted"));
    assert_eq!(jobs[0].sha256, None);
    assert!(app.temp_files().is_empty());
}

#[tokio::test]
async fn oversize_uploads_are_413_and_leave_no_temp_file() {
    let app = spawn_app_with(|settings| settings.max_upload_bytes = 1024).await;
    // Announced too large: refused before reading.
    let response = app
        .ingest_file("big.bin", random_bytes(200 * 1024), "{}")
        .await;
    assert_error(response, 413, "payload_too_large").await;
    // Streamed without a length: refused once the limit is crossed.
    let stream = futures::stream::iter(
        (0..64).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1024]))),
    );
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(stream))
        .file_name("stream.bin");
    let response = app
        .ingest_form(reqwest::multipart::Form::new().part("file", part))
        .await;
    let message = assert_error(response, 413, "payload_too_large").await;
    assert!(message.contains("1024"), "{message}");
    assert!(app.temp_files().is_empty());
    // A file exactly at the limit is fine.
    let id = accepted_id(app.ingest_file("ok.bin", random_bytes(1024), "{}").await).await;
    assert_eq!(
        app.wait_until_finished(id).await.status,
        JobState::Completed
    );
}

#[tokio::test]
async fn oversize_metadata_is_413() {
    let app = spawn_app_with(|settings| settings.max_metadata_bytes = 100).await;
    let big = format!(r#"{{"metadata": {{"a": "{}"}}}}"#, "x".repeat(200));
    assert_error(app.ingest_json(&big).await, 413, "payload_too_large").await;
    let huge = format!(r#"{{"metadata": "{}"}}"#, "x".repeat(10_000));
    assert_error(app.ingest_json(&huge).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn malformed_and_unknown_job_ids() {
    let app = spawn_app().await;
    assert_error(app.status("not-a-uuid").await, 400, "invalid_job_id").await;
    assert_error(
        app.status("3f2a9c1e8d4b4f6a9e2d1b7c5a0e4f3d").await,
        400,
        "invalid_job_id",
    )
    .await;
    let unknown = ingest::domain::JobId::new().to_string();
    assert_error(app.status(&unknown).await, 404, "not_found").await;
}

#[tokio::test]
async fn unknown_api_paths_and_methods_answer_in_json() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/api/nope"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "not_found").await;
    let response = app
        .client
        .get(app.url("/api/ingest"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(response, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_second_file_part_is_refused_and_the_first_is_not_kept() {
    let app = spawn_app().await;
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"one".to_vec()).file_name("1.txt"),
        )
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"two".to_vec()).file_name("2.txt"),
        );
    let response = app.ingest_form(form).await;
    assert_error(response, 400, "invalid_multipart").await;
    assert!(app.temp_files().is_empty());
    let failed = app.jobs_in(JobState::Failed).await;
    assert_eq!(failed.len(), 1);
}

#[tokio::test]
async fn filenames_are_never_used_as_paths() {
    let app = spawn_app().await;
    let id = accepted_id(
        app.ingest_file("../../escape.txt", b"x".to_vec(), "{}")
            .await,
    )
    .await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.filename.as_deref(), Some("escape.txt"));
    assert!(!app
        .data_dir
        .path()
        .parent()
        .unwrap()
        .join("escape.txt")
        .exists());
}

#[tokio::test]
async fn an_overlong_request_target_is_a_json_414() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url(&format!("/api/jobs?status={}", "x".repeat(10 * 1024))))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(response, 414, "uri_too_long").await;
}

#[tokio::test]
async fn forty_kib_of_headers_is_a_json_431() {
    let app = spawn_app().await;
    let mut request = app.client.get(app.url("/api/jobs")).bearer_auth(TOKEN);
    for n in 0..40 {
        request = request.header(format!("x-padding-{n}"), "p".repeat(1024));
    }
    let response = request.send().await.unwrap();
    assert_error(response, 431, "headers_too_large").await;
}

#[tokio::test]
async fn bidirectional_overrides_are_dropped_from_file_names() {
    let app = spawn_app().await;
    let id = accepted_id(
        app.ingest_file("invoice\u{202E}gnp.exe", b"MZ".to_vec(), "{}")
            .await,
    )
    .await;
    let done = app.wait_until_finished(id).await;
    assert_eq!(done.filename.as_deref(), Some("invoicegnp.exe"));
    let status: serde_json::Value = app.status(&id.to_string()).await.json().await.unwrap();
    assert_eq!(status["filename"], "invoicegnp.exe");
    let listed = app.list_jobs("").await;
    assert_eq!(listed.jobs[0].filename.as_deref(), Some("invoicegnp.exe"));
    let download = app
        .client
        .get(app.url(&format!("/api/jobs/{id}/content")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let disposition = download.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "attachment; filename=\"invoicegnp.exe\"; filename*=UTF-8''invoicegnp.exe"
    );
}
