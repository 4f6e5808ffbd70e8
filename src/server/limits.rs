//! Request limits: rate limiting per client address and per credential (tower_governor, 429 +
//! `Retry-After`), a deadline for ordinary requests, and the caps on a request's head.
use super::{
    auth::{self, Identity},
    client,
    config::Settings,
    error::ApiError,
    state::AppState,
};
use axum::routing::Route;
use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
    Router,
};
use std::{convert::Infallible, net::IpAddr, sync::Arc, time::Duration};
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

/// Keys requests by the credential they carry (as `auth::identify` sees it): the configured
/// token, or a live browser session. Unverified requests are keyed by client address, so
/// made-up credentials create no more buckets than addresses do, and one client's failures
/// never use up another's allowance.
#[derive(Clone)]
pub struct TokenKey {
    state: AppState,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenBucket {
    Token,
    Key(crate::domain::KeyId),
    Session(String),
    Unverified(IpAddr),
}

impl KeyExtractor for TokenKey {
    type Key = TokenBucket;

    fn extract<T>(&self, request: &axum::http::Request<T>) -> Result<TokenBucket, GovernorError> {
        // Decoded the way axum's `Query` decodes it for the WebSocket route.
        let query: Vec<(String, String)> = request
            .uri()
            .query()
            .and_then(|query| serde_urlencoded::from_str(query).ok())
            .unwrap_or_default();
        let query_token = query
            .iter()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.as_str());
        let identity = auth::identify(
            request.headers(),
            request.extensions(),
            query_token,
            &self.state,
        );
        Ok(match identity {
            Ok(Identity::Token) => TokenBucket::Token,
            Ok(Identity::Key(owner)) => TokenBucket::Key(owner.key_id),
            // A session opened with a key shares the key's bucket.
            Ok(Identity::Session(_, Some(owner))) => TokenBucket::Key(owner.key_id),
            Ok(Identity::Session(cookie, None)) => TokenBucket::Session(cookie.to_owned()),
            Err(_) => TokenBucket::Unverified(client::address_key(client::client_ip(
                request.headers(),
                request.extensions(),
                &self.state.settings,
            ))),
        })
    }
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

/// Wraps `router` in the two rate limiters (per client address, per token); unchanged when
/// rate limiting is off (a rate of 0). The buckets of idle clients are forgotten every minute
/// (a task in `state.tasks`), so memory does not grow with every address ever seen.
pub fn rate_limited<R: Layered>(router: R, state: &AppState) -> R {
    let settings = &state.settings;
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
    let by_token = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(burst)
        .key_extractor(TokenKey {
            state: state.clone(),
        })
        .finish();
    let (Some(by_address), Some(by_token)) = (by_address, by_token) else {
        tracing::error!("invalid rate limit settings; rate limiting is off");
        return router;
    };
    let addresses = by_address.limiter().clone();
    let credentials = by_token.limiter().clone();
    let shutdown = state.shutdown.clone();
    state.tasks.spawn(async move {
        let mut every = tokio::time::interval(FORGET_IDLE_BUCKETS_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            addresses.retain_recent();
            credentials.retain_recent();
        }
    });
    router
        .wrap(GovernorLayer::new(by_token).error_handler(too_many_requests))
        .wrap(GovernorLayer::new(by_address).error_handler(too_many_requests))
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
