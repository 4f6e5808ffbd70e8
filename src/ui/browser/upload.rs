//! Sending a file from the browser over tus: declare it (`POST /api/uploads`, which creates the
//! job), then PATCH it in chunks, resuming from the server's offset after a failure or a reload
//! (an `UploadRecord` is kept in `localStorage` under the file's fingerprint: the job id and the
//! SHA-256 of each chunk, so a resume goes on only with the same file's bytes). The browser
//! streams each chunk from disk, so nothing passes through wasm memory; XHR because fetch
//! reports no upload progress. Each chunk carries its SHA-256 (`Upload-Checksum`, computed by
//! the hashing worker), so bytes damaged on the way are refused.
use super::{hashing::Digesting, json_or_error, unreachable};
use crate::ui::{
    backoff::Backoff,
    format::format_bytes,
    transfer::{Mismatch, SentChunk, UploadRecord},
};
use crate::{
    api::{CallError, ErrorCode, IngestAccepted},
    domain::JobId,
};
use leptos::{leptos_dom::helpers::set_timeout_with_handle, prelude::*};
use std::{cell::RefCell, rc::Rc};
use wasm_bindgen::{closure::Closure, JsCast};
use web_sys::{File, ProgressEvent, XmlHttpRequest};

/// Declares an upload of `file` with its metadata (JSON text) and returns the new job's id.
pub async fn create_upload(file: &File, metadata: &str) -> Result<JobId, CallError> {
    // The browser's own base64 (btoa) takes "binary strings": one char per UTF-8 byte.
    let encode = |text: &str| {
        let binary: String = text.bytes().map(char::from).collect();
        web_sys::window()
            .and_then(|window| window.btoa(&binary).ok())
            .unwrap_or_default()
    };
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

/// Bytes per PATCH: big enough that the per-request fsync costs little, small enough that a
/// dropped connection or a pause loses little. Each carries a checksum, and the server keeps
/// none of a cut chunk's bytes (they cannot be checked), so this is also what a cut costs.
const CHUNK: f64 = 4.0 * 1024.0 * 1024.0;

/// Where the upload of a file (by name, size and modification time) can be resumed after a
/// reload: the key under which its job id is kept in `localStorage`.
fn fingerprint(file: &File) -> String {
    super::files::fingerprint(file).key()
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// What this browser remembers of an unfinished upload of a file with `file`'s fingerprint.
fn record_of(file: &File) -> Option<UploadRecord> {
    UploadRecord::parse(&storage()?.get_item(&fingerprint(file)).ok()??)
}

/// The job of an earlier, unfinished upload of this file, and how many of its bytes the
/// server has; `None` if there is none to continue. A file that only shares the fingerprint
/// (its bytes differ from the chunks sent) continues nothing: it is another file. `checked`
/// is the job a Resume already checked this file against (`same_file`).
pub async fn resumable(file: &File, checked: Option<JobId>) -> Option<(JobId, u64)> {
    let storage = storage()?;
    let key = fingerprint(file);
    let record = record_of(file)?;
    let id = record.id;
    let offset = match server_offset(id).await {
        Ok(offset) if offset < file.size() as u64 => offset,
        // Finished, gone or unknown: nothing to resume.
        _ => {
            let _ = storage.remove_item(&key);
            return None;
        }
    };
    // Asked after the server, so nothing is hashed for an upload that is gone.
    if checked != Some(id) && same_file(file, &record).await.is_err() {
        return None;
    }
    Some((id, offset))
}

/// Remembers (or, with `None`, forgets) the job uploading `file`; a new job starts a record
/// without chunks.
pub fn remember(file: &File, id: Option<JobId>) {
    let Some(storage) = storage() else {
        return;
    };
    let key = fingerprint(file);
    let _ = match id {
        Some(id) => storage.set_item(&key, &UploadRecord::new(id).to_text()),
        None => storage.remove_item(&key),
    };
}

/// Notes the SHA-256 of bytes `start..end` of `file`, hashed to be sent as job `id`'s. Kept
/// before the PATCH goes: whatever the server ends up holding was hashed from these bytes. Only
/// into the upload's own record: a forgotten one (finished, cancelled) stays forgotten.
fn remember_chunk(file: &File, id: JobId, start: u64, end: u64, digest: &[u8; 32]) {
    let (Some(storage), Some(mut record)) = (storage(), record_of(file)) else {
        return;
    };
    if record.id != id {
        return;
    }
    record.add(SentChunk {
        start,
        end,
        sha256: hex::encode(digest),
    });
    let _ = storage.set_item(&fingerprint(file), &record.to_text());
}

/// Whether `file` holds the bytes sent for `record`: each chunk sent is hashed again (in the
/// worker) and compared. The error says where the bytes differ, or why they could not be read.
pub async fn same_file(file: &File, record: &UploadRecord) -> Result<(), Mismatch> {
    for chunk in &record.chunks {
        if chunk.end > file.size() as u64 {
            return Err(Mismatch::Differs(
                "it is shorter than what was sent".to_owned(),
            ));
        }
        let (digest, _) = super::hashing::sha256_of(file, chunk.start as f64, chunk.end as f64)
            .await
            .map_err(Mismatch::Unchecked)?;
        if hex::encode(digest) != chunk.sha256 {
            return Err(Mismatch::Differs(format!(
                "its bytes from {} to {} differ from what was sent",
                format_bytes(chunk.start),
                format_bytes(chunk.end)
            )));
        }
    }
    Ok(())
}

/// `HEAD /api/uploads/{id}`: the bytes the server holds for good.
pub async fn server_offset(id: JobId) -> Result<u64, CallError> {
    let response = gloo_net::http::RequestBuilder::new(&format!("/api/uploads/{id}"))
        .method(gloo_net::http::Method::HEAD)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    if !response.ok() {
        return Err(CallError {
            status,
            message: format!("the upload is no longer available ({status})"),
        });
    }
    response
        .headers()
        .get("upload-offset")
        .and_then(|offset| offset.parse().ok())
        .ok_or(CallError {
            status: 0,
            message: "the server did not say how much it has".to_owned(),
        })
}

/// One file going up in chunks from the server's offset: each chunk is a PATCH the browser
/// streams from disk. A failed chunk is retried after a jittered, growing wait, from the offset
/// the server reports then (a cut chunk keeps what arrived). Dropping it stops the transfer
/// (that is how a card pauses: the server keeps every byte that arrived).
pub struct FileUpload(Rc<RefCell<Sending>>);

/// What a running upload reports: bytes on the wire (done, total), the reason it cannot go
/// on, and that the server holds every byte.
#[derive(Clone, Copy)]
pub struct UploadSignals {
    pub sent: RwSignal<Option<(u64, u64)>>,
    pub failed: RwSignal<Option<String>>,
    pub finished: RwSignal<bool>,
}

/// A request's progress, load and error handlers.
type RequestHandlers = (
    Closure<dyn FnMut(ProgressEvent)>,
    Closure<dyn FnMut()>,
    Closure<dyn FnMut()>,
);

struct Sending {
    id: JobId,
    file: File,
    offset: u64,
    signals: UploadSignals,
    request: Option<XmlHttpRequest>,
    /// Handlers of the current and earlier requests; dropped with the upload, since one may be
    /// running when the next request starts.
    handlers: Vec<RequestHandlers>,
    failures: u32,
    retry: Option<TimeoutHandle>,
    stopped: bool,
    /// The next chunk's digest (its start and end), asked for while this chunk is on the wire.
    ahead: Option<(u64, u64, Digesting)>,
}

impl FileUpload {
    /// Starts sending `file` as job `id`'s bytes from `offset`, reporting to `signals`.
    pub fn send(id: JobId, file: &File, offset: u64, signals: UploadSignals) -> Self {
        let sending = Rc::new(RefCell::new(Sending {
            id,
            file: file.clone(),
            offset,
            signals,
            request: None,
            handlers: Vec::new(),
            failures: 0,
            retry: None,
            stopped: false,
            ahead: None,
        }));
        signals.sent.set(Some((offset, file.size() as u64)));
        signals.failed.set(None);
        send_chunk(&sending);
        Self(sending)
    }
}

impl Drop for FileUpload {
    fn drop(&mut self) {
        let mut sending = self.0.borrow_mut();
        sending.stopped = true;
        if let Some(retry) = sending.retry.take() {
            retry.clear();
        }
        if let Some(request) = sending.request.take() {
            detach(&request);
            // Still sending: the view went away, so the transfer goes too. The bytes that
            // arrived stay on the server, and choosing the file again continues from there.
            if request.ready_state() != XmlHttpRequest::DONE {
                let _ = request.abort();
            }
        }
    }
}

/// Hashes the next chunk in the worker, then sends it with its `Upload-Checksum`, so the server
/// refuses bytes damaged on the way. If the worker cannot hash, the chunk goes without one.
/// The chunk after it is hashed while it is sent, so hashing costs the upload little time.
fn send_chunk(sending: &Rc<RefCell<Sending>>) {
    let (id, file, offset, ahead) = {
        let mut s = sending.borrow_mut();
        (s.id, s.file.clone(), s.offset, s.ahead.take())
    };
    let end = chunk_end(&file, offset);
    // Asked for ahead only if the server's offset is where the last chunk was meant to end.
    let digesting = match ahead {
        Some((start, until, digesting)) if (start, until) == (offset, end) => digesting,
        _ => Digesting::start(&file, offset as f64, end as f64),
    };
    let sending = sending.clone();
    leptos::task::spawn_local(async move {
        let digest = digesting.digest().await.ok().map(|(digest, _)| digest);
        if let Some(digest) = &digest {
            remember_chunk(&file, id, offset, end, digest);
        }
        if end < file.size() as u64 && !sending.borrow().stopped {
            let next = chunk_end(&file, end);
            let digesting = Digesting::start(&file, end as f64, next as f64);
            sending.borrow_mut().ahead = Some((end, next, digesting));
        }
        let checksum = digest.map(|digest| super::hashing::upload_checksum(&digest));
        send_chunk_with(&sending, checksum);
    });
}

/// Where the chunk that starts at `offset` ends.
fn chunk_end(file: &File, offset: u64) -> u64 {
    (offset as f64 + CHUNK).min(file.size()) as u64
}

fn send_chunk_with(sending: &Rc<RefCell<Sending>>, checksum: Option<String>) {
    let (id, file, offset, sent, stopped) = {
        let s = sending.borrow();
        (s.id, s.file.clone(), s.offset, s.signals.sent, s.stopped)
    };
    let size = file.size();
    if stopped {
        return;
    }
    let end = chunk_end(&file, offset) as f64;
    let started = (|| {
        let chunk = file.slice_with_f64_and_f64(offset as f64, end).ok()?;
        let request = XmlHttpRequest::new().ok()?;
        request.open("PATCH", &format!("/api/uploads/{id}")).ok()?;
        for (name, value) in [
            ("Tus-Resumable", "1.0.0"),
            ("Upload-Offset", &offset.to_string()),
            ("Content-Type", "application/offset+octet-stream"),
        ] {
            request.set_request_header(name, value).ok()?;
        }
        if let Some(checksum) = &checksum {
            request
                .set_request_header("Upload-Checksum", checksum)
                .ok()?;
        }
        let progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
            sent.set(Some((offset + event.loaded() as u64, size as u64)));
        });
        let weak = Rc::downgrade(sending);
        let load = Closure::<dyn FnMut()>::new({
            let weak = weak.clone();
            let request = request.clone();
            move || {
                if let Some(sending) = weak.upgrade() {
                    chunk_answered(&sending, &request);
                }
            }
        });
        let error = Closure::<dyn FnMut()>::new(move || {
            if let Some(sending) = weak.upgrade() {
                retry_later(&sending);
            }
        });
        request
            .upload()
            .ok()?
            .set_onprogress(Some(progress.as_ref().unchecked_ref()));
        request.set_onload(Some(load.as_ref().unchecked_ref()));
        request.set_onerror(Some(error.as_ref().unchecked_ref()));
        request.send_with_opt_blob(Some(&chunk)).ok()?;
        Some((request, (progress, load, error)))
    })();
    let mut s = sending.borrow_mut();
    match started {
        Some((request, handlers)) => {
            s.request = Some(request);
            s.handlers.push(handlers);
        }
        None => s
            .signals
            .failed
            .set(Some("the browser could not send the file".to_owned())),
    }
}

