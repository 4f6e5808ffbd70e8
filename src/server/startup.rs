//! Building the application: storage and recovery, the state over them, the worker, the
//! router (see `router`) and the listener, bound first so tests can use port 0 and read the
//! real port; then serving until shutdown, and waiting for every tracked task.
/// The state the application is built on; named here too, beside the `Application` that
/// hands it out.
pub use super::state::AppState;
use super::{
    accounts::Accounts,
    blobs::{BlobStore, LocalBlobs, ObjectBlobs},
    cluster::Cluster,
    config::Settings,
    hub::{LiveStatus, StatusHub},
    jobs::{self, Jobs},
    keys::{self, KeyRing},
    leases::Leases,
    listener, retention, router,
    running::{Cancellations, LocalCancellations},
    sessions::Sessions,
    staging::{pg_locks::PgUploadLocks, LocalUploadLocks, Staging, UploadLocks},
    state::{AccountServices, WebhookServices},
    store::{Stores, WebhookStore},
    tls::Certificates,
    uploads::{UploadLimits, Uploads},
    webhooks::{admission::AdmissionHook, sender, Webhooks},
    worker::Worker,
};
use anyhow::Context;
use axum::Router;
use leptos::config::LeptosOptions;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long open WebSockets get to say goodbye (close 1001) after shutdown starts.
const SOCKET_DRAIN: Duration = Duration::from_secs(2);

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    worker: Worker,
    /// This node's leases (renewed by a task of `run_until_stopped`).
    leases: Arc<Leases>,
    /// The TLS certificate, when the server speaks HTTPS.
    certificates: Option<Arc<Certificates>>,
    /// What this node tells the others, and hears from them, on a shared database.
    cluster: Option<Arc<Cluster>>,
    /// The outbox the webhook sender delivers from.
    webhook_outbox: Arc<dyn WebhookStore>,
    /// Held while this process serves the data dir (see `lock_data_dir`).
    _data_dir_lock: std::fs::File,
}

/// Another process already serves this data dir: its staging (and, by default, its SQLite
/// database and blob folder) must have one owner, so this one refuses to start (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("the data dir {0} is in use by another ingest process (each node needs its own)")]
pub struct DataDirInUse(pub String);

/// Locks `ingest.lock` in the data dir for as long as the returned file is open. The kernel
/// drops the lock when the process ends, however it ends, so a crash never leaves it behind.
fn lock_data_dir(data_dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join("ingest.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(DataDirInUse(data_dir.display().to_string()).into())
        }
        Err(std::fs::TryLockError::Error(error)) => {
            Err(anyhow::Error::new(error).context(format!("locking {}", path.display())))
        }
    }
}

impl Application {
    /// Opens storage (the database: PostgreSQL when a URL is set, else SQLite under the data
    /// dir; blobs: the S3-compatible bucket when one is set, else under the data dir; staging
    /// under the data dir), recovers from an earlier crash, and binds the address. A database
    /// or bucket that does not answer is `DatabaseUnavailable` / `BlobStoreUnavailable` in the
    /// error's chain.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        super::metrics::handle();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating the data dir {}", settings.data_dir.display()))?;
        let data_dir_lock = lock_data_dir(&settings.data_dir)?;
        // Resumable uploads are staged in the bucket when there is one.
        let (blobs, bucket): (Arc<dyn BlobStore>, _) = match &settings.blob_store {
            Some(s3) => {
                let blobs = ObjectBlobs::connect(s3).await?;
                tracing::info!(
                    blob_store = %s3.location,
                    endpoint = s3.endpoint.as_ref().map(tracing::field::display),
                    "stored files are kept in object storage"
                );
                (Arc::new(blobs.clone()), Some(blobs))
            }
            None => (
                Arc::new(LocalBlobs::open(&settings.data_dir).context("preparing blob storage")?),
                None,
            ),
        };
        let stores = Stores::open(
            settings.database_url.as_ref(),
            &settings.data_dir.join("ingest.db"),
        )
        .await?;
        // One sender per upload across every node on the database.
        let upload_locks: Arc<dyn UploadLocks> = match &settings.database_url {
            Some(url) => Arc::new(PgUploadLocks::new(url)),
            None => Arc::new(LocalUploadLocks::default()),
        };
        let staging = Arc::new(
            Staging::open(
                &settings.data_dir,
                bucket,
                stores.jobs.clone(),
                upload_locks,
            )
            .context("preparing upload staging")?,
        );
        if let Some(url) = &settings.database_url {
            tracing::info!(database = %url, "jobs, sessions and accounts are kept in PostgreSQL");
        }
        let sessions = Arc::new(
            Sessions::load(
                stores.sessions,
                settings.session_ttl,
                settings.token.session_key(),
                stores.shared.is_some(),
            )
            .await?,
        );
        let ring = Arc::new(KeyRing::load(stores.accounts.clone()).await?);
        let account_services = AccountServices {
            accounts: Arc::new(Accounts::serving(
                stores.accounts,
                ring.clone(),
                sessions.clone(),
            )),
            keys: ring,
        };
        let leases = Arc::new(Leases::new(stores.jobs.clone(), settings.lease));
        let webhook_services = WebhookServices {
            webhooks: Arc::new(Webhooks::new(
                stores.webhooks.clone(),
                settings.webhook_allow_private,
            )),
            admission: settings
                .admission
                .clone()
                .map(|hook| AdmissionHook::new(hook, settings.max_metadata_bytes))
                .transpose()
                .context("preparing the admission hook")?
                .map(Arc::new),
        };
        let webhook_outbox = stores.webhooks.clone();
        // On a shared database, live status and cancels reach the other nodes.
        let cluster = stores
            .shared
            .clone()
            .map(|pool| Cluster::new(pool, stores.jobs.clone()));
        let (live, cancellations): (Arc<dyn LiveStatus>, Arc<dyn Cancellations>) = match &cluster {
            Some(cluster) => (cluster.clone(), cluster.clone()),
            None => (
                Arc::new(StatusHub::default()),
                Arc::new(LocalCancellations::default()),
            ),
        };
        let jobs = Arc::new(Jobs::new(jobs::Parts {
            store: stores.jobs,
            live,
            blobs,
            cancellations,
            staging: staging.clone(),
            leases: leases.clone(),
        }));
        let uploads = Arc::new(Uploads::new(
            jobs.clone(),
            staging,
            UploadLimits {
                max_bytes: settings.max_upload_bytes,
                idle: settings.upload_idle_timeout,
                min_free_disk: settings.min_free_disk_bytes,
                expiry: settings.upload_expiry,
                max_pending: settings.max_pending_uploads,
                concurrent: settings.max_concurrent_uploads,
            },
        ));
        uploads
            .recover()
            .await
            .context("recovering interrupted jobs")?;

