//! Request limits: rate limiting per client address and per credential (tower_governor, 429 +
//! `Retry-After`), a deadline for ordinary requests, and the throttle on failed sign-ins.
use super::{
    auth::{self, Identity},
    client,
    config::Settings,
    error::ApiError,
    startup::AppState,
};
use axum::{
    body::Body,
    extract::Request,
    middleware::Next,
    response::{IntoResponse, Response},
    Router,
};
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tower_governor::{
    governor::GovernorConfigBuilder, key_extractor::KeyExtractor, GovernorError, GovernorLayer,
};

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
            Ok(Identity::Session(cookie)) => TokenBucket::Session(cookie.to_owned()),
            Err(_) => TokenBucket::Unverified(client::address_key(client::client_ip(
                request.headers(),
                request.extensions(),
                &self.state.settings,
            ))),
        })
    }
}

/// Wraps `router` in the two rate limiters (per client address, per token); unchanged when
/// rate limiting is off (a rate of 0).
pub fn rate_limited(router: Router<AppState>, state: &AppState) -> Router<AppState> {
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
    tokio::spawn(async move {
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
        .layer(GovernorLayer::new(by_token).error_handler(too_many_requests))
        .layer(GovernorLayer::new(by_address).error_handler(too_many_requests))
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

/// Failed sign-ins per client address, in fixed one-minute windows. Only failures count, so a
/// person who knows the token is never slowed down, and each address has its own count, so
/// one client's guessing never locks out another.
pub struct SignInThrottle {
    failures_per_window: u32,
    failures: Mutex<HashMap<IpAddr, Window>>,
}

struct Window {
    started: Instant,
    failures: u32,
}

const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at once; beyond this (after forgetting finished windows) new addresses
/// are not tracked rather than memory growing without end.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

impl SignInThrottle {
    pub fn new(failures_per_window: u32) -> Self {
        Self {
            failures_per_window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(seconds to wait)` when `client` has failed too often in the current window.
    pub fn check(&self, client: IpAddr) -> Result<(), u64> {
        let client = client::address_key(client);
        let failures = self.failures.lock().expect("sign-in throttle lock");
        match failures.get(&client) {
            Some(window)
                if window.started.elapsed() < SIGN_IN_WINDOW
                    && window.failures >= self.failures_per_window =>
            {
                let left = SIGN_IN_WINDOW.saturating_sub(window.started.elapsed());
                Err(left.as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in from `client`.
    pub fn failed(&self, client: IpAddr) {
        let client = client::address_key(client);
        let mut failures = self.failures.lock().expect("sign-in throttle lock");
        if failures.len() >= MAX_TRACKED_ADDRESSES && !failures.contains_key(&client) {
            failures.retain(|_, window| window.started.elapsed() < SIGN_IN_WINDOW);
            if failures.len() >= MAX_TRACKED_ADDRESSES {
                return;
            }
        }
        let window = failures.entry(client).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if window.started.elapsed() >= SIGN_IN_WINDOW {
            *window = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
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

    #[test]
    fn failed_sign_ins_are_counted_per_address() {
        let throttle = SignInThrottle::new(3);
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            assert!(throttle.check(guesser).is_ok());
            throttle.failed(guesser);
        }
        assert!(throttle.check(guesser).unwrap_err() >= 1);
        assert!(throttle.check(other).is_ok());
    }
}
