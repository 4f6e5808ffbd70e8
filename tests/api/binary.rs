//! The real `ingest` binary on a loopback port, for tests that measure the process (its memory,
//! its file descriptors) or need it alone in its process: start with extra settings, read its
//! log and resident memory, stop it.
use crate::helpers::TOKEN;
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

pub struct BinaryServer {
    child: Child,
    pub address: SocketAddr,
    log_path: PathBuf,
    _data_dir: tempfile::TempDir,
}

impl BinaryServer {
    /// Starts the binary on a fresh data dir with `env` on top of test defaults (rate limiting
    /// off unless `env` turns it on), and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> BinaryServer {
        let data_dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log_path = data_dir.path().join("server.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ingest"));
        command
            .env("INGEST_CONFIG", "/nonexistent/Leptos.toml")
            .env("INGEST_DATA_DIR", data_dir.path().join("data"))
            .env("INGEST_TOKEN", TOKEN)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
            .env("INGEST_RATE_LIMIT_PER_SECOND", "0")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap());
        for (name, value) in env {
            command.env(name, value);
        }
        let server = BinaryServer {
            child: command.spawn().expect("the ingest binary starts"),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            log_path,
            _data_dir: data_dir,
        };
        server.wait_until_answering().await;
        server
    }

    async fn wait_until_answering(&self) {
        let client = reqwest::Client::new();
        for _ in 0..1000 {
            let answered = client.get(self.url("/healthz")).send().await;
            if answered.is_ok_and(|response| response.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the server did not start: {}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Resident memory, in bytes (VmRSS).
    pub fn rss(&self) -> u64 {
        rss_of(self.child.id())
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A process's resident memory in bytes, from /proc.
pub fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status"))
        .expect("/proc/<pid>/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line");
    kib * 1024
}

pub const MIB: f64 = 1024.0 * 1024.0;