/// A chunk's answer: go on from the new offset, finish, retry later, or give up with the
/// server's reason.
fn chunk_answered(sending: &Rc<RefCell<Sending>>, request: &XmlHttpRequest) {
    let status = request.status().unwrap_or(0);
    let offset = request
        .get_response_header("Upload-Offset")
        .ok()
        .flatten()
        .and_then(|offset| offset.parse::<u64>().ok());
    match (status, offset) {
        (204, Some(offset)) => {
            let done = {
                let mut s = sending.borrow_mut();
                s.offset = offset;
                s.failures = 0;
                offset >= s.file.size() as u64
            };
            if done {
                finish(sending);
            } else {
                send_chunk(sending);
            }
        }
        // The offsets disagree (a cut chunk kept part of its bytes): ask and continue.
        (409, _) | (408 | 429, _) | (500.., _) => retry_later(sending),
        _ => {
            let error =
                request.response_text().ok().flatten().and_then(|text| {
                    crate::ui::loaded::from_json::<crate::api::ErrorBody>(&text).ok()
                });
            // Cut or silent too long: the bytes that arrived are kept, so carry on.
            if error
                .as_ref()
                .is_some_and(|body| body.error.code == ErrorCode::UploadInterrupted)
            {
                return retry_later(sending);
            }
            let message = match error {
                Some(body) if body.error.code == ErrorCode::ChecksumMismatch => {
                    "the server refused bytes that were damaged on the way (checksum mismatch)"
                        .to_owned()
                }
                Some(body) => body.error.message,
                None => format!("the upload was refused ({status})"),
            };
            let s = sending.borrow();
            // Gone (cancelled, expired): nothing to resume. Otherwise kept for a retry: the
            // server still holds the bytes that arrived intact.
            if matches!(status, 404 | 410) {
                remember(&s.file, None);
            }
            s.signals.failed.set(Some(message));
        }
    }
}

