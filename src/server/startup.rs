//! Building the application: storage, recovery, the worker, the router (API + Leptos), and
//! the listener, bound first so tests can use port 0 and read the real port.
use super::{
    blobs::LocalBlobs,
    config::Settings,
    error,
    hub::StatusHub,
    jobs::{self, Jobs},
    limits,
    limits::SignInThrottle,
    listener,
    readiness::ReadinessProbe,
    routes::api_router,
    running::LocalCancellations,
    security_headers,
    sessions::Sessions,
    staging::{LocalUploadLocks, Staging},
    store::SqliteStore,
    telemetry,
    telemetry::request_span,
    tls::Certificates,
    uploads::{UploadLimits, Uploads},
    worker::Worker,
};
use crate::app::shell;
use anyhow::Context;
use axum::{
    extract::{DefaultBodyLimit, FromRef, Request, State},
    middleware,
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use leptos::config::LeptosOptions;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::SsrMode;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::sync::CancellationToken;
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

/// How long open WebSockets get to say goodbye (close 1001) after shutdown starts.
const SOCKET_DRAIN: Duration = Duration::from_secs(2);

/// Everything a handler or server function may reach.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub jobs: Arc<Jobs>,
    pub leptos_options: LeptosOptions,
    /// Fires once when the server begins to stop; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// Receiving uploads' bytes.
    pub uploads: Arc<Uploads>,
    /// One permit per open WebSocket; when none is left, upgrades get 503.
    pub socket_slots: Arc<Semaphore>,
    pub sessions: Arc<Sessions>,
    pub readiness: Arc<ReadinessProbe>,
    pub sign_in_throttle: Arc<SignInThrottle>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    worker: Worker,
    /// The TLS certificate, when the server speaks HTTPS.
    certificates: Option<Arc<Certificates>>,
}

impl Application {
    /// Opens storage under the data dir, recovers from an earlier crash, and binds the address.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        super::metrics::handle();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating the data dir {}", settings.data_dir.display()))?;
        let blobs =
            Arc::new(LocalBlobs::open(&settings.data_dir).context("preparing blob storage")?);
        let staging = Arc::new(
            Staging::open(&settings.data_dir, Arc::new(LocalUploadLocks::default()))
                .context("preparing upload staging")?,
        );
        let store = Arc::new(SqliteStore::open(&settings.data_dir.join("ingest.db")).await?);
        let sessions = Arc::new(
            Sessions::load(
                store.clone(),
                settings.session_ttl,
                settings.token.session_key(),
            )
            .await?,
        );
        let jobs = Arc::new(Jobs::new(jobs::Parts {
            store,
            live: Arc::new(StatusHub::default()),
            blobs,
            cancellations: Arc::new(LocalCancellations::default()),
            staging: staging.clone(),
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
        let state = AppState {
            sign_in_throttle: Arc::new(SignInThrottle::new(settings.sign_in_failures_per_minute)),
            readiness: Arc::new(ReadinessProbe::new(jobs.clone(), uploads.clone())),
            uploads,
            socket_slots: Arc::new(Semaphore::new(settings.max_websockets)),
            sessions,
            settings: Arc::new(settings),
            jobs,
            leptos_options,
            shutdown,
        };
        let router = router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            worker,
            certificates,
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
        // Even when finished jobs are kept forever, stalled uploads, leftovers and expired
        // sessions still need sweeping.
        tokio::spawn(super::retention::run(
            self.state.jobs.clone(),
            self.state.uploads.clone(),
            self.state.sessions.clone(),
            super::retention::Policy {
                keep: self.state.settings.retention,
                upload_expiry: self.state.settings.upload_expiry,
                leftover_age: super::retention::LEFTOVER_MIN_AGE,
            },
            self.state.settings.retention_sweep_every,
            shutdown.clone(),
        ));
        let acceptor = match &self.certificates {
            Some(certificates) => {
                tokio::spawn(certificates.clone().keep_fresh(shutdown.clone()));
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
        // Upgraded connections are not the listener's any more (axum#3003): give sockets a
        // moment to send their close frames.
        let sockets = &self.state.socket_slots;
        let max_sockets = self.state.settings.max_websockets;
        let deadline = tokio::time::Instant::now() + SOCKET_DRAIN;
        while sockets.available_permits() < max_sockets && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The pages the app renders (see `ui::Page`); each is rendered on the server, then hydrated.
const PAGES: [&str; 3] = ["/", "/jobs", "/jobs/{job_id}"];

fn router(state: AppState) -> Router {
    let rpc_paths: Vec<String> = server_fn::axum::server_fn_paths()
        .map(|(path, _)| path.to_owned())
        .collect();
    // Leptos would mount each server function itself, outside our limits; listings marked as
    // excluded stop that, and `rpc_router` mounts them instead.
    let excluded = leptos_axum::generate_route_list_with_exclusions(|| (), Some(rpc_paths.clone()))
        .into_iter()
        .filter(|listing| rpc_paths.iter().any(|path| path == listing.path()));
    let routes = PAGES
        .into_iter()
        .map(|path| {
            AxumRouteListing::new(
                path.to_owned(),
                SsrMode::default(),
                [leptos_router::Method::Get],
                vec![],
            )
        })
        .chain(excluded)
        .collect();
    Router::new()
        .merge(api_router(&state))
        .merge(rpc_router(&state))
        .leptos_routes_with_context(&state, routes, || {}, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(middleware::from_fn(error::json_errors))
        .layer(middleware::from_fn(limits::head_size))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers::add,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(telemetry::drop_unsafe_request_id))
        .with_state(state)
}

/// The page's server functions, under the same rate limits and deadline as the REST routes,
/// with a body cap sized for the largest argument (metadata, form-encoded).
fn rpc_router(state: &AppState) -> Router<AppState> {
    let body_cap = state.settings.max_metadata_bytes * 3 + 4096;
    let deadline = state.settings.request_timeout;
    let calls = Router::new()
        .route("/rpc/{*function}", post(call_server_function))
        .layer(DefaultBodyLimit::max(body_cap))
        .route_layer(middleware::from_fn(move |request, next| {
            limits::deadline(deadline, request, next)
        }));
    limits::rate_limited(calls, state)
}

async fn call_server_function(State(state): State<AppState>, request: Request) -> Response {
    leptos_axum::handle_server_fns_with_context(
        move || leptos::prelude::provide_context(state.clone()),
        request,
    )
    .await
    .into_response()
}
