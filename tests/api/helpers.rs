//! `spawn_app()`: the real router on 127.0.0.1:0 with a fresh data dir, plus HTTP/WebSocket
//! helpers the tests share.
use ingest::{
    api::JobPage,
    domain::{JobId, JobState, JobStatus},
    server::{
        auth::ApiToken,
        config::Settings,
        startup::{AppState, Application},
        worker::Worker,
    },
};
use serde_json::Value;
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub worker: Worker,
    pub data_dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Stops the server and hands back its data dir, for a restart on the same data.
    pub async fn stop(mut self) -> tempfile::TempDir {
        self.shutdown.cancel();
        // Wait until the port is closed so the next app does not race this one.
        while tokio::net::TcpStream::connect(self.address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap())
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the app after `adjust` has changed its settings.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_in(tempfile::tempdir().expect("temp data dir"), adjust).await
}

/// Starts the app on an existing data dir (a restart, in-process).
pub async fn spawn_app_in(
    data_dir: tempfile::TempDir,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings =
        Settings::with_defaults(data_dir.path().to_owned(), ApiToken::parse(TOKEN).unwrap());
    settings.site_addr = "127.0.0.1:0".parse().unwrap();
    // Tests fire requests much faster than clients would; the limits tests turn it back on.
    settings.rate_limit_per_second = 0;
    // Sweeps are driven by hand in the retention tests, except where one turns them on.
    settings.retention = None;
    adjust(&mut settings);
    let shutdown = CancellationToken::new();
    let app = Application::build(settings, shutdown.clone())
        .await
        .expect("app builds");
    let address = app.local_addr();
    let state = app.state().clone();
    let worker = app.worker();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        worker,
        data_dir,
        shutdown,
    }
}

impl TestApp {
    /// Starts the server's graceful shutdown.
    pub fn shut_down(&self) {
        self.shutdown.cancel();
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.address)
    }

    pub async fn list_jobs(&self, query: &str) -> JobPage {
        list_jobs(&self.client, &self.url(""), query).await
    }

    /// Where a blob with this hex digest must be stored: `blobs/ab/abcd…` (the layout is part
    /// of the contract, so it is spelled out here rather than asked of the server).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        self.data_dir
            .path()
            .join("blobs")
            .join(&digest[..2])
            .join(digest)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.path().join("tmp")
    }

    /// `POST /api/ingest` with the token, the given Content-Type (if any) and body.
    pub async fn ingest_body(
        &self,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let request = self.client.post(self.url("/api/ingest")).bearer_auth(TOKEN);
        let request = match content_type {
            Some(content_type) => request.header("content-type", content_type),
            None => request,
        };
        request.body(body).send().await.expect("request sent")
    }

    pub async fn ingest_json(&self, body: &str) -> reqwest::Response {
        self.ingest_body(Some("application/json"), body.to_owned())
            .await
    }

    /// `POST /api/ingest` with the token and a multipart form.
    pub async fn ingest_form(&self, form: reqwest::multipart::Form) -> reqwest::Response {
        self.client
            .post(self.url("/api/ingest"))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn ingest_file(
        &self,
        name: &str,
        bytes: Vec<u8>,
        metadata: &str,
    ) -> reqwest::Response {
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
            )
            .text("metadata", metadata.to_owned());
        self.ingest_form(form).await
    }

    pub async fn status(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/status/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn wait_until_finished(&self, id: JobId) -> JobStatus {
        wait_for_state(&self.client, &self.url(""), id, JobState::is_terminal).await
    }

    pub fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }
}

/// Polls `GET /api/status/{id}` on `base` until the state satisfies `done` (30 s at most).
pub async fn wait_for_state(
    client: &reqwest::Client,
    base: &str,
    id: JobId,
    done: impl Fn(JobState) -> bool,
) -> JobStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let response = client
            .get(format!("{base}/api/status/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await;
        if let Ok(response) = response {
            if response.status() == 200 {
                let status: JobStatus = response.json().await.expect("a JobStatus");
                if done(status.status) {
                    return status;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} did not reach the expected state in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads an accepted job's id from a 202 answer.
pub async fn accepted_id(response: reqwest::Response) -> JobId {
    assert_eq!(response.status(), 202, "expected 202 Accepted");
    let body: Value = response.json().await.unwrap();
    JobId::parse(body["job_id"].as_str().expect("job_id")).unwrap()
}

/// Asserts the error answer's status, JSON shape and code.
pub async fn assert_error(response: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(response.status(), status, "status of {}", response.url());
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"]["code"], code, "error body {body}");
    let message = body["error"]["message"].as_str().expect("a message");
    assert!(!message.is_empty());
    message.to_owned()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes
}

/// Opens a multipart upload that announces `announced` file bytes but sends only `sent`,
/// leaving the connection open: an upload in flight that the test can cut or abandon.
pub async fn start_partial_upload(
    address: SocketAddr,
    announced: usize,
    sent: usize,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let preamble =
        "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.bin\"\r\n\
                    Content-Type: application/octet-stream\r\n\r\n";
    let epilogue = "\r\n--XYZ--\r\n";
    let length = preamble.len() + announced + epilogue.len();
    let head = format!(
        "POST /api/ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {length}\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(preamble.as_bytes()).await.unwrap();
    stream.write_all(&vec![b'z'; sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

/// `GET /api/jobs?{query}` on `base`, expecting a page.
pub async fn list_jobs(client: &reqwest::Client, base: &str, query: &str) -> JobPage {
    let response = client
        .get(format!("{base}/api/jobs?{query}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET /api/jobs?{query}");
    response.json().await.expect("a JobPage")
}

/// Waits until `GET /api/jobs?status=receiving` on `base` lists a job that has bytes.
pub async fn wait_for_receiving_job(client: &reqwest::Client, base: &str) -> JobStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = list_jobs(client, base, "status=receiving").await;
        if let Some(job) = page.jobs.into_iter().find(|job| job.bytes_done > 0) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no upload started receiving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
