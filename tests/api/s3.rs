//! A real S3-compatible server for the tests, never skipped: moto's standalone server from the
//! venv `scripts/setup` installs (`target/moto-venv`; `INGEST_TEST_MOTO` names another
//! `moto_server`), started on a free port: one per test binary, stopped when the binary exits,
//! or a test's own (`Moto::start`) for tests that stop it. Each test gets a fresh bucket,
//! emptied and removed when it ends.
use ingest::server::blobs::{S3Credentials, S3Endpoint, S3Location, S3Settings};
use object_store::{aws::AmazonS3Builder, ObjectStore, RetryConfig};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};
use tokio::sync::OnceCell;

/// The endpoint of the server shared by this test binary, started once.
static SHARED: OnceCell<String> = OnceCell::const_new();

/// Credentials moto accepts (it checks none); given explicitly so no test reads the process's
/// `AWS_*` variables or asks an instance-metadata service.
pub const ACCESS_KEY_ID: &str = "ingest-test";
pub const SECRET_ACCESS_KEY: &str = "ingest-test-secret";
pub const REGION: &str = "us-east-1";

fn moto_server() -> PathBuf {
    let path = std::env::var_os("INGEST_TEST_MOTO").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "moto (the S3-compatible test server) is not installed at {}: run scripts/setup",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Waits until moto answers HTTP on `endpoint` (it takes a second or two to import).
async fn wait_until_answering(endpoint: &str, log: &std::path::Path) {
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client.get(endpoint).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "moto did not answer at {endpoint}: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// A moto server of one test's own, stopped (killed) when dropped.
pub struct Moto {
    child: Option<Child>,
    pub endpoint: String,
    _log_dir: tempfile::TempDir,
}

impl Moto {
    pub async fn start() -> Moto {
        let port = free_port();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("moto.log");
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::File::options().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_until_answering(&endpoint, &log).await;
        Moto {
            child: Some(child),
            endpoint,
            _log_dir: log_dir,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the shared server under a watchdog shell that kills it once this process is gone,
/// since a static is never dropped.
async fn start_shared() -> String {
    let port = free_port();
    let dir = tempfile::Builder::new()
        .prefix("ingest-moto-")
        .tempdir()
        .unwrap()
        .keep();
    let log = dir.join("moto.log");
    let script = format!(
        r#"( "{moto}" -H 127.0.0.1 -p {port} >"{log}" 2>&1 &
  moto=$!
  while [ -d /proc/{pid} ] && [ -d /proc/$moto ]; do sleep 1; done
  kill $moto 2>/dev/null
  rm -rf "{dir}" ) >/dev/null 2>&1 &"#,
        moto = moto_server().display(),
        log = log.display(),
        dir = dir.display(),
        pid = std::process::id(),
    );
    let started = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .status()
        .expect("sh runs");
    assert!(started.success(), "starting moto");
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_until_answering(&endpoint, &log).await;
    endpoint
}

/// A fresh, empty bucket; emptied and removed when dropped, even by a failing test.
pub struct TestBucket {
    pub endpoint: String,
    pub name: String,
}

impl TestBucket {
    /// A bucket on the shared server.
    pub async fn create() -> TestBucket {
        let endpoint = SHARED.get_or_init(start_shared).await.clone();
        TestBucket::create_on(&endpoint).await
    }

    /// A bucket on a given server (a test's own `Moto`).
    pub async fn create_on(endpoint: &str) -> TestBucket {
        let name = format!("ingest-test-{:016x}", rand::random::<u64>());
        // moto lets an unsigned PUT create a bucket.
        let created = reqwest::Client::new()
            .put(format!("{endpoint}/{name}"))
            .send()
            .await
            .expect("moto answers");
        assert!(created.status().is_success(), "creating bucket {name}");
        TestBucket {
            endpoint: endpoint.to_owned(),
            name,
        }
    }

    /// Settings for blobs under `prefix` in this bucket.
    pub fn settings(&self, prefix: &str) -> S3Settings {
        S3Settings {
            location: S3Location::parse(&format!("s3://{}/{prefix}", self.name)).unwrap(),
            endpoint: Some(S3Endpoint::parse(&self.endpoint).unwrap()),
            credentials: Some(S3Credentials {
                access_key_id: ACCESS_KEY_ID.to_owned(),
                secret_access_key: SECRET_ACCESS_KEY.into(),
                region: REGION.to_owned(),
            }),
        }
    }

    /// The bucket seen directly, not through Ingest: what is really stored.
    pub fn client(&self) -> object_store::aws::AmazonS3 {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        AmazonS3Builder::new()
            .with_bucket_name(&self.name)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            .with_region(REGION)
            // Fail at once against a stopped server (a test's own, dropping its bucket).
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .unwrap()
    }

    /// Every key in the bucket.
    pub async fn keys(&self) -> Vec<String> {
        use futures::TryStreamExt;
        let mut keys: Vec<String> = self
            .client()
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }
}

impl Drop for TestBucket {
    fn drop(&mut self) {
        let (store, endpoint, name) = (self.client(), self.endpoint.clone(), self.name.clone());
        // Drop cannot await, and the test's runtime may be shutting down.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use futures::{StreamExt, TryStreamExt};
                let keys = store.list(None).map_ok(|meta| meta.location).boxed();
                let deleted: Vec<_> = store.delete_stream(keys).collect().await;
                let removed = reqwest::Client::new()
                    .delete(format!("{endpoint}/{name}"))
                    .send()
                    .await;
                (
                    deleted.into_iter().all(|d| d.is_ok()),
                    removed.map(|r| r.status()),
                )
            })
        })
        .join();
        // A stopped test server (a test's own) has taken its buckets with it.
        if let Ok((true, Ok(status))) = &dropped {
            if status.is_success() {
                return;
            }
        }
        if !matches!(&dropped, Ok((_, Err(error))) if error.is_connect()) {
            eprintln!("could not remove test bucket {}: {dropped:?}", self.name);
        }
    }
}
