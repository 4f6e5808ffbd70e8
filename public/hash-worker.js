// Ingest's hashing worker: the SHA-256 of a range of a file, by the app's own wasm (the `sha2`
// crate's `Sha256Stream`), read from disk 1 MiB at a time so a file never sits whole in memory.
// The page (src/ui/browser/hashing.rs) posts {id, file, start, end}; the answer is
// {id, digest: Uint8Array(32), ms} or {id, error}. Requests run side by side.
import init, { Sha256Stream } from "/pkg/ingest.js";

// The page passes the address of the wasm it loaded (`?wasm=`).
const wasm = new URL(self.location.href).searchParams.get("wasm") ?? "/pkg/ingest.wasm";
const ready = init({ module_or_path: wasm });
const SLICE = 1024 * 1024;

self.onmessage = async ({ data: { id, file, start, end } }) => {
  try {
    await ready;
    const began = performance.now();
    const hasher = new Sha256Stream();
    for (let at = start; at < end; at += SLICE) {
      const slice = file.slice(at, Math.min(end, at + SLICE));
      hasher.update(new Uint8Array(await slice.arrayBuffer()));
    }
    const digest = hasher.finish();
    self.postMessage({ id, digest, ms: performance.now() - began });
  } catch (error) {
    self.postMessage({ id, error: `the file could not be hashed (${error})` });
  }
};
