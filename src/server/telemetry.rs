//! Logging set-up, and the request span that keeps secrets (query strings, headers) out of logs.
use super::config::LogFormat;
use axum::http::Request;
use tracing::Span;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Text by default, JSON lines when configured; `RUST_LOG` refines the levels.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
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

/// The span for one request: method, path and request id. The query string is left out on
/// purpose: the WebSocket route carries the token in `?token=`.
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
    )
}
