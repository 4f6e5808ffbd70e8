//! Build steps cargo cannot see for itself: rebuild when a migration changes (`sqlx::migrate!`
//! embeds the `migrations/` files at compile time); tell the page's code whether this wasm
//! build is being split (`cfg(wasm_split)`, see `ui::split`); and, for the server, compile the
//! hashing worker's wasm (`hash-worker/`), which the server embeds and serves
//! (`server::hash_worker`).
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rustc-check-cfg=cfg(wasm_split)");
    if splitting_wasm() {
        println!("cargo:rustc-cfg=wasm_split");
    }
    if env::var_os("CARGO_FEATURE_SSR").is_some() {
        build_hash_worker();
    }
}

/// `cargo leptos build --split` links the wasm with `--emit-relocs` (wasm-split needs them):
/// only then may pages be `#[lazy]`, since an unsplit wasm cannot resolve their imports.
fn splitting_wasm() -> bool {
    let wasm = env::var("CARGO_CFG_TARGET_ARCH").is_ok_and(|arch| arch == "wasm32");
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    wasm && flags
        .split('\x1f')
        .any(|flag| flag.contains("--emit-relocs"))
}

/// Runs the cargo that runs this build on `hash-worker/` for wasm32, in a target dir of its own
/// under OUT_DIR (the outer build holds the lock on its own), and leaves the wasm at
/// `$OUT_DIR/hash-worker.wasm`. Its own workspace and lock file pin the same `sha2` as the
/// app's, so a fresh machine fetches nothing more; the wasm32 target is installed by
/// `scripts/setup` for the page's wasm anyway.
fn build_hash_worker() {
    let crate_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("hash-worker");
    for input in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed=hash-worker/{input}");
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out_dir.join("hash-worker-target");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&crate_dir)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's flags are the app's (`--cfg erase_components`, clippy as a wrapper),
    // not this crate's.
    for name in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cargo.env_remove(name);
    }
    // Its stdout would be read as this script's `cargo:` lines.
    let status = cargo
        .stdout(std::io::stderr())
        .status()
        .expect("cargo could not be run for hash-worker/");
    assert!(status.success(), "building hash-worker/ for wasm32 failed");
    let built = target_dir.join("wasm32-unknown-unknown/release/ingest_hash_worker.wasm");
    std::fs::copy(&built, out_dir.join("hash-worker.wasm")).expect("hash-worker/ built no wasm");
}
