//! Sending a file from the browser: declare it (`POST /api/uploads`, which creates the job),
//! then let the browser stream the `File` in one PATCH. The bytes go from disk to the network
//! without passing through wasm memory; XHR is used because fetch reports no upload progress.
use super::{json_or_error, unreachable};
use crate::{
    api::{CallError, IngestAccepted},
    domain::JobId,
};
use base64::Engine;
use leptos::prelude::*;
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{File, ProgressEvent, XmlHttpRequest};

/// Declares an upload of `file` with its metadata (JSON text) and returns the new job's id.
pub async fn create_upload(file: &File, metadata: &str) -> Result<JobId, CallError> {
    let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let declared = format!(
        "filename {},filetype {},metadata {}",
        encode(&file.name()),
        encode(&file.type_()),
        encode(if metadata.trim().is_empty() {
            "{}"
        } else {
            metadata
        }),
    );
    let response = gloo_net::http::Request::post("/api/uploads")
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", &(file.size() as u64).to_string())
        .header("Upload-Metadata", &declared)
        .send()
        .await
        .map_err(unreachable)?;
    let accepted: IngestAccepted = json_or_error(response).await?;
    Ok(accepted.job_id)
}

/// One file going up. Dropping it aborts the transfer if it is still running.
pub struct FileUpload {
    request: XmlHttpRequest,
    _progress: Closure<dyn FnMut(ProgressEvent)>,
    _load: Closure<dyn FnMut()>,
    _error: Closure<dyn FnMut()>,
}

impl FileUpload {
    /// Starts sending `file` as job `id`'s bytes. `sent` follows the bytes on the wire;
    /// `failed` gets the reason if the transfer is refused or breaks.
    pub fn send(
        id: JobId,
        file: &File,
        sent: RwSignal<Option<(u64, u64)>>,
        failed: RwSignal<Option<String>>,
    ) -> Result<Self, String> {
        let broken = |_| "the browser could not start the upload".to_owned();
        let request = XmlHttpRequest::new().map_err(broken)?;
        request
            .open("PATCH", &format!("/api/uploads/{id}"))
            .map_err(broken)?;
        for (name, value) in [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", "0"),
            ("Content-Type", "application/offset+octet-stream"),
        ] {
            request.set_request_header(name, value).map_err(broken)?;
        }
        let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
            if event.length_computable() {
                sent.set(Some((event.loaded() as u64, event.total() as u64)));
            }
        });
        let load = Closure::<dyn FnMut()>::new({
            let request = request.clone();
            move || {
                let status = request.status().unwrap_or(0);
                if !(200..300).contains(&status) {
                    let message = request
                        .response_text()
                        .ok()
                        .flatten()
                        .and_then(|text| serde_json::from_str::<crate::api::ErrorBody>(&text).ok())
                        .map_or_else(
                            || format!("the upload was refused ({status})"),
                            |body| body.error.message,
                        );
                    failed.set(Some(message));
                }
            }
        });
        let error = Closure::<dyn FnMut()>::new(move || {
            failed.set(Some("the connection broke during the upload".to_owned()));
        });
        request
            .upload()
            .map_err(broken)?
            .set_onprogress(Some(progress.as_ref().unchecked_ref()));
        request.set_onload(Some(load.as_ref().unchecked_ref()));
        request.set_onerror(Some(error.as_ref().unchecked_ref()));
        request.send_with_opt_blob(Some(file)).map_err(broken)?;
        Ok(Self {
            request,
            _progress: progress,
            _load: load,
            _error: error,
        })
    }
}

impl Drop for FileUpload {
    fn drop(&mut self) {
        if let Ok(upload) = self.request.upload() {
            upload.set_onprogress(None);
        }
        self.request.set_onload(None);
        self.request.set_onerror(None);
        // Still sending: the view went away, so the transfer goes too (the server then fails
        // the job as interrupted).
        if self.request.ready_state() != XmlHttpRequest::DONE {
            let _ = self.request.abort();
        }
    }
}
