//! Finding the files a person gave the page: chosen in the picker (several, or a folder with
//! each file's relative path), or dropped (files and whole folders, walked with the entries
//! API), and the unfinished uploads this browser remembers. Nothing is skipped in silence: what
//! cannot be read comes back as a problem to show.
use crate::ui::{
    queue::NewFile,
    transfer::{Fingerprint, UploadRecord, UPLOAD_KEY_PREFIX},
};
use js_sys::{Array, Function, Promise, Reflect};
use send_wrapper::SendWrapper;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::File;

/// What a pick or a drop gave: the files, and what could not be read.
#[derive(Default)]
pub struct Found {
    pub files: Vec<NewFile>,
    pub problems: Vec<String>,
}

fn new_file(file: File, path: Option<String>) -> NewFile {
    NewFile {
        name: file.name(),
        size: file.size() as u64,
        path: path.filter(|path| path.contains('/')),
        file: SendWrapper::new(file),
        resumes: None,
    }
}

/// The files of a file input; a folder picker gives each its path inside the folder.
pub fn picked(input: &web_sys::HtmlInputElement) -> Found {
    let mut found = Found::default();
    if let Some(list) = input.files() {
        for index in 0..list.length() {
            if let Some(file) = list.get(index) {
                let path = Reflect::get(&file, &"webkitRelativePath".into())
                    .ok()
                    .and_then(|path| path.as_string())
                    .filter(|path| !path.is_empty());
                found.files.push(new_file(file, path));
            }
        }
    }
    found
}

/// The entries of a drop, taken while the drop event runs (they are gone after it), to be
/// walked by `walk_dropped`. Read through plain property access so any drop-like object works.
pub fn dropped_entries(event: &web_sys::Event) -> Result<Vec<JsValue>, Vec<File>> {
    let transfer = Reflect::get(event, &"dataTransfer".into()).unwrap_or(JsValue::NULL);
    let items = Reflect::get(&transfer, &"items".into()).unwrap_or(JsValue::UNDEFINED);
    let length = Reflect::get(&items, &"length".into())
        .ok()
        .and_then(|length| length.as_f64())
        .unwrap_or(0.0) as u32;
    let mut entries = Vec::new();
    for index in 0..length {
        let Ok(item) = Reflect::get_u32(&items, index) else {
            continue;
        };
        let is_file = Reflect::get(&item, &"kind".into())
            .ok()
            .and_then(|kind| kind.as_string())
            .is_some_and(|kind| kind == "file");
        let entry = Reflect::get(&item, &"webkitGetAsEntry".into())
            .ok()
            .and_then(|get| get.dyn_into::<Function>().ok())
            .and_then(|get| get.call0(&item).ok())
            .filter(|entry| entry.is_object());
        match entry {
            Some(entry) if is_file => entries.push(entry),
            _ => {}
        }
    }
    if !entries.is_empty() {
        return Ok(entries);
    }
    // No entries API: the plain file list (folders cannot be told apart there).
    let files = Reflect::get(&transfer, &"files".into()).unwrap_or(JsValue::UNDEFINED);
    let count = Reflect::get(&files, &"length".into())
        .ok()
        .and_then(|length| length.as_f64())
        .unwrap_or(0.0) as u32;
    Err((0..count)
        .filter_map(|index| Reflect::get_u32(&files, index).ok())
        .map(|file| file.unchecked_into::<File>())
        .collect())
}

/// Every file under the dropped entries, folders walked to the bottom; files inside a folder
/// keep their path (`dir/sub/file.txt`).
pub async fn walk_dropped(entries: Vec<JsValue>) -> Found {
    let mut found = Found::default();
    let mut pending = entries;
    while let Some(entry) = pending.pop() {
        let full_path = string_field(&entry, "fullPath")
            .or_else(|| string_field(&entry, "name"))
            .unwrap_or_default();
        let path = full_path.trim_start_matches('/').to_owned();
        if bool_field(&entry, "isDirectory") {
            match read_directory(&entry).await {
                Ok(children) => pending.extend(children),
                Err(()) => found
                    .problems
                    .push(format!("The folder “{path}” could not be read.")),
            }
        } else {
            match call_with_callbacks(&entry, "file").await {
                Ok(file) => found
                    .files
                    .push(new_file(file.unchecked_into::<File>(), Some(path))),
                Err(()) => found.problems.push(format!("“{path}” could not be read.")),
            }
        }
    }
    // Walked as a stack: put them back in the order the person sees in the folder.
    found.files.sort_by(|a, b| {
        let key = |file: &NewFile| file.path.clone().unwrap_or_else(|| file.name.clone());
        key(a).cmp(&key(b))
    });
    found
}

/// All entries of a directory: `readEntries` gives them in batches until an empty one.
async fn read_directory(entry: &JsValue) -> Result<Vec<JsValue>, ()> {
    let create = Reflect::get(entry, &"createReader".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or(())?;
    let reader = create.call0(entry).map_err(|_| ())?;
    let mut all = Vec::new();
    loop {
        let batch = call_with_callbacks(&reader, "readEntries").await?;
        let batch = Array::from(&batch);
        if batch.length() == 0 {
            return Ok(all);
        }
        all.extend(batch.iter());
    }
}

/// Calls `target.method(success, error)` (the entries API's callback style) as a future.
async fn call_with_callbacks(target: &JsValue, method: &str) -> Result<JsValue, ()> {
    let function = Reflect::get(target, &method.into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .ok_or(())?;
    let promise = Promise::new(&mut |resolve, reject| {
        if let Err(error) = function.call2(target, &resolve, &reject) {
            let _ = reject.call1(&JsValue::NULL, &error);
        }
    });
    JsFuture::from(promise).await.map_err(|_| ())
}

fn string_field(target: &JsValue, name: &str) -> Option<String> {
    Reflect::get(target, &name.into()).ok()?.as_string()
}

fn bool_field(target: &JsValue, name: &str) -> bool {
    Reflect::get(target, &name.into())
        .ok()
        .and_then(|value| value.as_bool())
        .unwrap_or(false)
}

/// The fingerprint of a file: what "the same file" means when an upload is resumed.
pub fn fingerprint(file: &File) -> Fingerprint {
    Fingerprint {
        size: file.size() as u64,
        last_modified: file.last_modified() as u64,
        name: file.name(),
    }
}

/// This browser's unfinished uploads (kept in `localStorage` while they run), by file name.
pub fn interrupted_uploads() -> Vec<(Fingerprint, UploadRecord)> {
    let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) else {
        return Vec::new();
    };
    let count = storage.length().unwrap_or(0);
    let mut found: Vec<(Fingerprint, UploadRecord)> = (0..count)
        .filter_map(|index| storage.key(index).ok().flatten())
        .filter(|key| key.starts_with(UPLOAD_KEY_PREFIX))
        .filter_map(|key| {
            let record = UploadRecord::parse(&storage.get_item(&key).ok()??)?;
            Some((Fingerprint::parse_key(&key)?, record))
        })
        .collect();
    found.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    found
}

/// Forgets an unfinished upload (after it was discarded).
pub fn forget(print: &Fingerprint) {
    if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
        let _ = storage.remove_item(&print.key());
    }
}
