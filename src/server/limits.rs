//! Request limits: rate limiting per client address and per credential (tower_governor, 429 +
//! `Retry-After`), a deadline for ordinary requests, and the cap on concurrent uploads.
use super::{
    auth::{self, Identity},
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
use std::time::Duration;
use tower_governor::{
    governor::GovernorConfigBuilder,
    key_extractor::{KeyExtractor, PeerIpKeyExtractor},
    GovernorError, GovernorLayer,
};

/// How often idle per-address buckets are forgotten, so memory does not grow with every
/// address ever seen.
const FORGET_IDLE_BUCKETS_EVERY: Duration = Duration::from_secs(60);

/// Keys requests by the credential they carry (as `auth::identify` sees it): the configured
/// token, or a live browser session. Anything unverified shares one bucket, so made-up
/// credentials cannot create buckets without end.
#[derive(Clone)]
pub struct TokenKey {
    state: AppState,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenBucket {
    Token,
    Session(String),
    Unverified,
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
        Ok(
            match auth::identify(request.headers(), query_token, &self.state) {
                Ok(Identity::Token) => TokenBucket::Token,
                Ok(Identity::Session(cookie)) => TokenBucket::Session(cookie.to_owned()),
                Err(_) => TokenBucket::Unverified,
            },
        )
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
        .key_extractor(PeerIpKeyExtractor)
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
    tokio::spawn(async move {
        let mut every = tokio::time::interval(FORGET_IDLE_BUCKETS_EVERY);
        loop {
            every.tick().await;
            addresses.retain_recent();
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
