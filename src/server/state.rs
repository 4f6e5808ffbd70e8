//! `AppState`: the services every handler and server function may reach, built once at
//! start-up. It knows the services, never the routes (the router is wired in `routes`).
use super::{
    accounts::Accounts,
    config::Settings,
    jobs::Jobs,
    keys::KeyRing,
    readiness::ReadinessProbe,
    sessions::Sessions,
    throttle::SignInThrottle,
    uploads::Uploads,
    webhooks::{admission::AdmissionHook, Webhooks},
};
use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use std::{ops::Deref, sync::Arc};
use tokio::sync::Semaphore;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Everything a handler or server function may reach, shared: axum clones the state for every
/// layer and extractor of every request, so a clone is one reference count, not one per
/// service (the profile of small ingests showed the per-field clones and drops).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services themselves (see `AppState`).
pub struct Services {
    pub settings: Arc<Settings>,
    pub jobs: Arc<Jobs>,
    pub leptos_options: LeptosOptions,
    /// Fires once when the server begins to stop; long-lived tasks watch it.
    pub shutdown: CancellationToken,
    /// Every task that outlives the request that started it (WebSockets, sweeps, limiter
    /// upkeep): start-up waits for them on shutdown instead of polling counters.
    pub tasks: TaskTracker,
    /// Receiving uploads' bytes (it holds the upload slots).
    pub uploads: Arc<Uploads>,
    /// One permit per open WebSocket; when none is left, upgrades get 503.
    pub socket_slots: Arc<Semaphore>,
    pub sessions: Arc<Sessions>,
    pub readiness: Arc<ReadinessProbe>,
    pub sign_in_throttle: Arc<SignInThrottle>,
    /// Every usable API key, in memory.
    pub keys: Arc<KeyRing>,
    /// Managing accounts and keys (the admin routes).
    pub accounts: Arc<Accounts>,
    /// Accounts' webhook endpoints and their delivery logs.
    pub webhooks: Arc<Webhooks>,
    /// The operator's admission hook, asked before each job is accepted; `None`: every job
    /// that passes the other checks is.
    pub admission: Option<Arc<AdmissionHook>>,
}

/// The account services, opened together over one store.
pub struct AccountServices {
    pub keys: Arc<KeyRing>,
    pub accounts: Arc<Accounts>,
}

/// The webhook services, opened together.
pub struct WebhookServices {
    pub webhooks: Arc<Webhooks>,
    pub admission: Option<Arc<AdmissionHook>>,
}

impl AppState {
    /// The state over opened services; the caps and the throttle are sized from `settings`.
    // One argument per service start-up opened; a struct around them would only move the list.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: Settings,
        jobs: Arc<Jobs>,
        uploads: Arc<Uploads>,
        sessions: Arc<Sessions>,
        account_services: AccountServices,
        webhook_services: WebhookServices,
        leptos_options: LeptosOptions,
        shutdown: CancellationToken,
    ) -> Self {
        Self(Arc::new(Services {
            readiness: Arc::new(ReadinessProbe::new(
                jobs.clone(),
                uploads.clone(),
                account_services.keys.clone(),
            )),
            keys: account_services.keys,
            accounts: account_services.accounts,
            webhooks: webhook_services.webhooks,
            admission: webhook_services.admission,
            sign_in_throttle: Arc::new(SignInThrottle::new(settings.sign_in_failures_per_minute)),
            uploads,
            socket_slots: Arc::new(Semaphore::new(settings.max_websockets)),
            tasks: TaskTracker::new(),
            sessions,
            settings: Arc::new(settings),
            jobs,
            leptos_options,
            shutdown,
        }))
    }
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// For extractors that need only the settings.
impl FromRef<AppState> for Arc<Settings> {
    fn from_ref(state: &AppState) -> Self {
        state.settings.clone()
    }
}