        let certificates = settings
            .tls
            .clone()
            .map(Certificates::load)
            .transpose()
            .context("loading the TLS certificate")?;
        if let Err(error) = listener::raise_open_file_limit() {
            tracing::warn!(%error, "could not raise the open-file limit");
        }
        let listener = TcpListener::bind(settings.site_addr)
            .await
            .with_context(|| format!("binding {}", settings.site_addr))?;
        let local_addr = listener.local_addr()?;
        let leptos_options = LeptosOptions::builder()
            .output_name("ingest")
            .site_root(settings.site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .site_addr(local_addr)
            .build();
        let worker = Worker::new(
            jobs.clone(),
            settings.workers,
            settings.processing_delay,
            shutdown.clone(),
        );
        let state = AppState::new(
            settings,
            jobs,
            uploads,
            sessions,
            account_services,
            webhook_services,
            leptos_options,
            shutdown,
        );
        let router = router::app(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            worker,
            leases,
            certificates,
            cluster,
            webhook_outbox,
            _data_dir_lock: data_dir_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// Serves until the shutdown token fires. Then: no new connections; requests in flight
    /// (one-shot uploads among them) get `shutdown_grace` to finish; WebSockets close with
    /// 1001; the worker stops after its current step and re-queues what it was doing.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let shutdown = self.state.shutdown.clone();
        let worker = self
            .state
            .settings
            .run_worker
            .then(|| tokio::spawn(self.worker.clone().run()));
        let tasks = &self.state.tasks;
        // Renewed whether or not the worker runs (one-shot uploads hold leases too), and until
        // the requests in flight and the worker are done, not just until shutdown begins: an
        // upload finishing in the grace period must not be taken for a stopped node's.
        let leases_done = CancellationToken::new();
        tasks.spawn(self.state.jobs.clone().keep_leases(leases_done.clone()));
        if let Some(cluster) = &self.cluster {
            tasks.spawn(cluster.clone().listen(shutdown.clone()));
            tasks.spawn(cluster.clone().send_snapshots(shutdown.clone()));
        }
        // Even when finished jobs are kept forever, stalled uploads, leftovers and expired
        // sessions still need sweeping.
        tasks.spawn(retention::run(
            self.state.jobs.clone(),
            self.state.uploads.clone(),
            self.state.sessions.clone(),
            self.leases.clone(),
            retention::Policy {
                keep: self.state.settings.retention,
                upload_expiry: self.state.settings.upload_expiry,
                leftover_age: retention::LEFTOVER_MIN_AGE,
            },
            self.state.settings.retention_sweep_every,
            shutdown.clone(),
        ));
        // Deliveries go out on their own tasks, whatever the requests are doing.
        tasks.spawn(sender::run(
            self.webhook_outbox.clone(),
            sender::SenderSettings {
                retry_base: self.state.settings.webhook_retry_base,
                allow_private: self.state.settings.webhook_allow_private,
                disable_after: self.state.settings.webhook_disable_after_failures,
            },
            self.leases.node().clone(),
            shutdown.clone(),
        ));
        tasks.spawn(keys::keep_fresh(
            self.state.keys.clone(),
            self.state.sessions.clone(),
            shutdown.clone(),
        ));
        let acceptor = match &self.certificates {
            Some(certificates) => {
                tasks.spawn(certificates.clone().keep_fresh(shutdown.clone()));
                Some(certificates.acceptor()?)
            }
            None => None,
        };
        let settings = &self.state.settings;
        let limits = listener::Limits {
            header_read: settings.header_read_timeout,
            idle: settings.idle_timeout,
            max_connections: settings.max_connections,
            max_connections_per_address: settings.max_connections_per_address,
            exempt: settings.trusted_proxies.clone(),
            grace: settings.shutdown_grace,
        };
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        tracing::info!(address = %self.local_addr(), scheme, "listening");
        let local_addr = self.local_addr();
        listener::serve(
            self.listener,
            self.router,
            acceptor,
            limits,
            shutdown.clone(),
        )
        .await;
        tracing::debug!(address = %local_addr, "listener closed");
        // The listener can also end on its own; stop everything else too.
        shutdown.cancel();
        if let Some(worker) = worker {
            worker.await.context("the worker task failed")?;
        }
        leases_done.cancel();
        // Upgraded connections are not the listener's any more (axum#3003): give sockets a
        // moment to send their close frames, and sweeps and upkeep a moment to see the signal.
        let tasks = self.state.tasks.clone();
        tasks.close();
        if tokio::time::timeout(SOCKET_DRAIN, tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = tasks.len(),
                "tasks still running at shutdown were left"
            );
        }
        tracing::info!("stopped");
        Ok(())
    }
}
