//! What the client tests share: the real `ingest` binary run as a client with its own cache
//! dir, and a real TCP proxy in front of a server that counts (and may slow) the bytes that pass.
use crate::helpers::TOKEN;
use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A user of the client: a home for its files and a cache dir for its resume records.
pub struct ClientUser {
    pub dir: tempfile::TempDir,
}

impl ClientUser {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A file of `len` random bytes in the user's dir.
    pub fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes = crate::helpers::random_bytes(len);
        let path = self.path(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    /// `ingest ARGS` against `server` with the test token, from the user's dir.
    pub fn command(&self, server: &str, args: &[&str]) -> Command {
        self.command_with_key(server, TOKEN, args)
    }

    pub fn command_with_key(&self, server: &str, key: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("INGEST_SERVER", server)
            .env("INGEST_TOKEN", key)
            .env_remove("INGEST_TOKEN_FILE")
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// Runs to the end without blocking the runtime the server may be running on.
    pub async fn run(&self, server: &str, args: &[&str]) -> Output {
        output_of(self.command(server, args)).await
    }

    pub fn cache_records(&self) -> Vec<PathBuf> {
        let dir = self.dir.path().join("cache/ingest/uploads");
        std::fs::read_dir(dir)
            .map(|entries| entries.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default()
    }
}

pub async fn output_of(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

pub fn spawn_quietly(mut command: Command) -> Child {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The job statuses `--json` printed, one a line, each parsed strictly.
pub fn json_jobs(output: &Output) -> Vec<ingest::domain::JobStatus> {
    stdout(output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

pub fn exit_code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

/// A TCP proxy on a loopback port in front of `upstream`, counting the bytes each way and,
/// with a rate, slowing what the client sends to that many bytes a second.
pub struct Proxy {
    pub url: String,
    pub upstream_bytes: Arc<AtomicU64>,
    pub downstream_bytes: Arc<AtomicU64>,
    /// Bytes per second the client may send; 0: as fast as it can.
    rate: Arc<AtomicU64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr, bytes_per_second: Option<u64>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream_bytes = Arc::new(AtomicU64::new(0));
        let downstream_bytes = Arc::new(AtomicU64::new(0));
        let rate = Arc::new(AtomicU64::new(bytes_per_second.unwrap_or(0)));
        let (up, down, limit) = (
            upstream_bytes.clone(),
            downstream_bytes.clone(),
            rate.clone(),
        );
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (up, down, limit) = (up.clone(), down.clone(), limit.clone());
                tokio::spawn(async move {
                    // A server that is down: the client's connection closes at once.
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = pipe(client_read, server_write, up, Some(limit)) => {}
                        _ = pipe(server_read, client_write, down, None) => {}
                    }
                });
            }
        });
        Proxy {
            url,
            upstream_bytes,
            downstream_bytes,
            rate,
            accepting,
        }
    }

    /// Waits until nothing has passed for a while (a dead client's last bytes are through).
    pub async fn wait_until_quiet(&self) {
        let mut last = (self.sent(), self.received());
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = (self.sent(), self.received());
            if now == last {
                return;
            }
            last = now;
        }
        panic!("the proxy never went quiet");
    }

    /// From now on, as fast as the client can send.
    pub fn unthrottle(&self) {
        self.rate.store(0, Ordering::SeqCst);
    }

    pub fn sent(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> u64 {
        self.downstream_bytes.load(Ordering::SeqCst)
    }
}

async fn pipe(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    counter: Arc<AtomicU64>,
    bytes_per_second: Option<Arc<AtomicU64>>,
) {
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
        counter.fetch_add(read as u64, Ordering::SeqCst);
        let rate = bytes_per_second
            .as_ref()
            .map_or(0, |rate| rate.load(Ordering::SeqCst));
        if rate > 0 {
            tokio::time::sleep(Duration::from_secs_f64(read as f64 / rate as f64)).await;
        }
    }
    let _ = to.shutdown().await;
}
