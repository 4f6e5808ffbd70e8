//! SHA-256 of a file's bytes, computed off the page's thread: a worker (`public/hash-worker.js`)
//! runs a small wasm of its own (`hash-worker/`, the `sha2` crate) on 1 MiB slices it reads
//! from disk, so a file never sits whole in memory and the page's wasm carries no hashing code.
//! The page asks for a range and awaits its digest; the worker starts on the first request (the
//! first upload, or a Resume check). A worker that fails (its script cannot be fetched, or an
//! error escapes it) answers what waits with an error, and for the next 30 s every request is
//! refused at once (then a new worker is tried), so uploads go on without digests instead of
//! waiting for them.
use js_sys::{Object, Promise, Reflect, Uint8Array};
use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    rc::Rc,
};
use wasm_bindgen::{closure::Closure, prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Event, File, MessageEvent, Worker};

/// The worker and the requests waiting for it, by number.
struct Hasher {
    worker: Worker,
    waiting: Rc<RefCell<HashMap<u32, js_sys::Function>>>,
    next: u32,
    /// When the worker's script failed (`Date.now()`), if it did.
    broken_at: Rc<Cell<Option<f64>>>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(Event)>,
}

thread_local! {
    static HASHER: RefCell<Option<Hasher>> = const { RefCell::new(None) };
}

fn start_worker() -> Option<Hasher> {
    let worker = Worker::new("/hash-worker.js").ok()?;
    let waiting: Rc<RefCell<HashMap<u32, js_sys::Function>>> = Rc::default();
    let on_message = Closure::<dyn FnMut(MessageEvent)>::new({
        let waiting = waiting.clone();
        move |event: MessageEvent| {
            let data = event.data();
            let Some(id) = Reflect::get(&data, &"id".into())
                .ok()
                .and_then(|id| id.as_f64())
            else {
                return;
            };
            if let Some(resolve) = waiting.borrow_mut().remove(&(id as u32)) {
                let _ = resolve.call1(&JsValue::NULL, &data);
            }
        }
    });
    worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The script could not be fetched or run: nothing will answer what is waiting.
    let broken_at = Rc::new(Cell::new(None));
    let on_error = Closure::<dyn FnMut(Event)>::new({
        let (waiting, broken_at) = (waiting.clone(), broken_at.clone());
        move |_: Event| {
            broken_at.set(Some(js_sys::Date::now()));
            let answer = Object::new();
            let _ = Reflect::set(&answer, &"error".into(), &WORKER_DOWN.into());
            for (_, resolve) in waiting.borrow_mut().drain() {
                let _ = resolve.call1(&JsValue::NULL, &answer);
            }
        }
    });
    worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    Some(Hasher {
        worker,
        waiting,
        next: 0,
        broken_at,
        _on_message: on_message,
        _on_error: on_error,
    })
}

const WORKER_DOWN: &str = "the hashing worker could not start";
/// How long a worker that could not start is taken as down before another is tried.
const RETRY_WORKER_AFTER_MS: f64 = 30_000.0;

/// The SHA-256 of `file`'s bytes `start..end`, and how long the worker took (ms).
pub async fn sha256_of(file: &File, start: f64, end: f64) -> Result<([u8; 32], f64), String> {
    Digesting::start(file, start, end).digest().await
}

/// A SHA-256 the worker is computing: asked for now, its result awaited later (so the next
/// chunk's digest can be computed while this one is on the wire).
pub struct Digesting(Option<Promise>);

impl Digesting {
    /// Asks the worker for the SHA-256 of `file`'s bytes `start..end`.
    pub fn start(file: &File, start: f64, end: f64) -> Self {
        Self(request(file, start, end))
    }

    /// The digest, and how long the worker took (ms).
    pub async fn digest(self) -> Result<([u8; 32], f64), String> {
        answer(self.0).await
    }
}

fn request(file: &File, start: f64, end: f64) -> Option<Promise> {
    HASHER.with(|cell| {
        let mut cell = cell.borrow_mut();
        match cell.as_ref().map(|hasher| hasher.broken_at.get()) {
            Some(None) => {}
            Some(Some(at)) if js_sys::Date::now() - at < RETRY_WORKER_AFTER_MS => return None,
            _ => {
                if let Some(broken) = cell.take() {
                    broken.worker.terminate();
                }
                *cell = start_worker();
            }
        }
        let hasher = cell.as_mut()?;
        let id = hasher.next;
        hasher.next += 1;
        let request = Object::new();
        for (key, value) in [
            ("id", JsValue::from(id)),
            ("file", JsValue::from(file.clone())),
            ("start", start.into()),
            ("end", end.into()),
        ] {
            Reflect::set(&request, &key.into(), &value).ok()?;
        }
        let waiting = hasher.waiting.clone();
        let promise = Promise::new(&mut |resolve, _| {
            waiting.borrow_mut().insert(id, resolve);
        });
        hasher.worker.post_message(&request).ok()?;
        Some(promise)
    })
}

async fn answer(promise: Option<Promise>) -> Result<([u8; 32], f64), String> {
    let answer = JsFuture::from(promise.ok_or(WORKER_DOWN)?)
        .await
        .map_err(|_| "the hashing worker failed".to_owned())?;
    if let Some(error) = Reflect::get(&answer, &"error".into())
        .ok()
        .and_then(|e| e.as_string())
    {
        return Err(error);
    }
    let digest = Reflect::get(&answer, &"digest".into()).map_err(|_| "no digest")?;
    let ms = Reflect::get(&answer, &"ms".into())
        .ok()
        .and_then(|ms| ms.as_f64())
        .unwrap_or(0.0);
    let bytes = Uint8Array::new(&digest).to_vec();
    let digest: [u8; 32] = bytes.try_into().map_err(|_| "a digest is 32 bytes")?;
    Ok((digest, ms))
}

/// `sha256 <base64>`, the value of a PATCH's `Upload-Checksum`.
pub fn upload_checksum(digest: &[u8; 32]) -> String {
    let binary: String = digest.iter().map(|&byte| char::from(byte)).collect();
    let base64 = web_sys::window()
        .and_then(|window| window.btoa(&binary).ok())
        .unwrap_or_default();
    format!("sha256 {base64}")
}
