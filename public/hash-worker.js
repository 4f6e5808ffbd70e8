// Ingest's hashing worker: the SHA-256 of a range of a file, by a small wasm of its own
// (`hash-worker/`: the `sha2` crate and nothing else, served at /hash-worker.wasm), read from
// disk 1 MiB at a time so a file never sits whole in memory. The page's own wasm is not loaded
// here: the worker starts with the first upload (or Resume check) and costs only its few KB.
// The page (src/ui/browser/hashing.rs) posts {id, file, start, end}; the answer is
// {id, digest: Uint8Array(32), ms} or {id, error}. Requests run side by side, each in its own
// slot of the wasm.
const ready = WebAssembly.instantiateStreaming(fetch("/hash-worker.wasm"), {}).then(
  ({ instance }) => instance.exports,
);
const SLICE = 1024 * 1024;

self.onmessage = async ({ data: { id, file, start, end } }) => {
  try {
    const wasm = await ready;
    const began = performance.now();
    const slot = wasm.hash_start();
    let at = 0;
    try {
      for (let from = start; from < end; from += SLICE) {
        const bytes = new Uint8Array(await file.slice(from, Math.min(end, from + SLICE)).arrayBuffer());
        // `input` may grow the memory: view it after the call.
        const into = wasm.input(bytes.length);
        new Uint8Array(wasm.memory.buffer, into, bytes.length).set(bytes);
        if (!wasm.hash_update(slot, bytes.length)) throw new Error("the hash was lost");
      }
    } finally {
      // Ended either way, so a failed read frees its slot.
      at = wasm.hash_finish(slot);
    }
    if (!at) throw new Error("the hash was lost");
    const digest = new Uint8Array(wasm.memory.buffer, at, 32).slice();
    self.postMessage({ id, digest, ms: performance.now() - began }, [digest.buffer]);
  } catch (error) {
    self.postMessage({ id, error: `the file could not be hashed (${error})` });
  }
};
