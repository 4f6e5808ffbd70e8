//! The real binary on a fresh data dir of its own, for tests that measure the process (memory,
//! sockets): `helpers::Server` with rate limiting off unless a test turns it on.
use crate::helpers::Server;
use std::net::SocketAddr;

pub struct BinaryServer {
    server: Server,
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl BinaryServer {
    /// Starts the binary with `env` on top of the test defaults, and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> BinaryServer {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = vec![("INGEST_RATE_LIMIT_PER_SECOND", "0"), ("RUST_LOG", "info")];
        settings.extend_from_slice(env);
        let server = Server::start_with(&dir.path().join("data"), "server.log", &settings).await;
        BinaryServer {
            address: server.address(),
            server,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base)
    }

    pub fn log(&self) -> String {
        self.server.log()
    }

    /// Resident memory, in bytes (VmRSS).
    pub fn rss(&self) -> u64 {
        self.server.rss_bytes()
    }

    /// The most resident memory so far, in bytes (VmHWM).
    pub fn peak_rss(&self) -> u64 {
        self.server.memory_bytes("VmHWM")
    }
}

pub const MIB: f64 = 1024.0 * 1024.0;
