//! A real PostgreSQL for the tests, never skipped: the server at `INGEST_TEST_POSTGRES`
//! (default `127.0.0.1:5432`, trust authentication, user `postgres`) when it answers, otherwise
//! one started from Debian's `postgresql` package in a temp dir on a free port, which stops
//! when this test binary exits. Each test gets a fresh database, dropped when it ends.
use ingest::server::store::DatabaseUrl;
use sqlx::{Connection, PgConnection};
use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};
use tokio::sync::OnceCell;

/// Where the tests look for a running server first.
const DEFAULT_ADDRESS: &str = "127.0.0.1:5432";

/// `postgres://postgres@host:port` of the server this test binary uses, found (or started)
/// once.
static SERVER: OnceCell<String> = OnceCell::const_new();

/// A fresh database on the test server; dropped (connections and all) when this is dropped,
/// even by a failing test.
pub struct TestDatabase {
    pub url: DatabaseUrl,
    server: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let server = SERVER.get_or_init(server).await.clone();
        let name = format!("ingest_test_{:016x}", rand::random::<u64>());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("connecting to the test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        let _ = admin.close().await;
        let url = DatabaseUrl::parse(&format!("{server}/{name}")).expect("a database URL");
        TestDatabase { url, server, name }
    }

    /// The URL as text, for the settings of a server under test.
    pub fn url_text(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop cannot await, and the test's runtime may be shutting down: a thread of its own
        // with a runtime of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&format!("{server}/postgres")).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// The running server if one answers at the configured address, else a private one.
async fn server() -> String {
    let address =
        std::env::var("INGEST_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADDRESS.to_owned());
    let running = format!("postgres://postgres@{address}");
    if answers(&running).await {
        return running;
    }
    eprintln!("no PostgreSQL answers at {address}; starting one from the postgresql package");
    start_private_server().await
}

async fn answers(server: &str) -> bool {
    let connect = PgConnection::connect(&format!("{server}/postgres"));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            true
        }
        _ => false,
    }
}

/// `initdb` and `pg_ctl start` from the newest `/usr/lib/postgresql/*/bin` in a temp dir, on a
/// free port, listening on loopback only; run as the `postgres` user when the tests run as
/// root (initdb refuses root). A watchdog shell stops the server and removes the dir once this
/// process is gone, since a static is never dropped.
async fn start_private_server() -> String {
    let bin = postgres_bin().expect(
        "no PostgreSQL answers and none is installed: apt-get install -y postgresql \
         (or set INGEST_TEST_POSTGRES to host:port of a server with trust authentication)",
    );
    let dir = tempfile::Builder::new()
        .prefix("ingest-pg-")
        .tempdir()
        .expect("a temp dir for PostgreSQL")
        .keep();
    let as_root = is_root();
    if as_root {
        let owned = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown runs");
        assert!(owned.success(), "chown postgres {}", dir.display());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let script = format!(
        r#"set -e
"{bin}/initdb" -D "{dir}/data" -A trust -U postgres >"{dir}/initdb.log" 2>&1
"{bin}/pg_ctl" -D "{dir}/data" -o "-p {port} -k {dir} -c listen_addresses=127.0.0.1" -l "{dir}/log" -w start >/dev/null
echo started
( while [ -d /proc/{pid} ]; do sleep 1; done
  "{bin}/pg_ctl" -D "{dir}/data" -m fast stop >/dev/null 2>&1
  rm -rf "{dir}" ) >/dev/null 2>&1 &
"#,
        bin = bin.display(),
        dir = dir.display(),
        pid = std::process::id(),
    );
    let mut command = if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "sh", "-c", &script]);
        command
    } else {
        let mut command = Command::new("sh");
        command.args(["-c", &script]);
        command
    };
    let output = tokio::task::spawn_blocking(move || {
        command
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
    })
    .await
    .expect("the start-up task")
    .expect("sh runs");
    assert!(
        output.status.success() && output.stdout.starts_with(b"started"),
        "starting PostgreSQL in {} failed: {}",
        dir.display(),
        std::fs::read_to_string(dir.join("initdb.log")).unwrap_or_default()
            + &std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    );
    let server = format!("postgres://postgres@127.0.0.1:{port}");
    assert!(answers(&server).await, "the started PostgreSQL answers");
    server
}

/// The newest installed PostgreSQL's `bin` directory.
fn postgres_bin() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version: u32 = path.file_name()?.to_str()?.parse().ok()?;
            let bin = path.join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version)
        .map(|(_, bin)| bin)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("Uid:"))?;
            line.split_whitespace().nth(1).map(|uid| uid == "0")
        })
        .unwrap_or(false)
}