/// Waits (growing, jittered), asks the server how much it has, and sends from there.
fn retry_later(sending: &Rc<RefCell<Sending>>) {
    let mut s = sending.borrow_mut();
    if s.stopped {
        return;
    }
    let delay = Backoff::CALL.delay_ms(s.failures, js_sys::Math::random());
    s.failures += 1;
    let weak = Rc::downgrade(sending);
    s.retry = set_timeout_with_handle(
        move || {
            let Some(sending) = weak.upgrade() else {
                return;
            };
            let id = sending.borrow().id;
            leptos::task::spawn_local(async move {
                match server_offset(id).await {
                    // Everything arrived (only the answer was lost): the job goes on without us.
                    Ok(offset) if offset >= sending.borrow().file.size() as u64 => {
                        finish(&sending);
                    }
                    Ok(offset) => {
                        sending.borrow_mut().offset = offset;
                        send_chunk(&sending);
                    }
                    Err(error) if error.is_transient() => retry_later(&sending),
                    Err(error) => {
                        let s = sending.borrow();
                        remember(&s.file, None);
                        s.signals.failed.set(Some(error.message));
                    }
                }
            });
        },
        std::time::Duration::from_millis(u64::from(delay.max(100))),
    )
    .ok();
}

/// Every byte is on the server: nothing left to resume.
fn finish(sending: &Rc<RefCell<Sending>>) {
    let s = sending.borrow();
    remember(&s.file, None);
    s.signals.finished.set(true);
}

fn detach(request: &XmlHttpRequest) {
    if let Ok(upload) = request.upload() {
        upload.set_onprogress(None);
    }
    request.set_onload(None);
    request.set_onerror(None);
}
