//! `GET /hash-worker.wasm`: the hashing worker's wasm (`hash-worker/`, SHA-256 and nothing
//! else), compiled by build.rs and kept in the binary, so it always matches this server's
//! `public/hash-worker.js` and needs no file beside the site. Fetched by the worker on the first
//! file a person chooses, never by a page load; revalidated by its digest.
use axum::{
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use std::sync::LazyLock;

pub const PATH: &str = "/hash-worker.wasm";

static WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hash-worker.wasm"));

/// The quoted SHA-256 of the wasm, its version for caches.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    use sha2::Digest;
    let etag = format!("\"{}\"", hex::encode(sha2::Sha256::digest(WASM)));
    HeaderValue::from_str(&etag).expect("hex in quotes is a header value")
});

pub async fn serve(headers: HeaderMap) -> Response {
    let etag = ETAG.clone();
    // Kept by the browser, but asked again on each use: a new server may bring a new wasm.
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if headers.get(header::IF_NONE_MATCH) == Some(&etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag), cache]).into_response();
    }
    let wasm_type = (
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    ([(header::ETAG, etag), cache, wasm_type], WASM).into_response()
}
