//! Copying text to the clipboard (`navigator.clipboard.writeText`). Reached by name through
//! `js_sys::Reflect` rather than web-sys' `Navigator`/`Clipboard` bindings, which this small
//! use does not need; a browser without the API (a page served over plain HTTP to another
//! host) simply answers "not copied".
use js_sys::{Promise, Reflect};
use wasm_bindgen::{prelude::*, JsCast};
use wasm_bindgen_futures::JsFuture;

#[wasm_bindgen]
extern "C" {
    /// The page's `navigator.clipboard`.
    type Clipboard;

    #[wasm_bindgen(method, catch, js_name = writeText)]
    fn write_text(this: &Clipboard, text: &str) -> Result<Promise, JsValue>;
}

/// Whether `text` is now on the clipboard.
pub async fn copy_text(text: &str) -> bool {
    let Some(clipboard) = clipboard() else {
        return false;
    };
    match clipboard.write_text(text) {
        Ok(promise) => JsFuture::from(promise).await.is_ok(),
        Err(_) => false,
    }
}

fn clipboard() -> Option<Clipboard> {
    let window = web_sys::window()?;
    let navigator = Reflect::get(&window, &JsValue::from_str("navigator")).ok()?;
    let clipboard = Reflect::get(&navigator, &JsValue::from_str("clipboard")).ok()?;
    (!clipboard.is_undefined() && !clipboard.is_null()).then(|| clipboard.unchecked_into())
}
