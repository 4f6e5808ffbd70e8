//! Request limits: rate limiting per client address (tower_governor) and per account (its rate
//! quota; every key and session of an account share it), both 429 + `Retry-After`; a deadline
//! for ordinary requests, and the caps on a request's head.
use super::{
    auth::{self, Caller, Identity},
    client,
    config::Settings,
    error::ApiError,
    quotas::{AccountRates, QuotaExceeded},
    state::AppState,
};
use axum::routing::Route;
use axum::{
    body::Body,
    extract::Request,
    extract::State,
    middleware::Next,
    response::{IntoResponse, Response},
    Router,
};
use std::{collections::HashMap, convert::Infallible, net::IpAddr, sync::Arc, time::Duration};
use tower::{Layer, Service};
use tower_governor::{
    governor::GovernorConfigBuilder, key_extractor::KeyExtractor, GovernorError, GovernorLayer,
};
use utoipa_axum::router::OpenApiRouter;

/// How often idle per-address buckets are forgotten, so memory does not grow with every
/// address ever seen.
const FORGET_IDLE_BUCKETS_EVERY: Duration = Duration::from_secs(60);

/// Keys requests by the client's address: the peer, or what a trusted proxy says it is.
#[derive(Clone)]
pub struct ClientIpKey {
    settings: Arc<Settings>,
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(client::address_key(client::client_ip(
            request.headers(),
            request.extensions(),
            &self.settings,
        )))
    }
}

/// Takes each identified request (as `auth::identify` sees it) from its account's bucket, at
/// the account's rate quota: the token and its sessions are the built-in `admin`, a key and
/// the sessions it opened are its account. Requests without a valid credential pass on: the
/// per-address limit bounds them, and the handler refuses them.
async fn account_rate(
    State((state, rates)): State<(AppState, Arc<AccountRates>)>,
    request: Request,
    next: Next,
) -> Response {
    // Only the WebSocket route takes a token from the query (its handler reads it this way,
    // the last `token` winning); elsewhere a `?token=` is ignored by the handler, so it must
    // not decide whose bucket the request draws on either.
    let query_token = request
        .uri()
        .path()
        .starts_with("/ws/")
        .then(|| request.uri().query())
        .flatten()
        .and_then(|query| serde_urlencoded::from_str::<HashMap<String, String>>(query).ok())
        .and_then(|mut query| query.remove("token"));
    let query_token = query_token.as_deref();
    let caller = match auth::identify(request.headers(), request.extensions(), query_token, &state)
    {
        Ok(Identity::Token | Identity::Session(_, None)) => Caller::built_in_admin(),
        Ok(Identity::Key(owner) | Identity::Session(_, Some(owner))) => Caller::from(owner),
        Err(_) => return next.run(request).await,
    };
    let per_second = caller.quotas(&state.settings).max_requests_per_second;
    if let Err(retry_after) = rates.check(caller.account_id, per_second) {
        // Names, never secrets, on the request's span, for the audit line the refusal logs.
        let span = tracing::Span::current();
        span.record("account", caller.account.as_str());
        if let Some(key_id) = &caller.key_id {
            span.record("key_id", key_id.as_str());
        }
        return ApiError::Quota(QuotaExceeded::Rate {
            account: caller.account,
            limit: per_second.unwrap_or(0),
            retry_after,
        })
        .into_response();
    }
    next.run(request).await
}

/// A router that layers can wrap: axum's, and utoipa-axum's documented one (whose routes are
/// described as they are routed). Lets one `rate_limited` serve both.
pub trait Layered: Sized {
    fn wrap<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static;
}

impl Layered for Router<AppState> {
    fn wrap<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layer(layer)
    }
}

impl Layered for OpenApiRouter<AppState> {
    fn wrap<L>(self, layer: L) -> Self
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        self.layer(layer)
    }
}

/// Wraps `router` in the two rate limiters: per account (always: an account's own rate quota
/// applies even when the server sets no default rate) and per client address (unless the rate
/// is 0). Each router wrapped here has buckets of its own: the page's server functions and the
/// API are limited apart, so a script using up its account's API rate does not lock its people
/// out of the page. The buckets of idle addresses are forgotten every minute (a task in
/// `state.tasks`), so memory does not grow with every address ever seen.
pub fn rate_limited<R: Layered>(router: R, state: &AppState) -> R {
    let settings = &state.settings;
    let rates = Arc::new(AccountRates::new(settings));
    let by_account = axum::middleware::from_fn_with_state((state.clone(), rates), account_rate);
    let router = router.wrap(by_account);
    if settings.rate_limit_per_second == 0 {
        return router;
    }
    let period = Duration::from_secs_f64(1.0 / settings.rate_limit_per_second as f64);
    let burst = settings.rate_limit_burst.max(1);
    let by_address = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .key_extractor(ClientIpKey {
            settings: state.settings.clone(),
        })
        .finish();
    let Some(by_address) = by_address else {
        tracing::error!("invalid rate limit settings; rate limiting by address is off");
        return router;
    };
    let addresses = by_address.limiter().clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let mut every = tokio::time::interval(FORGET_IDLE_BUCKETS_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            addresses.retain_recent();
        }
    });
    router.wrap(GovernorLayer::new(by_address).error_handler(too_many_requests))
}

fn too_many_requests(error: GovernorError) -> Response<Body> {
    match error {
        GovernorError::TooManyRequests { wait_time, .. } => ApiError::TooManyRequests {
            retry_after: wait_time.max(1),
        }
        .into_response(),
        other => ApiError::Internal(anyhow::anyhow!("rate limiter: {other}")).into_response(),
    }
}

/// The longest request target (path and query) answered; longer gets 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most header bytes a request may carry; more gets 431. The listener's own cap is higher,
/// so that nearly every oversized request gets this JSON answer rather than a bare one.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses requests whose target or headers are larger than any client of ours sends.
pub async fn head_size(request: Request, next: Next) -> Response {
    let uri = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri > MAX_URI_BYTES {
        return ApiError::UriTooLong(format!(
            "the request target is longer than {MAX_URI_BYTES} bytes"
        ))
        .into_response();
    }
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if headers > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "the request headers are larger than {MAX_HEADER_BYTES} bytes"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Gives an ordinary request `limit` to produce its answer (uploads and WebSockets are not
/// routed through this: they have an idle timeout instead).
pub async fn deadline(limit: Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::Timeout(format!(
            "the request took longer than {} s",
            limit.as_secs_f64()
        ))
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{middleware, routing::get};
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_over_its_deadline_gets_a_json_408() {
        let limit = Duration::from_millis(50);
        let app: Router = Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "on time" }))
            .layer(middleware::from_fn(move |request, next| {
                deadline(limit, request, next)
            }));
        let slow = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(slow.status(), axum::http::StatusCode::REQUEST_TIMEOUT);
        let body = axum::body::to_bytes(slow.into_body(), 1024).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
        let fast = app
            .oneshot(Request::get("/fast").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(fast.status(), axum::http::StatusCode::OK);
    }
}
