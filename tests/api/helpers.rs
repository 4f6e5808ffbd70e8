//! `spawn_app()`: the real router on 127.0.0.1:0 with a fresh data dir; `Server`: the real
//! binary on a data dir, to kill and restart; `eventually`, the one bounded wait; plus the
//! HTTP/WebSocket helpers the tests share.
use ingest::{
    api::JobPage,
    domain::{JobId, JobState, JobStatus},
    server::{
        auth::ApiToken,
        config::Settings,
        startup::{AppState, Application},
        store::ListFilter,
        worker::Worker,
    },
};
use serde_json::Value;
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};
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
        refused_by(
            self.address,
            "the stopped app's port is closed",
            Duration::from_secs(10),
        )
        .await;
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
    // Likewise for wrong tokens; the throttle's own tests run the binary with a low one.
    settings.sign_in_failures_per_minute = 10_000;
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

    /// `GET {path}` without a token: the status and the JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// `GET /api/status/{id}` with the token: the raw answer, for any id text.
    pub async fn status(&self, id: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/status/{id}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent")
    }

    /// A job's status (`GET /api/status/{id}`), which must exist.
    pub async fn status_of(&self, id: JobId) -> JobStatus {
        self.status(&id.to_string())
            .await
            .json()
            .await
            .expect("a JobStatus")
    }

    /// `POST /api/jobs/{id}/cancel` with the token.
    pub async fn cancel(&self, id: JobId) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/jobs/{id}/cancel")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn wait_until_finished(&self, id: JobId) -> JobStatus {
        self.wait_for_state(id, JobState::is_terminal).await
    }

    /// Polls the job's status until its state satisfies `done` (30 s at most).
    pub async fn wait_for_state(&self, id: JobId, done: impl Fn(JobState) -> bool) -> JobStatus {
        wait_for_state(&self.client, &self.url(""), id, done).await
    }

    /// Waits until the job list shows an upload that has received bytes (30 s at most).
    pub async fn receiving_job(&self) -> JobStatus {
        wait_for_receiving_job(&self.client, &self.url("")).await
    }

    /// Signs a browser in (`POST /api/session` with the token); returns its `Cookie` value.
    pub async fn sign_in(&self) -> String {
        session_cookie(&self.client, &self.url("")).await
    }

    /// The jobs in `state` (the first 10), read from the service directly.
    pub async fn jobs_in(&self, state: JobState) -> Vec<JobStatus> {
        self.state
            .jobs
            .list(&ListFilter::every_job(Some(state)), None, 10)
            .await
            .unwrap()
    }

    /// Signs a browser in with `credential` (an API key, say); returns its `Cookie` value.
    pub async fn sign_in_with(&self, credential: &str) -> String {
        session_cookie_with(&self.client, &self.url(""), credential).await
    }

    /// tus requests to this app, with the token.
    pub fn tus(&self) -> Tus<'_> {
        Tus::new(&self.client, &self.url(""))
    }

    pub fn temp_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.tmp_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect()
    }
}

/// How often `within` asks again.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Asks `check` every 20 ms until it answers `Some`, for `limit` at most: `None` if time ran
/// out. The one polling loop of the tests; `eventually` is the usual way to call it.
pub async fn within<T>(limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Waits until `check` answers `Some` and returns what it found; panics saying what was
/// awaited if `limit` passes first.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    check: impl AsyncFnMut() -> Option<T>,
) -> T {
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("waited {limit:?} in vain until {what}"))
}

/// Waits until connections to `address` are refused (`limit` at most); `what` names the wait.
pub async fn refused_by(address: SocketAddr, what: &str, limit: Duration) {
    eventually(what, limit, async || {
        tokio::net::TcpStream::connect(address)
            .await
            .err()
            .map(drop)
    })
    .await
}

