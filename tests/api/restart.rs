//! Durability: the real binary killed with SIGKILL and restarted on the same data dir.
use crate::helpers::*;
use ingest::domain::JobState;
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

struct Server {
    child: Child,
    base: String,
    stderr_path: std::path::PathBuf,
}

impl Server {
    async fn start(data_dir: &std::path::Path, processing_delay_ms: u64, log_name: &str) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stderr_path = data_dir.parent().unwrap().join(log_name);
        let child = Command::new(env!("CARGO_BIN_EXE_ingest"))
            .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
            .env("INGEST_DATA_DIR", data_dir)
            .env("INGEST_TOKEN", TOKEN)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "INGEST_PROCESSING_DELAY_MS",
                processing_delay_ms.to_string(),
            )
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("the ingest binary starts");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            stderr_path,
        };
        server.wait_until_ready().await;
        server
    }

    async fn wait_until_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..500 {
            let ready = client
                .get(format!("{}/api/jobs", self.base))
                .bearer_auth(TOKEN)
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not start: {}", self.log());
    }

    fn address(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn kill_9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
