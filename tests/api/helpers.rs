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
    /// The serving task: it ends once the app has let go of everything (the data dir's lock
    /// among them).
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
        // And until the app has stopped altogether: it holds the data dir until then.
        if let Some(served) = self.served.take() {
            tokio::time::timeout(Duration::from_secs(40), served)
                .await
                .expect("the stopped app ends within its shutdown grace")
                .expect("the serving task")
                .expect("the app stops cleanly");
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
    let served = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        state,
        worker,
        data_dir,
        shutdown,
        served: Some(served),
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
        self.admin().ingest_file(name, bytes, metadata).await
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

/// What `GET /api/me` answers for a caller whose account has no jobs, under the test
/// server's default quotas (none).
pub fn me_with_nothing_stored(account: &str, role: &str, key_id: Value) -> Value {
    serde_json::json!({
        "account": account,
        "role": role,
        "key_id": key_id,
        "usage": {"stored_bytes": 0, "uploads": 0},
        "quotas": {"max_stored_bytes": null, "max_uploads": null, "max_requests_per_second": null},
    })
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
    start_partial_upload_with(address, TOKEN, announced, sent).await
}

/// `start_partial_upload` with `credential` (an API key, say) instead of the token.
pub async fn start_partial_upload_with(
    address: SocketAddr,
    credential: &str,
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
        "POST /api/ingest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {credential}\r\n\
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
        Server::start_on(data_dir, log_name, port, env).await
    }

    /// The same on a given port (a restart where clients expect the server to be).
    pub async fn start_on(
        data_dir: &std::path::Path,
        log_name: &str,
        port: u16,
        env: &[(&str, &str)],
    ) -> Server {
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

/// tus requests against a server at `base`, with the token (or another bearer credential, an
/// API key) or a session cookie.
pub struct Tus<'a> {
    pub client: &'a reqwest::Client,
    pub base: String,
    /// A session cookie to send instead of the bearer credential.
    pub cookie: Option<String>,
    /// The `Authorization: Bearer` credential: the token unless told otherwise.
    pub bearer: String,
}

impl<'a> Tus<'a> {
    pub fn new(client: &'a reqwest::Client, base: &str) -> Self {
        Tus {
            client,
            base: base.to_owned(),
            cookie: None,
            bearer: TOKEN.to_owned(),
        }
    }

    /// tus requests with `credential` (an API key, say) as the bearer credential.
    pub fn with_bearer(client: &'a reqwest::Client, base: &str, credential: &str) -> Self {
        Tus {
            bearer: credential.to_owned(),
            ..Tus::new(client, base)
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
            None => request.bearer_auth(&self.bearer),
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

    /// `HEAD /api/uploads/{id}`.
    pub fn head(&self, id: JobId) -> reqwest::RequestBuilder {
        self.authorized(self.client.head(format!("{}/api/uploads/{id}", self.base)))
    }

    /// `DELETE /api/uploads/{id}` (tus termination).
    pub fn terminate(&self, id: JobId) -> reqwest::RequestBuilder {
        self.authorized(
            self.client
                .delete(format!("{}/api/uploads/{id}", self.base)),
        )
    }

    /// The durable offset HEAD reports.
    pub async fn offset(&self, id: JobId) -> u64 {
        let head = self.head(id).send().await.unwrap();
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

/// How a caller proves who it is: a bearer credential (the token or an API key), or the
/// cookie of a browser session.
#[derive(Clone, Debug)]
pub enum Credential {
    Bearer(String),
    Cookie(String),
}

/// One caller of a test app, bound to one credential: every request it makes carries it.
/// Answers come back raw (`reqwest::Response`) or as JSON (`serde_json::Value`), so tests can
/// compare them byte for byte.
#[derive(Clone)]
pub struct ApiClient {
    pub client: reqwest::Client,
    pub address: SocketAddr,
    pub credential: Credential,
    /// The key's id, when the credential is (or was opened with) an API key.
    pub key_id: Option<String>,
    /// Sent as `X-Forwarded-For`, to appear as another client address (behind a trusted proxy).
    pub forwarded_for: Option<String>,
}

/// An API key as issued: its id, and the key itself (shown once).
#[derive(Clone, Debug)]
pub struct IssuedKey {
    pub key_id: String,
    pub key: String,
}

impl TestApp {
    /// A new account `name` with `role` ("member" or "admin") and a caller holding a new key of
    /// it (made over HTTP with the token).
    pub async fn account(&self, name: &str, role: &str) -> ApiClient {
        let admin = self.admin();
        admin.create_account(name, role).await;
        admin.with_key(admin.issue_key(name).await)
    }

    /// A new member account `name`, and a caller holding a new key of it.
    pub async fn member(&self, name: &str) -> ApiClient {
        self.account(name, "member").await
    }

    /// A caller holding the token: the built-in admin.
    pub fn admin(&self) -> ApiClient {
        self.caller(Credential::Bearer(TOKEN.to_owned()))
    }

    /// A caller of this app holding `credential`.
    pub fn caller(&self, credential: Credential) -> ApiClient {
        ApiClient::at(self.address, credential)
    }
}

pub type WebSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl ApiClient {
    /// A caller of the server at `address` holding `credential`.
    pub fn at(address: SocketAddr, credential: Credential) -> ApiClient {
        ApiClient {
            client: reqwest::Client::new(),
            address,
            credential,
            key_id: None,
            forwarded_for: None,
        }
    }

    /// A caller of the same server holding `key`.
    pub fn with_key(&self, key: IssuedKey) -> ApiClient {
        ApiClient {
            key_id: Some(key.key_id),
            forwarded_for: None,
            ..ApiClient::at(self.address, Credential::Bearer(key.key))
        }
    }

    /// `POST /api/accounts` (an admin's call); panics unless the account is created.
    pub async fn create_account(&self, name: &str, role: &str) {
        let response = self
            .request(reqwest::Method::POST, "/api/accounts")
            .json(&serde_json::json!({"name": name, "role": role}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "creating account {name}");
    }

    /// `POST /api/accounts/{name}/keys` (an admin's call); panics unless a key is issued.
    pub async fn issue_key(&self, name: &str) -> IssuedKey {
        let path = format!("/api/accounts/{name}/keys");
        let response = self.send(reqwest::Method::POST, &path).await;
        assert_eq!(response.status(), 201, "issuing a key for {name}");
        let body: Value = response.json().await.unwrap();
        IssuedKey {
            key_id: body["key_id"].as_str().expect("key_id").to_owned(),
            key: body["key"].as_str().expect("key").to_owned(),
        }
    }

    /// `PUT /api/accounts/{name}/quotas` with `overrides` as the body (an admin's call).
    pub async fn set_quotas(&self, name: &str, overrides: Value) -> reqwest::Response {
        self.request(
            reqwest::Method::PUT,
            &format!("/api/accounts/{name}/quotas"),
        )
        .json(&overrides)
        .send()
        .await
        .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// The bearer credential (the token or a key); panics for a session caller.
    pub fn bearer(&self) -> &str {
        match &self.credential {
            Credential::Bearer(credential) => credential,
            Credential::Cookie(_) => panic!("a session caller has no bearer credential"),
        }
    }

    /// The same caller, appearing to come from `address` (through a trusted proxy).
    pub fn behind_proxy_as(&self, address: &str) -> ApiClient {
        ApiClient {
            forwarded_for: Some(address.to_owned()),
            ..self.clone()
        }
    }

    /// The same account in a browser: a session opened with this caller's key (or token).
    pub async fn signed_in(&self) -> ApiClient {
        let base = format!("http://{}", self.address);
        let cookie = session_cookie_with(&self.client, &base, self.bearer()).await;
        ApiClient {
            credential: Credential::Cookie(cookie),
            ..self.clone()
        }
    }

    /// Adds the credential (and the forwarded address) to `request`.
    pub fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let request = match &self.forwarded_for {
            Some(address) => request.header("x-forwarded-for", address),
            None => request,
        };
        match &self.credential {
            Credential::Bearer(credential) => request.bearer_auth(credential),
            Credential::Cookie(cookie) => request.header("cookie", cookie),
        }
    }

    /// A request to `path` with the credential; the caller adds the rest and sends it.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorized(self.client.request(method, self.url(path)))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.request(method, path)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(reqwest::Method::GET, path).await
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// `GET /api/me`.
    pub async fn me(&self) -> Value {
        self.get_json("/api/me").await
    }

    /// `POST /api/ingest` with a multipart form holding `bytes` as file `name` and `metadata`.
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
        self.request(reqwest::Method::POST, "/api/ingest")
            .multipart(form)
            .send()
            .await
            .expect("request sent")
    }

    /// Ingests a file and waits until its job is completed; its status as JSON.
    pub async fn stored_file(&self, name: &str, bytes: Vec<u8>, metadata: &str) -> Value {
        let id = accepted_id(self.ingest_file(name, bytes, metadata).await).await;
        self.completed(id).await
    }

    /// Sends `bytes` as one tus upload (declared with their exact length) and waits until its
    /// job is completed; its status as JSON.
    pub async fn stored_upload(&self, bytes: Vec<u8>) -> Value {
        let tus = self.tus();
        let id = tus.created(bytes.len() as u64, "{}").await;
        let sent = tus.patch(id, 0).body(bytes).send().await.unwrap();
        assert_eq!(sent.status(), 204, "the upload's bytes");
        self.completed(id).await
    }

    /// Waits (30 s at most) until job `id` is completed; its status as JSON.
    pub async fn completed(&self, id: JobId) -> Value {
        let what = format!("job {id} finished");
        let job = eventually(&what, Duration::from_secs(30), async || {
            let job = self.job(id).await;
            let state: JobState = serde_json::from_value(job["status"].clone()).unwrap();
            state.is_terminal().then_some(job)
        })
        .await;
        assert_eq!(job["status"], "completed", "{job}");
        job
    }

    /// `POST /api/ingest` with a JSON body (a metadata-only job).
    pub async fn ingest_json(&self, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/api/ingest")
            .json(&body)
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /api/status/{id}`: the raw answer.
    pub async fn status(&self, id: JobId) -> reqwest::Response {
        self.get(&format!("/api/status/{id}")).await
    }

    /// A job's status as JSON; it must be there for this caller.
    pub async fn job(&self, id: JobId) -> Value {
        self.get_json(&format!("/api/status/{id}")).await
    }

    /// `GET /api/jobs?{query}` as JSON; it must answer 200.
    pub async fn jobs(&self, query: &str) -> Value {
        self.get_json(&format!("/api/jobs?{query}")).await
    }

    /// The ids of `GET /api/jobs?{query}` (one page), newest first.
    pub async fn job_ids(&self, query: &str) -> Vec<String> {
        let page = self.jobs(query).await;
        page["jobs"]
            .as_array()
            .expect("a page of jobs")
            .iter()
            .map(|job| job["job_id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `POST /api/jobs/{id}/cancel`.
    pub async fn cancel(&self, id: JobId) -> reqwest::Response {
        self.send(reqwest::Method::POST, &format!("/api/jobs/{id}/cancel"))
            .await
    }

    /// `DELETE /api/jobs/{id}`.
    pub async fn delete(&self, id: JobId) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, &format!("/api/jobs/{id}"))
            .await
    }

    /// `GET /api/jobs/{id}/content`.
    pub async fn content(&self, id: JobId) -> reqwest::Response {
        self.get(&format!("/api/jobs/{id}/content")).await
    }

    /// A server function (`POST /rpc/{name}`) with `form` as its urlencoded arguments.
    pub async fn rpc(&self, name: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.request(reqwest::Method::POST, &format!("/rpc/{name}"))
            .form(form)
            .send()
            .await
            .expect("request sent")
    }

    /// tus requests with this caller's credential.
    pub fn tus(&self) -> Tus<'_> {
        let base = format!("http://{}", self.address);
        match &self.credential {
            Credential::Bearer(credential) => Tus::with_bearer(&self.client, &base, credential),
            Credential::Cookie(cookie) => Tus::with_cookie(&self.client, &base, cookie.clone()),
        }
    }

    /// Opens `/ws/status/{id}` with the credential in a header (`Authorization` or `Cookie`).
    pub async fn ws(&self, id: JobId) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("ws://{}/ws/status/{id}", self.address);
        let mut request = url.into_client_request().unwrap();
        let (name, value) = match &self.credential {
            Credential::Bearer(credential) => ("authorization", format!("Bearer {credential}")),
            Credential::Cookie(cookie) => ("cookie", cookie.clone()),
        };
        request.headers_mut().insert(name, value.parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .map(|(socket, _)| socket)
    }

    /// The WebSocket handshake for `/ws/status/{id}` sent as a plain HTTP request, so that a
    /// refusal comes back whole (a WebSocket client keeps only what arrived with its head):
    /// the credential in a header, or with `token_in_query` as `?token=`.
    pub async fn ws_handshake(&self, id: JobId, token_in_query: bool) -> reqwest::Response {
        let request = if token_in_query {
            let url = self.url(&format!("/ws/status/{id}"));
            let request = self.client.get(url).query(&[("token", self.bearer())]);
            match &self.forwarded_for {
                Some(address) => request.header("x-forwarded-for", address),
                None => request,
            }
        } else {
            self.request(reqwest::Method::GET, &format!("/ws/status/{id}"))
        };
        request
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .send()
            .await
            .expect("request sent")
    }

    /// Opens `/ws/status/{id}?token=…` with the bearer credential in the query (wscat's way).
    pub async fn ws_with_query_token(
        &self,
        id: JobId,
    ) -> Result<WebSocket, tokio_tungstenite::tungstenite::Error> {
        let url = format!(
            "ws://{}/ws/status/{id}?token={}",
            self.address,
            self.bearer()
        );
        tokio_tungstenite::connect_async(url)
            .await
            .map(|(socket, _)| socket)
    }
}

/// An answer reduced to what a client can compare: status, headers (without those that differ
/// on every answer: `date`, `x-request-id`) and body, with each of `ids` replaced by `{id}`.
#[derive(Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub async fn of(response: reqwest::Response, ids: &[JobId]) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Answer::from_parts(status, &headers, &String::from_utf8_lossy(&body), ids)
    }

    pub fn from_parts(
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
        ids: &[JobId],
    ) -> Answer {
        Answer {
            status,
            headers: comparable_headers(headers, ids),
            body: without_ids(body, ids),
        }
    }
}

fn comparable_headers(
    headers: &reqwest::header::HeaderMap,
    ids: &[JobId],
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            (name.as_str().to_owned(), without_ids(&value, ids))
        })
        .collect();
    pairs.sort();
    pairs
}

fn without_ids(text: &str, ids: &[JobId]) -> String {
    ids.iter().fold(text.to_owned(), |text, id| {
        text.replace(&id.to_string(), "{id}")
    })
}

/// The multipart framing of `ApiClient::streaming_ingest`: a metadata part, then the file.
const STREAMING_BOUNDARY: &str = "streaming-boundary-7d1c";

/// A one-shot upload (`POST /api/ingest`, multipart) whose file is fed by hand and whose
/// length is never told: a chunked body without Content-Length.
pub struct StreamingUpload {
    sender: futures::channel::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    answer: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
}

impl ApiClient {
    /// Starts a one-shot upload of unknown length of file `filename`; its bytes follow with
    /// `StreamingUpload::send`.
    pub async fn streaming_ingest(&self, filename: &str) -> StreamingUpload {
        let (mut sender, body) = futures::channel::mpsc::channel(4);
        let request = self
            .request(reqwest::Method::POST, "/api/ingest")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={STREAMING_BOUNDARY}"),
            )
            .body(reqwest::Body::wrap_stream(body));
        let preamble = format!(
            "--{STREAMING_BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{{}}\r\n\
             --{STREAMING_BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        futures::SinkExt::send(&mut sender, Ok(preamble.into_bytes()))
            .await
            .unwrap();
        StreamingUpload {
            sender,
            answer: tokio::spawn(request.send()),
        }
    }
}

impl StreamingUpload {
    /// Sends more of the file; `false` once the server takes no more (it has answered, or
    /// stopped reading for 5 s).
    pub async fn send(&mut self, bytes: Vec<u8>) -> bool {
        if self.answer.is_finished() {
            return false;
        }
        let sent = futures::SinkExt::send(&mut self.sender, Ok(bytes));
        matches!(
            tokio::time::timeout(Duration::from_secs(5), sent).await,
            Ok(Ok(()))
        )
    }

    /// Ends the file and the form (if the server still reads) and waits, 30 s at most, for
    /// the answer.
    pub async fn finish(mut self) -> reqwest::Response {
        let epilogue = format!("\r\n--{STREAMING_BOUNDARY}--\r\n").into_bytes();
        self.send(epilogue).await;
        drop(self.sender);
        tokio::time::timeout(Duration::from_secs(30), self.answer)
            .await
            .expect("the upload is answered within 30 s")
            .unwrap()
            .expect("an HTTP answer to the upload")
    }
}
