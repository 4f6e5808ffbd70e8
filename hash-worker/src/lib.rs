//! SHA-256 for the hashing worker (`public/hash-worker.js`), as plain wasm exports with no
//! wasm-bindgen glue: the worker copies each slice of a file into `input`, then feeds it to one
//! of the running hashes here. Several hashes run at once (the worker interleaves requests while
//! it waits for the disk), each in its own slot.
use sha2::{Digest, Sha256};
use std::cell::RefCell;

struct Hashes {
    /// Running hashes by slot; `None` is a free slot.
    slots: Vec<Option<Sha256>>,
    /// Where the worker writes the bytes to hash next.
    input: Vec<u8>,
    /// The last finished digest, read by the worker right after `hash_finish`.
    digest: [u8; 32],
}

thread_local! {
    // wasm32-unknown-unknown has one thread: this is a plain global.
    static HASHES: RefCell<Hashes> = const {
        RefCell::new(Hashes { slots: Vec::new(), input: Vec::new(), digest: [0; 32] })
    };
}

/// The address of a buffer of `len` bytes for the next `hash_update`. It may move (and memory
/// may grow) on each call, so the worker views the memory after calling this.
#[no_mangle]
pub extern "C" fn input(len: usize) -> *mut u8 {
    HASHES.with_borrow_mut(|hashes| {
        hashes.input.resize(len, 0);
        hashes.input.as_mut_ptr()
    })
}

/// Starts a hash and returns its slot.
#[no_mangle]
pub extern "C" fn hash_start() -> u32 {
    HASHES.with_borrow_mut(|hashes| {
        let free = hashes.slots.iter().position(Option::is_none);
        let slot = free.unwrap_or_else(|| {
            hashes.slots.push(None);
            hashes.slots.len() - 1
        });
        hashes.slots[slot] = Some(Sha256::new());
        slot as u32
    })
}

/// Feeds the first `len` bytes of `input` to the hash in `slot`. Returns 0 for an unknown
/// slot or a length beyond the buffer, 1 otherwise.
#[no_mangle]
pub extern "C" fn hash_update(slot: u32, len: usize) -> u32 {
    HASHES.with_borrow_mut(|hashes| {
        let Hashes { slots, input, .. } = hashes;
        match (slots.get_mut(slot as usize), input.get(..len)) {
            (Some(Some(hash)), Some(bytes)) => {
                hash.update(bytes);
                1
            }
            _ => 0,
        }
    })
}

/// Ends the hash in `slot` (freeing it) and returns the address of its 32-byte digest, valid
/// until the next call; 0 for an unknown slot.
#[no_mangle]
pub extern "C" fn hash_finish(slot: u32) -> *const u8 {
    HASHES.with_borrow_mut(|hashes| {
        match hashes.slots.get_mut(slot as usize).and_then(Option::take) {
            Some(hash) => {
                hashes.digest = hash.finalize().into();
                hashes.digest.as_ptr()
            }
            None => std::ptr::null(),
        }
    })
}
