//! Logging set-up, the request span that keeps secrets (query strings, headers) out of logs,
//! and the rule that a client's request id is logged only when it is short and plain.
use super::config::LogFormat;
use axum::{
    extract::Request as AxumRequest,
    http::{HeaderName, Request},
    middleware::Next,
    response::Response,
};
use tracing::Span;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Text by default, JSON lines when configured; `RUST_LOG` refines the levels.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        // object_store logs each retry of a request at info: a reachable store's retries are
        // noise, and an unreachable one is reported by whoever gave up.
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info,object_store=warn"));
    init_with(format, filter);
}

/// For the management commands: only the audit lines (who changed which account or key), on
/// standard error, so what a command prints on standard output stays clean for scripts.
pub fn init_audit(format: LogFormat) {
    init_with(format, EnvFilter::new("audit=info"));
}

fn init_with(format: LogFormat, filter: EnvFilter) {
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    // A second init (tests start many servers in one process) keeps the first subscriber.
    let _ = result;
}

/// The span for one request: method, path and request id, and (filled in by authentication)
/// the caller's account and key id. The query string is left out on purpose: the WebSocket
/// route carries the token in `?token=`.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        account = tracing::field::Empty,
        key_id = tracing::field::Empty,
    )
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client-chosen request id that is kept.
const MAX_REQUEST_ID_LEN: usize = 64;

/// Whether a client's `X-Request-Id` may be logged and echoed: 1–64 of `A-Z a-z 0-9 - _ . :`.
/// Anything else could forge or break log lines, so it is replaced by a fresh id.
pub fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// Drops an unsafe (or repeated) `X-Request-Id` before the id layer runs, so the server makes
/// up its own.
pub async fn drop_unsafe_request_id(mut request: AxumRequest, next: Next) -> Response {
    let headers = request.headers_mut();
    let ids = headers.get_all(&REQUEST_ID).iter().count();
    let safe = ids == 1
        && headers
            .get(&REQUEST_ID)
            .is_some_and(|id| is_safe_request_id(id.as_bytes()));
    if ids > 0 && !safe {
        headers.remove(&REQUEST_ID);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::is_safe_request_id;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(is_safe_request_id(b"0f8c2a6e-1b7d-4c1e-9a57-3f1f2e4d5c6b"));
        assert!(is_safe_request_id(b"trace:abc.def_1"));
        assert!(!is_safe_request_id(b""));
        assert!(!is_safe_request_id(&[b'a'; 65]));
        assert!(!is_safe_request_id(b"id\nlevel=ERROR msg=forged"));
        assert!(!is_safe_request_id(b"id with spaces"));
        assert!(!is_safe_request_id("\u{202e}id".as_bytes()));
    }
}