/// Polls `GET /api/status/{id}` on `base` until the state satisfies `done` (30 s at most).
pub async fn wait_for_state(
    client: &reqwest::Client,
    base: &str,
    id: JobId,
    done: impl Fn(JobState) -> bool,
) -> JobStatus {
    let what = format!("job {id} reached the expected state");
    eventually(&what, Duration::from_secs(30), async || {
        let response = client
            .get(format!("{base}/api/status/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .ok()
            .filter(|response| response.status() == 200)?;
        let status: JobStatus = response.json().await.expect("a JobStatus");
        done(status.status).then_some(status)
    })
    .await
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
    eventually(
        "an upload started receiving",
        Duration::from_secs(30),
        async || {
            let page = list_jobs(client, base, "status=receiving").await;
            page.jobs.into_iter().find(|job| job.bytes_done > 0)
        },
    )
    .await
}

/// The real `ingest` binary serving a data dir, its log in a file beside it. Killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
    stderr_path: PathBuf,
}

impl Server {
    pub async fn start(
        data_dir: &std::path::Path,
        processing_delay_ms: u64,
        log_name: &str,
    ) -> Server {
        let delay = processing_delay_ms.to_string();
        Server::start_with(
            data_dir,
            log_name,
            &[("INGEST_PROCESSING_DELAY_MS", &delay)],
        )
        .await
    }

    /// Starts the binary with `env` on top of the test defaults, and waits until it answers.
    pub async fn start_with(
        data_dir: &std::path::Path,
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let stderr_path = data_dir.parent().unwrap().join(log_name);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
            .env("INGEST_DATA_DIR", data_dir)
            .env("INGEST_TOKEN", TOKEN)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "debug");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command
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
        let ready = within(Duration::from_secs(10), async || {
            let answer = client
                .get(format!("{}/api/jobs?limit=1", self.base))
                .bearer_auth(TOKEN)
                .send()
                .await;
            answer.is_ok_and(|r| r.status() == 200).then_some(())
        })
        .await;
        assert!(ready.is_some(), "the server did not start: {}", self.log());
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The process's resident set size (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.memory_bytes("VmRSS")
    }

    /// A `/proc/<pid>/status` memory figure in bytes: `VmRSS` now, `VmHWM` the peak so far.
    pub fn memory_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in {status}"));
        kib * 1024
    }

    /// Sends SIGTERM and waits (10 s at most) for the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let child = &mut self.child;
        let exited = within(Duration::from_secs(10), async || child.try_wait().unwrap()).await;
        match exited {
            Some(status) => status.code(),
            None => panic!(
                "the server did not stop within 10 s of SIGTERM: {}",
                self.log()
            ),
        }
    }

    pub fn kill_9(&mut self) {
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

/// Signs a browser in (`POST /api/session` on `base`) and returns its `Cookie` header value.
pub async fn session_cookie(client: &reqwest::Client, base: &str) -> String {
    session_cookie_with(client, base, TOKEN).await
}

/// Signs a browser in with `credential` (the token or an API key); returns its `Cookie` value.
pub async fn session_cookie_with(client: &reqwest::Client, base: &str, credential: &str) -> String {
    let response = client
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({ "token": credential }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204, "signing in");
    let header = response.headers()["set-cookie"].to_str().unwrap();
    header.split(';').next().unwrap().to_owned()
}

/// tus requests against a server at `base`, with the token or a session cookie.
pub struct Tus<'a> {
    pub client: &'a reqwest::Client,
    pub base: String,
    /// A session cookie to send instead of the token.
    pub cookie: Option<String>,
}

impl<'a> Tus<'a> {
    pub fn new(client: &'a reqwest::Client, base: &str) -> Self {
        Tus {
            client,
            base: base.to_owned(),
            cookie: None,
        }
    }

    pub fn with_cookie(client: &'a reqwest::Client, base: &str, cookie: String) -> Self {
        Tus {
            cookie: Some(cookie),
            ..Tus::new(client, base)
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = request.header("Tus-Resumable", "1.0.0");
        match &self.cookie {
            Some(cookie) => request.header("cookie", cookie),
            None => request.bearer_auth(TOKEN),
        }
    }

    /// `POST /api/uploads` for `length` bytes with `metadata` (JSON text) in Upload-Metadata.
    pub fn create(&self, length: u64, metadata: &str) -> reqwest::RequestBuilder {
        use base64::Engine;
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        self.authorized(self.client.post(format!("{}/api/uploads", self.base)))
            .header("Upload-Length", length)
            .header(
                "Upload-Metadata",
                format!("filename {},metadata {}", encode("f.bin"), encode(metadata)),
            )
    }

    /// Creates an upload and returns its job id; panics unless the answer is 201.
    pub async fn created(&self, length: u64, metadata: &str) -> JobId {
        let response = self.create(length, metadata).send().await.unwrap();
        assert_eq!(response.status(), 201, "creating an upload");
        let location = response.headers()["location"].to_str().unwrap();
        JobId::parse(location.strip_prefix("/api/uploads/").unwrap()).unwrap()
    }

    /// `PATCH /api/uploads/{id}` from `offset`; the caller adds the body.
    pub fn patch(&self, id: JobId, offset: u64) -> reqwest::RequestBuilder {
        self.authorized(self.client.patch(format!("{}/api/uploads/{id}", self.base)))
            .header("Content-Type", "application/offset+octet-stream")
            .header("Upload-Offset", offset)
    }

    /// A PATCH from `offset` whose body is fed by hand: the sender, and the request running in
    /// the background.
    pub fn streaming_patch(
        &self,
        id: JobId,
        offset: u64,
        checksum: Option<&str>,
    ) -> (
        futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
        tokio::task::JoinHandle<reqwest::Response>,
    ) {
        let (sender, body) = futures::channel::mpsc::channel(4);
        let request = self.patch(id, offset);
        let request = match checksum {
            Some(checksum) => request.header("Upload-Checksum", checksum),
            None => request,
        };
        let request = request.body(reqwest::Body::wrap_stream(body));
        (
            sender,
            tokio::spawn(async move { request.send().await.unwrap() }),
        )
    }

    /// The durable offset HEAD reports.
    pub async fn offset(&self, id: JobId) -> u64 {
        let head = self
            .authorized(self.client.head(format!("{}/api/uploads/{id}", self.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200, "HEAD of upload {id}");
        head.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// `GET /api/status/{id}`.
    pub async fn status(&self, id: JobId) -> JobStatus {
        let response = self
            .authorized(self.client.get(format!("{}/api/status/{id}", self.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "status of {id}");
        response.json().await.unwrap()
    }
}

/// JSON metadata text of about `size` bytes: one long string, the shape that costs the most
/// memory per byte once parsed.
pub fn bulky_metadata(size: usize) -> String {
    format!("{{\"note\":\"{}\"}}", "m".repeat(size.saturating_sub(12)))
}
