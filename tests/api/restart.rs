//! Durability: the real binary killed with SIGKILL and restarted on the same data dir.
use crate::helpers::*;
use ingest::domain::JobState;
use std::{process::Command, time::Duration};

#[tokio::test]
async fn after_kill_9_processing_jobs_finish_and_cut_uploads_fail_cleanly() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();

    // First life: one job stuck mid-processing, one upload mid-transfer.
    let mut server = Server::start(&data_dir, 60_000, "first.log").await;
    let file = random_bytes(300 * 1024);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(file.clone()).file_name("keep.bin"),
        )
        .text("metadata", r#"{"life":"first"}"#);
    let response = client
        .post(format!("{}/api/ingest", server.base))
        .bearer_auth(TOKEN)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let processing = accepted_id(response).await;
    let metadata_only = accepted_id(
        client
            .post(format!("{}/api/ingest", server.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"metadata": "{\"n\":1}"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    wait_for_state(&client, &server.base, processing, |s| {
        s == JobState::Processing
    })
    .await;
    let upload = start_partial_upload(server.address(), 5_000_000, 128 * 1024).await;
    let cut = wait_for_receiving_job(&client, &server.base).await;
    // A WebSocket with the token in its query string, to check the log afterwards.
    let ws = format!(
        "ws://{}/ws/status/{processing}?token={TOKEN}",
        server.address()
    );
    let (socket, _) = tokio_tungstenite::connect_async(ws).await.unwrap();
    assert_eq!(std::fs::read_dir(data_dir.join("tmp")).unwrap().count(), 1);

    server.kill_9();
    drop((upload, socket));
    let first_log = server.log();

    // Second life on the same data dir, processing at full speed.
    let server = Server::start(&data_dir, 0, "second.log").await;
    let done = wait_for_state(&client, &server.base, processing, JobState::is_terminal).await;
    assert_eq!(done.status, JobState::Completed, "{done:?}");
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert_eq!(done.metadata, serde_json::json!({"life": "first"}));
    let other = wait_for_state(&client, &server.base, metadata_only, JobState::is_terminal).await;
    assert_eq!(other.status, JobState::Completed);

    let cut = wait_for_state(&client, &server.base, cut.job_id, JobState::is_terminal).await;
    assert_eq!(cut.status, JobState::Failed);
    assert_eq!(cut.error.as_deref(), Some("interrupted by server restart"));
    assert_eq!(std::fs::read_dir(data_dir.join("tmp")).unwrap().count(), 0);

    for log in [first_log, server.log()] {
        assert!(log.contains("listening"), "the log is being written: {log}");
        assert!(
            !log.contains(TOKEN),
            "the token leaked into the log:\n{log}"
        );
    }
}

#[tokio::test]
async fn sigterm_lets_a_running_upload_finish_then_exits_0() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();
    let mut server = Server::start(&data_dir, 0, "first.log").await;

    let announced = 1_000_000;
    let sent = 100_000;
    let mut upload = start_partial_upload(server.address(), announced, sent).await;
    let job = wait_for_receiving_job(&client, &server.base).await;
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());

    // New connections are refused once shutdown has begun.
    refused_by(
        server.address(),
        "the server refuses new connections after SIGTERM",
        Duration::from_secs(5),
    )
    .await;

    // The upload in flight finishes and is accepted.
    upload
        .write_all(&vec![b'z'; announced - sent])
        .await
        .unwrap();
    upload.write_all(b"\r\n--XYZ--\r\n").await.unwrap();
    let mut answer = Vec::new();
    upload.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(server.terminate().await, Some(0), "{}", server.log());

    let server = Server::start(&data_dir, 0, "second.log").await;
    let done = wait_for_state(&client, &server.base, job.job_id, JobState::is_terminal).await;
    assert_eq!(done.status, JobState::Completed);
    assert_eq!(
        done.sha256.unwrap().to_hex(),
        sha256_hex(&vec![b'z'; announced])
    );
}

#[tokio::test]
async fn sigterm_mid_processing_requeues_the_job_and_exits_0() {
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();
    let mut server = Server::start(&data_dir, 60_000, "first.log").await;
    let id = accepted_id(
        client
            .post(format!("{}/api/ingest", server.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    wait_for_state(&client, &server.base, id, |s| s == JobState::Processing).await;
    assert_eq!(server.terminate().await, Some(0), "{}", server.log());
    assert!(server.log().contains("job re-queued"), "{}", server.log());

    let stored: String = {
        let db = sqlx::SqlitePool::connect(&format!(
            "sqlite://{}",
            data_dir.join("ingest.db").display()
        ))
        .await
        .unwrap();
        sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&db)
            .await
            .unwrap()
    };
    assert_eq!(
        stored, "queued",
        "stopped after its step and put back, not left processing"
    );

    let server = Server::start(&data_dir, 0, "second.log").await;
    let done = wait_for_state(&client, &server.base, id, JobState::is_terminal).await;
    assert_eq!(done.status, JobState::Completed);
}

#[tokio::test]
async fn a_resumable_upload_survives_kill_9_and_continues_from_its_durable_offset() {
    use base64::Engine;
    use futures::SinkExt;
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let client = reqwest::Client::new();
    let file = random_bytes(3 * 1024 * 1024);
    let tus = |request: reqwest::RequestBuilder| {
        request.bearer_auth(TOKEN).header("Tus-Resumable", "1.0.0")
    };

    // First life: half the file arrives in one PATCH; a second PATCH is mid-way at the kill.
    let mut server = Server::start(&data_dir, 0, "first.log").await;
    let metadata = base64::engine::general_purpose::STANDARD.encode("big.bin");
    let created = tus(client.post(format!("{}/api/uploads", server.base)))
        .header("Upload-Length", file.len())
        .header("Upload-Metadata", format!("filename {metadata}"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let url = format!(
        "{}{}",
        server.base,
        created.headers()["location"].to_str().unwrap()
    );
    let id = ingest::domain::JobId::parse(url.rsplit('/').next().unwrap()).unwrap();
    let half = file.len() / 2;
    let first = tus(client.patch(&url))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", 0)
        .body(file[..half].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 204);
    let (mut sender, body) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let in_flight = tokio::spawn(
        tus(client.patch(&url))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", half)
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    );
    sender
        .send(Ok(file[half..half + 100_000].to_vec()))
        .await
        .unwrap();
    eventually(
        "the second PATCH started",
        Duration::from_secs(30),
        async || {
            let live: ingest::domain::JobStatus = client
                .get(format!("{}/api/status/{id}", server.base))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (live.bytes_done > half as u64).then_some(())
        },
    )
    .await;
    server.kill_9();
    drop((sender, in_flight));

    // Second life: the upload still waits, and HEAD reports only what was durable.
    let server = Server::start(&data_dir, 0, "second.log").await;
    let url = format!("{}/api/uploads/{id}", server.base);
    let head = tus(client.head(&url)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["upload-offset"], half.to_string().as_str());
    let waiting = wait_for_state(&client, &server.base, id, |_| true).await;
    assert_eq!(waiting.status, JobState::Receiving);
    let rest = tus(client.patch(&url))
        .header("Content-Type", "application/offset+octet-stream")
        .header("Upload-Offset", half)
        .body(file[half..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.status(), 204, "{}", server.log());
    let done = wait_for_state(&client, &server.base, id, JobState::is_terminal).await;
    assert_eq!(done.status, JobState::Completed, "{done:?}");
    assert_eq!(done.sha256.unwrap().to_hex(), sha256_hex(&file));
    assert_eq!(done.filename.as_deref(), Some("big.bin"));
    // The running hash was stored with the offset: nothing was read back.
    assert!(!server
        .log()
        .contains("re-hashed the durable part of an upload"));
    assert_eq!(std::fs::read_dir(data_dir.join("tmp")).unwrap().count(), 0);
}
