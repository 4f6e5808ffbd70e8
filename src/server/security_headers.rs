//! Headers every answer carries so browsers hold our pages to the strictest rules: no content
//! sniffing, no framing, no referrer, HSTS over https, and a Content-Security-Policy on every
//! HTML page. Leptos pages set their own policy with the render's nonce (see `app::shell`);
//! other HTML (Swagger UI, error pages) gets `OTHER_HTML_POLICY`.
use super::{client, state::AppState};
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue},
    middleware::Next,
    response::Response,
};

/// Swagger UI: its own scripts and styles (it sets inline styles and uses data: images).
const OTHER_HTML_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// One year, the usual HSTS lifetime.
const HSTS: &str = "max-age=31536000";

/// The policy for a Leptos page rendered with `nonce`: scripts only from here or carrying the
/// nonce (the hydration script), WebAssembly compiled (`wasm-unsafe-eval`, not `unsafe-eval`),
/// connections only back to this origin (server functions, uploads, WebSockets).
pub fn page_policy(nonce: &str, dev_reload_port: Option<u32>) -> String {
    // `cargo leptos watch` reloads the page over a WebSocket on another port.
    let reload = dev_reload_port
        .map(|port| format!(" ws://127.0.0.1:{port} ws://localhost:{port}"))
        .unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'{reload}; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

pub async fn add(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let https = client::is_https(request.headers(), request.extensions(), &state.settings);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/html"));
    if html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(OTHER_HTML_POLICY),
        );
    }
    response
}
