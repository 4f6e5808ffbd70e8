//! Building the application: storage, recovery, the worker, the router (API + Leptos), and
//! the listener, bound first so tests can use port 0 and read the real port.
use super::{
    blobs::BlobStore, config::Settings, jobs::Jobs, routes::api_router, sessions::Sessions,
    store::SqliteStore, telemetry::request_span, worker::Worker,
};
use crate::app::shell;
use anyhow::Context;
use axum::{extract::FromRef, Router};
use leptos::config::LeptosOptions;
use leptos_axum::{AxumRouteListing, LeptosRoutes};
use leptos_router::SsrMode;
use std::{future::IntoFuture, net::SocketAddr, sync::Arc, time::Duration};
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
    /// One permit per upload being received; when none is left, uploads get 503.
    pub upload_slots: Arc<Semaphore>,
    pub sessions: Arc<Sessions>,
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
}

impl Application {
    /// Opens storage under the data dir, recovers from an earlier crash, and binds the address.
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<Self> {
        super::metrics::handle();
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating the data dir {}", settings.data_dir.display()))?;
        let blobs = BlobStore::open(&settings.data_dir).context("preparing blob storage")?;
        let store = Arc::new(SqliteStore::open(&settings.data_dir.join("ingest.db")).await?);
        let sessions = Arc::new(Sessions::load(store.clone(), settings.session_ttl).await?);
        let jobs = Arc::new(Jobs::new(store, blobs));
        jobs.recover()
            .await
            .context("recovering interrupted jobs")?;

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
            upload_slots: Arc::new(Semaphore::new(settings.max_concurrent_uploads)),
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
            self.state.sessions.clone(),
            super::retention::Policy {
                keep: self.state.settings.retention,
                upload_expiry: self.state.settings.upload_expiry,
                leftover_age: super::retention::LEFTOVER_MIN_AGE,
            },
            self.state.settings.retention_sweep_every,
            shutdown.clone(),
        ));
        tracing::info!(address = %self.local_addr(), "listening");
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
        let mut server = tokio::spawn(server);
        let served = tokio::select! {
            served = &mut server => served,
            _ = shutdown.cancelled() => {
                let grace = self.state.settings.shutdown_grace;
                match tokio::time::timeout(grace, &mut server).await {
                    Ok(served) => served,
                    Err(_) => {
                        tracing::warn!(?grace, "requests still running after the grace period; cutting them off");
                        server.abort();
                        Ok(Ok(()))
                    }
                }
            }
        };
        served
            .context("the HTTP server task failed")?
            .context("serving HTTP")?;
        // The server task can also end on its own (an accept error); stop everything else too.
        shutdown.cancel();
        if let Some(worker) = worker {
            worker.await.context("the worker task failed")?;
        }
        // axum does not wait for upgraded connections (axum#3003): give sockets a moment to
        // send their close frames.
        let hub = self.state.jobs.hub();
        let deadline = tokio::time::Instant::now() + SOCKET_DRAIN;
        while hub.open_sockets() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The pages the app renders (see `ui::Page`); each is rendered on the server, then hydrated.
const PAGES: [&str; 3] = ["/", "/jobs", "/jobs/{job_id}"];

fn router(state: AppState) -> Router {
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
        .collect();
    Router::new()
        .merge(api_router(&state))
        .leptos_routes_with_context(&state, routes, || {}, {
            let options = state.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
