//! Server data loaded into the page (`Loaded`, a `Resource`): the server renders it and hands its
//! value to the browser as JSON text, which the browser reads with `serde_json::from_slice`, the
//! reader every other answer goes through (server functions, `fetch`, the WebSocket). Leptos'
//! default codec reads with `from_str`, and each reader is a second copy of every type's
//! deserializer in the wasm.
use leptos::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::future::Future;

/// JSON text written by `serde_json::to_string`, read by `serde_json::from_slice`.
pub struct JsonSlices;

impl<T: Serialize> codee::Encoder<T> for JsonSlices {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> codee::Decoder<T> for JsonSlices {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(text: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(text.as_bytes())
    }
}

/// A resource carried from the server's render to the browser as `JsonSlices`.
pub type Loaded<T> = Resource<T, JsonSlices>;

/// `Resource::new` with `JsonSlices`: `fetch` runs again whenever `source` changes.
pub fn load<T, S, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetch: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> Loaded<T>
where
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    S: Send + Sync + Clone + PartialEq + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetch, false)
}

/// JSON as the browser reads it everywhere (see the module's note).
#[cfg(feature = "hydrate")]
pub fn from_json<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    serde_json::from_slice(text.as_bytes())
}
