# Sourced by the scripts: puts the npm-installed wasm-opt first on PATH so cargo-leptos uses it
# instead of trying to download one.
PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/end2end/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export PATH
