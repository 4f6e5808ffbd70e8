//! Server functions the pages call. They run on the server and read its state from context.
use super::ServiceInfo;
use leptos::prelude::*;

/// Facts about this server the page may show: the version and the upload size limit.
#[server(prefix = "/rpc")]
pub async fn get_service_info() -> Result<ServiceInfo, ServerFnError> {
    let state = expect_context::<crate::server::startup::AppState>();
    Ok(ServiceInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        max_upload_bytes: state.settings.max_upload_bytes,
    })
}
